"""The optimizer: AdamW against a NumPy transcription, the decay masks, frozen encoder, layer decay, lr scale."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mtcae_jax import models
from mtcae_jax.train import optim
from tests.conftest import tiny_config


def params_of(config):
  return nnx.to_pure_dict(nnx.state(models.build_model(config), nnx.Param))


def first_update(tx, grads, params):
  return jax.jit(lambda g, p: tx.update(g, tx.init(p), p)[0])(grads, params)


def flat(tree):
  return {'.'.join(str(getattr(k, 'key', k)) for k in p): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_decay_mask_covers_kernels_only():
  mask = flat(optim.decay_mask(params_of(tiny_config())))
  assert mask['encoder.blocks.attn.qkv.kernel'] and mask['decoders.boxes.kv_proj.kernel']
  assert mask['encoder.patch_embed.kernel'] and mask['heads.expression.fc.kernel']
  for name in ('encoder.blocks.attn.q_bias', 'encoder.blocks.norm1.scale', 'encoder.blocks.mlp.fc1.bias',
               'decoders.boxes.kv_norm.bias', 'heads.boxes.fc.bias'):
    assert not mask[name], name


def numpy_adamw(p, g, lr, wd, decay, b1=0.9, b2=0.999, eps=1e-8):
  """One AdamW step from zero moments (Loshchilov & Hutter): p - lr * (m_hat / (sqrt(v_hat) + eps) + wd p)."""
  m, v = (1 - b1) * g, (1 - b2) * g * g
  m_hat, v_hat = m / (1 - b1), v / (1 - b2)
  return p - lr * (m_hat / (np.sqrt(v_hat) + eps) + (wd * p if decay else 0.0))


def test_one_step_is_adamw_with_masked_decay():
  config = tiny_config()
  config.optimizer.update(schedule='constant', learning_rate=1e-2, weight_decay=0.1)
  params = params_of(config)
  grads = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)), params)
  tx = optim.make_optimizer(config.optimizer, total_steps=10)
  updates = first_update(tx, grads, params)
  new = flat(optax.apply_updates(params, updates))
  old, g = flat(params), flat(grads)
  for name in ('encoder.blocks.attn.qkv.kernel', 'encoder.blocks.attn.q_bias', 'heads.boxes.fc.bias'):
    expected = numpy_adamw(np.asarray(old[name]), np.asarray(g[name]), 1e-2, 0.1, name.endswith('kernel'))
    np.testing.assert_allclose(new[name], expected, rtol=1e-5, atol=1e-7)


def test_layer_decay_scales_the_stacked_blocks():
  config = tiny_config()
  config.optimizer.update(schedule='constant', learning_rate=1e-2, weight_decay=0.0, layer_decay=0.5)
  params = params_of(config)
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optim.make_optimizer(config.optimizer, total_steps=10)
  updates = flat(first_update(tx, grads, params))
  # With unit gradients AdamW's first step is -lr per element; block i of L=2 gets 0.5^(2-i), the embedding 0.5^3.
  qkv = updates['encoder.blocks.attn.qkv.kernel']
  np.testing.assert_allclose(qkv[0], -1e-2 * 0.25, rtol=1e-4)
  np.testing.assert_allclose(qkv[1], -1e-2 * 0.5, rtol=1e-4)
  np.testing.assert_allclose(updates['encoder.patch_embed.kernel'], -1e-2 * 0.125, rtol=1e-4)
  np.testing.assert_allclose(updates['decoders.boxes.kv_proj.kernel'], -1e-2, rtol=1e-4)


def test_schedule_and_accumulation():
  config = tiny_config()
  config.optimizer.update(learning_rate=1.0, warmup_steps=2, accumulate_steps=2)
  sched = optim.schedule(config.optimizer, total_steps=10)
  assert [float(sched(s)) for s in (0, 1, 2)] == pytest.approx([0.0, 0.5, 1.0])
  assert float(sched(10)) == pytest.approx(0.0, abs=1e-6)
  # MAE-DFER's warmup is in epochs: 2 epochs of 3 steps, with updates every 2 steps, are 3 updates.
  config.optimizer.update(warmup_steps=0, warmup_epochs=2)
  epochs = optim.schedule(config.optimizer, total_steps=10, steps_per_epoch=1.5)
  assert [float(epochs(s)) for s in (0, 1, 3)] == pytest.approx([0.0, 1 / 3, 1.0])
  assert float(optim.schedule(config.optimizer, total_steps=10)(1)) > 0.9  # no epochs known: no warmup
  params = {'w': {'kernel': jnp.ones((2,))}}
  tx = optim.make_optimizer(config.optimizer, total_steps=10, steps_per_epoch=3)
  state = tx.init(params)
  updates, state = tx.update({'w': {'kernel': jnp.ones((2,))}}, state, params)
  assert not np.any(updates['w']['kernel'])  # first micro-batch: accumulated, not applied
  with pytest.raises(ValueError, match='schedule'):
    config.optimizer.schedule = 'linear'
    optim.schedule(config.optimizer, 10)


def test_decay_mask_all_or_kernels():
  params = {'dense': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}, 'norm': {'scale': jnp.ones(2)}}
  assert flat(optim.decay_mask(params)) == {'dense.kernel': True, 'dense.bias': False, 'norm.scale': False}
  assert flat(optim.decay_mask(params, 'all')) == {'dense.kernel': True, 'dense.bias': True, 'norm.scale': True}
  with pytest.raises(ValueError, match="weight_decay_mask must be one of \\('kernels', 'all'\\), got 'none'"):
    optim.decay_mask(params, 'none')
  # One AdamW step with 'all' decays the bias too (Keras' AdamW).
  config = tiny_config()
  config.optimizer.update(schedule='constant', learning_rate=1e-2, weight_decay=0.1, weight_decay_mask='all')
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  new = flat(optax.apply_updates(params, first_update(optim.make_optimizer(config.optimizer, 10), grads, params)))
  for name in ('dense.kernel', 'dense.bias', 'norm.scale'):
    np.testing.assert_allclose(new[name], numpy_adamw(1.0, 0.5, 1e-2, 0.1, True), rtol=1e-6)  # 1 - 0.01 - 0.001
  with pytest.raises(ValueError, match='weight_decay_mask'):
    config.optimizer.weight_decay_mask = 'none'
    optim.make_optimizer(config.optimizer, 10)


def test_lowered_lr_scale_shrinks_the_update():
  config = tiny_config()
  config.optimizer.update(schedule='constant', learning_rate=1e-2, weight_decay=0.0, plateau_patience=1)
  params = {'w': {'kernel': jnp.ones((3,))}}
  grads = {'w': {'kernel': jnp.array([1.0, -2.0, 0.5])}}
  tx = optim.make_optimizer(config.optimizer, total_steps=10)
  state = tx.init(params)
  full = tx.update(grads, state, params)[0]['w']['kernel']
  lowered = tx.update(grads, optim.with_lr_scale(state, 0.1), params)[0]['w']['kernel']
  # AdamW's first step is -lr x sign(g); the lowered one a tenth of it.
  np.testing.assert_allclose(full, [-1e-2, 1e-2, -1e-2], rtol=1e-5)
  np.testing.assert_allclose(lowered, [-1e-3, 1e-3, -1e-3], rtol=1e-5)
  # Without plateau_patience the optimizer has no scale (its state is that of runs saved before the switch).
  config.optimizer.plateau_patience = 0
  with pytest.raises(ValueError, match='no lr_scale'):
    optim.with_lr_scale(optim.make_optimizer(config.optimizer, 10).init(params), 0.1)


def test_lr_scale_in_a_train_state_is_found_and_placed():
  config = tiny_config()
  config.optimizer.plateau_patience = 1
  model = models.build_model(config)
  state = nnx.state((model, nnx.Optimizer(model, optim.make_optimizer(config.optimizer, 10), wrt=nnx.Param)))
  scaled = optim.with_lr_scale(state, 0.01)
  found = [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(scaled)
           if 'lr_scale' in jax.tree_util.keystr(p)]
  assert len(found) == 1 and found[0][1].dtype == jnp.float32 and float(found[0][1]) == np.float32(0.01)
