"""Shared test helpers: tiny configs that run in seconds on a CPU."""

import os

# Tests check values, not speed: XLA's unoptimised CPU backend compiles about three times faster.
os.environ.setdefault('XLA_FLAGS', '--xla_backend_optimization_level=0')

import jax
import pytest
from flax import nnx

from configs import default
from mtcae_jax import models

jax.config.update('jax_default_matmul_precision', 'highest')  # parity checks must not use TF32 on a GPU


def tiny_config(strategy='cascaded', **model):
  """4 frames of 32 px -> a 2x2x2 token grid; 2-layer encoder of width 32, 2-layer decoders of width 16."""
  c = default.get_config(f'variant=tiny,strategy={strategy}')
  c.num_frames, c.image_size = 4, 32
  c.model.decoder.update(depth=2, width=16, num_heads=3, head_dim=8, mlp_dim=24)
  c.model.update(model)
  return c


def split_call(model):
  """A jitted pure function (state, video, key) -> outputs for `model`."""
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda s, video, key=None: nnx.merge(graphdef, s)(video, key=key))
  return fn, state


@pytest.fixture
def video():
  return jax.random.normal(jax.random.key(42), (2, 4, 32, 32, 3))


@pytest.fixture
def build():
  return lambda config, seed=0: models.build_model(config, rngs=nnx.Rngs(seed))
