"""Configs, analytic FLOPs against hand-counted formulas, and the summary command."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from mtcae_jax import models
from mtcae_jax.configs import crema_d, default, mead, ravdess
from mtcae_jax.measure import flops, summary
from mtcae_jax.models import vit
from tests.conftest import tiny_config


def test_configs_hold_the_papers_numbers():
  c = default.get_config()
  assert (c.num_frames, c.image_size, c.model.encoder.variant) == (16, 224, 'L/16')
  assert (c.model.decoder.depth, c.model.decoder.num_heads, c.model.decoder.width) == (5, 3, 512)
  assert (c.loss.boxes, c.loss.landmarks, c.loss.expression) == (0.5, 0.5, 1.5)
  assert (c.optimizer.learning_rate, c.optimizer.weight_decay) == (1e-3, 1e-3)
  assert [m.get_config().num_classes for m in (ravdess, crema_d, mead)] == [7, 6, 8]
  code = mead.get_config('variant=B/16,preset=paper_code')
  assert code.model.encoder.variant == 'B/16' and code.num_classes == 8
  assert (code.model.decoder.depth, code.model.decoder.width, code.model.decoder.head_dim) == (3, 256, 256)
  # The authors' code: no LayerNorm on the encoder output, one shared projection of F, dropout 0.3 on F and in
  # the attention.
  assert code.model.encoder.frozen and not code.model.encoder.output_norm and not code.model.head.norm_first
  assert (code.model.feature_proj, code.model.feature_dropout, code.model.decoder.attention_dropout) == (
      'shared', 0.3, 0.3)
  with pytest.raises(ValueError, match='bad config argument'):
    default.get_config('varient=B/16')
  with pytest.raises(ValueError, match='preset'):
    default.get_config('preset=paper-code')


def vit_encoder_flops(n, d, depth, mlp, patch_dim):
  """Forward matmul FLOPs of a ViT encoder on n tokens: embedding, then per block qkv, q k^T, attn v, proj, MLP."""
  return 2 * n * patch_dim * d + depth * (2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * mlp)


def vit_decoder_flops(nq, nk, dq, dk, w, heads, head_dim, mlp, depth):
  inner = heads * head_dim
  per_layer = (2 * nq * w * inner + 2 * 2 * nk * w * inner + 2 * 2 * nq * nk * inner + 2 * nq * inner * w
               + 2 * 2 * nq * w * mlp)
  return 2 * nk * dk * w + (2 * nq * dq * w if dq != w else 0) + depth * per_layer


def test_flop_count_matches_the_formulas():
  config = default.get_config('variant=S/16')
  got = summary.clip_flops(config)
  width, depth, _, mlp = vit.VARIANTS['S/16']
  enc = vit_encoder_flops(1568, width, depth, mlp, 2 * 16 * 16 * 3)
  assert got['encoder_forward'] == enc
  dec = config.model.decoder
  decoder = lambda dq: vit_decoder_flops(1568, 1568, dq, width, dec.width, dec.num_heads, dec.head_dim,
                                         dec.mlp_dim, dec.depth)
  heads = 2 * dec.width * (16 * 4 + 16 * 10 + config.num_classes)
  assert got['forward'] == enc + decoder(width) + 2 * decoder(dec.width) + heads
  # The backward pass costs two forward passes of matmuls, minus the input gradient of the first layer.
  assert 2.9 * got['forward'] < got['forward_backward'] <= 3 * got['forward']


def test_flop_counter_handles_scan_and_cond():
  w = jnp.ones((6, 4, 4))
  scanned = lambda x, w: jax.lax.scan(lambda c, wi: (c @ wi, None), x, w)[0]
  assert flops.count_flops(scanned, jnp.ones((3, 4)), w) == 6 * 2 * 3 * 4 * 4
  branchy = lambda p, x: jax.lax.cond(p, lambda x: x @ x @ x, lambda x: x @ x, x)
  assert flops.count_flops(branchy, True, jnp.ones((5, 5))) == 2 * 2 * 5 * 5 * 5


def test_parameter_counts_add_up():
  model = models.abstract_model(tiny_config('shared_vit'))
  counts = summary.parameter_counts(model)
  assert list(counts)[:2] == ['encoder', 'shared_decoder']
  assert counts['total'] == sum(v for k, v in counts.items() if k != 'total')
  assert counts['total'] == sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_summary_command_prints_the_l16_numbers():
  out = subprocess.run([sys.executable, '-m', 'mtcae_jax.measure.summary', '--config=configs/mead.py',
                        '--config.model.strategy=nonshared_vit'], capture_output=True, text=True, check=True).stdout
  assert 'strategy=nonshared_vit' in out
  assert 'encoder                          303,858,688' in out
  assert 'logits' in out and '(1, 8)' in out and '(1, 16, 5, 2)' in out
  assert 'forward+backward' in out
