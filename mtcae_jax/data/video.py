"""Read a video into a fixed number of evenly spaced frames (paper Fig. 3: "averaged down to 16 frames").

Frames are streamed: every frame is decoded (containers cannot be trusted to seek exactly), but only the sampled
ones are converted and resized, so a long or 4K video is never held in memory whole.
"""

import dataclasses

import cv2
import numpy as np

CROPS = ('squash', 'center')
# How a dataset's stored frames are chosen from a video: 'centres', ours (`sample_indices`), or 'stride', the
# authors' preprocessing (`stride_indices`).
FRAME_SAMPLINGS = ('centres', 'stride')
# Containers may report a frame count a few percent off from what decodes (FLV estimates it from the duration;
# an MP4 here reports 98 and decodes 95); a larger shortfall is a truncated file.
_COUNT_TOLERANCE = 0.1


class VideoError(ValueError):
  """A video that cannot be used; the message is a one-line reason for the skipped-file list."""


@dataclasses.dataclass(frozen=True)
class Clip:
  frames: np.ndarray  # (T, H, W, 3) uint8 RGB
  indices: np.ndarray  # (T,) int: each frame's index in the source video
  num_source_frames: int
  fps: float
  source_size: tuple[int, int]  # (width, height)


def sample_indices(num_source_frames, num_frames=16, offset=0.5):
  """`num_frames` frames of a clip of `num_source_frames`, one per equal segment, at `offset` (0-1) into each: the
  segments' centres by default. Our sampling rule: of a video's frames when a dataset is built (unless built with
  the authors' `stride_indices`) or a video is predicted, and of the stored frames in the input pipeline (where
  other offsets give other temporal views).

  A clip shorter than `num_frames` repeats its frames evenly (each about num_frames / num_source_frames times).
  """
  if num_source_frames < 1:
    raise VideoError('no frames')
  i = np.arange(num_frames)
  return np.minimum(((i + offset) * num_source_frames / num_frames).astype(np.int64), num_source_frames - 1)


def stride_indices(num_source_frames, num_frames=16):
  """The authors' rule (MTCAE-DFER's Preprocessing_Video.py, there for 16 frames): every floor(T / N)-th frame of
  the T, starting at frame 0, i.e. i * floor(T / N). Unlike `sample_indices` it is not centred: it ends at frame
  (N - 1) * floor(T / N), and the clip's last floor(T / N) - 1 + T mod N frames are never seen (T = 31, N = 16:
  frames 0-15, none of 16-30). Kept to reproduce their preprocessing exactly.

  For T < N their stride is 0 and every frame would be frame 0 (a still clip); ours instead: the frames repeated
  evenly, as `sample_indices` (our choice, not theirs).
  """
  if num_source_frames < 1:
    raise VideoError('no frames')
  stride = num_source_frames // num_frames
  if stride == 0:
    return sample_indices(num_source_frames, num_frames)
  return np.arange(num_frames, dtype=np.int64) * stride


def check_frame_sampling(frame_sampling):
  """`frame_sampling` if it is one of FRAME_SAMPLINGS; ValueError (one line) otherwise."""
  if frame_sampling not in FRAME_SAMPLINGS:
    raise ValueError(f'frame_sampling must be one of {", ".join(FRAME_SAMPLINGS)}, got {frame_sampling!r}')
  return frame_sampling


def frame_indices(num_source_frames, num_frames=16, frame_sampling='centres'):
  """The `num_frames` frames a dataset stores of a clip of `num_source_frames`, by `frame_sampling`."""
  if check_frame_sampling(frame_sampling) == 'stride':
    return stride_indices(num_source_frames, num_frames)
  return sample_indices(num_source_frames, num_frames)


def to_rgb(frame):
  """OpenCV's BGR, BGRA or greyscale frame as 3-channel RGB."""
  if frame.ndim == 2 or frame.shape[-1] == 1:
    return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
  if frame.shape[-1] == 4:
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
  return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def resize(frame, size, crop='squash'):
  """Square `size` x `size`: 'squash' stretches the whole frame (as the paper), 'center' crops the middle square."""
  if crop not in CROPS:
    raise ValueError(f'crop must be one of {CROPS}, got {crop!r}')
  if size is None:
    return frame
  if crop == 'center':
    h, w = frame.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    frame = frame[y:y + s, x:x + s]
  shrink = frame.shape[0] > size or frame.shape[1] > size
  return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _open(path):
  cap = cv2.VideoCapture(str(path))
  if not cap.isOpened():
    cap.release()
    raise VideoError('cannot be read: no decodable video stream')
  return cap


def _read_pass(path, wanted, size, crop):
  """Decodes the whole stream once; returns ({index: resized RGB frame} for `wanted`, frames decoded, fps, size)."""
  cap = _open(path)
  try:
    fps = cap.get(cv2.CAP_PROP_FPS)
    wanted = set(int(i) for i in wanted)
    kept, n, source_size = {}, 0, (0, 0)
    while cap.grab():
      if n in wanted:
        ok, frame = cap.retrieve()
        if not ok or frame is None:
          break  # a frame that demuxes but does not decode: treat the stream as ending here
        source_size = (frame.shape[1], frame.shape[0])
        kept[n] = resize(to_rgb(frame), size, crop)
      n += 1
    return kept, n, fps, source_size
  finally:
    cap.release()


def read_clip(path, num_frames=16, size=224, crop='squash', frame_sampling='centres'):
  """Reads `num_frames` frames of any video OpenCV decodes, resized to `size` (None: as is): the segments' centres
  (`sample_indices`), or with frame_sampling='stride' the authors' every floor(T / N)-th frame (`stride_indices`).

  Raises VideoError (with the reason) for a file that cannot be opened, has no frames, or is truncated; ValueError
  for an unknown `frame_sampling`.
  """
  check_frame_sampling(frame_sampling)
  cap = _open(path)
  reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
  cap.release()
  wanted = frame_indices(reported, num_frames, frame_sampling) if reported > 0 else np.zeros(0, np.int64)
  kept, n, fps, source_size = _read_pass(path, wanted, size, crop)
  if n == 0:
    raise VideoError('no frames')
  if reported > 0 and n < reported * (1 - _COUNT_TOLERANCE):
    raise VideoError(f'truncated: {n} of {reported} frames decode')
  indices = frame_indices(n, num_frames, frame_sampling)
  if not set(indices.tolist()) <= kept.keys():
    # The container's count was unknown or off: read again with the count that actually decoded.
    kept, n2, fps, source_size = _read_pass(path, indices, size, crop)
    if n2 != n or not set(indices.tolist()) <= kept.keys():
      raise VideoError('cannot be read: frame count differs between two decodes')
  frames = np.stack([kept[int(i)] for i in indices])
  return Clip(frames=frames, indices=indices, num_source_frames=n, fps=float(fps), source_size=source_size)
