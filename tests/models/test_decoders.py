"""ViTDecoder against a plain NumPy transcription of the paper's Algorithm 1, with the same weights."""

import math

import jax
import numpy as np
from flax import nnx

from mtcae_jax.models import decoders

ERF = np.vectorize(math.erf)


def layer_norm(x, p, eps=1e-6):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * p['scale'] + p['bias']


def gelu(x):
  return 0.5 * x * (1.0 + ERF(x / math.sqrt(2.0)))


def dense(x, p):
  return x @ p['kernel'] + p.get('bias', 0.0)


def mha(q, k, v, p, heads, head_dim):
  """Keras MultiHeadAttention: per-head projections of width head_dim, softmax(q k^T / sqrt(d)) v, output proj."""
  split = lambda x: x.reshape(x.shape[0], x.shape[1], heads, head_dim)
  q, k, v = split(dense(q, p['query'])), split(dense(k, p['key'])), split(dense(v, p['value']))
  logits = np.einsum('bnhd,bmhd->bhnm', q, k) / math.sqrt(head_dim)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  z = np.einsum('bhnm,bmhd->bnhd', probs, v).reshape(q.shape[0], q.shape[1], heads * head_dim)
  return dense(z, p['out'])


def algorithm_1(y, f, w, cfg):
  """Algorithm 1 of the paper, line by line."""
  if 'query_proj' in w:
    y = dense(y, w['query_proj'])
  # 2: K, V = Norm(Dense(F)); the authors' code projects F once for all decoders (no kv_proj here).
  k = v = layer_norm(dense(f, w['kv_proj']) if 'kv_proj' in w else f, w['kv_norm'])
  for l in range(cfg.depth):                                         # 3: while l <= L
    p = jax.tree.map(lambda a: a[l], w['layers'])
    q = layer_norm(y, p['norm1'])                                    # 4: Q = Norm(Y)
    z = mha(q, k, v, p['attn'], cfg.num_heads, cfg.head_dim)         # 5: Z = MHA(Q, K, V)
    z_prime = z + y                                                  # 6: Z' = Z + Y
    h = gelu(dense(layer_norm(z_prime, p['norm2']), p['mlp']['fc1']))
    y_prime = gelu(dense(h, p['mlp']['fc2']))                        # 7: Y' = MLP(Norm(Z'))
    y = y_prime + z_prime                                            # 8: Y = Y' + Z'
  return y


def test_vit_decoder_equals_algorithm_1():
  cfg = decoders.DecoderConfig(depth=3, width=12, num_heads=3, head_dim=7, mlp_dim=20)
  dec = decoders.ViTDecoder(10, 18, cfg, dtype=np.float32, rngs=nnx.Rngs(0))
  # Random norms and biases too, so a skipped or swapped tensor shows.
  state = nnx.state(dec, nnx.Param)
  keys = iter(jax.random.split(jax.random.key(1), 100))
  nnx.update(dec, jax.tree.map(lambda a: a + 0.3 * jax.random.normal(next(keys), a.shape), state))
  y = np.random.default_rng(0).normal(size=(2, 5, 10)).astype(np.float32)
  f = np.random.default_rng(1).normal(size=(2, 9, 18)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    got = nnx.jit(lambda d, y, f: d(y, f))(dec, y, f)
  weights = jax.tree.map(lambda a: np.asarray(a, np.float64), nnx.to_pure_dict(nnx.state(dec, nnx.Param)))
  expected = algorithm_1(y.astype(np.float64), f.astype(np.float64), weights, cfg)
  assert got.shape == (2, 5, 12)
  np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


def test_mlp_decoder_is_a_residual_mlp_stack():
  cfg = decoders.DecoderConfig(depth=2, width=8, mlp_dim=16, mlp_final_gelu=False)
  dec = decoders.MLPDecoder(8, cfg, dtype=np.float32, rngs=nnx.Rngs(0))
  y = np.random.default_rng(0).normal(size=(2, 3, 8))
  w = jax.tree.map(lambda a: np.asarray(a, np.float64), nnx.to_pure_dict(nnx.state(dec, nnx.Param)))
  expected = y
  for l in range(2):
    p = jax.tree.map(lambda a: a[l], w['layers'])
    expected = dense(gelu(dense(layer_norm(expected, p['norm']), p['mlp']['fc1'])), p['mlp']['fc2']) + expected
  with jax.default_matmul_precision('highest'):
    np.testing.assert_allclose(nnx.jit(lambda d, y: d(y))(dec, y.astype(np.float32)), expected, rtol=2e-5, atol=2e-5)
