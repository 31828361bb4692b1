"""Evaluation on a test fold: every clip exactly once, class scores averaged over temporal views.

Writes, beside the metrics: `predictions.csv` (path, label, prediction, one probability per class) and
`confusion.png`. Box and landmark metrics cover the frames where MTCNN found a face; beside them, those of the
constant predictor (the training split's mean box and landmarks), which heads that learned anything beat.
"""

import csv
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from mtcae_jax.data import box_format as box_format_lib
from mtcae_jax.data import device_input
from mtcae_jax.train import losses, metrics


def make_eval_step(graphdef, input_config, loss_weights, scales=None):
  """jit-able (state, batch) -> per-example outputs and the batch's summed task losses.

  `state` is the nnx state of (model, optimizer) or of the model alone (as `graphdef` says). The uint8 videos are
  normalised here with `input_config.mean` and `.std`. Videos with a view axis (B, V, T, H, W, 3) run as B x V
  clips; class probabilities are averaged over the views.
  """
  def step(state, batch):
    model = nnx.merge(graphdef, state)
    model = model[0] if isinstance(model, tuple) else model
    video = device_input.model_video(batch, input_config.mean, input_config.std)
    b, views = video.shape[0], (video.shape[1] if video.ndim == 6 else 1)
    flat = lambda x: x.reshape((b * views,) + x.shape[2:]) if video.ndim == 6 else x
    out = model(flat(video))
    targets = {k: flat(batch[k]) for k in ('boxes', 'landmarks', 'face_mask') if k in batch}
    valid = jnp.repeat(batch['mask'], views)
    targets.update(label=jnp.repeat(batch['label'], views), mask=valid)
    _, task_losses = losses.multitask_loss(out, targets, loss_weights, scales=scales)
    n = jnp.sum(valid) / views
    result = {'probs': jax.nn.softmax(out['logits']).reshape(b, views, -1).mean(axis=1),
              'losses': {k: v * n for k, v in task_losses.items()}, 'count': n}
    for k in ('boxes', 'landmarks'):
      if k in out:
        result[k] = out[k].reshape((b, views) + out[k].shape[1:])
    return result
  return step


def _host(x):
  """A global (possibly multi-host) array as a full NumPy array on every process."""
  return np.asarray(multihost_utils.process_allgather(x, tiled=True) if jax.process_count() > 1 else x)


def _gather_strings(strings):
  """Every process's `strings` (as many on each), concatenated in process order, on every process."""
  encoded = [s.encode() for s in strings]
  width = max(1, int(_host(np.array([max(map(len, encoded), default=0)])).max()))
  codes = np.zeros((len(encoded), width), np.uint8)
  for row, s in zip(codes, encoded):
    row[:len(s)] = np.frombuffer(s, np.uint8)
  return [bytes(row).rstrip(b'\0').decode() for row in _host(codes)]


def _clip_names(batch):
  """This batch's clip paths, in global batch order. On several processes each loaded some rows: their example
  indices, placed like the batch's labels, give the global order, and the gathered (index, path) pairs the paths."""
  if jax.process_count() == 1:
    return [str(p) for p in batch['path']]
  local = np.asarray(batch['index'], np.int32)
  order = _host(jax.make_array_from_process_local_data(batch['label'].sharding, local, batch['label'].shape))
  paths = dict(zip(_host(local).tolist(), _gather_strings([str(p) for p in batch['path']])))
  return [paths[i] for i in order.tolist()]


def constant_baseline(stats, boxes, landmarks, box_format='xyxy'):
  """Per-frame box IoU and landmark NME of always predicting the mean targets `stats` (data/target_stats.py);
  boxes and the stats' mean box in `box_format`."""
  boxes, landmarks = np.asarray(boxes), np.asarray(landmarks)
  mean_box = np.broadcast_to(np.asarray(stats['boxes'], boxes.dtype), boxes.shape)
  corners = lambda b: box_format_lib.to_xyxy(b, box_format)
  return (metrics.box_iou(corners(mean_box), corners(boxes)),
          metrics.landmark_nme(np.broadcast_to(np.asarray(stats['landmarks']), landmarks.shape), landmarks))


