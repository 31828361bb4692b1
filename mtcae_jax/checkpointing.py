"""Orbax on disk: the training run's checkpoints and the converted encoders are read through `restore_tree`.

`Checkpoints` keeps a run's checkpoints: orbax's CheckpointManager behind a small interface. Saves are
asynchronous; the last `keep` checkpoints and the best one (`selection_score`) are kept. Each checkpoint holds
the train state (an nnx state: model, optimizer, step) and a JSON record (data position, config fingerprint,
target statistics, metrics). Restoring targets `ShapeDtypeStruct`s carrying shardings, so a state saved on one
mesh restores onto another, each process reading only its shards. A checkpoint whose files cannot be read
(truncated array data, a record that is not JSON, no `_METADATA`) raises `CheckpointDamaged`; `first_intact`
skips such ones and can move them aside (into `damaged_checkpoints/` next to `checkpoints/`, never deleted).
"""

import gc
import inspect
import pathlib
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx, traverse_util
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies


class CheckpointMismatch(ValueError):
  """The saved arrays are not those the target asks for; the message is one line."""

  def __init__(self, directory, saved_only, missing):
    self.saved_only, self.missing = sorted(saved_only), sorted(missing)
    examples = ', '.join(self.saved_only[:2] + self.missing[:2])
    super().__init__(f'{directory}: {len(saved_only)} arrays saved only, {len(missing)} missing, e.g. {examples}')


class CheckpointDamaged(ValueError):
  """A checkpoint whose files cannot be read; the message (path, step, reason) is one line."""

  def __init__(self, path, reason, step=None):
    self.path, self.reason, self.step = pathlib.Path(path), reason, step
    super().__init__(f'checkpoint {"" if step is None else f"step {step} "}in {path} is damaged: {reason}')


def _is_damage(e):
  """Whether `e`, raised while reading a checkpoint, comes from its files rather than from this process (out of
  memory, a bug): orbax wraps TensorStore's read errors in a plain Exception; JSON and file errors are
  ValueErrors and OSErrors."""
  return (type(e) is Exception or isinstance(e, (ValueError, OSError, KeyError))) and not isinstance(
      e, CheckpointMismatch)


def _reason(e):
  """The innermost cause's first line (TensorStore's says which file and byte range), kept short."""
  while e.__cause__ is not None or (e.__context__ is not None and not e.__suppress_context__):
    e = e.__cause__ or e.__context__
  lines = str(e).strip().splitlines()
  text = f'{type(e).__name__}: {lines[0] if lines else ""}'
  return text if len(text) <= 300 else text[:297] + '...'


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
    try:
      metadata = checkpointer.metadata(directory)
    except Exception as e:  # pylint: disable=broad-exception-caught
      if not _is_damage(e):
        raise
      raise CheckpointDamaged(directory, f'unreadable _METADATA ({_reason(e)})') from None
    if getattr(metadata, 'item_metadata', None) is None:  # orbax only logs a warning
      raise CheckpointDamaged(directory, 'no _METADATA (the saved tree\'s structure)')
    saved = metadata.item_metadata.tree
    if partial:
      saved = {k: v for k, v in saved.items() if k in target}
    saved_paths, wanted = _paths(saved), _paths(target)
    if saved_paths != wanted:
      raise CheckpointMismatch(directory, saved_paths - wanted, wanted - saved_paths)
    try:
      return checkpointer.restore(directory, args=ocp.args.PyTreeRestore(
          item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=partial))
    except Exception as e:  # pylint: disable=broad-exception-caught
      if not _is_damage(e):
        raise
      reason = _reason(e)
  _collect_abandoned_reads()  # out of the except block: the exception no longer holds them
  raise CheckpointDamaged(directory, reason)


def _collect_abandoned_reads():
  """Frees the reads orbax abandoned when one failed, quietly: each one's closing raises again, and Python would
  print that as 'Exception ignored in <coroutine>' with TensorStore's spec, dozens of lines. A read still in flight
  may finish later, in TensorStore's thread, and find orbax's event loop closed: that too is silenced, for good
  (`_quiet_closed_loop`), since it can come at any time after."""
  previous = sys.unraisablehook
  sys.unraisablehook = lambda u: None if inspect.iscoroutine(u.object) else previous(u)
  try:
    gc.collect()
  finally:
    sys.unraisablehook = previous
  if not getattr(sys.unraisablehook, 'quiet_closed_loop', False):
    sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)


