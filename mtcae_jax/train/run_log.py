"""Where a run's numbers go: TensorBoard event files, absl's log and a JSON-lines file in the workdir."""

import json
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
      with self.path.open('a') as f:
        f.write(json.dumps({'step': int(step), 'split': split, 'time': time.time(), **scalars}) + '\n')

  def close(self):
    self.writer.flush()
    self.writer.close()


def read(workdir):
  """The records of a run's log.jsonl, in order."""
  path = pathlib.Path(workdir) / 'log.jsonl'
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
