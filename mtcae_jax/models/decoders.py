"""The task decoders: `ViTDecoder` is the paper's Algorithm 1; `MLPDecoder` is its attention-free ablation.

Algorithm 1, with Y the query features and F the encoder tokens:

    K, V = Norm(Dense(F))                 once per decoder; fixed across layers
    repeat L times:
        Q  = Norm(Y)
        Z  = MHA(Q, K, V)
        Z' = Z + Y
        Y  = MLP(Norm(Z')) + Z'
"""

import dataclasses

import jax
from flax import nnx

from mtcae_jax.models import attention, layer_stack, layers


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  depth: int = 5
  width: int = 512
  num_heads: int = 3
  head_dim: int = 512  # per-head width, Keras `key_dim`: heads do not split the width
  mlp_dim: int = 1024
  mlp_final_gelu: bool = True  # the authors' Keras MLP applies GELU after both Dense layers
  dropout: float = 0.0
  attention_dropout: float = 0.0
  key_bias: bool = False  # Keras' MultiHeadAttention has one; it cannot change the output (softmax is shift-free)
  ln_eps: float = 1e-6


class DecoderLayer(nnx.Module):
  """One pass of Algorithm 1's loop (lines 4-8)."""

  def __init__(self, cfg: DecoderConfig, *, impl, dtype, rngs):
    w = cfg.width
    self.norm1 = layers.layer_norm(w, eps=cfg.ln_eps, dtype=dtype, rngs=rngs)
    self.attn = attention.CrossAttention(w, cfg.num_heads, cfg.head_dim, dropout_rate=cfg.attention_dropout,
                                         key_bias=cfg.key_bias, impl=impl, dtype=dtype, rngs=rngs)
    self.norm2 = layers.layer_norm(w, eps=cfg.ln_eps, dtype=dtype, rngs=rngs)
    self.mlp = layers.Mlp(w, cfg.mlp_dim, w, final_gelu=cfg.mlp_final_gelu, dropout_rate=cfg.dropout,
                          dtype=dtype, rngs=rngs)

  def __call__(self, y, kv, key=None):
    k1, k2 = jax.random.split(key) if key is not None else (None, None)
    z = self.attn(self.norm1(y), kv, kv, key=k1) + y
    return self.mlp(self.norm2(z), key=k2) + z


class MLPLayer(nnx.Module):
  """Y = MLP(Norm(Y)) + Y: a decoder layer without the attention."""

  def __init__(self, cfg: DecoderConfig, *, dtype, rngs):
    self.norm = layers.layer_norm(cfg.width, eps=cfg.ln_eps, dtype=dtype, rngs=rngs)
    self.mlp = layers.Mlp(cfg.width, cfg.mlp_dim, cfg.width, final_gelu=cfg.mlp_final_gelu,
                          dropout_rate=cfg.dropout, dtype=dtype, rngs=rngs)

  def __call__(self, y, key=None):
    return self.mlp(self.norm(y), key=key) + y


class _Decoder(nnx.Module):
  """Shared plumbing: project a query of another width, run the stacked layers."""

  def _init_query(self, query_dim, cfg, dtype, rngs):
    self.cfg = cfg
    self.query_proj = (layers.dense(query_dim, cfg.width, ('embed', 'mlp'), dtype=dtype, rngs=rngs)
                       if query_dim != cfg.width else None)

  def _run(self, y, *args, key, scan, remat):
    if self.query_proj is not None:
      y = self.query_proj(y)
    per_layer = {} if key is None else {'key': layer_stack.layer_keys(key, self.cfg.depth)}
    return layer_stack.apply_stack(self.layers, y, *args, per_layer=per_layer, scan=scan, remat=remat)


class ViTDecoder(_Decoder):
  """Algorithm 1. `y` (B, Nq, query_dim) queries; `f` (B, N, kv_dim) gives the fixed keys and values.

  With `project_kv=False`, `f` is already projected to the width (the authors' code projects F once for all
  three decoders: `MTCAE(feature_proj='shared')`); each decoder then only normalises it.
  """

  def __init__(self, query_dim, kv_dim, cfg: DecoderConfig, *, impl='einsum', dtype, scan=True, remat='none',
               project_kv=True, rngs):
    self._init_query(query_dim, cfg, dtype, rngs)
    self.scan, self.remat = scan, remat
    self.kv_proj = (layers.dense(kv_dim, cfg.width, ('embed', 'mlp'), use_bias=False, dtype=dtype, rngs=rngs)
                    if project_kv else None)
    self.kv_norm = layers.layer_norm(cfg.width, eps=cfg.ln_eps, dtype=dtype, rngs=rngs)
    self.layers = layer_stack.make_stack(lambda r: DecoderLayer(cfg, impl=impl, dtype=dtype, rngs=r), cfg.depth, rngs)

  def __call__(self, y, f, *, key=None):
    kv = self.kv_norm(self.kv_proj(f) if self.kv_proj is not None else f)
    return self._run(y, kv, key=key, scan=self.scan, remat=self.remat)


class MLPDecoder(_Decoder):
  """The MLP strategies' decoder: the query alone, through L residual MLP layers (`f` is unused)."""

  def __init__(self, query_dim, cfg: DecoderConfig, *, dtype, scan=True, remat='none', rngs):
    self._init_query(query_dim, cfg, dtype, rngs)
    self.scan, self.remat = scan, remat
    self.layers = layer_stack.make_stack(lambda r: MLPLayer(cfg, dtype=dtype, rngs=r), cfg.depth, rngs)

  def __call__(self, y, f=None, *, key=None):
    del f
    return self._run(y, key=key, scan=self.scan, remat=self.remat)
