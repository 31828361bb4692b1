"""The training run's step moves nothing between host and device by itself: the inputs are placed once, before it."""

import jax
import numpy as np

from mtcae_jax import sharding
from mtcae_jax.measure import speed
from mtcae_jax.train import step as train_step
from tests.conftest import tiny_config


def test_train_step_makes_no_implicit_transfers():
  config = tiny_config('cascaded')
  mesh = sharding.make_mesh()
  graphdef, state, state_sharding = sharding.create_sharded(train_step.train_state_maker(config, 10), mesh)
  step = train_step.make_train_step(config, graphdef, state_sharding, mesh)
  batch = jax.device_put(speed.synthetic_batch(config, 2), sharding.batch_sharding(mesh))
  losses = []
  # 'disallow' refuses implicit transfers (a NumPy constant or Python scalar sent to the device at each call, a
  # value read back to the host inside the step); the explicit device_get below is allowed.
  with jax.transfer_guard('disallow'):
    for _ in range(3):  # the first call compiles: compilation must not transfer either
      state, metrics = step(state, batch)
      losses.append(jax.device_get(metrics['loss']))
  assert np.all(np.isfinite(losses)) and losses[0] != losses[-1]
