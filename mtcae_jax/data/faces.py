"""Per-frame face box and five landmarks from MTCNN (paper Fig. 3), in the model's target format.

Boxes are (x_min, y_min, x_max, y_max) and landmarks (5, 2) points (x, y), both divided by the frame's width and
height and clipped to [0, 1]. Point order is MTCNN's: left_eye, right_eye, nose, mouth_left, mouth_right, where
"left" is the image's left (x smaller), as MTCNN names them.
"""

import dataclasses

import numpy as np

from mtcae_jax.data import silent_tensorflow

POINTS = ('left_eye', 'right_eye', 'nose', 'mouth_left', 'mouth_right')
# Detections whose confidences differ by less than this are a tie, settled by nearness to the neighbours' face.
TIE = 1e-3
# The smallest face searched for, in pixels of the 224x224 frame (mtcnn's default is 20). The faces of RAVDESS,
# CREMA-D and MEAD are far larger; without the pyramid's two largest levels MTCNN takes half the time.
MIN_FACE_SIZE = 32
PNET_WINDOW = 12  # P-Net's input: a face of MIN_FACE_SIZE pixels is scaled to this on the first pyramid level


@dataclasses.dataclass(frozen=True)
class FaceLabels:
  boxes: np.ndarray  # (T, 4) float32
  landmarks: np.ndarray  # (T, 5, 2) float32
  face_mask: np.ndarray  # (T,) bool: a face was detected in this frame


@dataclasses.dataclass(frozen=True)
class Detections:
  """All faces found in one frame, normalised: confidence (K,), boxes (K, 4), landmarks (K, 5, 2)."""
  confidence: np.ndarray
  boxes: np.ndarray
  landmarks: np.ndarray


def from_mtcnn(faces, width, height):
  """One frame's `detect_faces(..., box_format='xyxy')` output (a list of dicts) as normalised Detections."""
  scale = np.array([width, height], np.float64)
  conf = np.array([float(f['confidence']) for f in faces], np.float64)
  boxes = np.array([np.asarray(f['box'], np.float64).reshape(2, 2) / scale for f in faces]).reshape(-1, 4)
  points = np.array([[np.asarray(f['keypoints'][p], np.float64) / scale for p in POINTS] for f in faces])
  return Detections(conf, np.clip(boxes, 0, 1), np.clip(points.reshape(-1, 5, 2), 0, 1))


def _centre(box):
  return np.array([box[0] + box[2], box[1] + box[3]]) / 2


def choose_faces(detections):
  """Index of the face to keep in each frame (None without one).

  The most confident face; among faces tied in confidence, the one nearest the kept face of the nearest earlier
  and later frames (a second person briefly scoring as high must not make the box jump).
  """
  chosen, tied = [None] * len(detections), []
  for t, d in enumerate(detections):
    if len(d.confidence) == 0:
      continue
    candidates = np.flatnonzero(d.confidence >= d.confidence.max() - TIE)
    if len(candidates) == 1:
      chosen[t] = int(candidates[0])
    else:
      tied.append((t, candidates))
  for t, candidates in tied:
    neighbours = []
    for step in (-1, 1):
      s = t + step
      while 0 <= s < len(detections) and chosen[s] is None:
        s += step
      if 0 <= s < len(detections):
        neighbours.append(_centre(detections[s].boxes[chosen[s]]))
    if not neighbours:
      chosen[t] = int(candidates[np.argmax(detections[t].confidence[candidates])])
      continue
    distance = [sum(np.linalg.norm(_centre(detections[t].boxes[c]) - n) for n in neighbours) for c in candidates]
    chosen[t] = int(candidates[int(np.argmin(distance))])
  return chosen


def interpolate(values, mask):
  """Fills the frames where mask is False linearly from the nearest frames where it is True (held at the ends)."""
  values = np.asarray(values, np.float64)
  if mask.all() or not mask.any():
    return values
  flat = values.reshape(len(values), -1)
  t = np.arange(len(values))
  filled = np.stack([np.interp(t, t[mask], flat[mask, j]) for j in range(flat.shape[1])], axis=1)
  return filled.reshape(values.shape)


def labels_from_detections(detections):
  """FaceLabels for a clip from its per-frame Detections."""
  num_frames = len(detections)
  chosen = choose_faces(detections)
  mask = np.array([c is not None for c in chosen])
  boxes, points = np.zeros((num_frames, 4)), np.zeros((num_frames, 5, 2))
  for t, c in enumerate(chosen):
    if c is not None:
      boxes[t], points[t] = detections[t].boxes[c], detections[t].landmarks[c]
  return FaceLabels(boxes=interpolate(boxes, mask).astype(np.float32),
                    landmarks=interpolate(points, mask).astype(np.float32), face_mask=mask)


