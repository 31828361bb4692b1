"""Orbax on disk: the training run's checkpoints and the converted encoders are read through `restore_tree`.

`Checkpoints` keeps a run's checkpoints: orbax's CheckpointManager behind a small interface. Saves are
asynchronous; the last `keep` checkpoints and the best one by a validation metric are kept. Each checkpoint holds
the train state (an nnx state: model, optimizer, step) and a JSON record (data position, config fingerprint,
target statistics, metrics). Restoring targets `ShapeDtypeStruct`s carrying shardings, so a state saved on one
mesh restores onto another, each process reading only its shards.
"""

import pathlib

import jax
import orbax.checkpoint as ocp
from flax import nnx, traverse_util
from orbax.checkpoint import checkpoint_managers as policies


class CheckpointMismatch(ValueError):
  """The saved arrays are not those the target asks for; the message is one line."""

  def __init__(self, directory, saved_only, missing):
    self.saved_only, self.missing = sorted(saved_only), sorted(missing)
    examples = ', '.join(self.saved_only[:2] + self.missing[:2])
    super().__init__(f'{directory}: {len(saved_only)} arrays saved only, {len(missing)} missing, e.g. {examples}')


def _paths(tree):
  return set(traverse_util.flatten_dict(tree, sep='.'))


def restore_tree(directory, target, *, partial=False):
  """The arrays orbax saved in `directory`, restored onto `target`: a nested dict of `jax.ShapeDtypeStruct`s
  (placed by their shardings; on this process's first device where they have none).

  `partial`: `target` holds only some of the saved top-level entries (the model of a (model, optimizer) state).
  Within those, the saved arrays must be exactly the target's: orbax would silently skip the others.
  """
  directory = pathlib.Path(directory).absolute()
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda x: x if x.sharding else jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                        target)
  with ocp.PyTreeCheckpointer() as checkpointer:
    saved = checkpointer.metadata(directory).item_metadata.tree
    if partial:
      saved = {k: v for k, v in saved.items() if k in target}
    saved_paths, wanted = _paths(saved), _paths(target)
    if saved_paths != wanted:
      raise CheckpointMismatch(directory, saved_paths - wanted, wanted - saved_paths)
    return checkpointer.restore(directory, args=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=partial))


def _as_saved(pure):
  """An nnx state's pure dict as orbax lays it out: string keys, each Variable as {'value': array}."""
  return {str(k): _as_saved(v) if isinstance(v, dict) else {'value': v} for k, v in pure.items()}


def _from_saved(saved, like):
  return {k: _from_saved(saved[str(k)], v) if isinstance(v, dict) else saved[str(k)]['value']
          for k, v in like.items()}


def restore_state(directory, abstract_state, shardings, *, part=None):
  """The nnx state saved in `directory`, onto `abstract_state` (an nnx State of shapes) placed by `shardings` (a
  State of Shardings like it, or one Sharding for all). `part`: the entry of the saved state that
  `abstract_state` is: a training state is (model, optimizer), and `part=0` restores the model alone."""
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree.map(lambda _: shardings, abstract_state)
  target = nnx.to_pure_dict(jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                         abstract_state, shardings))
  saved_target = _as_saved(target if part is None else {part: target})
  restored = restore_tree(directory, saved_target, partial=part is not None)
  restored = _from_saved(restored, target if part is None else {part: target})
  state = jax.tree.map(lambda x: x, abstract_state)  # a copy to fill, leaving the caller's abstract state alone
  nnx.replace_by_pure_dict(state, restored if part is None else restored[part])
  return state


class Checkpoints:

  def __init__(self, directory, *, keep=2, best_metric='uar'):
    self.directory, self.best_metric = pathlib.Path(directory), best_metric
    policy = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep),
        policies.BestN(get_metric_fn=lambda m: m[best_metric], n=1, keep_checkpoints_without_metrics=False),
    ])
    self._manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=lambda m: m[best_metric], best_mode='max',
            keep_checkpoints_without_metrics=True, create=True, enable_async_checkpointing=True),
        item_names=('state', 'record'))

  def save(self, step, state, record, metrics=None, force=False):
    """Starts saving `state` (an nnx State) and `record` (JSON-able) at `step`; returns whether it saved."""
    return self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                            record=ocp.args.JsonSave(record)),
                              metrics=metrics, force=force)

  def latest_step(self):
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def best_step(self):
    return self._manager.best_step()

  def record(self, step):
    return self._manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))['record']

  def arrays(self, step):
    """The state saved at `step` as a plain nested dict of arrays, without a target (for inspection)."""
    return self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']

  def restore(self, step, abstract_state, shardings, *, part=None):
    """(state, record) at `step`: see `restore_state`."""
    state = restore_state(self.directory / str(step) / 'state', abstract_state, shardings, part=part)
    return state, self.record(step)

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()
