"""Two processes of 2 fake CPU devices each, joined by jax.distributed over localhost, run the real command: the
same losses, weights and evaluation as one process of 4 devices, through a SIGTERM and a resumption."""

import csv
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mtcae_jax import checkpointing
from mtcae_jax.data import demo_data
from mtcae_jax.train import run_log

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO = pathlib.Path(str(demo_data.RAW))
# tests/conftest.py's small_config, on the command line; checkpoints at the evaluations (every 2 steps).
OVERRIDES = ('--config.prepare_demo_data=False', '--config.num_frames=4', '--config.image_size=32',
             '--config.batch_size=4', '--config.eval_batch_size=4', '--config.num_steps=4',
             '--config.eval_every_steps=2', '--config.log_every_steps=1')


def start(workdir, data_dir, devices, *flags):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0')
  return subprocess.Popen([sys.executable, '-m', 'mtcae_jax.main', '--config=configs/demo.py',
                           f'--workdir={workdir}', f'--config.data_dir={data_dir}', *OVERRIDES, *flags],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_job(workdir, data_dir):
  """Both processes of a 2-process job, on a free port."""
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  return [start(workdir, data_dir, 2, '--config.distributed=True', f'--config.coordinator_address=localhost:{port}',
                '--config.num_processes=2', f'--config.process_id={i}') for i in range(2)]


def finish(procs, timeout=300):
  outs = [p.communicate(timeout=timeout) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def saved_arrays(workdir, step):
  """A checkpoint's arrays, read by this single process whatever wrote them."""
  directory = pathlib.Path(workdir) / 'checkpoints' / str(step) / 'state'
  with ocp.PyTreeCheckpointer() as checkpointer:
    tree = checkpointer.metadata(directory).item_metadata.tree
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)
  return jax.tree.leaves(checkpointing.restore_tree(directory, target))


def train_losses(workdir):
  return {r['step']: r['loss'] for r in run_log.read(workdir) if r['split'] == 'train'}


@pytest.mark.slow
def test_two_processes_match_one_through_a_preemption(demo_data_dir, tmp_path):
  multi, single = tmp_path / 'multi', tmp_path / 'single'
  t0 = time.perf_counter()
  reference = start(single, demo_data_dir, 4)
  job = start_job(multi, demo_data_dir)
  # SIGTERM both once step 1 is logged: step 2 (an evaluation's compilation) leaves time for the notice to
  # spread, so that the job stops, with a checkpoint, at a step both agreed on before the last.
  while not train_losses(multi) and all(p.poll() is None for p in job):
    time.sleep(0.1)
  for p in job:
    p.send_signal(signal.SIGTERM)
  (_, err), _ = finish(job)
  stopped = checkpointing.Checkpoints(multi / 'checkpoints').latest_step()
  assert stopped is not None and stopped < 4 and 'Stopped at step' in err, err[-3000:]
  assert not (multi / 'metrics.json').exists()
  (out, _), _ = finish(start_job(multi, demo_data_dir))
  assert f'Resuming from step {stopped}' in out, out
  finish([reference])
  print(f'two runs of 2 processes beside one of 1 process: {time.perf_counter() - t0:.1f} s')

  expected, got = train_losses(single), train_losses(multi)
  assert sorted(got) == sorted(expected) == [1, 2, 3, 4]
  # Within 1e-6, relative too: a loss of 70 in float32 is exact to 8e-6 (the all-reduce adds in another order).
  np.testing.assert_allclose([got[s] for s in range(1, 5)], [expected[s] for s in range(1, 5)], rtol=1e-6, atol=1e-6)
  for a, b in zip(saved_arrays(multi, 4), saved_arrays(single, 4), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)

  # Process 0 alone wrote the reports; every test clip counted once, under its own path.
  assert [p.name for p in multi.rglob('metrics.json')] == ['metrics.json']
  assert [p.name for p in multi.rglob('predictions.csv')] == ['predictions.csv']
  metrics = json.loads((multi / 'metrics.json').read_text())
  assert metrics['num_clips'] == json.loads((single / 'metrics.json').read_text())['num_clips']
  rows = list(csv.DictReader(open(multi / 'predictions.csv')))
  reference_rows = list(csv.DictReader(open(single / 'predictions.csv')))
  assert [r['path'] for r in rows] == [r['path'] for r in reference_rows]
  assert len(rows) == metrics['num_clips'] == len({r['path'] for r in rows})
  assert all((DEMO / r['path']).is_file() for r in rows), rows[0]['path']

  predict = subprocess.run([sys.executable, '-m', 'mtcae_jax.predict', f'--checkpoint={multi}',
                            f'--video={DEMO / rows[0]["path"]}', f'--output={tmp_path / "p.json"}'],
                           cwd=REPO, capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert predict.returncode == 0, predict.stderr[-3000:]
  assert json.loads((tmp_path / 'p.json').read_text())['checkpoint'] == f'{multi} (step 4)'
