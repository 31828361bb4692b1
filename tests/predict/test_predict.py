"""Prediction on videos: the JSON, source-pixel coordinates, overlays, batches, bad input, converted checkpoints."""

import csv
import json
import math
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from mtcae_jax.data import demo_data, faces
from mtcae_jax.predict import __main__ as predict_command
from mtcae_jax.predict import inference
from mtcae_jax.pretrained import convert

from conftest import small_config

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO = pathlib.Path(str(demo_data.RAW))
CLIP = DEMO / 'Actor_01' / '02-01-03-01-01-01-01.mp4'  # 640x360, 24 frames
RAVDESS_7 = ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgust', 'surprised']


@pytest.fixture(scope='module')
def workdir(demo_data_dir, tmp_path_factory):
  """A tiny model trained for 2 steps on 16 frames, as a training workdir (checkpoints, metrics.json)."""
  from mtcae_jax.train import loop  # pylint: disable=g-import-not-at-top
  path = tmp_path_factory.mktemp('run')
  loop.train_and_evaluate(small_config(demo_data_dir, num_frames=16, num_steps=2, eval_every_steps=2), path)
  return path


def check_record(record, path, num_frames=16, has_faces=True, names=RAVDESS_7):
  cap = cv2.VideoCapture(str(path))
  width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
  count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
  cap.release()
  assert record['video'] == str(path)
  assert record['source'] == {'width': width, 'height': height, 'fps': pytest.approx(record['source']['fps']),
                              'num_frames': count}
  assert list(record['probabilities']) == names
  assert math.isclose(sum(record['probabilities'].values()), 1.0, abs_tol=1e-9)
  assert all(0 <= p <= 1 for p in record['probabilities'].values())
  assert record['label'] == max(record['probabilities'], key=record['probabilities'].get)
  frames = record['frames']
  assert len(frames) == num_frames
  indices = [f['index'] for f in frames]
  assert indices == sorted(indices) and 0 <= indices[0] and indices[-1] < count
  for f in frames:
    if not has_faces:
      assert set(f) == {'index'}
      continue
    x0, y0, x1, y1 = f['box']
    assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
    assert list(f['landmarks']) == list(faces.POINTS)
    assert all(0 <= x <= width and 0 <= y <= height for x, y in f['landmarks'].values())


def run_cli(*args, block_tensorflow=True, tmp_path=None):
  """The command line in a fresh process; with TensorFlow made unimportable, to prove prediction needs none."""
  env = dict(os.environ)
  if block_tensorflow:
    stub = tmp_path / 'no_tf' / 'tensorflow'
    stub.mkdir(parents=True, exist_ok=True)
    (stub / '__init__.py').write_text('raise ImportError("prediction must not import TensorFlow")\n')
    env['PYTHONPATH'] = os.pathsep.join([str(stub.parent), str(REPO), env.get('PYTHONPATH', '')])
  return subprocess.run([sys.executable, '-m', 'mtcae_jax.predict', *args], capture_output=True, text=True,
                        env=env, cwd=REPO, timeout=300)


