"""Data preparation under hostile or unlucky input: a FIFO named like a clip, a decoder that hangs, folds left
without actors. Each prepared tree is a few demo clips, labelled in-process by a fixed face labeler (fast)."""

import json
import multiprocessing
import os
import shutil
import threading
import time

import pytest

from mtcae_jax.data import faces, prepare, stored_example
from mtcae_jax.data import pool as pool_lib
from tests.conftest import fixed_faces

DEMO = os.path.join(os.path.dirname(__file__), '..', '..', 'mtcae_jax', 'data', 'demo', 'ravdess')
# One demo clip for each of five actors: one actor per fold.
ONE_PER_ACTOR = ['Actor_01/02-01-01-01-01-01-01.mp4', 'Actor_02/02-01-04-01-01-01-02.mp4',
                 'Actor_03/02-01-07-01-01-01-03.mp4', 'Actor_04/02-01-08-01-01-01-04.mp4',
                 'Actor_06/02-01-03-01-01-01-06.mp4']


def test_pool_kills_a_stuck_clip_and_still_finds_the_one_that_crashes():
  # Items are Python expressions run by `eval` in the workers: spawned workers then import nothing of the tests.
  sleep, crash = "__import__('time').sleep(600)", "__import__('os')._exit(3)"
  items = ['1', sleep, '2', crash, '3', '4']
  before, start = set(multiprocessing.active_children()), time.monotonic()
  with pool_lib.ClipPool(2) as pool:
    out = list(pool.imap(eval, items, on_crash=lambda _: 'crash', timeout=5, on_timeout=lambda _: 'timeout'))
  assert out == list(zip(items, [1, 'timeout', 2, 'crash', 3, 4]))
  assert time.monotonic() - start < 120  # not the sleep's 600 s
  assert set(multiprocessing.active_children()) <= before  # the stuck worker was killed, not left behind


def test_pool_left_on_an_error_kills_its_stuck_workers_at_once():
  # E.g. an empty fold raised while clips are in flight, or Ctrl-C: not a wait for decoders that never return.
  before, start = set(multiprocessing.active_children()), time.monotonic()
  with pytest.raises(RuntimeError, match='stop'):
    with pool_lib.ClipPool(2) as pool:
      for _ in pool.imap(eval, ['1'] + ["__import__('time').sleep(600)"] * 2, on_crash=None):
        raise RuntimeError('stop')
  assert time.monotonic() - start < 60
  assert set(multiprocessing.active_children()) <= before


def test_pool_timeout_reason_names_the_limit():
  assert pool_lib.timed_out(300).startswith('timed out after 300 s')


@pytest.fixture
def fixed_labeler(monkeypatch):
  monkeypatch.setitem(faces._shared, faces.MIN_FACE_SIZE, fixed_faces)  # pylint: disable=protected-access


def _tree(root, clips=ONE_PER_ACTOR, files=None):
  for rel in clips:
    os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
    shutil.copy(os.path.join(DEMO, rel), os.path.join(root, rel))
  for rel, data in (files or {}).items():
    os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
    with open(os.path.join(root, rel), 'wb') as f:
      f.write(data)
  return str(root)


def _prepare(capsys, manual, data, *flags):
  status = prepare.main(['--dataset=ravdess_dfer', f'--manual_dir={manual}', f'--data_dir={data}', *flags])
  return status, capsys.readouterr()


def _error_line(err):
  """The one `error:` line that ends stderr (before it, only the progress bars' carriage-return lines)."""
  lines = [line for line in err.replace('\r', '\n').splitlines() if line.strip()]
  assert 'Traceback' not in err and sum('error:' in line for line in lines) == 1, err
  assert lines[-1].startswith('error: '), err
  return lines[-1]


def test_fifo_named_like_a_clip_is_skipped_not_opened(tmp_path, capsys, fixed_labeler):
  del fixed_labeler
  manual = _tree(tmp_path / 'manual')
  fifo = 'Actor_01/02-01-03-01-01-01-01.mp4'
  os.mkfifo(os.path.join(manual, fifo))
  # Without the check, reading the FIFO in-process would block for ever: whatever opens it for reading is given
  # an empty stream (EOF) by this thread, so the test fails instead of hanging.
  done = threading.Event()

  def unblock():
    while not done.wait(0.2):
      try:
        os.close(os.open(os.path.join(manual, fifo), os.O_WRONLY | os.O_NONBLOCK))  # fails while nobody reads
      except OSError:
        pass
  thread = threading.Thread(target=unblock, daemon=True)
  thread.start()
  try:
    status, out = _prepare(capsys, manual, tmp_path / 'data', '--workers=0')
  finally:
    done.set()
    thread.join()
  assert status == 0, out.err
  assert f'skipped {fifo}: not a regular file (a FIFO)' in out.out
  [meta] = list(tmp_path.glob('data/ravdess_dfer/*/*/metadata.json'))
  assert json.loads(meta.read_text())['skipped'] == [{'path': fifo, 'reason': 'not a regular file (a FIFO): not opened'}]


