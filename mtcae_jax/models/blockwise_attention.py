"""Exact attention computed a block of queries at a time, with a backward pass that recomputes the probabilities.

Plain attention materialises the (B, H, N, N) probabilities (118 MB per ViT-S layer at N = 1568, batch 2) and
keeps them for the backward pass, so on a CPU its softmax and gradients run at memory speed. Here each block of
queries sees all keys at once (an exact softmax per row, no running rescaling), the forward pass keeps only each
row's log-sum-exp, and the backward pass recomputes a block's probabilities from it: one more QK^T per block in
exchange for never leaving the cache, which is faster on a CPU (measured: docs/BENCHMARKS.md#the-cpu-kernels).
"""

import functools
import math

import jax
import jax.numpy as jnp

# Queries per block, about: the size measured best on CPU (docs/BENCHMARKS.md#the-cpu-kernels).
BLOCK = 200


def _blocks(x, size):
  """(B, H, N, d) -> (N / size, B, H, size, d)."""
  b, h, n, d = x.shape
  return x.reshape(b, h, n // size, size, d).transpose(2, 0, 1, 3, 4)


def _unblock(x):
  nb, b, h, size, d = x.shape
  return x.transpose(1, 2, 0, 3, 4).reshape(b, h, nb * size, d)


def _forward(q, k, v, size):
  """Output (B, H, N, d) and each row's log-sum-exp (N / size, B, H, size); q is already scaled."""
  def block(qb):
    s = jnp.einsum('bhqd,bhkd->bhqk', qb, k, preferred_element_type=jnp.float32)
    m = jnp.max(s, axis=-1, keepdims=True)
    p = jnp.exp(s - m)
    total = jnp.sum(p, axis=-1, keepdims=True)
    o = jnp.einsum('bhqk,bhkd->bhqd', p.astype(v.dtype), v, preferred_element_type=jnp.float32) / total
    return o.astype(v.dtype), (m + jnp.log(total))[..., 0]
  o, lse = jax.lax.map(block, _blocks(q, size))
  return _unblock(o), lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _attention(q, k, v, size):
  return _forward(q, k, v, size)[0]


def _attention_fwd(q, k, v, size):
  o, lse = _forward(q, k, v, size)
  return o, (q, k, v, o, lse)


def _attention_bwd(size, residuals, do):
  q, k, v, o, lse = residuals

  def block(carry, xs):
    dk, dv = carry
    qb, dob, ob, lseb = xs
    # d softmax: dS = P * (dP - rowsum(dO * O)).
    delta = jnp.sum(dob.astype(jnp.float32) * ob.astype(jnp.float32), axis=-1)
    # Keys first: (B, H, M, q) blocks make dv and dk plain matmuls.
    pt = jnp.exp(jnp.einsum('bhkd,bhqd->bhkq', k, qb, preferred_element_type=jnp.float32) - lseb[:, :, None, :])
    dv += jnp.einsum('bhkq,bhqd->bhkd', pt.astype(dob.dtype), dob, preferred_element_type=jnp.float32)
    dpt = jnp.einsum('bhkd,bhqd->bhkq', v, dob, preferred_element_type=jnp.float32)
    dst = (pt * (dpt - delta[:, :, None, :])).astype(qb.dtype)
    dk += jnp.einsum('bhkq,bhqd->bhkd', dst, qb, preferred_element_type=jnp.float32)
    dq = jnp.einsum('bhkq,bhkd->bhqd', dst, k, preferred_element_type=jnp.float32)
    return (dk, dv), dq.astype(qb.dtype)

  zeros = jnp.zeros(k.shape, jnp.float32)
  blocks = (_blocks(q, size), _blocks(do, size), _blocks(o, size), lse)
  (dk, dv), dq = jax.lax.scan(block, (zeros, zeros), blocks)
  return _unblock(dq), dk.astype(k.dtype), dv.astype(v.dtype)


_attention.defvjp(_attention_fwd, _attention_bwd)


def blockwise_attention(q, k, v, block=BLOCK):
  """softmax(q k^T / sqrt(d)) v for q (B, N, H, d), k and v (B, M, H, d) -> (B, N, H, d), in query blocks.

  N is split into equal blocks of at most about `block` queries (padded by fewer rows than there are blocks).
  """
  n = q.shape[1]
  num_blocks = math.ceil(n / block)
  size = math.ceil(n / num_blocks)
  heads_first = lambda x: x.transpose(0, 2, 1, 3)
  q = heads_first(q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype))
  pad = num_blocks * size - n
  if pad:  # extra zero queries: their rows are dropped, and their zero output gradient adds nothing to dk, dv
    q = jnp.pad(q, ((0, 0), (0, 0), (0, pad), (0, 0)))
  out = _attention(q, heads_first(k), heads_first(v), size)
  return heads_first(out[:, :, :n])
