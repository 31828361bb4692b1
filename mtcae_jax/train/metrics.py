"""Evaluation metrics, on the host in NumPy.

UAR is the mean of the per-class recalls over the classes present in the evaluated ground truth (a fold may lack
a class; counting it as recall 0 would punish the model for the split). WAR is the accuracy: the confusion
matrix's trace over its total.
"""

import numpy as np


def confusion_matrix(labels, predictions, num_classes):
  """cm[i, j] = number of examples of true class i predicted as j."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (np.asarray(labels), np.asarray(predictions)), 1)
  return cm


def per_class_recall(cm):
  """Recall of each class; NaN for classes absent from the ground truth."""
  support = cm.sum(axis=1)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(support > 0, np.diag(cm) / support, np.nan)


def uar(cm):
  return float(np.nanmean(per_class_recall(cm)))


def war(cm):
  return float(np.trace(cm) / max(cm.sum(), 1))


def box_iou(pred, target):
  """Intersection over union of (x_min, y_min, x_max, y_max) boxes, elementwise over leading axes."""
  pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
  lo, hi = np.maximum(pred[..., :2], target[..., :2]), np.minimum(pred[..., 2:], target[..., 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
  area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)
  union = area(pred) + area(target) - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def landmark_nme(pred, target):
  """Mean point-to-point error of (..., 5, 2) landmarks over the inter-ocular distance (points 0 and 1)."""
  pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
  error = np.linalg.norm(pred - target, axis=-1).mean(axis=-1)
  interocular = np.linalg.norm(target[..., 0, :] - target[..., 1, :], axis=-1)
  return error / np.maximum(interocular, 1e-6)
