"""MTCNN labels: real faces from the bundled demo clips, and the face choice and gap filling by hand."""

import os

import numpy as np
import pytest

from mtcae_jax.data import faces, video

DEMO = os.path.join(os.path.dirname(__file__), '..', '..', 'mtcae_jax', 'data', 'demo', 'ravdess')
# First frame of each animated studio still, and a frame of the man's video.
STILLS = ['Actor_03/02-01-07-01-01-01-03.mp4', 'Actor_04/02-01-08-01-01-01-04.mp4',
          'Actor_06/02-01-03-01-01-01-06.mp4', 'Actor_08/02-01-05-01-01-01-08.mp4',
          'Actor_01/02-01-03-01-02-02-01.mp4']


@pytest.fixture(scope='module')
def still_frames():
  return [video.read_clip(os.path.join(DEMO, p), num_frames=1, size=224).frames[0] for p in STILLS]


def test_mtcnn_on_real_stills(still_frames):
  detections = faces.shared_labeler().detect(still_frames)  # one batched call
  for path, d in zip(STILLS, detections):
    assert len(d.confidence) >= 1 and d.confidence.max() > 0.9, path
    k = int(np.argmax(d.confidence))
    box, points = d.boxes[k], d.landmarks[k]
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, path
    assert 0.05 < (x1 - x0) * (y1 - y0) < 0.9, path  # a face, not a speck or the whole frame
    assert ((points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)).all(), path
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0], path
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1]), path


def test_clip_labels_shapes_and_range(still_frames):
  found = faces.shared_labeler()(np.stack(still_frames[:4]))
  assert found.boxes.shape == (4, 4) and found.landmarks.shape == (4, 5, 2) and found.face_mask.shape == (4,)
  assert found.boxes.dtype == np.float32 and found.face_mask.all()
  assert (found.boxes >= 0).all() and (found.boxes <= 1).all()


def test_frame_without_face_is_masked_and_interpolated(still_frames):
  grey = np.full_like(still_frames[0], 128)
  found = faces.shared_labeler()(np.stack([still_frames[2], grey, still_frames[2]]))
  assert found.face_mask.tolist() == [True, False, True]
  np.testing.assert_allclose(found.boxes[1], (found.boxes[0] + found.boxes[2]) / 2, atol=1e-6)


@pytest.mark.parametrize('min_face_size', [20, 32, 40, 64])
def test_scale_pyramid_stops_at_the_pnet_window(min_face_size):
  scales = faces.scale_pyramid(224, 224, min_face_size, 0.709)
  # By hand: 224 px scaled so that a min_face_size face becomes P-Net's 12-px window, then by 0.709 per level,
  # down to the last level whose side is still at least 12 px.
  expected, scale = [], 12 / min_face_size
  while 224 * scale >= 12:
    expected.append(scale)
    scale *= 0.709
  np.testing.assert_allclose(scales, expected, rtol=1e-12)
  if min_face_size == 20:  # where mtcnn 1.0 counts its levels right, the same pyramid as its own
    from mtcnn.utils.images import build_scale_pyramid  # pylint: disable=g-import-not-at-top
    np.testing.assert_allclose(scales, build_scale_pyramid(224, 224, 20, 0.709), rtol=1e-12)
  # The shorter side bounds it.
  wide, square = (faces.scale_pyramid(w, 360, min_face_size, 0.709) for w in (640, 360))
  np.testing.assert_array_equal(wide, square)


def test_larger_min_face_size_finds_the_same_faces(still_frames):
  default = faces.shared_labeler().detect(still_frames)
  coarse = faces.FaceLabeler(min_face_size=48).detect(still_frames)  # mtcnn's own pyramid fails at 48
  for path, a, b in zip(STILLS, default, coarse):
    assert len(b.confidence) >= 1 and b.confidence.max() > 0.9, path
    ka, kb = int(np.argmax(a.confidence)), int(np.argmax(b.confidence))
    np.testing.assert_allclose(b.boxes[kb], a.boxes[ka], atol=0.05, err_msg=path)  # within 11 px of 224
    np.testing.assert_allclose(b.landmarks[kb], a.landmarks[ka], atol=0.05, err_msg=path)
  with pytest.raises(ValueError, match='min_face_size'):
    faces.FaceLabeler(min_face_size=8)


def test_from_mtcnn_normalises_and_clips():
  face = {'box': [20, 10, 220, 90], 'confidence': np.float32(0.99),
          'keypoints': {'left_eye': [60, 40], 'right_eye': [100, 40], 'nose': [80, 60], 'mouth_left': [64, 80],
                        'mouth_right': [96, 80]}}
  d = faces.from_mtcnn([face], width=200, height=100)
  np.testing.assert_allclose(d.boxes[0], [0.1, 0.1, 1.0, 0.9])  # x_max 220 / 200 clipped to 1
  np.testing.assert_allclose(d.landmarks[0], [[0.3, 0.4], [0.5, 0.4], [0.4, 0.6], [0.32, 0.8], [0.48, 0.8]])
  assert faces.from_mtcnn([], 200, 100).boxes.shape == (0, 4)


def _det(*pairs):
  """Detections from (confidence, centre x) pairs: boxes 0.2 wide around x, landmarks at the centre."""
  conf = np.array([c for c, _ in pairs])
  boxes = np.array([[x - 0.1, 0.4, x + 0.1, 0.6] for _, x in pairs]).reshape(-1, 4)
  points = np.array([[[x, 0.5]] * 5 for _, x in pairs]).reshape(-1, 5, 2)
  return faces.Detections(conf, boxes, points)


def test_most_confident_face_and_ties_broken_by_the_neighbours_face():
  detections = [
      _det((0.99, 0.3)),
      _det((0.95, 0.8), (0.97, 0.32)),  # 0.97 wins on confidence
      _det((0.98, 0.8), (0.98, 0.35)),  # tie: the face near the neighbours (x about 0.3) wins
      _det(),
      _det((0.99, 0.4)),
  ]
  assert faces.choose_faces(detections) == [0, 1, 1, None, 0]
  found = faces.labels_from_detections(detections)
  assert found.face_mask.tolist() == [True, True, True, False, True]
  # Frame 3 is interpolated halfway between frames 2 (x 0.35) and 4 (x 0.4).
  np.testing.assert_allclose(found.boxes[3], [0.275, 0.4, 0.475, 0.6], atol=1e-6)
  np.testing.assert_allclose(found.landmarks[3, :, 0], 0.375, atol=1e-6)


def test_interpolation_holds_ends_and_no_face_at_all_stays_zero():
  values = np.array([0., 0., 2., 0., 6., 0.])
  mask = np.array([False, False, True, False, True, False])
  np.testing.assert_allclose(faces.interpolate(values, mask), [2, 2, 2, 4, 6, 6])
  found = faces.labels_from_detections([_det(), _det()])
  assert not found.face_mask.any() and not found.boxes.any()
