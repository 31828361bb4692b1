"""The VideoMAE video ViT encoder (the paper's Eqs. 1-3), in the original VideoMAE/MAE-DFER parameter layout.

Tubelets of `tubelet x patch x patch` pixels become tokens in (t, h, w) raster order, a fixed 1-D sinusoid table
is added, then `depth` pre-norm blocks. The output F is the token sequence after the last block, before any norm
(VideoMAE fine-tuning pools first, then applies `fc_norm`).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mtcae_jax.models import attention, layer_stack, layers

# width, depth, heads, MLP width. 'tiny' is for tests.
VARIANTS = {
    'tiny': (32, 2, 2, 64),
    'S/16': (384, 12, 6, 1536),
    'B/16': (768, 12, 12, 3072),
    'L/16': (1024, 24, 16, 4096),
    'H/16': (1280, 32, 16, 5120),
}


@dataclasses.dataclass(frozen=True)
class EncoderSize:
  """What both encoders (VideoMAE ViT, MAE-DFER LGI-Former) are sized by: widths, tubelet grid, norms."""
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  patch_size: int = 16
  tubelet_size: int = 2
  num_frames: int = 16
  image_size: int = 224
  qkv_bias: bool = True
  drop_path: float = 0.0  # stochastic depth, increasing linearly to this rate in the last block
  ln_eps: float = 1e-6

  @property
  def grid(self):
    """Token grid (T', H', W') of the tubelets."""
    return token_grid(self)


@dataclasses.dataclass(frozen=True)
class ViTConfig(EncoderSize):
  layer_scale_init: float = 0.0  # 0 disables VideoMAE's layer scale (gamma_1, gamma_2)

  @property
  def num_tokens(self):
    return int(np.prod(self.grid))


def token_grid(cfg):
  """(T', H', W') tubelets of a config with num_frames, image_size, tubelet_size and patch_size."""
  if cfg.num_frames % cfg.tubelet_size or cfg.image_size % cfg.patch_size:
    raise ValueError(f'{cfg.num_frames} frames of {cfg.image_size} px do not tile into tubelets of '
                     f'{cfg.tubelet_size}x{cfg.patch_size}x{cfg.patch_size}')
  side = cfg.image_size // cfg.patch_size
  return cfg.num_frames // cfg.tubelet_size, side, side


def vit_config(variant, **overrides):
  """A ViTConfig from a named variant ('L/16', ...), with any field overridden."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown ViT variant {variant!r}; known: {sorted(VARIANTS)}')
  width, depth, heads, mlp = VARIANTS[variant]
  fields = dict(width=width, depth=depth, num_heads=heads, mlp_dim=mlp, patch_size=int(variant.split('/')[-1])
                if '/' in variant else 16)
  fields.update({k: v for k, v in overrides.items() if v is not None})
  return ViTConfig(**fields)


def sinusoid_table(num_positions, dim):
  """VideoMAE's fixed position table: sin on even channels, cos on odd, built in float64 for parity."""
  pos = np.arange(num_positions, dtype=np.float64)[:, None]
  angle = pos / np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)
  table = np.where(np.arange(dim) % 2 == 0, np.sin(angle), np.cos(angle))
  return table.astype(np.float32)


class TubeletEmbed(nnx.Module):
  """The Conv3d patch embedding written as patchify + matmul (same kernel layout (t, p, p, C, D), faster)."""

  def __init__(self, cfg: ViTConfig, *, dtype, rngs):
    t, p = cfg.tubelet_size, cfg.patch_size
    shape = (t, p, p, 3, cfg.width)
    self.kernel = nnx.Param(layers.logical(layers.INIT, None, None, None, None, 'embed')(
        rngs.params(), shape, jnp.float32))
    self.bias = nnx.Param(jnp.zeros((cfg.width,), jnp.float32))
    self.cfg, self.dtype = cfg, dtype

  def __call__(self, video):
    b, n_frames, h, w, c = video.shape
    t, p = self.cfg.tubelet_size, self.cfg.patch_size
    x = video.reshape(b, n_frames // t, t, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, -1, t * p * p * c)
    kernel = self.kernel[...].reshape(-1, self.cfg.width).astype(self.dtype)
    return x.astype(self.dtype) @ kernel + self.bias[...].astype(self.dtype)


class Block(nnx.Module):
  """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each optionally layer-scaled."""

  def __init__(self, cfg: ViTConfig, *, impl, dtype, rngs):
    d = cfg.width
    self.norm1 = layers.layer_norm(d, eps=cfg.ln_eps, dtype=dtype, rngs=rngs)
    self.attn = attention.SelfAttention(d, cfg.num_heads, qkv_bias=cfg.qkv_bias, impl=impl, dtype=dtype, rngs=rngs)
    self.norm2 = layers.layer_norm(d, eps=cfg.ln_eps, dtype=dtype, rngs=rngs)
    self.mlp = layers.Mlp(d, cfg.mlp_dim, d, dtype=dtype, rngs=rngs)
    scale = lambda: (nnx.Param(jnp.full((d,), cfg.layer_scale_init, jnp.float32))
                     if cfg.layer_scale_init else None)
    self.gamma_1, self.gamma_2 = scale(), scale()

  def __call__(self, x, rate=0.0, key=None):
    k1, k2 = jax.random.split(key) if key is not None else (None, None)
    y = self.attn(self.norm1(x))
    if self.gamma_1 is not None:
      y = y * self.gamma_1[...].astype(y.dtype)
    x = x + layers.drop_path(y, rate, k1)
    y = self.mlp(self.norm2(x))
    if self.gamma_2 is not None:
      y = y * self.gamma_2[...].astype(y.dtype)
    return x + layers.drop_path(y, rate, k2)


class VideoViT(nnx.Module):
  """video (B, T, H, W, 3), normalised -> tokens F (B, N, D)."""

  def __init__(self, cfg: ViTConfig, *, impl='einsum', dtype=jnp.float32, scan=True, remat='none', rngs):
    self.cfg, self.dtype, self.scan, self.remat = cfg, dtype, scan, remat
    self.patch_embed = TubeletEmbed(cfg, dtype=dtype, rngs=rngs)
    self.blocks = layer_stack.make_stack(lambda r: Block(cfg, impl=impl, dtype=dtype, rngs=r), cfg.depth, rngs)

  def __call__(self, video, *, key=None):
    cfg = self.cfg
    if video.shape[1:] != (cfg.num_frames, cfg.image_size, cfg.image_size, 3):
      raise ValueError(f'encoder expects video of shape (B, {cfg.num_frames}, {cfg.image_size}, '
                       f'{cfg.image_size}, 3), got {video.shape}')
    x = self.patch_embed(video)
    x = x + jnp.asarray(sinusoid_table(cfg.num_tokens, cfg.width), self.dtype)
    per_layer = {'rate': jnp.linspace(0.0, cfg.drop_path, cfg.depth)}
    if key is not None:
      per_layer['key'] = layer_stack.layer_keys(key, cfg.depth)
    return layer_stack.apply_stack(self.blocks, x, per_layer=per_layer, scan=self.scan, remat=self.remat)
