"""Prediction under hostile input: a checkpoint whose outputs are NaN, a --batch_size far above the videos given."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from mtcae_jax.predict import __main__ as predict_command
from mtcae_jax.predict import inference
from mtcae_jax.pretrained import convert

from test_predict import CLIP, DEMO, REPO, RAVDESS_7, run_cli

NAMES = ['a', 'b', 'c']


class FakePredictor:
  """The Predictor's interface without a model: remembers each batch's shape; a clip of 255s gives NaN."""

  def __init__(self):
    self.num_frames, self.image_size, self.class_names = 2, 8, NAMES
    self.source, self.has_faces, self.batches = 'fake (converted)', True, []

  def __call__(self, videos):
    self.batches.append(videos.shape[0])
    b, t = videos.shape[:2]
    bad = (videos.reshape(b, -1).min(axis=1) == 255)[:, None]
    probs = np.where(bad, np.nan, np.full((b, 3), 1 / 3, np.float32))
    return {'probabilities': probs, 'boxes': np.full((b, t, 4), 0.5, np.float32),
            'landmarks': np.full((b, t, 5, 2), 0.5, np.float32)}


@pytest.fixture
def fake(monkeypatch):
  """A fake predictor, and decoding without video files: a path whose name starts with 'nan' gives NaN outputs."""
  def decode(path, predictor, keep_frames=False):
    del keep_frames
    value = 255 if pathlib.Path(path).name.startswith('nan') else 0
    return inference.Decoded(path=str(path), video=np.full((2, 8, 8, 3), value, np.uint8), indices=np.arange(2),
                             source_size=(64, 48), fps=25.0, num_source_frames=2)
  monkeypatch.setattr(inference, 'decode', decode)
  predictor = FakePredictor()
  monkeypatch.setattr(predict_command, 'load', lambda *a, **k: predictor)
  return predictor


@pytest.mark.parametrize('num_videos, batch_size, batches', [
    (2, 100000, [2]),  # not 100000 clips for two videos
    (3, 100000, [4]),  # the next power of two: a few shapes compiled, not one per count
    (11, 8, [8, 4]),
    (5, 6, [6]),  # never above --batch_size
    (7, 6, [6, 1]),
])
def test_a_batch_is_padded_only_to_what_is_needed(fake, num_videos, batch_size, batches):
  records = list(inference.predict_many(fake, [f'v{i}.mp4' for i in range(num_videos)], batch_size=batch_size))
  assert fake.batches == batches
  assert [r['video'] for r in records] == [f'v{i}.mp4' for i in range(num_videos)]
  assert all('error' not in r for r in records)


def test_non_finite_outputs_of_one_video_are_its_error_and_status_1(fake, tmp_path, capsys):
  out = tmp_path / 'p.jsonl'
  code = predict_command.main(['--checkpoint=.', '--video=a.mp4', '--video=nan.mp4', '--video=b.mp4',
                               f'--output={out}', '--allow_cpu'])
  assert code == 1
  records = [json.loads(l, parse_constant=pytest.fail) for l in out.read_text().splitlines()]
  assert [r['video'] for r in records] == ['a.mp4', 'nan.mp4', 'b.mp4']
  assert records[1] == {'video': 'nan.mp4', 'error': f'{inference.NON_FINITE} (fake (converted))'}
  assert 'label' in records[0] and 'label' in records[2]
  err = capsys.readouterr().err
  assert 'skipped nan.mp4: the model gave non-finite outputs' in err
  assert '1 of 3 videos could not be predicted' in err


def nan_checkpoint(path):
  """A converted checkpoint of the tiny fixture model whose classifier weights are NaN (as a flipped exponent bit
  or a diverged fine-tuning would leave them)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  good = path.parent / 'good'
  convert.convert_checkpoint(str(REPO / 'tests' / 'fixtures' / 'mae_dfer' / 'vit_tiny_finetune.pth'), str(good),
                             num_heads=4)
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(os.path.abspath(good / 'state'))
    state['head']['kernel'] = np.full_like(state['head']['kernel'], np.nan)
    checkpointer.save(os.path.abspath(path / 'state'), state)
  shutil.copy(good / 'config.json', path / 'config.json')
  return path


@pytest.fixture(scope='module')
def nan_converted(tmp_path_factory):
  return nan_checkpoint(tmp_path_factory.mktemp('nan') / 'converted')


def test_a_nan_checkpoint_gives_an_error_not_an_answer(nan_converted, tmp_path):
  names = f'--class_names={",".join(RAVDESS_7)}'
  # One video: one line, exit status 2, no output file.
  out = run_cli(f'--checkpoint={nan_converted}', f'--video={CLIP}', f'--output={tmp_path / "p.json"}', names,
                '--allow_cpu', tmp_path=tmp_path)
  assert out.returncode == 2, out.stderr[-2000:]
  assert out.stderr.startswith(f'error: {CLIP}: the model gave non-finite outputs (NaN or inf)')
  assert out.stderr.count('\n') == 1 and 'Traceback' not in out.stderr
  assert not (tmp_path / 'p.json').exists()

  # A batch: each video's line has the error (valid JSON, no NaN), and nothing predicted is exit status 2.
  second = DEMO / 'Actor_02' / '02-01-04-01-01-01-02.mp4'
  code = predict_command.main([f'--checkpoint={nan_converted}', f'--video={CLIP}', f'--video={second}', names,
                               f'--output={tmp_path / "p.jsonl"}', '--batch_size=100000', '--allow_cpu'])
  assert code == 2
  records = [json.loads(l, parse_constant=pytest.fail) for l in (tmp_path / 'p.jsonl').read_text().splitlines()]
  assert [r['video'] for r in records] == [str(CLIP), str(second)]
  assert all(set(r) == {'video', 'error'} and r['error'].startswith(inference.NON_FINITE) for r in records)
