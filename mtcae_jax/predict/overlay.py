"""Drawing predictions on frames: boxes, landmarks, the label and a probability bar; overlay videos and sheets.

Frames are RGB uint8 at the source video's size (or scaled down for display); coordinates are in those pixels.
"""

import cv2
import numpy as np

BOX = (0, 220, 0)
POINT_COLOURS = ((255, 64, 64), (64, 128, 255), (255, 220, 0), (255, 0, 255), (0, 230, 230))  # faces.POINTS order
TEXT = (255, 255, 255)
MAX_SIDE = 640  # overlays and sheets are for looking at: larger sources are scaled down to this


def display_scale(width, height, max_side=MAX_SIDE):
  return min(1.0, max_side / max(width, height))


def draw(frame, probabilities, class_names, box=None, landmarks=None):
  """One annotated copy of `frame`: the box and points (pixels of `frame`), the top label and a bar per class."""
  out = np.ascontiguousarray(frame).copy()
  h, w = out.shape[:2]
  thick = max(1, round(min(h, w) / 200))
  if box is not None:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x0, y0), (x1, y1), BOX, thick, cv2.LINE_AA)
  if landmarks is not None:
    for (x, y), colour in zip(landmarks, POINT_COLOURS):
      cv2.circle(out, (int(round(x)), int(round(y))), thick + 1, colour, -1, cv2.LINE_AA)
  _bars(out, probabilities, class_names)
  return out


def _bars(out, probabilities, class_names):
  """A translucent panel at the top left: one bar per class, the top class highlighted."""
  h, w = out.shape[:2]
  scale = max(0.35, min(h, w) / 700)
  row = int(22 * scale / 0.5)
  bar_w = max(40, w // 6)
  label_w = int(max(cv2.getTextSize(c, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for c in class_names)) + 8
  panel = out[:min(h, row * len(class_names) + 8), :min(w, label_w + bar_w + 60)]
  panel[:] = (panel * 0.45).astype(np.uint8)  # darken, so the text reads on any background
  top = int(np.argmax(probabilities))
  for i, (name, p) in enumerate(zip(class_names, probabilities)):
    y = 4 + i * row
    colour = BOX if i == top else (170, 170, 170)
    cv2.putText(out, name, (4, y + row - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT, 1, cv2.LINE_AA)
    cv2.rectangle(out, (label_w, y + 3), (label_w + int(bar_w * float(p)), y + row - 3), colour, -1)
    cv2.putText(out, f'{100 * float(p):.0f}%', (label_w + bar_w + 4, y + row - 6), cv2.FONT_HERSHEY_SIMPLEX,
                scale, TEXT, 1, cv2.LINE_AA)


def write_video(path, frames, fps):
  """`frames` (T, H, W, 3) RGB as an animated GIF (by suffix) or an MP4 (MPEG-4 Part 2, which OpenCV always has)."""
  path = str(path)
  if path.lower().endswith('.gif'):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return
  h, w = frames.shape[1:3]
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
  if not writer.isOpened():
    raise OSError(f'{path}: cannot write a video there (OpenCV has no encoder for it)')
  try:
    for f in frames:
      writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
  finally:
    writer.release()


def contact_sheet(frames, captions, columns=4):
  """The frames in a grid, each captioned (its source frame index), as one RGB image."""
  t, h, w = frames.shape[:3]
  rows = -(-t // columns)
  sheet = np.zeros((rows * h, columns * w, 3), np.uint8)
  for i, (f, caption) in enumerate(zip(frames, captions)):
    r, c = divmod(i, columns)
    tile = f.copy()
    scale = max(0.35, min(h, w) / 700)
    cv2.putText(tile, caption, (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT, 1, cv2.LINE_AA)
    sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
  return sheet


def write_image(path, image):
  if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
    raise OSError(f'{path}: cannot write an image there')
