"""Checkpoints: which ones are kept, and a bit-exact round trip into a sharded target."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from mtcae_jax import checkpointing, sharding


def test_keeps_latest_and_best_and_restores_exactly(tmp_path):
  make = lambda: nnx.Linear(4, 3, rngs=nnx.Rngs(0))
  mesh = sharding.make_mesh()
  _, state, shardings = sharding.create_sharded(make, mesh)
  ckpt = checkpointing.Checkpoints(tmp_path / 'ckpt', keep=2)
  uar = {2: 0.9, 4: 0.3, 6: 0.5}  # evaluated at even steps; step 2 is the best
  for step in range(1, 8):
    ckpt.save(step, jax.tree.map(lambda a: a + step, state), {'step': step, 'position': 10 * step},
              metrics={'uar': uar[step]} if step in uar else None)
  ckpt.wait()
  assert ckpt.all_steps() == [2, 6, 7] and ckpt.latest_step() == 7 and ckpt.best_step() == 2
  restored, record = ckpt.restore(2, nnx.state(nnx.eval_shape(make)), shardings)
  assert record == {'step': 2, 'position': 20} and ckpt.record(7)['position'] == 70
  np.testing.assert_array_equal(restored['kernel'][...], state['kernel'][...] + 2)
  assert restored['kernel'][...].sharding == shardings['kernel'].get_value()
  ckpt.close()


def test_model_half_of_a_train_state_and_a_mismatch_named(tmp_path):
  """`part=0` restores the model of a saved (model, optimizer) pair alone; other parameters are refused."""
  model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  ckpt = checkpointing.Checkpoints(tmp_path / 'ckpt')
  ckpt.save(1, nnx.state((model, optimizer)), {'step': 1})
  ckpt.wait()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restored, record = ckpt.restore(1, nnx.state(nnx.eval_shape(lambda: nnx.Linear(4, 3, rngs=nnx.Rngs(1)))), device,
                                  part=0)
  assert record == {'step': 1}
  np.testing.assert_array_equal(restored['kernel'][...], model.kernel[...])
  np.testing.assert_array_equal(restored['bias'][...], model.bias[...])
  other = nnx.state(nnx.eval_shape(lambda: nnx.Linear(4, 3, use_bias=False, rngs=nnx.Rngs(1))))
  with pytest.raises(checkpointing.CheckpointMismatch, match=r'1 arrays saved only, 0 missing, e.g. 0.bias.value'):
    ckpt.restore(1, other, device, part=0)
  ckpt.close()


def _truncate_largest(step_dir):
  largest = max((p for p in (step_dir / 'state').rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  with open(largest, 'r+b') as f:
    f.truncate(largest.stat().st_size // 2)


DAMAGES = {
    'truncated': (_truncate_largest, 'OUT_OF_RANGE'),
    'record': (lambda d: (d / 'record' / 'metadata').write_text('{"step": garbage'), 'record: JSONDecodeError'),
    'no_metadata': (lambda d: (d / 'state' / '_METADATA').unlink(), 'no _METADATA'),
}


# The reads orbax abandoned after the first failure must not print their own tracebacks as they are freed.
@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')
@pytest.mark.parametrize('damage', sorted(DAMAGES))
def test_a_damaged_checkpoint_is_named_moved_aside_and_skipped(tmp_path, damage):
  make = lambda: nnx.Linear(64, 64, rngs=nnx.Rngs(0))  # 16 KB: array data in a file of its own, not inlined
  state = nnx.state(make())
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  ckpt = checkpointing.Checkpoints(tmp_path / 'ckpt')
  for step in (1, 2):
    ckpt.save(step, jax.tree.map(lambda a, s=step: a + s, state), {'step': step})
  ckpt.wait()
  damage_fn, reason = DAMAGES[damage]
  damage_fn(tmp_path / 'ckpt' / '2')
  read = lambda step: ckpt.restore(step, nnx.state(nnx.eval_shape(make)), device)
  with pytest.raises(checkpointing.CheckpointDamaged, match=f'^checkpoint step 2 in {tmp_path / "ckpt" / "2"} is '
                     f'damaged: .*{reason}'):
    read(2)

  notes = []
  assert ckpt.first_intact([2], read, move_aside=True, note=notes.append) == (None, None)  # none intact
  assert len(notes) == 1 and ckpt.all_steps() == [1, 2]  # named; nothing moved

  notes = []
  step, (restored, record) = ckpt.first_intact([2, 1], read, move_aside=True, note=notes.append)
  assert step == 1 and record == {'step': 1}
  np.testing.assert_array_equal(restored['kernel'][...], state['kernel'][...] + 1)
  moved = tmp_path / 'damaged_ckpt' / '2'
  line, = notes
  assert line.startswith(f'checkpoint step 2 in {tmp_path / "ckpt" / "2"} is damaged: ') and reason in line
  assert line.endswith(f'; moved to {moved}')
  assert (moved / 'state').is_dir() and ckpt.all_steps() == [1] and ckpt.latest_step() == 1  # moved, not deleted
  ckpt.save(2, state, {'step': 2})  # a later step 2 damaged again would go to damaged_ckpt/2.2
  ckpt.wait()
  assert ckpt.all_steps() == [1, 2] and ckpt.move_aside(2) == tmp_path / 'damaged_ckpt' / '2.2'
  ckpt.close()
