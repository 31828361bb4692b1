"""Prediction on videos: decode a clip as the datasets store it, run the model, map its face back to the video.

`predict_video` does one video (with an optional overlay or contact sheet); `predict_many` a batch, decoding on
threads while the model runs, and gives a record with the `error` of each video it could not read. The command
line is `python -m mtcae_jax.predict` (`mtcae_jax/predict/__main__.py`).

TensorFlow is never imported here: prediction needs JAX, OpenCV and the checkpoint only.
"""

import collections
import concurrent.futures as cf
import dataclasses
import os
import pathlib

import numpy as np

# The loader's API is this module's too: `inference.load(...)`, `inference.PredictError`.
from mtcae_jax.predict.trained_model import PredictError, Predictor, load  # pylint: disable=unused-import

VIDEO_SUFFIXES = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.flv', '.m4v', '.mpg', '.mpeg', '.wmv')


# ---------------------------------------------------------------------------------------------------------------
# One video: decode, the model's input, the result.

@dataclasses.dataclass
class Decoded:
  path: str
  video: np.ndarray  # (T, S, S, 3) uint8: the model's input (normalised on the device)
  indices: np.ndarray  # (T,) source frame index of each model frame
  source_size: tuple  # (width, height)
  fps: float
  num_source_frames: int
  frames: np.ndarray = None  # (T, h, w, 3) uint8 RGB at display size, when an overlay or sheet is wanted


def decode(path, predictor, keep_frames=False):
  """Reads `path` as training does. Raises video.VideoError (one line) for a missing or unreadable file."""
  import cv2  # pylint: disable=g-import-not-at-top

  from mtcae_jax.data import pipeline, stored_example, video  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise video.VideoError('no such file')
  # The whole source frame is kept only when it is drawn on; read_clip resizes the same way either way.
  clip = video.read_clip(path, num_frames=stored_example.NUM_FRAMES,
                         size=None if keep_frames else stored_example.IMAGE_SIZE,
                         frame_sampling=getattr(predictor, 'frame_sampling', 'centres'))
  stored = clip.frames
  if keep_frames:
    stored = np.stack([video.resize(f, stored_example.IMAGE_SIZE) for f in clip.frames])
  # The datasets store JPEGs: code and decode the same way, so the model sees the pixels it was trained on.
  t, model_video = pipeline.model_input(stored_example.as_stored(stored), predictor.num_frames, predictor.image_size)
  frames = None
  if keep_frames:
    from mtcae_jax.predict import overlay  # pylint: disable=g-import-not-at-top
    s = overlay.display_scale(*clip.source_size)
    frames = clip.frames[t] if s == 1 else np.stack(
        [cv2.resize(f, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) for f in clip.frames[t]])
  return Decoded(path=str(path), video=model_video, indices=clip.indices[t],
                 source_size=clip.source_size, fps=clip.fps, num_source_frames=clip.num_source_frames,
                 frames=frames)


