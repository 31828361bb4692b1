"""A --workdir that is a file is one line; a resumed run's log keeps only its latest records."""

import json
import pathlib

import pytest

from mtcae_jax import main as train_command
from mtcae_jax.train import run_log

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('mode', ['train', 'eval', 'cv'])
@pytest.mark.parametrize('where', ['file', 'under a file', 'dangling link'])
def test_workdir_that_is_not_a_directory_is_one_line(tmp_path, capsys, monkeypatch, mode, where):
  monkeypatch.chdir(ROOT)  # the config file's path
  (tmp_path / 'file').write_text('x')
  (tmp_path / 'link').symlink_to(tmp_path / 'nowhere')
  workdir = {'file': tmp_path / 'file', 'under a file': tmp_path / 'file' / 'run',
             'dangling link': tmp_path / 'link'}[where]
  code = train_command.main(['--config=configs/demo.py', f'--workdir={workdir}', f'--mode={mode}'])
  err = capsys.readouterr().err
  assert code == 2
  assert err.startswith(f'error: --workdir={workdir}: ') and err.count('\n') == 1, err
  assert 'is not a directory' in err
  assert (tmp_path / 'file').read_text() == 'x'


def simulate(start, stop, run, *, log_every=2, checkpoint_every=4, eval_every=3):
  """The records the training loop writes from step `start` (a checkpoint) to `stop`: train at each log and
  checkpoint step, then eval at each evaluation step."""
  out = []
  for step in range(start + 1, stop + 1):
    if step % log_every == 0 or step % checkpoint_every == 0 or step == stop:
      out.append({'step': step, 'split': 'train', 'run': run})
    if step % eval_every == 0 or step == stop:
      out.append({'step': step, 'split': 'eval', 'run': run})
  return out


def keys(records):
  return [(r['split'], r['step'], r['run']) for r in records]


def test_a_resumed_run_supersedes_the_records_after_its_checkpoint():
  # Killed at step 7 (records up to 7; the last checkpoint at 4), resumed from 4 and finished at 10: the log
  # reads as one run, with the resumed run's records after step 4.
  killed = [r for r in simulate(0, 10, 'first') if r['step'] <= 7]
  log = killed + simulate(4, 10, 'second')
  expected = [r for r in simulate(0, 10, 'first') if r['step'] <= 4] + simulate(4, 10, 'second')
  assert keys(run_log.latest_run(log)) == keys(expected)
  assert len(run_log.latest_run(log)) < len(log)

  # Still running after the resume (at step 6): nothing of the first run after step 4 is left.
  log = killed + [r for r in simulate(4, 10, 'second') if r['step'] <= 6]
  assert keys(run_log.latest_run(log)) == keys([r for r in killed if r['step'] <= 4] + log[len(killed):])

  # A finished run run again evaluates its last step again: that evaluation replaces the first, nothing else goes.
  done = simulate(0, 10, 'first')
  again = run_log.latest_run(done + [{'step': 10, 'split': 'eval', 'run': 'again'}])
  assert keys(again) == keys(done[:-1]) + [('eval', 10, 'again')]

  # Started afresh (its checkpoints deleted): the first run is gone.
  assert keys(run_log.latest_run(killed + simulate(0, 3, 'new'))) == keys(simulate(0, 3, 'new'))

  # One run alone is left as it is.
  assert run_log.latest_run(done) == done


def test_read_keeps_the_latest_run_and_survives_a_torn_line(tmp_path):
  log = run_log.RunLog(tmp_path)
  for step in (1, 2, 3):
    log.write(step, 'train', {'loss': 1.0})
  with (tmp_path / 'log.jsonl').open('a') as f:
    f.write('{"step": 4, "split": "tra')  # killed mid-write
  log.write(3, 'train', {'loss': 0.5})  # resumed from step 2
  log.write(4, 'train', {'loss': 0.4})
  log.close()
  assert [(r['step'], r['loss']) for r in run_log.read(tmp_path)] == [(1, 1.0), (2, 1.0), (3, 0.5), (4, 0.4)]
  assert len(run_log.read(tmp_path, all_runs=True)) == 5  # every whole record as written
  assert json.loads((tmp_path / 'log.jsonl').read_text().splitlines()[-2])['loss'] == 0.5  # on a line of its own
