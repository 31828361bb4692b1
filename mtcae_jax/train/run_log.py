"""Where a run's numbers go: TensorBoard event files, absl's log and a JSON-lines file in the workdir."""

import json
import os
import pathlib
import time

from mtcae_jax.train import event_writer


class RunLog:

  def __init__(self, workdir, *, is_main=True):
    self.path = pathlib.Path(workdir) / 'log.jsonl'
    self.is_main = is_main
    self.writer = event_writer.EventWriter(workdir if is_main else None)  # TensorBoard files on the main host

  def write(self, step, split, metrics):
    """Scalars of `split` ('train', 'eval') at `step`, e.g. {'loss': 0.3, 'uar': 0.8}."""
    scalars = {k: float(v) for k, v in metrics.items()}
    self.writer.write_scalars(step, {f'{split}/{k}': v for k, v in scalars.items()})
    if self.is_main:
      line = json.dumps({'step': int(step), 'split': split, 'time': time.time(), **scalars}) + '\n'
      with self.path.open('a+b') as f:
        # A run killed mid-write leaves a torn last line: start on a fresh one, or this record is lost with it.
        if f.tell():
          f.seek(-1, os.SEEK_END)
          if f.read(1) != b'\n':
            line = '\n' + line
        f.write(line.encode())

  def close(self):
    self.writer.flush()
    self.writer.close()


def read(workdir, *, all_runs=False):
  """The records of a run's log.jsonl, in order, as of its latest run: see `latest_run` (`all_runs`: every record
  as written). A line that is not a record (torn by a kill mid-write) is skipped."""
  path = pathlib.Path(workdir) / 'log.jsonl'
  records = []
  for line in path.read_text().splitlines() if path.exists() else []:
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if isinstance(record, dict) and isinstance(record.get('step'), int) and isinstance(record.get('split'), str):
      records.append(record)
  return records if all_runs else latest_run(records)


def latest_run(records):
  """`records` without those a resumed run superseded.

  A run killed at step k after its checkpoint at step s logged steps up to k; resumed from s, it logs steps after
  s again. So a record whose step is not after its split's last one starts a new run, and the earlier records
  after the step it resumed from go. That step is the last train record before it (train is logged at every
  checkpoint step; at the same step for an evaluation: the rerun of a finished run evaluates its last step
  again), or 0 when there is none (a run started afresh). Of two records of one (split, step) the later stays.
  """
  kept, last = [], {}  # last: the step of each split's latest kept record
  for record in records:
    split, step = record['split'], record['step']
    if split in last and step <= last[split]:
      resumed = max((r['step'] for r in kept if r['split'] == 'train'
                     and (r['step'] < step if split == 'train' else r['step'] <= step)), default=0)
      kept = [r for r in kept if r['step'] <= resumed and (r['split'], r['step']) != (split, step)]
      last = {}
      for r in kept:
        last[r['split']] = max(last.get(r['split'], r['step']), r['step'])
    kept.append(record)
    last[split] = step
  return kept