def _quiet_closed_loop(previous):
  """An unraisable hook that drops the 'Event loop is closed' of an abandoned read's late callback, and passes on
  everything else."""
  def hook(u):
    if not (isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == 'Event loop is closed'):
      previous(u)
  hook.quiet_closed_loop = True
  return hook


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


def selection_score(metrics):
  """How good a checkpoint is by the metrics saved with it (higher is better): minus the validation objective where
  the run has a validation split ('val_objective': the `checkpoint_monitor` metric, lower is better), else the test
  fold's UAR ('uar', the paper's protocol has no validation). Each checkpoint says which, so every reader (training,
  --mode=eval, predict) picks the same best."""
  if 'val_objective' in metrics:
    return -float(metrics['val_objective']) if np.isfinite(metrics['val_objective']) else -np.inf
  return float(metrics['uar'])


class Checkpoints:

  def __init__(self, directory, *, keep=2):
    self.directory = pathlib.Path(directory)
    policy = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep),
        policies.BestN(get_metric_fn=selection_score, n=1, keep_checkpoints_without_metrics=False),
    ])
    self._manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=selection_score, best_mode='max',
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

  def best_first(self):
    """Every step, the best first, then the others newest first: the order to try them in for evaluation."""
    steps, best = sorted(self.all_steps(), reverse=True), self.best_step()
    return [best] + [s for s in steps if s != best] if best else steps

  def run_config(self, step):
    """The training run's config saved in the record at `step` (a dict); raises CheckpointDamaged."""
    config = self.record(step).get('config')
    if not isinstance(config, dict):
      raise CheckpointDamaged(self.directory / str(step), 'record: no config', step)
    return config

  def record(self, step):
    """The JSON record saved at `step` (a dict); raises CheckpointDamaged."""
    try:
      record = self._manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))['record']
    except Exception as e:  # pylint: disable=broad-exception-caught
      if not _is_damage(e):
        raise
      raise CheckpointDamaged(self.directory / str(step), f'record: {_reason(e)}', step) from None
    if not isinstance(record, dict):
      raise CheckpointDamaged(self.directory / str(step), f'record: a JSON {type(record).__name__}, not an object',
                              step)
    return record

  def arrays(self, step):
    """The state saved at `step` as a plain nested dict of arrays, without a target (for inspection)."""
    return self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']

  def restore(self, step, abstract_state, shardings, *, part=None):
    """(state, record) at `step`: see `restore_state`. Raises CheckpointDamaged."""
    record = self.record(step)
    try:
      state = restore_state(self.directory / str(step) / 'state', abstract_state, shardings, part=part)
    except CheckpointDamaged as e:
      raise CheckpointDamaged(self.directory / str(step), e.reason, step) from None
    return state, record

  def move_aside(self, step):
    """Moves the checkpoint at `step` into `damaged_<directory name>/` next to this directory, where orbax no
    longer lists it (nothing is deleted); returns its new path. Process 0 moves it, the others wait for it."""
    store = self.directory.parent / f'damaged_{self.directory.name}'
    target = store / str(step)
    for n in range(2, 1000):  # a step damaged again after an earlier one was moved keeps both
      if not target.exists():
        break
      target = store / f'{step}.{n}'
    if jax.process_index() == 0:
      store.mkdir(exist_ok=True)
      (self.directory / str(step)).rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'checkpoint {step} moved aside')
    self._manager.reload()
    return target

  def first_intact(self, steps, read, *, move_aside=False, note=print):
    """(step, read(step)) for the first of `steps` that `read` finds intact, or (None, None) when none is.

    `read(step)` restores what the caller needs, raising CheckpointDamaged for a damaged checkpoint; each damaged
    one is named in a line to `note`. With `move_aside`, the damaged ones before the intact one are moved aside
    (`move_aside`); with none intact nothing is moved, so that a rerun does not silently start over.
    """
    damaged = []
    for step in steps:
      try:
        value, error = read(step), None
      except CheckpointDamaged as e:
        value, error = None, e if e.step is not None else CheckpointDamaged(e.path, e.reason, step)
      if jax.process_count() > 1:  # each process reads only its own shards: all must make the same choice
        flags = multihost_utils.process_allgather(np.int32(error is not None))
        if error is None and flags.any():
          error = CheckpointDamaged(self.directory / str(step), 'unreadable on another process', step)
      if error is None:
        for d in damaged:
          note(f'{d}; moved to {self.move_aside(d.step)}' if move_aside else f'{d}; skipped')
        return step, value
      damaged.append(error)
    for d in damaged:
      note(str(d))
    return None, None

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()
