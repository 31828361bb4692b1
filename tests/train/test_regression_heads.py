"""The box and landmark heads: their start at the mean targets, the constant baseline, and the targets they learn.

The fitting test trains on the demo clips with real MTCNN labels (the `fixed_faces` of other tests make every
clip's box the same, which a constant predicts perfectly).
"""

import importlib.resources
import json

import numpy as np
import pytest
from flax import nnx

from mtcae_jax import models
from mtcae_jax.configs import demo
from mtcae_jax.data import demo_data, pipeline, target_stats
from mtcae_jax.data import video as video_lib
from mtcae_jax.predict import inference, trained_model
from mtcae_jax.train import evaluate, loop

from conftest import tiny_config

NO_AUGMENT = dict(hflip=0.0, crop_prob=0.0, scale_jitter=0.0, brightness=0.0, contrast=0.0, saturation=0.0)


def demo_config(data_dir, **overrides):
  c = demo.get_config()
  c.prepare_demo_data = False
  c.data_dir = data_dir
  c.update(overrides)
  return c


def test_mean_targets_by_hand():
  boxes = np.array([[[0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.4, 0.4]],
                    [[0.1, 0.1, 0.5, 0.5], [9.0, 9.0, 9.0, 9.0]]])  # the last frame has no face: ignored
  marks = np.stack([boxes[..., :2], boxes[..., 2:]] * 2 + [boxes[..., :2]], axis=-2)  # (2, 2, 5, 2)
  mask = np.array([[True, True], [True, False]])
  stats = target_stats.mean_targets(boxes, marks, mask)
  np.testing.assert_allclose(stats['boxes'], [0.1, 0.1, 1.9 / 3, 1.9 / 3])
  np.testing.assert_allclose(stats['landmarks'], [[0.1, 0.1], [1.9 / 3, 1.9 / 3]] * 2 + [[0.1, 0.1]])
  assert stats['num_frames'] == 3
  # The variance about the mean, averaged over coordinates: the constant predictor's MSE on these frames.
  faces = boxes[mask]
  assert stats['boxes_variance'] == pytest.approx(np.mean((faces - faces.mean(0)) ** 2))
  assert stats['boxes_variance'] == pytest.approx(1.36 / 36)  # x_min, y_min: 0.02 / 3; x_max, y_max: 0.62 / 9
  json.dumps(stats)  # stored with the run
  with pytest.raises(ValueError, match='no frame of the training split has a face'):
    target_stats.mean_targets(boxes, marks, np.zeros_like(mask))


@pytest.mark.parametrize('pool', ['mean', 'temporal'])
def test_heads_start_at_the_mean_targets_whatever_the_video(pool, video):
  model = models.build_model(tiny_config(head={'pool': pool, 'norm_first': True, 'dropout': 0.0}),
                             rngs=nnx.Rngs(0))
  before = model(video)
  stats = {'boxes': [0.3, 0.2, 0.7, 0.9], 'landmarks': [[0.4, 0.4], [0.6, 0.4], [0.5, 0.6], [0.4, 0.7], [0.6, 0.7]]}
  assert np.abs(np.asarray(before['boxes']) - np.asarray(stats['boxes'])).max() > 0.1  # the plain FC start
  model.start_regression_at(stats)
  after = model(video)
  np.testing.assert_allclose(after['boxes'], np.broadcast_to(stats['boxes'], (2, 4, 4)), atol=1e-7)
  np.testing.assert_allclose(after['landmarks'], np.broadcast_to(stats['landmarks'], (2, 4, 5, 2)), atol=1e-7)
  np.testing.assert_array_equal(after['logits'], before['logits'])  # the expression head is untouched


def test_read_targets_equals_the_decoded_examples(mtcnn_demo_data_dir):
  split = pipeline.train_split(0)
  fast = pipeline.read_targets(demo_data.DATASET, split, mtcnn_demo_data_dir)
  source = pipeline.data_source(demo_data.DATASET, split, mtcnn_demo_data_dir)
  assert len(fast['boxes']) == len(source) == 12
  for i in range(len(source)):
    for k in pipeline.TARGET_KEYS:
      np.testing.assert_array_equal(fast[k][i], np.asarray(source[i][k]))
  assert np.ptp(fast['boxes'][fast['face_mask']], axis=0).max() > 0.05  # real labels: boxes differ by clip


def test_training_and_evaluation_paths_give_the_same_targets(mtcnn_demo_data_dir):
  """Without augmentation, a training batch holds the stored targets of the frames it sampled, exactly as the
  evaluation path gives them for those frames."""
  config = demo_config(mtcnn_demo_data_dir)
  config.augment.update(NO_AUGMENT)
  source = pipeline.data_source(demo_data.DATASET, pipeline.train_split(config.fold), config.data_dir)
  off = loop.augment.AugmentConfig(**NO_AUGMENT)
  batch = next(pipeline.train_batches(source, config, 4, num_steps=1, augment=off))
  for row, i in enumerate(batch['index']):
    raw = source[int(i)]
    offset = np.random.default_rng([config.seed, 0, int(i)]).uniform()  # the training path's frame choice
    frames = video_lib.sample_indices(len(raw['video']), config.num_frames, offset)
    evaluation = pipeline.preprocess(raw, config, offset=offset)
    for k in ('boxes', 'landmarks', 'face_mask'):
      np.testing.assert_array_equal(np.asarray(batch[k])[row], evaluation[k], err_msg=k)
      np.testing.assert_array_equal(evaluation[k], np.asarray(raw[k])[frames], err_msg=k)
    np.testing.assert_allclose(np.asarray(batch['video'])[row], evaluation['video'], atol=1e-5)

  # The evaluation batches: the stored targets of the frames in the middle of each segment.
  test_source = pipeline.data_source(demo_data.DATASET, f'fold{config.fold}', config.data_dir)
  batch = next(pipeline.eval_batches(test_source, config, 4))
  for row, i in enumerate(batch['index']):
    raw = test_source[int(i)]
    frames = video_lib.sample_indices(len(raw['video']), config.num_frames)
    for k in ('boxes', 'landmarks', 'face_mask'):
      np.testing.assert_array_equal(np.asarray(batch[k])[row], np.asarray(raw[k])[frames], err_msg=k)


