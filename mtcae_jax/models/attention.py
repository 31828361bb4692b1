"""Scaled dot-product attention with a per-backend implementation, and the two attention layers.

`attend` picks the kernel: on CPU exact attention in blocks of queries with a recomputing backward pass
(`blockwise_attention`; plain einsum + softmax and `jax.nn.dot_product_attention` train slower there:
docs/BENCHMARKS.md#the-cpu-kernels); on GPU the cuDNN fused kernel (half precision and the head widths it has
kernels for), elsewhere XLA's fused path.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from mtcae_jax.models import blockwise_attention, layers

IMPLEMENTATIONS = ('auto', 'blockwise', 'einsum', 'xla', 'cudnn')


def resolve_impl(impl, dtype):
  """'auto' -> the fastest implementation measured for this backend and compute dtype."""
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f'attention_impl must be one of {IMPLEMENTATIONS}, got {impl!r}')
  if impl != 'auto':
    return impl
  backend = jax.default_backend()
  if backend == 'cpu':
    return 'blockwise'
  if backend == 'gpu' and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
    return 'cudnn'
  return 'xla'


def attend(q, k, v, *, impl='einsum', dropout_rate=0.0, key=None):
  """softmax(q k^T / sqrt(d)) v for q (B, N, H, d), k and v (B, M, H, d) -> (B, N, H, d)."""
  # Blocks pay off only for a large (queries x keys) matrix: for LGI-Former's local windows (few queries) and its
  # local-to-region attention (few keys) recomputing the probabilities is pure cost.
  if impl == 'blockwise' and min(q.shape[1], k.shape[1]) <= blockwise_attention.BLOCK:
    impl = 'einsum'
  if impl == 'einsum' or (dropout_rate > 0.0 and key is not None):
    q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    logits = jnp.einsum('bnhd,bmhd->bhnm', q, k)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    probs = layers.dropout(probs, dropout_rate, key)
    return jnp.einsum('bhnm,bmhd->bnhd', probs, v)
  if impl == 'blockwise':
    return blockwise_attention.blockwise_attention(q, k, v, blockwise_attention.BLOCK)
  if impl == 'cudnn':
    try:
      return jax.nn.dot_product_attention(q, k, v, implementation='cudnn')
    except NotImplementedError:  # a shape cuDNN has no kernel for, e.g. the paper decoder's 512-wide heads
      pass
  return jax.nn.dot_product_attention(q, k, v, implementation='xla')


class SelfAttention(nnx.Module):
  """VideoMAE attention: one fused qkv kernel without bias, plus learned q and v biases (the key bias is zero)."""

  def __init__(self, dim, num_heads, *, qkv_bias=True, impl='einsum', dtype, rngs):
    if dim % num_heads:
      raise ValueError(f'width {dim} is not divisible by {num_heads} heads')
    self.num_heads, self.impl = num_heads, impl
    self.qkv = layers.dense(dim, 3 * dim, ('embed', 'heads'), use_bias=False, dtype=dtype, rngs=rngs)
    zeros = layers.logical(nnx.initializers.zeros_init(), 'heads')
    self.q_bias = nnx.Param(zeros(rngs.params(), (dim,))) if qkv_bias else None
    self.v_bias = nnx.Param(zeros(rngs.params(), (dim,))) if qkv_bias else None
    self.proj = layers.dense(dim, dim, ('heads', 'embed'), dtype=dtype, rngs=rngs)

  def __call__(self, x):
    b, n, d = x.shape
    qkv = self.qkv(x)
    if self.q_bias is not None:
      bias = jnp.concatenate([self.q_bias[...], jnp.zeros_like(self.q_bias[...]), self.v_bias[...]])
      qkv = qkv + bias.astype(qkv.dtype)
    q, k, v = jnp.split(qkv.reshape(b, n, 3, self.num_heads, d // self.num_heads), 3, axis=2)
    out = attend(q[:, :, 0], k[:, :, 0], v[:, :, 0], impl=self.impl)
    return self.proj(out.reshape(b, n, d))


class CrossAttention(nnx.Module):
  """Keras-style multi-head attention: `head_dim` is each head's width and need not be `dim / num_heads`."""

  def __init__(self, dim, num_heads, head_dim, *, dropout_rate=0.0, key_bias=False, impl='einsum', dtype, rngs):
    self.num_heads, self.head_dim, self.impl, self.dropout_rate = num_heads, head_dim, impl, dropout_rate
    inner = num_heads * head_dim
    self.query = layers.dense(dim, inner, ('embed', 'heads'), dtype=dtype, rngs=rngs)
    # By default no key bias: softmax is invariant to it, so its gradient is zero up to rounding, which AdamW would
    # amplify. Keras' MultiHeadAttention has one (`key_bias=True`: its parameter count).
    self.key = layers.dense(dim, inner, ('embed', 'heads'), use_bias=key_bias, dtype=dtype, rngs=rngs)
    self.value = layers.dense(dim, inner, ('embed', 'heads'), dtype=dtype, rngs=rngs)
    self.out = layers.dense(inner, dim, ('heads', 'embed'), dtype=dtype, rngs=rngs)

  def __call__(self, q, k, v, key=None):
    split = lambda x: x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))
    out = attend(split(self.query(q)), split(self.key(k)), split(self.value(v)), impl=self.impl,
                 dropout_rate=self.dropout_rate, key=key)
    return self.out(out.reshape(out.shape[:2] + (-1,)))
