"""The training step: the (model, optimizer) state that training updates, and one jitted update of it.

Forward, the multi-task loss (Eq. 10), backward and the AdamW update, on the device mesh; `loop.py` calls it,
and the benchmark times it as it is.
"""

import jax
import optax
from flax import nnx

from mtcae_jax import models, sharding
from mtcae_jax.data import device_input, pipeline
from mtcae_jax.train import losses, optim


def trainable(config):
  """The parameters the optimizer updates: all, or all but the encoder's when it is frozen."""
  if config.model.encoder.frozen:
    return nnx.All(nnx.Param, nnx.Not(nnx.PathContains('encoder')))
  return nnx.Param


def train_state_maker(config, total_steps, steps_per_epoch=None):
  """A function making the (model, optimizer) pair that training updates; its nnx state is what is saved."""
  def make():
    model = models.build_model(config, rngs=nnx.Rngs(config.seed))
    tx = optim.make_optimizer(config.optimizer, total_steps, steps_per_epoch)
    return model, nnx.Optimizer(model, tx, wrt=trainable(config))
  return make


def loss_settings(config, stats):
  """(task weights, regression scales or None) for `losses.multitask_loss`; `stats`: data/target_stats.py."""
  weights = {t: config.loss[t] for t in ('boxes', 'landmarks', 'expression')}
  return weights, (losses.regression_scales(stats) if config.loss.normalize_regression and stats else None)


def make_train_step(config, graphdef, state_sharding, mesh, stats=None):
  """The jitted step (state, batch) -> (state, metrics): forward, backward and optimizer update on the mesh.

  The state is donated (updated in place); `batch` holds `pipeline.TRAIN_KEYS` split over the batch axes (uint8
  video, normalised and colour-jittered here, on the device).
  `stats` (the training split's target statistics) normalise the regression losses if the config says so.
  """
  wrt, (loss_weights, scales) = trainable(config), loss_settings(config, stats)
  batch_sharding = {k: sharding.batch_sharding(mesh) for k in pipeline.TRAIN_KEYS}

  def train_step(state, batch):
    model, opt = nnx.merge(graphdef, state)
    key = jax.random.fold_in(jax.random.key(config.seed), opt.step[...])
    video = device_input.model_video(batch, config.input.mean, config.input.std)

    def loss_fn(model):
      return losses.multitask_loss(model(video, key=key), batch, loss_weights, config.label_smoothing,
                                   scales)

    (loss, parts), grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)(model)
    opt.update(model, grads)
    return nnx.state((model, opt)), {'loss': loss, 'grad_norm': optax.tree.norm(grads),
                                     **{f'loss_{k}': v for k, v in parts.items()}}

  return jax.jit(train_step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0)
