"""Models: the VideoMAE ViT encoder, the ViT/MLP decoders, task heads and the MTCAE strategies."""

import jax.numpy as jnp
from flax import nnx

from mtcae_jax.models import attention, decoders, heads, layer_stack, lgi_former, mtcae, vit


def make_encoder(config, *, impl, dtype, rngs):
  """The encoder named by `config.model.encoder.name` ('vit' or 'lgi_former'), sized by its variant and the input."""
  enc, m = config.model.encoder, config.model
  kw = dict(impl=impl, dtype=dtype, scan=layer_stack.scan_layers(m.layer_loop), remat=m.remat, rngs=rngs)
  if enc.name == 'lgi_former':
    if enc.layer_scale_init:
      raise ValueError('LGI-Former has no layer scale: model.encoder.layer_scale_init must be 0')
    if enc.decoder_tokens != 'local' and m.strategy != 'stl' and m.head.pool == 'temporal':
      raise ValueError("model.head.pool='temporal' needs the encoder's tokens in raster order: use "
                       f"model.encoder.decoder_tokens='local', not {enc.decoder_tokens!r}")
    cfg = lgi_former.lgi_config(enc.variant, tubelet_size=enc.tubelet_size, num_frames=config.num_frames,
                                image_size=config.image_size, region_size=tuple(enc.region_size),
                                decoder_tokens=enc.decoder_tokens, drop_path=enc.drop_path, ln_eps=enc.ln_eps)
    return lgi_former.LGIFormer(cfg, **kw)
  if enc.name != 'vit':
    raise ValueError(f"model.encoder.name must be 'vit' or 'lgi_former', got {enc.name!r}")
  cfg = vit.vit_config(enc.variant, tubelet_size=enc.tubelet_size, num_frames=config.num_frames,
                       image_size=config.image_size, layer_scale_init=enc.layer_scale_init,
                       drop_path=enc.drop_path, ln_eps=enc.ln_eps)
  cfg.grid  # validates that the input tiles into tubelets
  return vit.VideoViT(cfg, **kw)


def build_model(config, *, rngs=None):
  """The MTCAE model described by `config.model` (a ConfigDict from `configs/`)."""
  m = config.model
  rngs = rngs if rngs is not None else nnx.Rngs(config.get('seed', 0))
  dtype = jnp.dtype(m.dtype)
  impl = attention.resolve_impl(m.attention_impl, dtype)
  decoder_cfg = decoders.DecoderConfig(**m.decoder.to_dict())
  return mtcae.MTCAE(
      make_encoder(config, impl=impl, dtype=dtype, rngs=rngs), strategy=m.strategy, decoder_cfg=decoder_cfg,
      head_cfg=m.head, num_classes=config.num_classes, num_landmarks=m.num_landmarks,
      encoder_norm=m.encoder.output_norm, feature_proj=m.get('feature_proj', 'per_decoder'),
      feature_dropout=m.get('feature_dropout', 0.0), impl=impl, dtype=dtype, scan=layer_stack.scan_layers(m.layer_loop),
      remat=m.remat, rngs=rngs)


def abstract_model(config):
  """The model's shapes and dtypes without allocating parameters (`nnx.eval_shape`)."""
  return nnx.eval_shape(lambda: build_model(config, rngs=nnx.Rngs(0)))