def _hand_iou(a, b):
  w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
  return w * h / union


@pytest.mark.slow
def test_demo_training_learns_boxes_and_landmarks_beyond_the_constant(mtcnn_demo_data_dir, tmp_path):
  config = demo_config(mtcnn_demo_data_dir)
  loop.train_and_evaluate(config, tmp_path)
  stats = json.loads((tmp_path / target_stats.FILENAME).read_text())

  # The held-out person: better than always predicting the training clips' mean box and landmarks.
  held_out = json.loads((tmp_path / 'metrics.json').read_text())
  assert held_out['box_iou'] > held_out['baseline_box_iou'], held_out
  assert held_out['landmark_nme'] < held_out['baseline_landmark_nme'], held_out

  # The baseline, recomputed by hand from the stored labels of the frames evaluation samples.
  test_source = pipeline.data_source(demo_data.DATASET, f'fold{config.fold}', config.data_dir)
  ious = []
  for i in range(len(test_source)):
    raw = test_source[i]
    for t in video_lib.sample_indices(len(raw['video']), config.num_frames):
      if raw['face_mask'][t]:
        ious.append(_hand_iou(stats['boxes'], raw['boxes'][t]))
  assert held_out['baseline_box_iou'] == pytest.approx(np.mean(ious), abs=1e-6)

  # The training clips: fitted well beyond the constant.
  fitted = loop.evaluate_checkpoint(config, tmp_path, step=config.num_steps,
                                     split=pipeline.train_split(config.fold))
  assert fitted['box_iou'] >= 0.75 and fitted['landmark_nme'] <= 0.25, fitted
  assert fitted['baseline_box_iou'] < 0.65 and fitted['baseline_landmark_nme'] > 0.5, fitted

  # Predicting on the training videos (the user's path): each frame's five points lie inside its box.
  model = trained_model.load(str(tmp_path))
  held_out_actor = f'Actor_{2:02d}'  # fold 0 of the demo data
  with importlib.resources.as_file(demo_data.RAW) as raw_dir:
    videos = [p for p in sorted(raw_dir.glob('Actor_*/*.mp4')) if p.parent.name != held_out_actor]
    assert len(videos) == 12
    for path in videos:
      for frame in inference.predict_video(model, str(path))['frames']:
        x0, y0, x1, y1 = frame['box']
        for name, (x, y) in frame['landmarks'].items():
          assert x0 <= x <= x1 and y0 <= y <= y1, (path.name, frame['index'], name)


@pytest.mark.slow
def test_plain_heads_stay_available_and_a_wrong_init_is_refused(demo_data_dir, tmp_path):
  config = demo_config(demo_data_dir, num_frames=4, image_size=32, num_steps=1, eval_every_steps=1)
  config.model.head.regression_init = 'plain'
  result = loop.train_and_evaluate(config, tmp_path / 'plain')
  assert {'baseline_box_iou', 'baseline_landmark_nme'} <= set(result)
  config.model.head.regression_init = 'zeros'
  with pytest.raises(loop.TrainingError, match="regression_init must be one of .*'target_mean'"):
    loop.train_and_evaluate(config, tmp_path / 'bad')


def test_constant_baseline_by_hand():
  stats = {'boxes': [0.2, 0.2, 0.6, 0.6], 'landmarks': [[0.3, 0.3], [0.5, 0.3], [0.4, 0.4], [0.3, 0.5], [0.5, 0.5]]}
  boxes = np.array([[0.2, 0.2, 0.6, 0.6], [0.4, 0.4, 0.8, 0.8]])
  marks = np.array([stats['landmarks'], np.asarray(stats['landmarks']) + [0.2, 0.0]])
  iou, nme = evaluate.constant_baseline(stats, boxes, marks)
  np.testing.assert_allclose(iou, [1.0, 0.04 / 0.28])
  np.testing.assert_allclose(nme, [0.0, 0.2 / 0.2])  # every point 0.2 off; eyes 0.2 apart


def test_stl_has_no_regression_targets(demo_data_dir, tmp_path):
  config = demo_config(demo_data_dir, num_frames=4, image_size=32, num_steps=1, eval_every_steps=1)
  config.model.strategy = 'stl'
  result = loop.train_and_evaluate(config, tmp_path)
  assert not (tmp_path / target_stats.FILENAME).exists()
  assert 'box_iou' not in result and 'baseline_box_iou' not in result
