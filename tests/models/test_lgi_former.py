"""LGI-Former: sizes, region split, config errors, and its use as the encoder of every strategy.

Numerical parity with MAE-DFER's PyTorch code is checked in test_convert.py on the reference fixtures.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mtcae_jax import models
from mtcae_jax.configs import default
from mtcae_jax.models import lgi_former
from tests.conftest import split_call, tiny_config


def lgi_tiny_config(strategy='cascaded', **encoder):
  """4 frames of 32 px -> a 2x2x2 token grid in 2 regions of (2, 1, 2) tokens."""
  c = tiny_config(strategy)
  c.model.encoder.update(name='lgi_former', variant='tiny', region_size=(2, 1, 2), **encoder)
  return c


def test_lgi_512_parameter_count_and_token_layout():
  config = default.get_config('variant=LGI/512,strategy=stl')
  config.image_size = 160
  assert config.model.encoder.name == 'lgi_former'
  model = models.abstract_model(config)
  cfg = model.encoder.cfg
  assert (cfg.width, cfg.depth, cfg.num_heads, cfg.mlp_dim) == (512, 16, 8, 2048)
  assert cfg.grid == (8, 10, 10) and cfg.regions == (4, 2, 1) and cfg.num_regions == 8 and cfg.num_tokens == 800
  assert sum(np.prod(v.shape) for v in jax.tree.leaves(nnx.state(model.encoder, nnx.Param))) == 84_873_728


def test_regions_are_contiguous_blocks_of_the_raster_grid():
  cfg = lgi_former.lgi_config('tiny')  # 8x10x10 grid, regions (2, 5, 10)
  enc = nnx.eval_shape(lambda: lgi_former.LGIFormer(cfg, rngs=nnx.Rngs(0)))
  t, h, w = np.meshgrid(*map(np.arange, cfg.grid), indexing='ij')
  coords = jnp.asarray(np.stack([t, h, w], -1).reshape(1, -1, 3))  # raster order
  regions = np.asarray(enc._to_regions(coords)).reshape(cfg.num_regions, -1, 3)
  for r, (rt, rh, rw) in enumerate(np.ndindex(*cfg.regions)):
    assert {tuple(c) for c in regions[r]} == {(rt * 2 + i, rh * 5 + j, k)
                                              for i in range(2) for j in range(5) for k in range(10)}
  np.testing.assert_array_equal(enc._to_raster(enc._to_regions(coords), 1), coords)


@pytest.mark.parametrize('overrides,named', [
    (dict(image_size=224), ['(2, 5, 10)', '(8, 14, 14)']),
    (dict(num_frames=10), ['(2, 5, 10)', '(5, 10, 10)']),
    (dict(region_size=(2, 3, 10)), ['(2, 3, 10)', '(8, 10, 10)']),
])
def test_region_size_that_does_not_tile_the_grid_is_a_config_error(overrides, named):
  with pytest.raises(ValueError, match='region size') as e:
    lgi_former.lgi_config('LGI/512', **overrides)
  assert all(n in str(e.value) for n in named)


def test_lgi_config_defaults_to_160_px_and_224_px_names_the_problem():
  config = default.get_config('variant=LGI/512')
  assert (config.image_size, config.model.encoder.name) == (160, 'lgi_former')
  assert models.abstract_model(config).encoder.cfg.grid == (8, 10, 10)
  config.image_size = 224
  with pytest.raises(ValueError, match=r'\(2, 5, 10\).*\(8, 14, 14\)'):
    models.abstract_model(config)


def encode_fn(encoder):
  """A jitted (state, video, key) -> (local, region) tokens; eager scans recompile on every call."""
  graphdef, state = nnx.split(encoder)
  return jax.jit(lambda s, v, key=None: nnx.merge(graphdef, s).encode(v, key=key)), state


@pytest.mark.parametrize('strategy,tokens,n', [
    ('cascaded', 'local', 8), ('shared_mlp', 'local+region', 10), ('stl', 'region', 2)])
def test_every_strategy_runs_on_lgi_former(strategy, tokens, n, build, video):
  model = build(lgi_tiny_config(strategy, decoder_tokens=tokens))
  assert model.encoder.cfg.num_tokens == n
  fn, state = split_call(model)
  out = fn(state, video)
  assert out['tokens'].shape == (2, n, 32) and out['logits'].shape == (2, 7)
  assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(out))
  local, region = encode_fn(model.encoder)[0](nnx.state(model.encoder), video)
  expected = {'local': local, 'region': region, 'local+region': jnp.concatenate([local, region], axis=1)}[tokens]
  np.testing.assert_allclose(out['tokens'], expected, atol=1e-6)


def test_temporal_pooling_with_region_tokens_is_a_clear_error(build):
  config = lgi_tiny_config(decoder_tokens='local+region')
  config.model.head.pool = 'temporal'
  with pytest.raises(ValueError, match="decoder_tokens='local'"):
    build(config)


def test_scanned_and_unrolled_and_remat_agree(video):
  scanned = models.build_model(lgi_tiny_config('stl'), rngs=nnx.Rngs(0))
  fn, state = encode_fn(scanned.encoder)
  expected = fn(state, video)
  for overrides in (dict(layer_loop='unroll'), dict(remat='full')):
    config = lgi_tiny_config('stl')
    config.model.update(overrides)
    other = models.build_model(config, rngs=nnx.Rngs(1)).encoder
    nnx.update(other, nnx.state(scanned.encoder))
    fn, state = encode_fn(other)
    for a, b in zip(fn(state, video), expected):
      np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_local_token_reaches_other_regions_only_through_the_region_tokens(video):
  """With the global steps (2, 3) silenced, regions are independent: MAE-DFER's block structure."""
  enc = models.build_model(lgi_tiny_config('stl'), rngs=nnx.Rngs(0)).encoder
  fn, _ = encode_fn(enc)
  perturbed = video.at[:, :, :16].add(1.0)  # the top half of each frame: region 0 of the (2, 1, 2) split
  changed = lambda: np.abs(np.asarray(fn(nnx.state(enc), perturbed)[0] - fn(nnx.state(enc), video)[0])
                           ).reshape(2, 2, 2, 2, -1)  # (B, t, h, w, D)
  assert changed()[:, :, 1].max() > 1e-3  # the bottom half changes, through the region tokens
  for attn in (enc.blocks.second_attn, enc.blocks.third_attn):
    attn.proj.kernel[...] = jnp.zeros_like(attn.proj.kernel[...])
    attn.proj.bias[...] = jnp.zeros_like(attn.proj.bias[...])
  assert changed()[:, :, 1].max() == 0.0 and changed()[:, :, 0].max() > 1e-3


def test_drop_path_is_active_only_with_a_key(video):
  cfg = lgi_former.lgi_config('tiny', num_frames=4, image_size=32, region_size=(2, 1, 2), drop_path=0.5)
  fn, state = encode_fn(lgi_former.LGIFormer(cfg, rngs=nnx.Rngs(0)))
  np.testing.assert_array_equal(fn(state, video)[0], fn(state, video)[0])
  assert not np.allclose(fn(state, video, jax.random.key(1))[0], fn(state, video)[0])
