"""Training checkpoints: orbax's CheckpointManager behind a small interface.

Saves are asynchronous; the last `keep` checkpoints and the best one by a validation metric are kept. Each
checkpoint holds the train state (an nnx state: model, optimizer, step) and a JSON record (data position, config
fingerprint, metrics). Restoring targets `ShapeDtypeStruct`s carrying shardings, so a state saved on one mesh
restores onto another, each process reading only its shards.
"""

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


class Checkpoints:

  def __init__(self, directory, *, keep=2, best_metric='uar'):
    self.best_metric = best_metric
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

  def restore(self, step, abstract_state, shardings):
    """(state, record) at `step`, placed by `shardings` (an nnx State of NamedShardings like abstract_state)."""
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state,
                          shardings)
    out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                              record=ocp.args.JsonRestore()))
    return out['state'], out['record']

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()