def check_min_face_size(min_face_size):
  """`min_face_size`, or ValueError if P-Net's window could not hold such a face."""
  if min_face_size < PNET_WINDOW:
    raise ValueError(f'min_face_size must be at least {PNET_WINDOW} pixels, got {min_face_size}')
  return min_face_size


def scale_pyramid(width, height, min_face_size, scale_factor, min_size=PNET_WINDOW):
  """MTCNN's image pyramid: scales from min_size / min_face_size down by scale_factor while the frame's shorter
  side stays at least min_size pixels.

  mtcnn 1.0 counts the levels as if min_face_size were always 20, so with a larger one its last levels fall below
  P-Net's 12-pixel window and it silently finds no face at all. Equal to mtcnn's where its count is right (20).
  """
  first = min_size / min_face_size
  count = int(np.floor(np.log(min_size / (min(width, height) * first)) / np.log(scale_factor) + 1e-9)) + 1
  return first * scale_factor ** np.arange(max(count, 0))


class _FastStage:
  """An mtcnn 1.0 stage with its network run as one TF graph, fed the clip's batch as a tensor made once.

  mtcnn runs its Keras networks eagerly, op by op (slower than a graph: docs/DATA.md#preprocessing-throughput), and
  hands every stage the clip as a NumPy batch, which TF copies anew at each of the 8 pyramid levels and both patch
  crops. The signature leaves batch and image size open, so each graph is traced once for all pyramid sizes and
  proposal counts.
  """

  def __init__(self, stage, to_tensor):
    tf = silent_tensorflow.import_tf()
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    stage._model = tf.function(stage.model, input_signature=[spec])  # pylint: disable=protected-access
    self._stage, self._to_tensor = stage, to_tensor

  def __call__(self, images_normalized, **kwargs):
    return self._stage(images_normalized=self._to_tensor(images_normalized), **kwargs)


class _LastTensor:
  """Converts an array to a tensor, reusing the result while the same array comes again (one clip, three stages)."""

  def __init__(self):
    self._array = self._tensor = None

  def __call__(self, array):
    if array is not self._array:  # holding the array keeps its identity from being reused by another
      self._array, self._tensor = array, silent_tensorflow.import_tf().constant(array)
    return self._tensor


class FaceLabeler:
  """MTCNN behind one batched call per clip. Create one per process: it holds TensorFlow models."""

  def __init__(self, min_face_size=MIN_FACE_SIZE):
    self.min_face_size = check_min_face_size(min_face_size)
    silent_tensorflow.require_data_extra()  # before mtcnn imports TensorFlow itself: quiet and off the GPU
    from mtcnn import MTCNN  # pylint: disable=g-import-not-at-top
    from mtcnn.stages import StageONet, StagePNet, StageRNet, stage_pnet  # pylint: disable=g-import-not-at-top
    stage_pnet.build_scale_pyramid = scale_pyramid  # what P-Net's stage calls; see scale_pyramid
    to_tensor = _LastTensor()
    self._mtcnn = MTCNN(stages=[_FastStage(s(), to_tensor) for s in (StagePNet, StageRNet, StageONet)],
                        device='CPU:0')

  def detect(self, frames):
    """Detections for each RGB uint8 frame (H, W, 3) of a clip."""
    # As float32: mtcnn would normalise uint8 frames to float64, doubling the batch it copies and resizes. The
    # detections are the same: the networks compute in float32 either way.
    frames = [np.asarray(f, np.float32) for f in frames]
    faces = self._mtcnn.detect_faces(frames, box_format='xyxy', min_face_size=self.min_face_size)
    return [from_mtcnn(f, frame.shape[1], frame.shape[0]) for f, frame in zip(faces, frames)]

  def __call__(self, frames):
    return labels_from_detections(self.detect(frames))


_shared = {}  # min_face_size -> this process's FaceLabeler


def shared_labeler(min_face_size=MIN_FACE_SIZE):
  """This process's FaceLabeler for `min_face_size`, created on first use (MTCNN takes seconds to build)."""
  if min_face_size not in _shared:
    _shared[min_face_size] = FaceLabeler(min_face_size)
  return _shared[min_face_size]
