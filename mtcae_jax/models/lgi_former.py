"""LGI-Former, MAE-DFER's encoder (Sun et al., ACM MM 2023), in MAE-DFER's parameter layout.

Tubelet tokens of the (T', H', W') grid (8x10x10 at 160 px, 16 frames) are split into regions of `region_size`
tokens ((2,5,10): 8 regions of 100). Each region gets a learned region ("messenger") token `lg_region_tokens`.
Every LGBlock then runs, with pre-norm residuals:

  1. local attention:  each region token and its local tokens attend among themselves (self-attention, 1+100 tokens)
  2. global attention: the region tokens of a video attend among themselves (self-attention, 8 tokens)
  3. local-global:     every local token queries the region tokens (cross-attention, 800 queries x 8 keys)
  4. MLP on all tokens.

Inside the blocks the tokens are kept as MAE-DFER keeps them, (B*R, 1+S, D) with the region token first, so the
per-sample stochastic depth of steps 1 and 4 drops whole regions as in PyTorch. The outputs are put back into
(t, h, w) raster order, so a decoder sees the same token layout as from the plain ViT.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from mtcae_jax.models import attention, layer_stack, layers, vit

# width, depth, heads, MLP width. 'tiny' is for tests.
VARIANTS = {
    'tiny': (32, 2, 2, 64),
    'LGI/512': (512, 16, 8, 2048),  # MAE-DFER's vit_base_dim512_no_depth_patch16_160 with --depth 16
}
POOLS = ('region', 'org', 'all')  # MAE-DFER's lg_classify_token_type: region tokens, local tokens, or both
DECODER_TOKENS = ('local', 'local+region', 'region')


@dataclasses.dataclass(frozen=True)
class LGIConfig(vit.EncoderSize):
  image_size: int = 160
  region_size: tuple = (2, 5, 10)  # (t, h, w) tokens per region
  pool: str = 'region'  # which tokens the classifier (fc_norm + head) averages
  # What `__call__` returns to the decoders: the local tokens in raster order, those followed by the region tokens,
  # or the region tokens alone (with the `stl` strategy the last is MAE-DFER's classifier exactly).
  decoder_tokens: str = 'local'

  def __post_init__(self):
    object.__setattr__(self, 'region_size', tuple(int(s) for s in self.region_size))
    if self.pool not in POOLS:
      raise ValueError(f'LGI-Former pool must be one of {POOLS}, got {self.pool!r}')
    if self.decoder_tokens not in DECODER_TOKENS:
      raise ValueError(f'model.encoder.decoder_tokens must be one of {DECODER_TOKENS}, got {self.decoder_tokens!r}')
    if self.width % self.num_heads:
      raise ValueError(f'width {self.width} is not divisible by {self.num_heads} heads')
    grid = self.grid
    if len(self.region_size) != 3 or any(s <= 0 or g % s for g, s in zip(grid, self.region_size)):
      raise ValueError(f'LGI-Former region size {self.region_size} does not tile the token grid {grid} '
                       f'({self.num_frames} frames at {self.image_size} px); LGI/512 with region size '
                       f'{LGIConfig.region_size} needs {LGIConfig.num_frames} frames at {LGIConfig.image_size} px')

  @property
  def regions(self):
    """Number of regions along (t, h, w)."""
    return tuple(g // s for g, s in zip(self.grid, self.region_size))

  @property
  def num_regions(self):
    return math.prod(self.regions)

  @property
  def num_local_tokens(self):
    return math.prod(self.grid)

  @property
  def num_tokens(self):
    """Tokens returned by `__call__` (what the decoders attend to)."""
    return {'local': self.num_local_tokens, 'local+region': self.num_local_tokens + self.num_regions,
            'region': self.num_regions}[self.decoder_tokens]


def lgi_config(variant, **overrides):
  """An LGIConfig from a named variant ('LGI/512', 'tiny'), with any field overridden."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown LGI-Former variant {variant!r}; known: {sorted(VARIANTS)}')
  width, depth, heads, mlp = VARIANTS[variant]
  fields = dict(width=width, depth=depth, num_heads=heads, mlp_dim=mlp)
  fields.update({k: v for k, v in overrides.items() if v is not None})
  return LGIConfig(**fields)


