"""The optimizer: AdamW (Sec. IV-B) with the usual fine-tuning switches, all from `config.optimizer`.

- Weight decay (`weight_decay_mask`): on kernels only ('kernels': biases, norms, layer scales and region tokens are
  not decayed) or on every variable ('all', as Keras' AdamW in the authors' code).
- Schedules: 'warmup_cosine' (default) or 'constant'; gradient clipping by global norm.
- Layer-wise lr decay: encoder block i of L gets lr x decay^(L - i), the embedding decay^(L + 1).
- Gradient accumulation over `accumulate_steps` micro-batches. (A frozen encoder is excluded by the caller.)
- Reduce-on-plateau (`plateau_patience` > 0), as Keras' ReduceLROnPlateau: the host-side `watch.ReduceOnPlateau` watches
  the validation loss after each evaluation and `with_lr_scale` writes its multiplier into the optimizer state,
  where `scale_by_lr_scale` applies it inside the jitted step (so it is saved, restored and sharded with the rest).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _path_names(path):
  return [str(getattr(k, 'key', getattr(k, 'name', k))) for k in path]


DECAY_MASKS = ('kernels', 'all')


def decay_mask(params, which='kernels'):
  """True where weight decay applies: the kernels, or `which='all'` every variable."""
  if which not in DECAY_MASKS:
    raise ValueError(f'optimizer.weight_decay_mask must be one of {DECAY_MASKS}, got {which!r}')
  return jax.tree_util.tree_map_with_path(lambda p, _: which == 'all' or _path_names(p)[-1] == 'kernel', params)


def schedule(cfg, total_steps, steps_per_epoch=None):
  """The lr per update. The warmup is `warmup_steps`, else `warmup_epochs` x `steps_per_epoch` (MAE-DFER counts
  it in epochs); without steps_per_epoch (shapes only, benchmarks) an epoch warmup is left out."""
  if cfg.schedule == 'constant':
    return optax.constant_schedule(cfg.learning_rate)
  if cfg.schedule != 'warmup_cosine':
    raise ValueError(f"optimizer.schedule must be 'warmup_cosine' or 'constant', got {cfg.schedule!r}")
  warmup = cfg.warmup_steps or round(cfg.get('warmup_epochs', 0) * (steps_per_epoch or 0))
  warmup = min(warmup, max(total_steps - 1, 0))
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


class LrScaleState(NamedTuple):
  lr_scale: jax.Array  # float32 scalar; the field's name is how `with_lr_scale` finds it in a train state


def scale_by_lr_scale():
  """Multiplies the updates by a float32 `lr_scale` kept in the optimizer state (1 at the start); the host sets it
  between steps (`with_lr_scale`). Last in the chain, it scales the decoupled weight decay too, as a lower
  learning rate does in Keras' AdamW."""
  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: u * state.lr_scale.astype(u.dtype), updates), state
  return optax.GradientTransformation(lambda params: LrScaleState(jnp.ones((), jnp.float32)), update)


def with_lr_scale(state, value):
  """`state` (an nnx train state) with its `lr_scale` set to `value`, placed as the old one was."""
  found = []

  def one(path, x):
    if 'lr_scale' not in _path_names(path):
      return x
    found.append(path)
    return jax.make_array_from_callback(x.shape, x.sharding, lambda index: np.asarray(value, np.float32)[index])
  state = jax.tree_util.tree_map_with_path(one, state)
  if not found:
    raise ValueError('the optimizer has no lr_scale (optimizer.plateau_patience is 0)')
  return state


def make_optimizer(cfg, total_steps, steps_per_epoch=None):
  """The optax transformation for the trainable parameters (the weight-decay mask is computed from their paths).
  `steps_per_epoch` (training steps) sizes a warmup given in epochs.

  A frozen encoder is left out of the trainable parameters by the caller (`nnx.Optimizer(..., wrt=...)`), so it
  has neither gradients nor optimizer state.
  """
  # With accumulation the inner optimizer (and its schedule) steps once per `accumulate_steps` micro-batches.
  updates = max(total_steps // max(cfg.accumulate_steps, 1), 1)
  mask = cfg.get('weight_decay_mask', 'kernels')
  decay_mask({}, mask)  # a bad value is one line here, not a traceback from inside the first step
  per_epoch = steps_per_epoch and steps_per_epoch / max(cfg.accumulate_steps, 1)
  tx = optax.adamw(schedule(cfg, updates, per_epoch), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                   weight_decay=cfg.weight_decay, mask=functools.partial(decay_mask, which=mask))
  parts = [optax.clip_by_global_norm(cfg.grad_clip_norm)] if cfg.grad_clip_norm else []
  parts.append(tx)
  if cfg.layer_decay and cfg.layer_decay != 1.0:
    parts.append(layerwise_lr_decay(cfg.layer_decay))
  if cfg.get('plateau_patience', 0) > 0:  # only then: the optimizer state of runs without it stays as it was
    parts.append(scale_by_lr_scale())
  tx = optax.chain(*parts)
  if cfg.accumulate_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=cfg.accumulate_steps)
  return tx
