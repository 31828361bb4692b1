"""Augmentations move the targets with the pixels: checked on marked pixels and with MTCNN on a real face."""

import os

import numpy as np

from mtcae_jax.data import augment, faces, video

DEMO = os.path.join(os.path.dirname(__file__), '..', '..', 'mtcae_jax', 'data', 'demo', 'ravdess')
POINTS = np.array([[19, 22], [38, 19], [29, 32], [22, 45], [40, 46]], np.float32) / 64  # on 64 px edges


def _marked_clip(size=64):
  """Frame j is black with a white 2x2 dot at landmark j; the box surrounds all five points."""
  clip = np.zeros((5, size, size, 3), np.uint8)
  for j, (x, y) in enumerate(POINTS):
    px, py = int(round(x * size)), int(round(y * size))
    clip[j, py - 1:py + 1, px - 1:px + 1] = 255  # centred on the pixel edge (px, py): normalised (x, y)
  boxes = np.tile([[0.25, 0.25, 0.7, 0.8]], (5, 1)).astype(np.float32)
  return clip, boxes, np.tile(POINTS, (5, 1, 1)), np.ones(5, bool)


def _dot_centres(clip):
  """Normalised centre of the dot in each frame: row j is where landmark j's pixels went."""
  size = clip.shape[1]
  ys, xs = np.mgrid[:size, :size] + 0.5  # pixel centres in edge coordinates
  w = clip.astype(np.float64).sum(-1)
  return np.stack([(w * xs).sum((1, 2)), (w * ys).sum((1, 2))], -1) / w.sum((1, 2))[:, None] / size


def test_hflip_twice_is_the_identity():
  rng = np.random.default_rng(0)
  clip = rng.integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)
  boxes = np.sort(rng.uniform(size=(3, 2, 2)), axis=1).transpose(0, 2, 1).reshape(3, 4)
  points = rng.uniform(size=(3, 5, 2))
  once = augment.hflip(clip, boxes, points)
  twice = augment.hflip(*once)
  assert np.array_equal(twice[0], clip)
  np.testing.assert_allclose(twice[1], boxes, atol=1e-7)
  np.testing.assert_allclose(twice[2], points, atol=1e-7)
  assert not np.allclose(once[2], points)
  assert augment.FLIP_ORDER == (1, 0, 2, 4, 3)  # left_eye <-> right_eye, mouth_left <-> mouth_right


def test_hflip_moves_each_point_with_its_pixels():
  clip, boxes, points, _ = _marked_clip()
  flipped, fboxes, fpoints = augment.hflip(clip, boxes, points)
  centres = _dot_centres(flipped)
  # After the swap, point j of the flipped targets is the dot that was point FLIP_ORDER[j].
  np.testing.assert_allclose(fpoints[0], centres[list(augment.FLIP_ORDER)], atol=1e-6)
  assert fpoints[0, 0, 0] < fpoints[0, 1, 0] and fpoints[0, 3, 0] < fpoints[0, 4, 0]  # left still left
  np.testing.assert_allclose(fboxes[0], [0.3, 0.25, 0.75, 0.8], atol=1e-6)


def test_crop_and_zoom_windows_move_points_with_pixels():
  clip, boxes, points, mask = _marked_clip()
  for window in [(0.2, 0.1, 0.8, 0.9), (0.1, 0.2, 0.7, 0.8), (-0.1, -0.05, 1.1, 1.05), augment.FULL]:
    out = augment.warp(clip, window, 96)
    assert out.shape == (5, 96, 96, 3)
    _, moved, new_mask = augment.move_targets(boxes, points, mask, window)
    np.testing.assert_allclose(moved[0], _dot_centres(out), atol=0.5 / 96)
    assert new_mask.all()


def test_face_leaving_the_window_is_masked_out():
  _, boxes, points, mask = _marked_clip()
  mboxes, mpoints, new_mask = augment.move_targets(boxes, points, mask, (0.75, 0.0, 1.0, 1.0))
  assert not new_mask.any()
  assert (mboxes >= 0).all() and (mboxes <= 1).all() and (mpoints >= 0).all() and (mpoints <= 1).all()


def test_colour_jitter_leaves_targets_and_same_seed_same_clip():
  clip, boxes, points, mask = _marked_clip()
  config = augment.AugmentConfig(hflip=1.0, crop_prob=0.0, scale_jitter=0.0)  # geometry: the flip only
  out = augment.augment(np.random.default_rng(3), clip, boxes, points, mask, 64, config)
  _, fboxes, fpoints = augment.hflip(clip, boxes, points)
  np.testing.assert_allclose(out[1], fboxes, atol=1e-6)
  np.testing.assert_allclose(out[2], fpoints, atol=1e-6)
  # The pixels leave as uint8, only mirrored; the colour factors (applied on the device) lie in their ranges.
  np.testing.assert_array_equal(out[0], augment.warp(clip, augment.FULL, 64)[:, :, ::-1])
  assert out[0].dtype == np.uint8 and out[4].shape == (3,) and out[4].dtype == np.float32
  assert (np.abs(out[4] - 1) <= [config.brightness, config.contrast, config.saturation]).all()
  assert not np.allclose(out[4], 1)
  again = augment.augment(np.random.default_rng(3), clip, boxes, points, mask, 64)
  other = augment.augment(np.random.default_rng(3), clip, boxes, points, mask, 64)
  assert all(np.array_equal(a, b) for a, b in zip(again, other))


def test_flipped_clip_landmarks_fit_the_flipped_face():
  frames = video.read_clip(os.path.join(DEMO, 'Actor_06/02-01-03-01-01-01-06.mp4'), num_frames=2).frames
  labeler = faces.shared_labeler()
  found = labeler(frames)
  assert found.face_mask.all()
  flipped, fboxes, fpoints = augment.hflip(frames, found.boxes, found.landmarks)
  redetected = labeler(np.ascontiguousarray(flipped))
  assert redetected.face_mask.all()
  # MTCNN on the mirrored pixels finds the mirrored targets (a few pixels of detector jitter at 224 px).
  np.testing.assert_allclose(redetected.landmarks, fpoints, atol=0.03)
  np.testing.assert_allclose(redetected.boxes, fboxes, atol=0.05)