def to_source_pixels(points, width, height):
  """Normalised (x, y) pairs (..., 2k) -> pixels of a width x height source, clipped to the frame.

  The model saw the whole frame squashed to a square, so x scales by the width and y by the height.
  """
  scale = np.tile(np.array([width, height], np.float64), points.shape[-1] // 2)
  return np.clip(np.asarray(points, np.float64) * scale, 0, scale)


NON_FINITE = 'the model gave non-finite outputs (NaN or inf): its checkpoint is damaged or diverged'


def result(decoded, predictor, out):
  """The JSON record of one video from its model outputs `out` (no batch axis). Raises PredictError for outputs
  that are not finite: argmax of NaN would be a confident class 0, and NaN is not JSON."""
  if not all(np.isfinite(np.asarray(v, np.float64)).all() for v in out.values()):
    raise PredictError(f'{NON_FINITE} ({predictor.source})')
  probs = np.asarray(out['probabilities'], np.float64)
  probs = probs / probs.sum()  # exactly 1 in float64, not only to float32 precision
  w, h = decoded.source_size
  from mtcae_jax.data import faces  # pylint: disable=g-import-not-at-top
  frames = []
  for t, index in enumerate(decoded.indices):
    frame = {'index': int(index)}
    if 'boxes' in out:
      box = to_source_pixels(out['boxes'][t], w, h)
      # A regressed box may come out inverted; the JSON promises x_min <= x_max and y_min <= y_max.
      frame['box'] = [round(float(v), 2) for v in (min(box[0], box[2]), min(box[1], box[3]),
                                                    max(box[0], box[2]), max(box[1], box[3]))]
      points = to_source_pixels(out['landmarks'][t], w, h)
      frame['landmarks'] = {name: [round(float(x), 2), round(float(y), 2)]
                            for name, (x, y) in zip(faces.POINTS, points)}
    frames.append(frame)
  return {
      'video': decoded.path,
      'label': predictor.class_names[int(np.argmax(probs))],
      'probabilities': {c: float(p) for c, p in zip(predictor.class_names, probs)},
      'source': {'width': int(w), 'height': int(h), 'fps': decoded.fps if np.isfinite(decoded.fps) else 0.0,
                 'num_frames': decoded.num_source_frames},
      'checkpoint': predictor.source,
      'frames': frames,
  }


def annotate(decoded, record, predictor):
  """The decoded display frames with the record's predictions drawn on them."""
  from mtcae_jax.predict import overlay  # pylint: disable=g-import-not-at-top
  s = decoded.frames.shape[2] / decoded.source_size[0], decoded.frames.shape[1] / decoded.source_size[1]
  probs = [record['probabilities'][c] for c in predictor.class_names]
  out = []
  for frame, f in zip(decoded.frames, record['frames']):
    box = np.array(f['box']) * np.tile(s, 2) if 'box' in f else None
    marks = np.array(list(f['landmarks'].values())) * np.array(s) if 'landmarks' in f else None
    out.append(overlay.draw(frame, probs, predictor.class_names, box, marks))
  return np.stack(out)


def predict_video(predictor, path, *, overlay_path=None, sheet_path=None):
  """The JSON record of one video; writes the overlay (.mp4 or .gif) and the contact sheet (.png) if asked."""
  keep = bool(overlay_path or sheet_path)
  decoded = decode(path, predictor, keep_frames=keep)
  out = predictor(decoded.video[None])
  record = result(decoded, predictor, {k: v[0] for k, v in out.items()})
  if keep:
    from mtcae_jax.predict import overlay  # pylint: disable=g-import-not-at-top
    frames = annotate(decoded, record, predictor)
    if overlay_path:
      # As long as the source lasts, within 2-12 frames a second (a long video's few samples would crawl).
      duration = decoded.num_source_frames / (decoded.fps or 25.0)
      overlay.write_video(overlay_path, frames, float(np.clip(len(frames) / max(duration, 1e-3), 2, 12)))
    if sheet_path:
      overlay.write_image(sheet_path, overlay.contact_sheet(frames, [f'frame {i}' for i in decoded.indices]))
  return record


def decode_threads(workers=0):
  """The decoding threads `predict_many` uses: `workers`, or by default one per core, up to 8."""
  return workers or min(8, os.cpu_count() or 1)


def predict_many(predictor, paths, *, batch_size=8, workers=0):
  """Yields one record per path, in order: results, or {'video': path, 'error': reason} for a file that cannot be
  read or whose outputs are not finite.

  Decoding runs on threads (OpenCV releases the GIL) a bounded distance ahead of the model, which sees batches of
  `batch_size`; a short batch is padded only to `padded_size` (a few shapes, so a few programs are compiled).
  """
  from mtcae_jax.data import video  # pylint: disable=g-import-not-at-top
  workers = decode_threads(workers)

  def safe_decode(path):
    try:
      return decode(path, predictor)
    except video.VideoError as e:
      return str(e)
    except Exception as e:  # pylint: disable=broad-except  # one undecodable file must not stop the batch
      return ' '.join(f'{type(e).__name__}: {e}'.split())[:300]

  todo, queue = iter(paths), collections.deque()
  with cf.ThreadPoolExecutor(workers) as pool:
    def fill():  # decoded clips wait in memory: keep a few batches' worth, not the whole folder
      while len(queue) < 2 * batch_size + workers and (path := next(todo, None)) is not None:
        queue.append((path, pool.submit(safe_decode, path)))
    fill()
    while queue:
      chunk, good = [], []
      while queue and len(good) < batch_size:
        path, future = queue.popleft()
        chunk.append((path, future.result()))
        good += [chunk[-1][1]] if not isinstance(chunk[-1][1], str) else []
        fill()
      if good:
        pad = padded_size(len(good), batch_size) - len(good)
        out = predictor(np.stack([d.video for d in good] + [good[0].video] * pad))
      row = iter(range(len(good)))
      for path, d in chunk:
        if isinstance(d, str):
          yield {'video': str(path), 'error': d}
          continue
        i = next(row)
        try:
          record = result(d, predictor, {k: v[i] for k, v in out.items()})
        except PredictError as e:  # this video's outputs only: the rest of the batch may be fine
          record = {'video': str(path), 'error': str(e)}
        yield record


def padded_size(n, batch_size):
  """The batch a model call runs for `n` clips: the next power of two, at most `batch_size`. A large
  --batch_size with few videos must not allocate (and compile for) clips that do not exist; powers of two bound
  the shapes compiled to about log2(batch_size)."""
  return min(batch_size, 1 << max(n - 1, 0).bit_length())


def expand(paths, list_file=None):
  """Video paths from files, folders (recursively: files with a video suffix) and a list file (one a line)."""
  out = []
  if list_file:
    try:
      lines = pathlib.Path(list_file).read_text().splitlines()
    except OSError as e:
      raise PredictError(f'{list_file}: cannot read the list ({e.strerror})') from None
    paths = list(paths) + [l.strip() for l in lines if l.strip() and not l.startswith('#')]
  for p in paths:
    if os.path.isdir(p):
      found = sorted(str(f) for f in pathlib.Path(p).rglob('*') if f.suffix.lower() in VIDEO_SUFFIXES
                     and f.is_file())
      if not found:
        raise PredictError(f'{p}: no video files in this folder ({", ".join(VIDEO_SUFFIXES)})')
      out += found
    else:
      out.append(p)
  return out
