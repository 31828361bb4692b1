"""Box formats: corners (stored) and the authors' (x, y, w, h), through augmentation, evaluation and prediction."""

import jax.numpy as jnp
import numpy as np
import pytest

from mtcae_jax import models
from mtcae_jax.data import augment, box_format, pipeline
from mtcae_jax.predict import trained_model
from mtcae_jax.train import evaluate
from tests.conftest import tiny_config

CORNERS = np.array([[0.25, 0.2, 0.75, 0.9], [0.1, 0.3, 0.4, 0.5]], np.float32)
XYWH = np.array([[0.25, 0.2, 0.5, 0.7], [0.1, 0.3, 0.3, 0.2]], np.float32)  # typed by hand from CORNERS


def test_formats_round_trip_in_numpy_and_jax():
  np.testing.assert_allclose(box_format.from_xyxy(CORNERS, 'xywh'), XYWH, atol=1e-7)
  np.testing.assert_allclose(box_format.to_xyxy(XYWH, 'xywh'), CORNERS, atol=1e-7)
  np.testing.assert_allclose(box_format.to_xyxy(jnp.asarray(XYWH), 'xywh'), CORNERS, atol=1e-7)
  assert box_format.from_xyxy(CORNERS, 'xyxy') is CORNERS
  with pytest.raises(ValueError, match='box_format must be one of'):
    box_format.from_xyxy(CORNERS, 'cxcywh')


def _raw(rng, frames=16):
  x0, y0 = rng.uniform(0.1, 0.4, (frames, 1)), rng.uniform(0.1, 0.4, (frames, 1))
  boxes = np.concatenate([x0, y0, x0 + 0.4, y0 + 0.45], axis=1).astype(np.float32)
  return {'video': rng.integers(0, 256, (frames, 48, 48, 3), dtype=np.uint8), 'boxes': boxes,
          'landmarks': rng.uniform(0.3, 0.6, (frames, 5, 2)).astype(np.float32),
          'face_mask': np.ones(frames, bool), 'label': 1, 'path': b'clip.mp4'}


@pytest.mark.parametrize('policy', ['crop_flip_colour', 'none'])
def test_training_targets_are_the_augmented_corners_in_the_format(policy):
  config = tiny_config()
  raw = _raw(np.random.default_rng(0))
  settings = augment.AugmentConfig.of(dict(config.augment, policy=policy))
  out = {}
  for fmt in box_format.FORMATS:
    config.box_format = fmt
    out[fmt] = pipeline.preprocess(raw, config, np.random.default_rng(5), offset=0.3, augment=settings)
  corners = out['xyxy']['boxes']
  by_hand = np.stack([corners[:, 0], corners[:, 1], corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1]], 1)
  np.testing.assert_allclose(out['xywh']['boxes'], by_hand, atol=1e-6)
  np.testing.assert_array_equal(out['xywh']['video'], out['xyxy']['video'])  # the same draws
  if policy == 'none':  # no augmentation: the stored boxes of the sampled frames, colour factors of 1
    t = pipeline.video_lib.sample_indices(16, config.num_frames, 0.3)
    np.testing.assert_allclose(corners, raw['boxes'][t])
    np.testing.assert_array_equal(out['xyxy']['colour'], np.ones(3))


def test_iou_does_not_depend_on_the_format():
  stats = {'boxes': CORNERS[0].tolist(), 'landmarks': np.full((5, 2), 0.5).tolist()}
  true = np.broadcast_to(CORNERS[1], (2, 3, 4))
  marks = np.full((2, 3, 5, 2), 0.4)
  iou_corners, _ = evaluate.constant_baseline(stats, true, marks, 'xyxy')
  stats_xywh = dict(stats, boxes=XYWH[0].tolist())
  iou_xywh, _ = evaluate.constant_baseline(stats_xywh, box_format.from_xyxy(np.array(true), 'xywh'), marks, 'xywh')
  # Boxes [.25,.2,.75,.9] and [.1,.3,.4,.5]: intersection .15 x .2, union .35 + .06 - .03.
  np.testing.assert_allclose(iou_corners, 0.03 / 0.38, atol=1e-6)
  np.testing.assert_allclose(iou_xywh, iou_corners, atol=1e-6)


def test_a_model_trained_in_xywh_predicts_corners():
  config = tiny_config()
  config.box_format = 'xywh'
  model = models.build_model(config)
  model.start_regression_at({'boxes': XYWH[0], 'landmarks': np.full((5, 2), 0.5)})  # outputs exactly this box
  from flax import nnx  # pylint: disable=g-import-not-at-top
  graphdef, state = nnx.split(model)
  run = trained_model._jit_model(graphdef, ('boxes', 'landmarks'), config.input.mean, config.input.std,
                                 config.box_format)
  video = np.zeros((1, config.num_frames, config.image_size, config.image_size, 3), np.uint8)
  boxes = np.asarray(run(state, video)['boxes'])
  np.testing.assert_allclose(boxes, np.broadcast_to(CORNERS[0], boxes.shape), atol=1e-6)


def test_an_unknown_box_format_is_one_line_before_any_data(tmp_path):
  from mtcae_jax.train import loop  # pylint: disable=g-import-not-at-top
  from tests.conftest import small_config  # pylint: disable=g-import-not-at-top
  config = small_config(str(tmp_path / 'no_data'), box_format='cxcywh')
  with pytest.raises(loop.TrainingError, match="box_format must be one of .*, got 'cxcywh'") as e:
    loop.train_and_evaluate(config, tmp_path / 'run')
  assert '\n' not in str(e.value)
