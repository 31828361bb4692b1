"""The multi-task loss of Sec. IV-B: MSE for boxes and landmarks, softmax cross-entropy for the expression.

By default (`config.loss.normalize_regression`) the two MSEs are divided by the training split's target variance,
so that each task's loss is on the scale the paper's weights 0.5 / 0.5 / 1.5 balance (docs/HEADS.md).

Frames where MTCNN found no face (`face_mask` false) and padded examples (`mask` false) contribute nothing.
"""

import jax
import jax.numpy as jnp
import optax

# The smallest target variance a normalised loss divides by: (1% of the frame)^2, so that a dataset whose boxes
# hardly vary (a fixed camera, a single face) does not turn pixel noise into a large loss.
MIN_VARIANCE = 1e-4


def masked_mse(pred, target, mask):
  """Mean squared error over the frames where `mask` (B, T) is true; 0 when there are none."""
  sq = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  sq = sq.reshape(sq.shape[:2] + (-1,)).mean(axis=-1)  # (B, T): per-frame mean over coordinates
  mask = mask.astype(jnp.float32)
  return jnp.sum(sq * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def cross_entropy(logits, labels, mask, label_smoothing=0.0):
  """Softmax cross-entropy from logits, averaged over the examples where `mask` (B,) is true."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  per_example = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
  mask = mask.astype(jnp.float32)
  return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def regression_scales(stats):
  """{task: divisor} making the box and landmark MSEs relative to the constant predictor's: the training split's
  target variance (`data/target_stats.py`), floored at MIN_VARIANCE. A normalised loss of 1 is no better than
  predicting the mean box; in frame units that MSE is about 0.006 (demo data), some 1/300 of the cross-entropy,
  and the expression task drowns the others' gradients in the shared layers."""
  return {t: max(float(stats[f'{t}_variance']), MIN_VARIANCE) for t in ('boxes', 'landmarks')}


def multitask_loss(outputs, batch, weights, label_smoothing=0.0, scales=None):
  """(weighted total, {task: loss}) for the tasks the model has (`stl`: the expression only).

  `scales` (see `regression_scales`) divides the box and landmark MSEs; None leaves them in frame units."""
  valid = batch.get('mask', jnp.ones(batch['label'].shape, bool))
  losses = {'expression': cross_entropy(outputs['logits'], batch['label'], valid, label_smoothing)}
  frames = batch['face_mask'] & valid[:, None] if 'face_mask' in batch else None
  for task in ('boxes', 'landmarks'):
    if task in outputs:
      losses[task] = masked_mse(outputs[task], batch[task], frames) / (scales[task] if scales else 1.0)
  total = sum(weights[t] * v for t, v in losses.items())
  return total, losses
