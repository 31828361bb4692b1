"""The training split's mean face box and landmarks, over the frames where MTCNN found a face.

Three uses: the box and landmark heads start there (`model.head.regression_init='target_mean'`); every
evaluation reports this constant as a baseline beside the model (`baseline_box_iou`, `baseline_landmark_nme`), which
heads that learned something beat; and the variance about it normalises the two MSE losses
(`loss.normalize_regression`, see losses.py).
"""

import json

import numpy as np

from mtcae_jax.data import box_format as box_format_lib

FILENAME = 'target_stats.json'  # in the workdir: the statistics a run started from


def mean_targets(boxes, landmarks, face_mask):
  """JSON-able statistics over the frames with a face: 'boxes' [4] and 'landmarks' [K][2] (the means),
  'boxes_variance' and 'landmarks_variance' (the variance about the mean, averaged over coordinates: the MSE of
  always predicting the mean) and 'num_frames'."""
  face_mask = np.asarray(face_mask, bool)
  n = int(face_mask.sum())
  if n == 0:
    raise ValueError('no frame of the training split has a face: nothing to learn boxes or landmarks from')
  stats = {'num_frames': n}
  for name, x in (('boxes', boxes), ('landmarks', landmarks)):
    x = np.asarray(x, np.float64)[face_mask]
    stats[name] = x.mean(axis=0).tolist()
    stats[f'{name}_variance'] = float(x.var(axis=0).mean())
  return stats


def compute(dataset, split, data_dir, box_format='xyxy', indices=None, targets=None):
  """The mean targets of a prepared split (read without decoding its frames, unless its `targets`, as
  pipeline.read_targets gives them, are at hand), boxes in `box_format`. `indices`: those examples only (the
  training actors when a validation split is held out of `split`)."""
  if targets is None:
    from mtcae_jax.data import pipeline  # pylint: disable=g-import-not-at-top  # imports TFDS
    targets = pipeline.read_targets(dataset, split, data_dir)
  targets = {k: targets[k] for k in ('boxes', 'landmarks', 'face_mask')}
  if indices is not None:
    targets = {k: v[np.asarray(indices, np.int64)] for k, v in targets.items()}
  targets['boxes'] = box_format_lib.from_xyxy(targets['boxes'], box_format)
  return mean_targets(**targets)


def save(stats, workdir):
  (workdir / FILENAME).write_text(json.dumps(stats, indent=1))