class Attention(nnx.Module):
  """MAE-DFER's GeneralAttention: `q` and `kv` projections without bias, learned q and v biases (k bias zero).

  Self-attention when `context` is None, else the tokens `x` query `context`.
  """

  def __init__(self, dim, num_heads, *, qkv_bias=True, impl='einsum', dtype, rngs):
    self.num_heads, self.impl = num_heads, impl
    self.q = layers.dense(dim, dim, ('embed', 'heads'), use_bias=False, dtype=dtype, rngs=rngs)
    self.kv = layers.dense(dim, 2 * dim, ('embed', 'heads'), use_bias=False, dtype=dtype, rngs=rngs)
    zeros = layers.logical(nnx.initializers.zeros_init(), 'heads')
    self.q_bias = nnx.Param(zeros(rngs.params(), (dim,))) if qkv_bias else None
    self.v_bias = nnx.Param(zeros(rngs.params(), (dim,))) if qkv_bias else None
    self.proj = layers.dense(dim, dim, ('heads', 'embed'), dtype=dtype, rngs=rngs)

  def __call__(self, x, context=None):
    context = x if context is None else context
    q, kv = self.q(x), self.kv(context)
    if self.q_bias is not None:
      q = q + self.q_bias[...].astype(q.dtype)
      kv = kv + jnp.concatenate([jnp.zeros_like(self.v_bias[...]), self.v_bias[...]]).astype(kv.dtype)
    heads = lambda a: a.reshape(a.shape[:-1] + (self.num_heads, -1))
    k, v = jnp.split(kv, 2, axis=-1)
    out = attention.attend(heads(q), heads(k), heads(v), impl=self.impl)
    return self.proj(out.reshape(x.shape[:-1] + (-1,)))