def evaluate(step_fn, state, batches, num_classes, baseline=None, progress=None, box_format='xyxy'):
  """Runs `step_fn` over `batches`; returns (metrics, rows), rows being (clip, label, prediction, probs).
  Boxes (predicted and true) are in `box_format` (config.box_format); IoU converts them to corners.

  With `baseline` (the training split's mean targets), the metrics also hold the constant predictor's box IoU
  and landmark NME over the same frames (`baseline_box_iou`, `baseline_landmark_nme`).
  """
  probs, labels, names, ious, nmes, loss_sums, count = [], [], [], [], [], {}, 0.0
  const_ious, const_nmes = [], []
  corners = lambda b: box_format_lib.to_xyxy(b, box_format)
  for batch in batches:
    out = step_fn(state, {k: v for k, v in batch.items() if k not in ('index', 'path')})
    keep = _host(batch['mask'])
    probs.append(_host(out['probs'])[keep])
    labels.append(_host(batch['label'])[keep])
    names.extend(n for n, k in zip(_clip_names(batch), keep) if k)
    count += float(out['count'])
    for k, v in out['losses'].items():
      loss_sums[k] = loss_sums.get(k, 0.0) + float(v)
    if 'boxes' in out:  # predictions (N, V, T, ...); targets (N, T, ...) or, with several views, (N, V, T, ...)
      boxes, marks = _host(out['boxes'])[keep], _host(out['landmarks'])[keep]
      views = lambda x, ndim: x if x.ndim == ndim else x[:, None]
      faces = np.broadcast_to(views(_host(batch['face_mask'])[keep], boxes.ndim - 1), boxes.shape[:-1])
      true_boxes = np.broadcast_to(views(_host(batch['boxes'])[keep], boxes.ndim), boxes.shape)
      true_marks = np.broadcast_to(views(_host(batch['landmarks'])[keep], marks.ndim), marks.shape)
      ious.append(metrics.box_iou(corners(boxes), corners(true_boxes))[faces])
      nmes.append(metrics.landmark_nme(marks, true_marks)[faces])
      if baseline is not None:
        iou, nme = constant_baseline(baseline, true_boxes, true_marks, box_format)
        const_ious.append(iou[faces])
        const_nmes.append(nme[faces])
    if progress is not None:
      progress.update(1)
  probs, labels = np.concatenate(probs), np.concatenate(labels)
  predictions = probs.argmax(-1)
  cm = metrics.confusion_matrix(labels, predictions, num_classes)
  result = {'uar': metrics.uar(cm), 'war': metrics.war(cm), 'num_clips': int(len(labels)),
            'confusion_matrix': cm.tolist(), 'per_class_recall': metrics.per_class_recall(cm).tolist()}
  result.update({f'loss_{k}': v / max(count, 1.0) for k, v in loss_sums.items()})
  if ious:
    mean = lambda parts: float(np.concatenate(parts).mean()) if sum(map(len, parts)) else float('nan')
    result.update(box_iou=mean(ious), landmark_nme=mean(nmes))
    if const_ious:
      result.update(baseline_box_iou=mean(const_ious), baseline_landmark_nme=mean(const_nmes))
  return result, list(zip(names, labels.tolist(), predictions.tolist(), probs))


def summary(result):
  """One line: UAR and WAR, and box IoU and landmark NME beside the constant baseline's when there are any."""
  line = f'UAR {100 * result["uar"]:.2f}  WAR {100 * result["war"]:.2f}'
  for k, name in (('box_iou', 'box IoU'), ('landmark_nme', 'landmark NME')):
    if k in result:
      line += f'  {name} {result[k]:.3f}'
      if f'baseline_{k}' in result:
        line += f' (constant {result[f"baseline_{k}"]:.3f})'
  return line


def write_reports(out_dir, result, rows, class_names):
  """metrics.json, predictions.csv and confusion.png in `out_dir`."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / 'metrics.json').write_text(json.dumps({**result, 'class_names': list(class_names)}, indent=1))
  with (out_dir / 'predictions.csv').open('w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['path', 'label', 'prediction'] + [f'p_{c}' for c in class_names])
    for path, label, pred, probs in rows:
      w.writerow([path, class_names[label], class_names[pred]] + [f'{p:.6f}' for p in probs])
  plot_confusion(np.asarray(result['confusion_matrix']), class_names, out_dir / 'confusion.png')


def plot_confusion(cm, class_names, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = np.maximum(cm.sum(axis=1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(class_names), 0.8 + 0.6 * len(class_names)))
  ax.imshow(cm / rows, cmap='Blues', vmin=0, vmax=1)
  for i in range(cm.shape[0]):
    for j in range(cm.shape[1]):
      ax.text(j, i, str(cm[i, j]), ha='center', va='center', color='white' if cm[i, j] > rows[i, 0] / 2 else 'k')
  ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha='right')
  ax.set_yticks(range(len(class_names)), class_names)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