def test_command_line_on_a_clip_writes_json_overlay_and_sheet_without_tensorflow(workdir, tmp_path):
  out = run_cli(f'--checkpoint={workdir}', f'--video={CLIP}', f'--output={tmp_path / "p.json"}',
                f'--overlay={tmp_path / "p.mp4"}', f'--sheet={tmp_path / "p.png"}', tmp_path=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  record = json.loads((tmp_path / 'p.json').read_text())
  check_record(record, CLIP)
  assert record['source']['width'] == 640 and record['source']['height'] == 360
  assert record['checkpoint'] == f'{workdir} (step 2)'

  cap = cv2.VideoCapture(str(tmp_path / 'p.mp4'))
  frames = []
  while (ok := cap.read())[0]:
    frames.append(ok[1])
  assert len(frames) == 16 and frames[0].shape == (360, 640, 3)
  sheet = np.asarray(Image.open(tmp_path / 'p.png'))
  assert sheet.shape == (4 * 360, 4 * 640, 3)


def test_overlay_gif_and_pixels_follow_the_prediction(workdir, tmp_path):
  predictor = inference.load(workdir)
  record = inference.predict_video(predictor, CLIP, overlay_path=tmp_path / 'o.gif')
  gif = Image.open(tmp_path / 'o.gif')
  assert gif.n_frames == 16 and gif.size == (640, 360)
  # The drawn box is where the JSON says, in source pixels: its edge pixels are the box colour.
  gif.seek(0)
  x0, y0, x1, y1 = (int(round(v)) for v in record['frames'][0]['box'])
  edge = np.asarray(gif.convert('RGB'))[min(y1, 359), (x0 + x1) // 2]
  assert edge[1] > 150 and edge[0] < 100 and edge[2] < 100, edge


def test_source_pixel_mapping():
  # The model's unit square is the whole squashed frame: x scales by the width, y by the height; clipped.
  points = np.array([[0.5, 0.25, 1.2, -0.1]])
  np.testing.assert_allclose(inference.to_source_pixels(points, 640, 360), [[320, 90, 640, 0]])


def test_prediction_equals_the_evaluation_of_the_same_clips(workdir):
  """Same sampling, resize, JPEG round trip and normalisation as the evaluation that wrote predictions.csv."""
  rows = list(csv.DictReader(open(workdir / 'predictions.csv')))
  predictor = inference.load(workdir)
  records = list(inference.predict_many(predictor, [DEMO / r['path'] for r in rows], batch_size=4))
  assert len(records) == len(rows)
  for row, record in zip(rows, records):
    expected = [float(row[f'p_{c}']) for c in RAVDESS_7]
    np.testing.assert_allclose([record['probabilities'][c] for c in RAVDESS_7], expected, atol=1e-5)  # CSV: 6 digits


def bad_files(tmp_path):
  (tmp_path / 'text.mp4').write_text('not a video\n')
  writer = cv2.VideoWriter(str(tmp_path / 'empty.avi'), cv2.VideoWriter_fourcc(*'MJPG'), 25, (64, 64))
  writer.release()  # a valid container holding zero frames
  return tmp_path / 'text.mp4', tmp_path / 'empty.avi'


def test_batch_goes_on_past_a_bad_file(workdir, tmp_path, capsys):
  folder = tmp_path / 'videos'
  (folder / 'a').mkdir(parents=True)
  good = [DEMO / 'Actor_02' / '02-01-04-01-01-01-02.mp4', DEMO / 'Actor_08' / '02-01-05-01-01-01-08.mp4']
  for i, g in enumerate(good):
    (folder / 'a' / f'{i}.mp4').write_bytes(g.read_bytes())
  text, empty = bad_files(folder)
  code = predict_command.main([f'--checkpoint={workdir}', f'--video={folder}', f'--output={tmp_path / "p.jsonl"}',
                       '--batch_size=2'])
  lines = [json.loads(l) for l in (tmp_path / 'p.jsonl').read_text().splitlines()]
  assert code == 1  # some failed: the rest are predicted, the failures listed
  assert [pathlib.Path(r['video']).name for r in lines] == ['0.mp4', '1.mp4', 'empty.avi', 'text.mp4']
  for r in lines[:2]:
    check_record(r, r['video'])
  assert lines[2:] == [{'video': str(empty), 'error': 'no frames'},
                       {'video': str(text), 'error': 'cannot be read: no decodable video stream'}]
  assert f'skipped {text}' in capsys.readouterr().err

  # The same list with only bad files: nothing predicted, exit status 2.
  listing = tmp_path / 'list.txt'
  listing.write_text(f'{text}\n{tmp_path / "missing.mp4"}\n')
  assert predict_command.main([f'--checkpoint={workdir}', f'--videos_from={listing}', f'--output={tmp_path / "q"}']) == 2
  errors = [json.loads(l)['error'] for l in (tmp_path / 'q').read_text().splitlines()]
  assert errors == ['cannot be read: no decodable video stream', 'no such file']


@pytest.mark.parametrize('case, message', [
    ('missing video', 'missing.mp4: no such file'),
    ('not a video', 'text.mp4: cannot be read: no decodable video stream'),
    ('zero frames', 'empty.avi: no frames'),
    ('checkpoint is not one', 'not a checkpoint'),
    ('checkpoint missing', 'no such directory'),
    ('cross-validation workdir', 'is a cross-validation workdir: pass one fold'),
    ('batch flags on one video', '--overlay and --sheet are for one video'),
])
def test_bad_input_is_one_line_and_status_2(workdir, tmp_path, case, message):
  text, empty = bad_files(tmp_path)
  (tmp_path / 'cv' / 'fold_0').mkdir(parents=True)
  video, checkpoint, extra = CLIP, workdir, []
  if case == 'missing video':
    video = tmp_path / 'missing.mp4'
  elif case == 'not a video':
    video = text
  elif case == 'zero frames':
    video = empty
  elif case == 'checkpoint is not one':
    checkpoint = tmp_path
  elif case == 'checkpoint missing':
    checkpoint = tmp_path / 'nothing'
  elif case == 'cross-validation workdir':
    checkpoint = tmp_path / 'cv'
  else:
    extra = [f'--video={DEMO / "Actor_03"}', f'--sheet={tmp_path / "s.png"}']
  out = run_cli(f'--checkpoint={checkpoint}', f'--video={video}', *extra, tmp_path=tmp_path) \
      if case == 'not a video' else None  # one case through a real process: no traceback reaches stderr
  if out is None:
    import contextlib, io  # pylint: disable=g-import-not-at-top,multiple-imports
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      code = predict_command.main([f'--checkpoint={checkpoint}', f'--video={video}', *extra])
    out = subprocess.CompletedProcess([], code, '', err.getvalue())
  assert out.returncode == 2
  assert out.stderr.startswith('error: ') and out.stderr.count('\n') == 1, out.stderr
  assert message in out.stderr and 'Traceback' not in out.stderr


def test_converted_checkpoint_runs_as_stl(tmp_path):
  src = REPO / 'tests' / 'fixtures' / 'mae_dfer' / 'vit_tiny_finetune.pth'
  convert.convert_checkpoint(str(src), str(tmp_path / 'converted'), num_heads=4)
  predictor = inference.load(tmp_path / 'converted', class_names=RAVDESS_7)
  assert (predictor.num_frames, predictor.image_size, predictor.has_faces) == (16, 64, False)
  record = inference.predict_video(predictor, CLIP)
  check_record(record, CLIP, has_faces=False)


def test_checkpoint_of_another_model_version_is_refused(workdir, tmp_path):
  # A checkpoint whose saved parameters differ from what this version builds from its config (here: the
  # recorded strategy changed) must not load partly: a silently skipped parameter gives wrong outputs.
  import shutil  # pylint: disable=g-import-not-at-top
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  record = copy / 'checkpoints' / '2' / 'record' / 'metadata'
  meta = json.loads(record.read_text())
  meta['config']['model']['strategy'] = 'shared_mlp'
  record.write_text(json.dumps(meta))
  with pytest.raises(inference.PredictError, match=r'saved by a model with other parameters .* saved only'):
    inference.load(copy)


def test_a_model_trained_on_the_authors_frames_predicts_on_them():
  from mtcae_jax.predict import trained_model  # pylint: disable=g-import-not-at-top
  names = {'ravdess_dfer': 'centres', 'ravdess_dfer/video_speech_7class_32f': 'centres',
           'ravdess_dfer/video_speech_7class_stride': 'stride', 'crema_d_dfer/stride_32f': 'stride',
           'mead_dfer/front_fifth-without-W017_stride': 'stride', 'mead_dfer/front': 'centres', '': 'centres'}
  assert {n: trained_model.frame_sampling_of(n) for n in names} == names

  class Stub:  # what decode reads of a predictor
    num_frames, image_size = 16, 32
  for sampling, expected in (('centres', [int((i + 0.5) * 24 / 16) for i in range(16)]),
                             ('stride', list(range(16)))):  # 24 frames: a stride of floor(24 / 16) = 1 from frame 0
    Stub.frame_sampling = sampling
    decoded = inference.decode(str(CLIP), Stub())
    assert decoded.num_source_frames == 24 and decoded.indices.tolist() == expected