class LGBlock(nnx.Module):
  """One LGI-Former block on x (B*R, 1+S, D): region token first, then its S local tokens."""

  def __init__(self, cfg: LGIConfig, *, impl, dtype, rngs):
    d, h = cfg.width, cfg.num_heads
    norm = lambda: layers.layer_norm(d, eps=cfg.ln_eps, dtype=dtype, rngs=rngs)
    attn = lambda: Attention(d, h, qkv_bias=cfg.qkv_bias, impl=impl, dtype=dtype, rngs=rngs)
    self.num_regions = cfg.num_regions
    self.first_attn_norm0, self.first_attn = norm(), attn()
    self.second_attn_norm0, self.second_attn = norm(), attn()
    self.third_attn_norm0, self.third_attn_norm1, self.third_attn = norm(), norm(), attn()
    self.norm2 = norm()
    self.mlp = layers.Mlp(d, cfg.mlp_dim, d, dtype=dtype, rngs=rngs)

  def __call__(self, x, rate=0.0, key=None):
    k1, k2, k3, k4 = jax.random.split(key, 4) if key is not None else (None,) * 4
    br, s1, d = x.shape
    r = self.num_regions
    # 1. Intra-region self-attention (stochastic depth per region, as MAE-DFER's DropPath on (B*R, ...)).
    x = x + layers.drop_path(self.first_attn(self.first_attn_norm0(x)), rate, k1)
    # 2. Inter-region self-attention among the region tokens of each video.
    region = x[:, 0].reshape(br // r, r, d)
    region = region + layers.drop_path(self.second_attn(self.second_attn_norm0(region)), rate, k2)
    # 3. Local tokens of the whole video query the updated region tokens.
    local = x[:, 1:].reshape(br // r, r * (s1 - 1), d)
    local = local + layers.drop_path(
        self.third_attn(self.third_attn_norm0(local), self.third_attn_norm1(region)), rate, k3)
    x = jnp.concatenate([region.reshape(br, 1, d), local.reshape(br, s1 - 1, d)], axis=1)
    # 4. MLP on every token.
    return x + layers.drop_path(self.mlp(self.norm2(x)), rate, k4)


class LGIFormer(nnx.Module):
  """video (B, T, H, W, 3), normalised -> tokens (B, num_tokens, D); `encode` also gives the region tokens."""

  def __init__(self, cfg: LGIConfig, *, impl='einsum', dtype=jnp.float32, scan=True, remat='none', rngs):
    self.cfg, self.dtype, self.scan, self.remat = cfg, dtype, scan, remat
    self.patch_embed = vit.TubeletEmbed(cfg, dtype=dtype, rngs=rngs)
    self.lg_region_tokens = nnx.Param(layers.logical(nnx.initializers.truncated_normal(0.02), None, 'embed')(
        rngs.params(), (cfg.num_regions, cfg.width), jnp.float32))
    self.blocks = layer_stack.make_stack(lambda r: LGBlock(cfg, impl=impl, dtype=dtype, rngs=r), cfg.depth, rngs)

  def _to_regions(self, x):
    """(B, T'H'W', D) raster -> (B*R, S, D), regions and tokens within a region both in (t, h, w) order."""
    (nt, nh, nw), (t, h, w) = self.cfg.regions, self.cfg.region_size
    b, _, d = x.shape
    x = x.reshape(b, nt, t, nh, h, nw, w, d).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(b * nt * nh * nw, t * h * w, d)

  def _to_raster(self, x, b):
    """Inverse of `_to_regions`: (B*R, S, D) -> (B, T'H'W', D)."""
    (nt, nh, nw), (t, h, w) = self.cfg.regions, self.cfg.region_size
    x = x.reshape(b, nt, nh, nw, t, h, w, x.shape[-1]).transpose(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, nt * t * nh * h * nw * w, x.shape[-1])

  def encode(self, video, *, key=None):
    """-> (local tokens (B, T'H'W', D) in raster order, region tokens (B, R, D)), after the last block."""
    cfg = self.cfg
    if video.shape[1:] != (cfg.num_frames, cfg.image_size, cfg.image_size, 3):
      raise ValueError(f'encoder expects video of shape (B, {cfg.num_frames}, {cfg.image_size}, '
                       f'{cfg.image_size}, 3), got {video.shape}')
    b = video.shape[0]
    x = self.patch_embed(video)
    x = x + jnp.asarray(vit.sinusoid_table(cfg.num_local_tokens, cfg.width), self.dtype)
    region = jnp.broadcast_to(self.lg_region_tokens[...].astype(self.dtype), (b, cfg.num_regions, cfg.width))
    x = jnp.concatenate([region.reshape(-1, 1, cfg.width), self._to_regions(x)], axis=1)
    per_layer = {'rate': jnp.linspace(0.0, cfg.drop_path, cfg.depth)}
    if key is not None:
      per_layer['key'] = layer_stack.layer_keys(key, cfg.depth)
    x = layer_stack.apply_stack(self.blocks, x, per_layer=per_layer, scan=self.scan, remat=self.remat)
    return self._to_raster(x[:, 1:], b), x[:, 0].reshape(b, cfg.num_regions, cfg.width)

  def __call__(self, video, *, key=None):
    local, region = self.encode(video, key=key)
    if self.cfg.decoder_tokens == 'local':
      return local
    if self.cfg.decoder_tokens == 'region':
      return region
    return jnp.concatenate([local, region], axis=1)

  def pool(self, local, region):
    """The classifier's input before fc_norm: the mean of the tokens MAE-DFER's `lg_classify_token_type` names."""
    if self.cfg.pool == 'region':
      return region.mean(axis=1)
    if self.cfg.pool == 'org':
      return local.mean(axis=1)
    return jnp.concatenate([local, region], axis=1).mean(axis=1)
