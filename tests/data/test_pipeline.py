"""The input pipeline on an in-memory source shaped like a TFDS data source (lists of frames, bytes paths)."""

import os
import subprocess
import sys
import textwrap
import types

import jax
import pytest
import numpy as np

from mtcae_jax.configs import default
from mtcae_jax.data import pipeline

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')


def fake_source(n, frames=16, size=24):
  """Example i: every pixel of frame t is (i, t, 0); a box and landmarks that drift with t."""
  out = []
  for i in range(n):
    t = np.arange(frames, dtype=np.float32)[:, None]
    out.append({
        'video': [np.full((size, size, 3), (i, f, 0), np.uint8) for f in range(frames)],
        'boxes': np.concatenate([0.2 + t / 100, 0.2 + 0 * t, 0.6 + t / 100, 0.7 + 0 * t], 1).astype(np.float32),
        'landmarks': np.tile(np.array([[0.3, 0.3], [0.5, 0.3], [0.4, 0.45], [0.33, 0.6], [0.47, 0.6]],
                                      np.float32), (frames, 1, 1)),
        'face_mask': np.ones(frames, bool), 'label': i % 7, 'path': f'clip{i:02d}.mp4'.encode()})
  return out


def tiny_config():
  c = default.get_config()
  c.num_frames, c.image_size = 4, 16
  return c


def test_eval_every_example_once_padded_and_masked():
  config = tiny_config()
  batches = list(pipeline.eval_batches(fake_source(10), config, global_batch_size=4))
  assert len(batches) == 3
  assert [np.asarray(b['mask']).tolist() for b in batches][-1] == [True, True, False, False]
  seen = [int(i) for b in batches for i, m in zip(b['index'], np.asarray(b['mask'])) if m]
  assert seen == list(range(10))
  b = batches[0]
  assert isinstance(b['video'], jax.Array) and b['video'].shape == (4, 4, 16, 16, 3)
  assert b['video'].dtype == np.uint8 and 'colour' not in b  # normalised on the device, never colour-jittered
  # Centre of each of 4 segments of 16 stored frames: 2, 6, 10, 14; pixel (i, t, 0) comes back exactly.
  pixels = np.asarray(b['video'])[:, :, 8, 8]
  np.testing.assert_array_equal(pixels[1, :, 1], [2, 6, 10, 14])
  np.testing.assert_array_equal(pixels[:, 0, 0], [0, 1, 2, 3])
  np.testing.assert_allclose(np.asarray(b['boxes'])[0, :, 0], 0.2 + np.array([2, 6, 10, 14]) / 100, atol=1e-6)
  assert b['path'].tolist() == ['clip00.mp4', 'clip01.mp4', 'clip02.mp4', 'clip03.mp4']
  assert np.asarray(b['label']).tolist() == [0, 1, 2, 3]


def test_eval_temporal_views():
  config = tiny_config()
  b = next(pipeline.eval_batches(fake_source(2), config, global_batch_size=2, num_views=2))
  assert b['video'].shape == (2, 2, 4, 16, 16, 3) and b['boxes'].shape == (2, 2, 4, 4)
  frames = np.asarray(b['video'])[0, :, :, 8, 8, 1]
  # Offsets 1/4 and 3/4 into segments of 4 frames: frames 1, 5, 9, 13 and 3, 7, 11, 15.
  np.testing.assert_array_equal(frames, [[1, 5, 9, 13], [3, 7, 11, 15]])


def test_train_is_seeded_shuffled_and_resumable():
  config = tiny_config()
  source = fake_source(10)
  run = lambda **kw: list(pipeline.train_batches(source, config, global_batch_size=4, seed=7, **kw))
  first = run(num_steps=6)
  resumed = run(start_step=4, num_steps=2)
  for a, b in zip(first[4:], resumed):
    assert np.array_equal(a['index'], b['index'])
    for k in pipeline.TRAIN_KEYS:
      np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
  # 2 steps per epoch (10 // 4): each epoch's 8 examples are distinct, and epochs are shuffled differently.
  epoch0 = np.concatenate([b['index'] for b in first[:2]])
  epoch1 = np.concatenate([b['index'] for b in first[2:4]])
  assert len(set(epoch0)) == 8 and len(set(epoch1)) == 8 and not np.array_equal(epoch0, epoch1)
  other = list(pipeline.train_batches(source, config, global_batch_size=4, seed=8, num_steps=1))
  assert not np.array_equal(other[0]['index'], first[0]['index'])
  b = first[0]
  assert b['video'].dtype == np.uint8 and b['video'].shape == (4, 4, 16, 16, 3)
  assert b['colour'].shape == (4, 3) and b['colour'].dtype == np.float32
  assert (np.asarray(b['boxes']) >= 0).all() and (np.asarray(b['boxes']) <= 1).all()
  assert np.asarray(b['mask']).all()


def test_batches_sharded_over_data_and_fsdp_axes():
  """4 CPU devices in a (2, 2) mesh: every example once, the batch split 4 ways (a fresh process for the flag)."""
  script = textwrap.dedent('''
      import os
      os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
      import jax, numpy as np
      from tests.data.test_pipeline import fake_source, tiny_config
      from mtcae_jax.data import pipeline
      mesh = jax.make_mesh((2, 2), ('data', 'fsdp'), axis_types=(jax.sharding.AxisType.Auto,) * 2)
      batches = list(pipeline.eval_batches(fake_source(10), tiny_config(), 8, mesh=mesh))
      b = batches[0]
      assert b['video'].sharding.spec == jax.sharding.PartitionSpec(('data', 'fsdp')), b['video'].sharding
      assert {s.data.shape for s in b['video'].addressable_shards} == {(2, 4, 16, 16, 3)}
      assert [int(np.asarray(x['mask']).sum()) for x in batches] == [8, 2]
      print(sorted(int(i) for x in batches for i, m in zip(x['index'], np.asarray(x['mask'])) if m))
  ''')
  r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=ROOT, timeout=300,
                     env=dict(os.environ, PYTHONPATH=ROOT))
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.strip().splitlines()[-1] == str(list(range(10)))