def test_fewer_actors_than_folds_fails_before_any_clip_is_decoded(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(stored_example, 'process', lambda *a, **k: pytest.fail('a clip was decoded'))
  manual = _tree(tmp_path / 'manual', ONE_PER_ACTOR[:3])
  status, out = _prepare(capsys, manual, tmp_path / 'data', '--workers=0')
  assert status == 2
  line = _error_line(out.err)
  assert line.startswith('error: ravdess_dfer needs at least one actor per fold'), line
  assert line.endswith('3 actor(s) (1, 2, 3): fold3, fold4 would be empty')


def test_fold_emptied_by_unreadable_clips_is_one_line_naming_fold_and_actor(tmp_path, capsys, fixed_labeler):
  del fixed_labeler
  # Actor 06's only clip does not decode: its fold (the fifth: every actor has one clip) ends up empty.
  manual = _tree(tmp_path / 'manual', ONE_PER_ACTOR[:4], {'Actor_06/02-01-03-01-01-01-06.mp4': b'not a video\n'})
  status, out = _prepare(capsys, manual, tmp_path / 'data', '--workers=0')
  assert status == 2
  line = _error_line(out.err)
  assert line.startswith('error: fold4 (actor(s) 6) has no usable clip: of its 1 clip(s), 1 skipped (first: '
                             'Actor_06/02-01-03-01-01-01-06.mp4: cannot be read'), line
  assert not list(tmp_path.glob('data/ravdess_dfer/*/1.0.0*'))  # nothing half-written blocks a rerun


@pytest.mark.slow
def test_builder_skips_a_clip_whose_decoder_hangs_in_a_worker(tmp_path, monkeypatch):
  from mtcae_jax.data.datasets import base  # pylint: disable=g-import-not-at-top  # imports TFDS
  # Two clips per actor: actors go to folds by id, and actor 06's second clip, the FIFO, is the last one decoded,
  # so no clip after it waits for the restarted worker's start-up.
  clips = ['Actor_01/02-01-01-01-01-01-01.mp4', 'Actor_01/02-01-03-01-01-01-01.mp4',
           'Actor_02/02-01-04-01-01-01-02.mp4', 'Actor_02/02-01-03-01-01-01-02.mp4',
           'Actor_03/02-01-07-01-01-01-03.mp4', 'Actor_03/02-01-07-01-01-02-03.mp4',
           'Actor_04/02-01-08-01-01-01-04.mp4', 'Actor_04/02-01-08-01-01-02-04.mp4',
           'Actor_06/02-01-03-01-01-01-06.mp4']
  manual = _tree(tmp_path / 'manual', clips)
  fifo = 'Actor_06/02-01-03-01-01-02-06.mp4'
  os.mkfifo(os.path.join(manual, fifo))
  monkeypatch.setattr(base, 'not_regular', lambda path: None)  # let the FIFO through: the decoder blocks on it
  before = set(multiprocessing.active_children())
  with pool_lib.ClipPool(1, initializer=stored_example.init_worker) as pool:
    list(pool.imap(abs, [0], on_crash=None))  # the worker started and its MTCNN made: not on the clips' clock
    builder = prepare.make_builder('ravdess_dfer', str(tmp_path / 'data'))
    builder = type(builder)(data_dir=str(tmp_path / 'data'), pool=pool, clip_timeout=20)
    meta = prepare.prepare(builder, manual)
  assert meta['skipped'] == [{'path': fifo, 'reason': pool_lib.timed_out(20)}]
  assert sum(s.num_examples for s in builder.info.splits.values()) == 9
  assert meta['fold_actors'] == {'fold0': [1], 'fold1': [2], 'fold2': [3], 'fold3': [4], 'fold4': [6]}
  assert set(multiprocessing.active_children()) <= before
