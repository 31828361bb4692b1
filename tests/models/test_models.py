"""The model: every strategy runs, full-size shapes and counts, scan == unrolled, bfloat16 ~ float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mtcae_jax import models
from mtcae_jax.configs import default
from mtcae_jax.models import attention, layer_stack, mtcae, vit
from tests.conftest import split_call, tiny_config


@pytest.mark.parametrize('strategy', mtcae.STRATEGIES)
def test_every_strategy_runs_under_jit(strategy, build, video):
  model = build(tiny_config(strategy))
  fn, state = split_call(model)
  for key in (None, jax.random.key(0)):  # evaluation, and training with dropout
    out = fn(state, video, key)
    assert out['logits'].shape == (2, 7) and out['logits'].dtype == jnp.float32
    assert out['tokens'].shape == (2, 8, 32)
    if strategy == 'stl':
      assert 'boxes' not in out and 'landmarks' not in out
    else:
      assert out['boxes'].shape == (2, 4, 4) and out['boxes'].dtype == jnp.float32
      assert out['landmarks'].shape == (2, 4, 5, 2)
      assert all(f.shape == (2, 8, 16) for f in out['stage_features'].values())
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(out))
  assert set(out['stage_features']) == {'stl': {'expression'}, 'shared_mlp': {'shared', *mtcae.TASKS},
                                        'shared_vit': {'shared', *mtcae.TASKS}}.get(strategy, set(mtcae.TASKS))


def test_dropout_is_active_only_with_a_key(build, video):
  fn, state = split_call(build(tiny_config()))
  eval1, eval2 = fn(state, video, None), fn(state, video, None)
  train = fn(state, video, jax.random.key(1))
  np.testing.assert_array_equal(eval1['logits'], eval2['logits'])
  assert not np.allclose(eval1['logits'], train['logits'])


def test_cascade_feeds_each_stage_the_previous_one(build, video):
  """Changing only the boxes decoder changes every later stage (cascaded) but no other task (nonshared)."""
  for strategy, changes_later in (('cascaded', True), ('nonshared_vit', False)):
    model = build(tiny_config(strategy))
    fn, state = split_call(model)
    before = fn(state, video)
    model.decoders['boxes'].layers.mlp.fc2.bias[...] += 0.5
    after = fn(nnx.state(model), video)
    assert not np.allclose(before['boxes'], after['boxes'])
    assert (not np.allclose(before['logits'], after['logits'])) == changes_later
    assert (not np.allclose(before['landmarks'], after['landmarks'])) == changes_later


def test_l16_encoder_parameter_count_and_full_model_shapes():
  config = default.get_config()  # ViT-L/16, cascaded, 16 x 224 x 224
  model = models.abstract_model(config)
  encoder_params = sum(np.prod(v.shape) for v in jax.tree.leaves(nnx.state(model.encoder, nnx.Param)))
  assert encoder_params == 303_858_688
  graphdef, state = nnx.split(model)
  out = jax.eval_shape(lambda s, v: nnx.merge(graphdef, s)(v), state,
                       jax.ShapeDtypeStruct((2, 16, 224, 224, 3), jnp.float32))
  assert out['tokens'].shape == (2, 1568, 1024)
  assert out['boxes'].shape == (2, 16, 4)
  assert out['landmarks'].shape == (2, 16, 5, 2)
  assert out['logits'].shape == (2, 7)
  assert [out['stage_features'][t].shape for t in mtcae.TASKS] == [(2, 1568, 512)] * 3


def videomae_encoder_params(width, depth, mlp):
  """VideoMAE's encoder, counted by hand: Conv3d 2x16x16 embedding, then per block two LayerNorms, qkv without
  bias plus q and v biases, proj, fc1 and fc2."""
  block = 2 * 2 * width + 3 * width * width + 2 * width + width * width + width + width * mlp + mlp + mlp * width
  return 3 * 2 * 16 * 16 * width + width + depth * (block + width)


@pytest.mark.parametrize('variant', ['S/16', 'B/16', 'L/16', 'H/16'])
def test_variants_have_videomae_sizes(variant):
  width, depth, _, mlp = vit.VARIANTS[variant]
  model = models.abstract_model(default.get_config(f'variant={variant}'))
  count = sum(np.prod(v.shape) for v in jax.tree.leaves(nnx.state(model.encoder, nnx.Param)))
  assert count == videomae_encoder_params(width, depth, mlp)


def test_scanned_and_unrolled_give_the_same_result(video):
  scanned = models.build_model(tiny_config(), rngs=nnx.Rngs(0))
  unrolled = models.build_model(tiny_config(layer_loop='unroll'), rngs=nnx.Rngs(1))
  nnx.update(unrolled, nnx.state(scanned))  # same weights
  assert not unrolled.encoder.scan and not unrolled.decoders['boxes'].scan
  assert scanned.encoder.scan and scanned.decoders['boxes'].scan  # 'auto' scans except on GPUs
  a, b = (split_call(m)[0](nnx.state(m), video) for m in (scanned, unrolled))
  for name in ('tokens', 'boxes', 'landmarks', 'logits'):
    np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5)
  for t in mtcae.TASKS:
    np.testing.assert_allclose(a['stage_features'][t], b['stage_features'][t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('remat', ['full', 'dots', 'dots_no_batch'])
def test_remat_changes_neither_outputs_nor_gradients(remat, video):
  plain = models.build_model(tiny_config(), rngs=nnx.Rngs(0))
  rematted = models.build_model(tiny_config(remat=remat), rngs=nnx.Rngs(0))
  def grad(model):
    graphdef, state = nnx.split(model)
    loss = lambda s: sum(jnp.sum(v) for k, v in nnx.merge(graphdef, s)(video).items() if k in ('logits', 'boxes'))
    return jax.jit(jax.grad(loss))(state)
  ga, gb = grad(plain), grad(rematted)
  for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_stays_close_to_float32(video):
  f32 = models.build_model(tiny_config(), rngs=nnx.Rngs(0))
  bf16 = models.build_model(tiny_config(dtype='bfloat16'), rngs=nnx.Rngs(0))
  params = jax.tree.leaves(nnx.state(bf16, nnx.Param))
  assert all(p.dtype == jnp.float32 for p in params)  # float32 master weights
  a, b = split_call(f32)[0](nnx.state(f32), video), split_call(bf16)[0](nnx.state(bf16), video)
  assert b['tokens'].dtype == jnp.bfloat16
  for name in ('tokens', 'boxes', 'landmarks', 'logits'):
    ref = np.asarray(a[name], np.float32)
    err = np.abs(np.asarray(b[name], np.float32) - ref).max()
    assert err <= 0.05 * np.abs(ref).max(), (name, err)


def test_sinusoid_table_matches_the_videomae_formula():
  n, d = 7, 10
  table = vit.sinusoid_table(n, d)
  assert table.dtype == np.float32
  for pos in range(n):
    for j in range(d):
      angle = pos / 10000 ** (2 * (j // 2) / d)
      expected = np.sin(angle) if j % 2 == 0 else np.cos(angle)
      assert abs(table[pos, j] - expected) < 1e-7


def test_tubelet_embedding_equals_a_3d_convolution():
  cfg = vit.vit_config('tiny', num_frames=4, image_size=32)
  embed = vit.TubeletEmbed(cfg, dtype=jnp.float32, rngs=nnx.Rngs(0))
  video = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))
  conv = jax.lax.conv_general_dilated(video, embed.kernel[...], window_strides=(2, 16, 16), padding='VALID',
                                      dimension_numbers=('NTHWC', 'THWIO', 'NTHWC'),
                                      precision=jax.lax.Precision.HIGHEST)
  expected = (conv + embed.bias[...]).reshape(2, -1, cfg.width)  # (t, h, w) raster order
  np.testing.assert_allclose(embed(video), expected, rtol=1e-5, atol=1e-5)


def test_wrong_input_and_config_are_clear_errors(build):
  model = build(tiny_config())
  with pytest.raises(ValueError, match='expects video of shape'):
    model(jnp.zeros((1, 4, 48, 48, 3)))
  with pytest.raises(ValueError, match='do not tile'):
    c = tiny_config()
    c.image_size = 40
    models.build_model(c)
  with pytest.raises(ValueError, match='model.strategy'):
    models.build_model(tiny_config('cascade'))
  with pytest.raises(ValueError, match='unknown ViT variant'):
    models.build_model(default.get_config('variant=L/14'))
  with pytest.raises(ValueError, match='attention_impl'):
    models.build_model(tiny_config(attention_impl='flash'))


def test_temporal_pooling_regresses_each_slice_from_its_own_tokens(build, video):
  model = build(tiny_config(head=dict(pool='temporal', norm_first=True, dropout=0.0)))
  out = model(video)
  assert out['boxes'].shape == (2, 4, 4) and out['landmarks'].shape == (2, 4, 5, 2)
  head = model.heads['boxes']
  y = np.asarray(out['stage_features']['boxes'])  # (B, 8 tokens = 2 slices x 4, 16)
  mu, var = y.mean(-1, keepdims=True), y.var(-1, keepdims=True)
  normed = (y - mu) / np.sqrt(var + 1e-6) * np.asarray(head.norm.scale[...]) + np.asarray(head.norm.bias[...])
  pooled = normed.reshape(2, 2, 4, 16).mean(axis=2)  # per tubelet slice
  expected = pooled @ np.asarray(head.fc.kernel[...]) + np.asarray(head.fc.bias[...])
  np.testing.assert_allclose(out['boxes'], expected.reshape(2, 4, 4), rtol=1e-4, atol=1e-5)


def test_attention_implementations_agree():
  q, k, v = (jax.random.normal(jax.random.key(i), (2, 5, 3, 8)) for i in range(3))
  k, v = k[:, :4], v[:, :4]  # cross-attention shapes: 5 queries, 4 keys
  for impl in ('xla', 'blockwise'):
    np.testing.assert_allclose(attention.attend(q, k, v, impl='einsum'), attention.attend(q, k, v, impl=impl),
                               rtol=1e-5, atol=1e-6)
  if jax.default_backend() == 'cpu':
    assert attention.resolve_impl('auto', jnp.float32) == 'blockwise'  # measured fastest there


def test_cudnn_falls_back_to_xla_where_it_has_no_kernel(monkeypatch):
  # As jax does on a Hopper GPU: cuDNN refuses heads wider than 256 at trace time (the paper decoder's are 512).
  real, calls = jax.nn.dot_product_attention, []

  def gpu_like(q, k, v, implementation=None):
    calls.append(implementation)
    if implementation == 'cudnn':
      if q.shape[-1] > 256:
        raise NotImplementedError('The head dim must be <= 256')
      implementation = 'xla'  # stands in for the cuDNN kernel on this CPU
    return real(q, k, v, implementation=implementation)

  monkeypatch.setattr(jax.nn, 'dot_product_attention', gpu_like)
  for head_dim, expected_calls in ((64, ['cudnn']), (512, ['cudnn', 'xla'])):
    calls.clear()
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 6, 3, head_dim)) for i in range(3))
    np.testing.assert_allclose(attention.attend(q, k, v, impl='cudnn'), attention.attend(q, k, v, impl='einsum'),
                               rtol=1e-5, atol=1e-6)
    assert calls == expected_calls


def test_layer_loop_is_checked():
  assert layer_stack.scan_layers('scan') and not layer_stack.scan_layers('unroll')
  assert layer_stack.scan_layers('auto') == (jax.default_backend() != 'gpu')
  with pytest.raises(ValueError, match='layer_loop'):
    models.build_model(tiny_config(layer_loop='sometimes'))