def _local_batches(source, config, rows, num_workers, start_step=0, num_steps=3):
  """One process's shares (rows `rows` of each global batch of 4) as NumPy, nothing on the device: what a
  process of a multi-process job loads (pipeline.process_rows gives it its rows)."""
  original = pipeline.process_rows
  pipeline.process_rows = lambda sharding, global_batch_size: rows
  try:
    batches = pipeline.train_batches(source, config, 4, seed=3, start_step=start_step, num_steps=num_steps,
                                     num_workers=num_workers)
  finally:
    pipeline.process_rows = original
  return list(batches.local_batches())


def test_train_batches_same_for_any_processes_workers_and_resume():
  """Example i of step s is the same with 1 or 2 processes, 0 or 2 worker processes, and after a resume."""
  config, source = tiny_config(), fake_source(10)
  whole = _local_batches(source, config, (0, 4), num_workers=0)
  halves = [_local_batches(source, config, rows, num_workers=0) for rows in ((0, 2), (2, 4))]
  workers = _local_batches(source, config, (0, 4), num_workers=2)
  resumed = _local_batches(source, config, (0, 4), num_workers=0, start_step=2, num_steps=1)
  assert len(whole) == len(workers) == 3 and len(resumed) == 1
  for step, batch in enumerate(whole):
    assert set(batch) == set(pipeline.TRAIN_KEYS) | {'index', 'path'}
    for k, v in batch.items():
      np.testing.assert_array_equal(np.concatenate([halves[0][step][k], halves[1][step][k]]), v)
      np.testing.assert_array_equal(workers[step][k], v)
      if step == 2:
        np.testing.assert_array_equal(resumed[0][k], v)


def test_train_state_resumes_where_it_stopped_and_refuses_other_data():
  config, source = tiny_config(), fake_source(10)
  batches = pipeline.train_batches(source, config, 4, seed=3, num_steps=3, num_workers=0)
  it = iter(batches)
  next(it), next(it)
  state = batches.get_state()
  assert state == {'step': 2, 'seed': 3, 'num_examples': 10, 'global_batch_size': 4}
  assert pipeline.resume_step(state, source, 4, 3) == 2
  for args, what in (((fake_source(9), 4, 3), 'num_examples 10 -> 9'), ((source, 2, 3), 'global_batch_size 4 -> 2'),
                     ((source, 4, 4), 'seed 3 -> 4')):
    with pytest.raises(ValueError, match=what):
      pipeline.resume_step(state, *args)


# More views than 1 need more stored frames than the model samples; with as many, they would all be the same frames.
REFUSED = 'eval_views=2 needs more stored frames than num_frames=4; this split stores 4, so every view would see ' \
          'the same frames: use eval_views=1 or a dataset prepared with more (--stored_frames)'


def test_two_views_see_different_frames_when_more_are_stored():
  b = next(pipeline.eval_batches(fake_source(2, frames=8), tiny_config(), global_batch_size=2, num_views=2))
  frames = np.asarray(b['video'])[:, :, :, 8, 8, 1]
  assert not np.array_equal(frames[:, 0], frames[:, 1])


def test_views_over_as_many_stored_frames_as_sampled_are_refused():
  source = fake_source(2, frames=4)
  with pytest.raises(ValueError) as e:
    pipeline.eval_batches(source, tiny_config(), global_batch_size=2, num_views=2)
  assert str(e.value) == REFUSED and '\n' not in str(e.value)
  assert next(pipeline.eval_batches(source, tiny_config(), global_batch_size=2))['video'].shape == (2, 4, 16, 16, 3)


def test_the_stored_frame_count_of_a_tfds_source_is_its_video_length():
  video = types.SimpleNamespace(shape=(4, 224, 224, 3))
  source = types.SimpleNamespace(dataset_info=types.SimpleNamespace(features={'video': video}))
  with pytest.raises(ValueError, match='this split stores 4'):
    pipeline.check_views(source, tiny_config(), 2)
  pipeline.check_views(source, tiny_config(), 1)


def test_training_and_eval_refuse_same_frame_views_before_any_step(demo_data_dir, tmp_path, capsys, monkeypatch):
  from mtcae_jax import main  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(ROOT)
  args = ['--config=configs/demo.py', '--allow_cpu', '--config.prepare_demo_data=False',
          f'--config.data_dir={demo_data_dir}', '--config.num_frames=16', '--config.eval_views=2']
  for mode in ('train', 'eval'):
    assert main.main(args + [f'--workdir={tmp_path}', f'--mode={mode}']) == 2
    err = capsys.readouterr().err
    assert err == 'error: eval_views=2 needs more stored frames than num_frames=16; this split stores 16, so every ' \
                  'view would see the same frames: use eval_views=1 or a dataset prepared with more ' \
                  '(--stored_frames)\n', err
  assert not (tmp_path / 'checkpoints').exists()


def test_a_run_saved_with_two_views_resumes_with_one():
  from mtcae_jax.train import loop  # pylint: disable=g-import-not-at-top
  saved, current = default.get_config(), default.get_config()
  saved.eval_views = 2
  assert loop.config_changes(saved.to_dict(), current.to_dict()) == []
