"""The optimizer: AdamW (Sec. IV-B) with the usual fine-tuning switches, all from `config.optimizer`.

- Weight decay applies to kernels only: biases, norms, layer scales and region tokens are not decayed.
- Schedules: 'warmup_cosine' (default) or 'constant'; gradient clipping by global norm.
- Layer-wise lr decay: encoder block i of L gets lr x decay^(L - i), the embedding decay^(L + 1).
- Gradient accumulation over `accumulate_steps` micro-batches. (A frozen encoder is excluded by the caller.)
"""

import jax
import jax.numpy as jnp
import optax


def _path_names(path):
  return [str(getattr(k, 'key', getattr(k, 'name', k))) for k in path]


def decay_mask(params):
  """True where weight decay applies: the kernels."""
  return jax.tree_util.tree_map_with_path(lambda p, _: _path_names(p)[-1] == 'kernel', params)


def schedule(cfg, total_steps):
  if cfg.schedule == 'constant':
    return optax.constant_schedule(cfg.learning_rate)
  if cfg.schedule != 'warmup_cosine':
    raise ValueError(f"optimizer.schedule must be 'warmup_cosine' or 'constant', got {cfg.schedule!r}")
  warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup, max(total_steps, warmup + 1),
                                            end_value=cfg.learning_rate * cfg.min_lr_ratio)


def layerwise_lr_decay(decay):
  """Scales the updates of encoder block i of L by decay^(L - i), of the rest of the encoder by decay^(L + 1).

  The blocks are stacked, so their multipliers broadcast along the leading (layer) axis.
  """
  def scale(updates, params=None):
    del params
    leaves = jax.tree_util.tree_leaves_with_path(updates)
    depth = next((u.shape[0] for p, u in leaves if _path_names(p)[:2] == ['encoder', 'blocks']), 0)

    def one(path, u):
      names = _path_names(path)
      if names[0] != 'encoder':
        return u
      if names[1] == 'blocks':
        return u * (decay ** (depth - jnp.arange(depth))).reshape((depth,) + (1,) * (u.ndim - 1)).astype(u.dtype)
      return u * jnp.asarray(decay ** (depth + 1), u.dtype)
    return jax.tree_util.tree_map_with_path(one, updates)
  return optax.stateless(scale)


def make_optimizer(cfg, total_steps):
  """The optax transformation for the trainable parameters (the weight-decay mask is computed from their paths).

  A frozen encoder is left out of the trainable parameters by the caller (`nnx.Optimizer(..., wrt=...)`), so it
  has neither gradients nor optimizer state.
  """
  # With accumulation the inner optimizer (and its schedule) steps once per `accumulate_steps` micro-batches.
  updates = max(total_steps // max(cfg.accumulate_steps, 1), 1)
  tx = optax.adamw(schedule(cfg, updates), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                   weight_decay=cfg.weight_decay, mask=decay_mask)
  parts = [optax.clip_by_global_norm(cfg.grad_clip_norm)] if cfg.grad_clip_norm else []
  parts.append(tx)
  if cfg.layer_decay and cfg.layer_decay != 1.0:
    parts.append(layerwise_lr_decay(cfg.layer_decay))
  tx = optax.chain(*parts)
  if cfg.accumulate_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=cfg.accumulate_steps)
  return tx
