"""Box formats. Datasets store (x_min, y_min, x_max, y_max); the authors' code regresses MTCNN's
(x_min, y_min, width, height). Both in frame units ([0, 1] of the frame's width and height).

`config.box_format` names the one the model learns and predicts: targets are converted after augmentation (which
works on corners), and predictions back to corners for IoU, overlays and reports.
"""

import numpy as np

FORMATS = ('xyxy', 'xywh')


def check(fmt):
  if fmt not in FORMATS:
    raise ValueError(f'box_format must be one of {FORMATS}, got {fmt!r}')
  return fmt


def from_xyxy(boxes, fmt):
  """Corner boxes (..., 4) -> `fmt` (NumPy or JAX arrays)."""
  if check(fmt) == 'xyxy':
    return boxes
  xp = np if isinstance(boxes, np.ndarray) else _jnp()
  return xp.concatenate([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], axis=-1)


def to_xyxy(boxes, fmt):
  """Boxes (..., 4) in `fmt` -> corners."""
  if check(fmt) == 'xyxy':
    return boxes
  xp = np if isinstance(boxes, np.ndarray) else _jnp()
  return xp.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], axis=-1)


def _jnp():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp
