"""The multi-task loss of Sec. IV-B: MSE for boxes and landmarks, softmax cross-entropy for the expression.

Frames where MTCNN found no face (`face_mask` false) and padded examples (`mask` false) contribute nothing.
"""

import jax
import jax.numpy as jnp
import optax


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


def multitask_loss(outputs, batch, weights, label_smoothing=0.0):
  """(weighted total, {task: loss}) for the tasks the model has (`stl`: the expression only)."""
  valid = batch.get('mask', jnp.ones(batch['label'].shape, bool))
  losses = {'expression': cross_entropy(outputs['logits'], batch['label'], valid, label_smoothing)}
  frames = batch['face_mask'] & valid[:, None] if 'face_mask' in batch else None
  for task in ('boxes', 'landmarks'):
    if task in outputs:
      losses[task] = masked_mse(outputs[task], batch[task], frames)
  total = sum(weights[t] * v for t, v in losses.items())
  return total, losses
