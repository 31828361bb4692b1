"""`preset=paper_code` is the authors' Keras model: its parameter count, and its data flow against a NumPy
transcription of their notebook (one shared Dense on F, the decoders' keys/values and first query)."""

import subprocess
import sys

import jax
import numpy as np
from flax import nnx

from mtcae_jax import models
from mtcae_jax.configs import ravdess
from mtcae_jax.measure import summary
from tests.conftest import tiny_config
from tests.models.test_decoders import algorithm_1, dense, layer_norm

# The authors' Keras summary for RAVDESS (7 classes): trainable beside the frozen VideoMAE ViT-L/16.
KERAS_TRAINABLE, KERAS_FROZEN = 9_800_935, 303_858_688


def test_paper_code_has_the_keras_parameter_counts():
  config = ravdess.get_config('preset=paper_code')
  model = models.abstract_model(config)
  frozen = summary.parameter_counts(model)['encoder']
  assert (summary.trainable_count(model, config), frozen) == (KERAS_TRAINABLE, KERAS_FROZEN)
  # The paper's text (5 layers of width 512, a projection per decoder) is another model.
  paper = ravdess.get_config()
  assert summary.trainable_count(models.abstract_model(paper), paper) != KERAS_TRAINABLE


def test_summary_command_shows_the_counts():
  r = subprocess.run([sys.executable, '-m', 'mtcae_jax.summary', '--config=configs/ravdess.py:preset=paper_code'],
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  lines = dict(line.rsplit(None, 1) for line in r.stdout.splitlines() if line.startswith(('trainable', 'frozen')))
  assert lines == {'trainable': f'{KERAS_TRAINABLE:,}', 'frozen': f'{KERAS_FROZEN:,}'}


def test_shared_feature_projection_equals_the_keras_data_flow():
  config = tiny_config(feature_proj='shared', feature_dropout=0.3)
  config.model.decoder.update(key_bias=True, attention_dropout=0.3)
  config.model.head.norm_first = False
  model = models.build_model(config)
  state = nnx.state(model, nnx.Param)
  keys = iter(jax.random.split(jax.random.key(1), 200))  # random norms and biases too: a skipped tensor shows
  nnx.update(model, jax.tree.map(lambda a: a + 0.3 * jax.random.normal(next(keys), a.shape), state))
  assert model.decoders['boxes'].kv_proj is None and model.decoders['boxes'].query_proj is None
  video = np.random.default_rng(0).normal(size=(2, config.num_frames, 32, 32, 3)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    out = nnx.jit(lambda m, v: m(v))(model, video)  # no key: evaluation, every dropout off
  w = jax.tree.map(lambda a: np.asarray(a, np.float64), nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  f = np.asarray(out['tokens'], np.float64)  # the encoder's tokens, F
  p = dense(f, w['feature_proj'])  # Dense(256, use_bias=False)(Dropout(0.3)(F))
  y = p
  dec = config.model.decoder
  for task, key in (('boxes', 'boxes'), ('landmarks', 'landmarks'), ('expression', 'logits')):
    y = algorithm_1(y, p, w['decoders'][task], dec)  # each decoder: its own LayerNorm of P as keys/values
    head = w['heads'][task]
    expected = dense(layer_norm(y.mean(axis=1), head['norm']), head['fc'])  # mean, LayerNorm, Dense
    np.testing.assert_allclose(np.asarray(out[key]).reshape(2, -1), expected, rtol=1e-4, atol=1e-4)


def test_feature_dropout_only_in_training():
  config = tiny_config(feature_dropout=0.5)
  model = models.build_model(config)
  video = np.random.default_rng(0).normal(size=(1, config.num_frames, 32, 32, 3)).astype(np.float32)
  run = nnx.jit(lambda m, v, k: m(v, key=k))
  base = tiny_config()
  plain = models.build_model(base)  # same seed: the same weights
  key = jax.random.key(3)
  np.testing.assert_array_equal(run(model, video, None)['logits'], run(plain, video, None)['logits'])
  assert not np.allclose(run(model, video, key)['logits'], run(plain, video, key)['logits'])
