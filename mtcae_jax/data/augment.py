"""Training augmentations that move the targets with the pixels.

Targets are in normalised frame coordinates: boxes (T, 4) as (x_min, y_min, x_max, y_max) and landmarks (T, 5, 2)
as (x, y), both in [0, 1]. A geometric augmentation is a crop window (x0, y0, x1, y1) in those coordinates (it
may reach outside [0, 1]: zooming out repeats the edge pixels, which makes no phantom faces); the pixels are warped
and the targets mapped with the same affine map, so they stay on the face. Colour jitter changes pixels only: its
factors are drawn here and applied on the device (`device_input.py`).
"""

import dataclasses

import cv2
import numpy as np

from mtcae_jax.data import faces

FULL = (0.0, 0.0, 1.0, 1.0)
POLICIES = ('none', 'crop_flip_colour')  # config.augment.policy: the fields below, or no augmentation
# Mirroring turns the image-left eye into the image-right one: swap left/right points (faces.POINTS order).
FLIP_ORDER = tuple(faces.POINTS.index(p.replace('left', '@').replace('right', 'left').replace('@', 'right'))
                   for p in faces.POINTS)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  hflip: float = 0.5  # probability
  crop_scale: tuple[float, float] = (0.7, 1.0)  # random resized crop: area fraction of the frame kept
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # and its aspect ratio
  crop_prob: float = 0.5  # otherwise scale jitter
  scale_jitter: float = 0.1  # zoom factor in [1 - j, 1 + j] about a slightly shifted centre
  brightness: float = 0.2
  contrast: float = 0.2
  saturation: float = 0.2

  @classmethod
  def of(cls, fields):
    """From a config's `augment` block (lists, as a config may hold them, become tuples); None when its
    `policy` is 'none' (no augmentation, as the paper and its sources)."""
    fields = dict(fields)
    policy = fields.pop('policy', 'crop_flip_colour')
    if policy not in POLICIES:
      raise ValueError(f'augment.policy must be one of {POLICIES}, got {policy!r}')
    if policy == 'none':
      return None
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in fields.items()})


def hflip(video, boxes, landmarks):
  """Mirrors the clip (T, H, W, C) and its targets; applying it twice is the identity."""
  boxes = np.stack([1 - boxes[..., 2], boxes[..., 1], 1 - boxes[..., 0], boxes[..., 3]], axis=-1)
  landmarks = np.stack([1 - landmarks[..., 0], landmarks[..., 1]], axis=-1)[..., FLIP_ORDER, :]
  return video[:, :, ::-1], boxes, landmarks


def warp(video, window, size):
  """The window (x0, y0, x1, y1) of each frame, resized to size x size; exact in pixel-edge coordinates."""
  if tuple(window) == FULL:
    shrink = video.shape[1] > size or video.shape[2] > size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in video])
  h, w = video.shape[1:3]
  x0, y0, x1, y1 = window
  ax, ay = size / ((x1 - x0) * w), size / ((y1 - y0) * h)
  # Maps pixel centres (index + 0.5 in edge coordinates) so that the window's edges land on the output's edges.
  m = np.array([[ax, 0, ax * (0.5 - x0 * w) - 0.5], [0, ay, ay * (0.5 - y0 * h) - 0.5]])
  return np.stack([cv2.warpAffine(f, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                   for f in video])


def move_targets(boxes, landmarks, face_mask, window):
  """Targets after cropping to `window`: mapped, clipped to [0, 1]; a face that left the frame is masked out."""
  x0, y0, x1, y1 = window
  origin, extent = np.array([x0, y0]), np.array([x1 - x0, y1 - y0])
  boxes = ((boxes.reshape(-1, 2, 2) - origin) / extent).reshape(boxes.shape)
  landmarks = (landmarks - origin) / extent
  boxes, landmarks = np.clip(boxes, 0, 1), np.clip(landmarks, 0, 1)
  visible = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
  return boxes.astype(np.float32), landmarks.astype(np.float32), face_mask & visible


def random_resized_crop(rng, scale, ratio):
  """A window inside the frame covering `scale` of its area with aspect ratio `ratio` (as in Inception)."""
  for _ in range(10):
    area = rng.uniform(*scale)
    r = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    w, h = np.sqrt(area * r), np.sqrt(area / r)
    if w <= 1 and h <= 1:
      x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
      return (x0, y0, x0 + w, y0 + h)
  return FULL


def scale_jitter(rng, jitter):
  """A square window of side 1/z (zoom z in [1 - j, 1 + j]) about a centre shifted by up to j/2."""
  side = 1 / rng.uniform(1 - jitter, 1 + jitter)
  cx, cy = 0.5 + rng.uniform(-jitter, jitter, size=2) / 2
  return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def colour_factors(rng, config):
  """A clip's (brightness, contrast, saturation) factors, applied on the device (`device_input.colour_jitter`)."""
  return np.array([rng.uniform(1 - config.brightness, 1 + config.brightness),
                   rng.uniform(1 - config.contrast, 1 + config.contrast),
                   rng.uniform(1 - config.saturation, 1 + config.saturation)], np.float32)


def augment(rng, video, boxes, landmarks, face_mask, size, config=AugmentConfig()):
  """A training clip (T, H, W, 3) uint8 -> (uint8 clip at size x size, targets moved to match, colour factors)."""
  window = (random_resized_crop(rng, config.crop_scale, config.crop_ratio) if rng.uniform() < config.crop_prob
            else scale_jitter(rng, config.scale_jitter))
  video = warp(video, window, size)
  boxes, landmarks, face_mask = move_targets(boxes, landmarks, face_mask, window)
  if rng.uniform() < config.hflip:
    video, boxes, landmarks = hflip(video, boxes, landmarks)
  return video, boxes, landmarks, face_mask, colour_factors(rng, config)
