"""Blockwise attention: the same outputs as softmax attention in NumPy, the same gradients as autodiff of the
plain (einsum) attention, whatever the block size, padding, key count and dtype; and a whole model unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax import nnx

from mtcae_jax import models
from mtcae_jax.models import attention
from mtcae_jax.models import blockwise_attention as blockwise_attention_module
from mtcae_jax.models.blockwise_attention import blockwise_attention
from tests.conftest import tiny_config


def numpy_attention(q, k, v):
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  logits = np.einsum('bnhd,bmhd->bhnm', q, k) / np.sqrt(q.shape[-1])
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return np.einsum('bhnm,bmhd->bnhd', p, v)


def inputs(n, m, heads=3, dim=8, dtype=jnp.float32):
  q, k, v, g = (jax.random.normal(jax.random.key(i), shape, jnp.float32) * 2
                for i, shape in enumerate([(2, n, heads, dim), (2, m, heads, dim), (2, m, heads, dim),
                                           (2, n, heads, dim)]))
  return q.astype(dtype), k.astype(dtype), v.astype(dtype), g


@pytest.mark.parametrize('n, m, block', [(12, 12, 4), (13, 13, 4), (13, 7, 5), (10, 10, 64), (29, 17, 6)])
def test_outputs_and_gradients(n, m, block):
  q, k, v, g = inputs(n, m)
  out = jax.jit(blockwise_attention, static_argnums=3)(q, k, v, block)
  np.testing.assert_allclose(out, numpy_attention(q, k, v), rtol=1e-5, atol=1e-5)

  def grads(fn):
    return jax.jit(jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v) * g), argnums=(0, 1, 2)))(q, k, v)
  expected = grads(lambda q, k, v: attention.attend(q, k, v, impl='einsum'))
  # Both gradients are float32 with different summation orders, on values of order 1: a wrong one is off by far more.
  for got, want in zip(grads(lambda q, k, v: blockwise_attention(q, k, v, block)), expected):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=5e-5)


def test_bfloat16_stays_close():
  q, k, v, _ = inputs(20, 20, dtype=jnp.bfloat16)
  out = blockwise_attention(q, k, v, 6)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), numpy_attention(q, k, v), atol=0.05)


def test_model_is_the_same_with_either_attention(video, monkeypatch):
  """A tiny cascaded model (scanned layers, cross-attention decoders) in blocks of 3 of its 8 tokens."""
  monkeypatch.setattr(blockwise_attention_module, 'BLOCK', 3)

  def loss_and_grads(impl):
    graphdef, state = nnx.split(models.build_model(tiny_config(attention_impl=impl), rngs=nnx.Rngs(0)))
    loss = lambda s: sum(jnp.sum(v ** 2) for k, v in nnx.merge(graphdef, s)(video).items()
                         if k in ('logits', 'boxes', 'landmarks'))
    return jax.jit(jax.value_and_grad(loss))(state)

  (loss, grads), (expected_loss, expected_grads) = loss_and_grads('blockwise'), loss_and_grads('einsum')
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):  # rounding: 1e-5 of the scale
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
