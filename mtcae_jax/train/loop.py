"""Training and evaluation of MTCAE-DFER on one fold, top to bottom: mesh, data, model, step, loop.

    python -m mtcae_jax.main --config=configs/mead.py --workdir=runs/mead_fold0

Trains on every fold but `config.fold` and evaluates on it. By default (`validation_share=0`) that is the paper's
subject-independent protocol: no validation split, the reported numbers are the final weights', and the "best"
checkpoint kept beside the latest ones is the one with the highest test-fold UAR (for inspection only: choosing by
it would tune on the test fold). With `validation_share` > 0 a share of the training folds' actors is held out as a
validation split (data/validation.py), as the authors' Keras code held out a validation set: each evaluation also
evaluates it, and its loss (the weighted sum of the task losses, as in training) chooses the best checkpoint and
drives reduce-on-plateau (`optimizer.plateau_patience`) and early stopping (`early_stopping_patience`), so nothing
looks at the test fold. Rerunning the same command resumes from the workdir's latest checkpoint; the data order,
dropout and the plateau and early-stopping state depend only on the step, so an interrupted and resumed run ends
where an uninterrupted one does.
"""

import json
import pathlib
import signal
import sys
import time

import jax
import numpy as np
from flax import nnx, traverse_util
from jax.experimental import multihost_utils
from tqdm import tqdm

from mtcae_jax import checkpointing, sharding
from mtcae_jax.data import augment, box_format, pipeline, target_stats, validation
from mtcae_jax.train import evaluate, optim, watch
from mtcae_jax.train import step as step_lib

# Config fields that may change between a run and its resumption; any other change is refused (the validation
# split, plateau and early-stopping fields among them: a run resumes with the split and watchers it started with).
# A preempted multi-host job may come back on other hosts; each process has its own process_id.
RESUMABLE_CHANGES = ('data_dir', 'mesh_shape', 'distributed', 'coordinator_address', 'num_processes', 'process_id',
                     'log_every_steps', 'eval_batch_size', 'keep_checkpoints', 'input.num_workers', 'eval_views',
                     'eval_crops')


# Fields added since runs were first saved, with the value a run saved without them had: such a run resumes with
# these given on the command line.
SAVED_BEFORE = {'model.head.regression_init': 'plain', 'loss.normalize_regression': False,
                'box_format': 'xyxy', 'augment.policy': 'crop_flip_colour', 'model.feature_proj': 'per_decoder',
                'model.feature_dropout': 0.0, 'validation_share': 0.0, 'early_stopping_patience': 0,
                'optimizer.weight_decay_mask': 'kernels', 'optimizer.plateau_patience': 0,
                'optimizer.plateau_factor': 0.1, 'optimizer.plateau_min_delta': 1e-4, 'model.decoder.key_bias': False,
                'optimizer.plateau_monitor': 'loss', 'early_stopping_monitor': 'loss', 'checkpoint_monitor': 'loss',
                'optimizer.warmup_epochs': 0}


class TrainingError(RuntimeError):
  """A run that cannot go on; the message says why in one line."""


REGRESSION_INITS = ('target_mean', 'plain')


def training_target_stats(config, indices=None, targets=None):
  """The training split's mean box and landmarks: the heads' start, the regression losses' scale and the
  evaluations' constant baseline. None for `stl`, which has no box or landmark task. `indices`: the examples of
  the training folds trained on (all but the validation actors'), None for all; `targets`: the split's targets if
  already read (pipeline.read_targets)."""
  if config.model.head.regression_init not in REGRESSION_INITS:
    raise TrainingError(f'model.head.regression_init must be one of {REGRESSION_INITS}, '
                        f'got {config.model.head.regression_init!r}')
  if config.model.strategy == 'stl':
    return None
  split = pipeline.train_split(config.fold)
  try:
    return target_stats.compute(config.dataset, split, config.data_dir or None, config.box_format, indices, targets)
  except ValueError as e:
    raise TrainingError(f'{config.dataset} {split}: {e}') from None


def start_distributed(config):
  """With config.distributed, joins the multi-process job: jax.distributed.initialize with the coordinator,
  process count and id the config gives, JAX's cluster detection (TPU pods, SLURM, ...) for the others. Must come
  before anything starts a JAX backend; a second call (cross-validation's next fold) does nothing."""
  if not config.get('distributed') or jax.distributed.is_initialized():
    return
  # Cross-process collectives of the CPU backend (only it reads this option); gloo is JAX 0.10's default.
  if jax.config.values.get('jax_cpu_collectives_implementation') in (None, 'none'):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  given = dict(coordinator_address=config.get('coordinator_address') or None,
               num_processes=config.get('num_processes') or None,
               process_id=None if config.get('process_id', -1) < 0 else config.process_id)
  jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None})


def config_changes(saved, current):
  """Dotted names of the fields that differ between two config dicts, ignoring RESUMABLE_CHANGES."""
  flat = lambda d: traverse_util.flatten_dict(d, sep='.')
  a, b = {**SAVED_BEFORE, **flat(saved)}, flat(current)
  return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES)


# Encoders sized for tests and demos; any other trained without `init_from` gets the warning below.
SMALL_VARIANTS = ('tiny', 'S/16')
_warned_from_scratch = []  # once per process (cross-validation trains each fold in this process)


def warn_without_pretrained(config, is_main=True):
  """Prints one stderr line (process 0, once) when an encoder larger than SMALL_VARIANTS is trained
  from scratch; returns whether it did."""
  variant = config.model.encoder.variant
  if config.get('init_from') or variant in SMALL_VARIANTS or not is_main or _warned_from_scratch:
    return False
  _warned_from_scratch.append(variant)
  print(f'warning: the {variant} encoder starts from random weights (config.init_from is empty); the paper '
        'fine-tunes pre-trained weights: see "Starting from pre-trained weights" in README.md to get and convert '
        'them, then pass --config.init_from=DIR.', file=sys.stderr)
  return True


def class_names(source, num_classes):
  try:
    return list(source.dataset_info.features['label'].names)
  except (AttributeError, KeyError):
    return [str(i) for i in range(num_classes)]


def restore_train_state(config, ckpt, step, mesh):
  """(graphdef, state, state shardings, record) of the (model, optimizer) pair saved at `step` of `ckpt`."""
  # Shapes only: the saved arrays are read straight into their shards, with no initialised state to replace.
  graphdef, abstract, shardings = sharding.abstract_sharded(step_lib.train_state_maker(config, 1), mesh)
  state, record = ckpt.restore(step, abstract, shardings)
  return graphdef, state, shardings, record


def train_and_evaluate(config, workdir, *, stop_after=None):
  """Trains and evaluates; returns the final test metrics. `stop_after`: leave after that many steps of this
  run, as a preemption would (the next run resumes)."""
  # Imported here: the log's TensorBoard writer loads tensorboard, which `make_train_step` (and the benchmark) need not.
  from mtcae_jax.train import run_log  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  config_json = json.loads(config.to_json())

  # ---------------- Mesh ----------------
  start_distributed(config)
  mesh = sharding.make_mesh(tuple(config.mesh_shape))
  is_main = jax.process_index() == 0

  # ---------------- Data ----------------
  try:
    watch.check(config)
    box_format.check(config.box_format)  # else only a loader worker would find it, after the data were read
  except ValueError as e:
    raise TrainingError(str(e)) from None
  data_dir = config.data_dir or None
  train_source = pipeline.data_source(config.dataset, pipeline.train_split(config.fold), data_dir)
  test_source = pipeline.data_source(config.dataset, f'fold{config.fold}', data_dir)
  pipeline.check_views(test_source, config, config.eval_views)  # refused before any training step
  # The validation split: whole actors of the training folds (never the test fold), drawn with (seed, fold).
  val_source = train_indices = train_targets = None
  held_out = []
  if config.validation_share:
    # One pass over the training split's records gives the actors and the targets the statistics need.
    train_targets = pipeline.read_targets(config.dataset, pipeline.train_split(config.fold), data_dir,
                                          keys=pipeline.TARGET_KEYS + ('actor',))
    actors = train_targets['actor']
    try:
      held_out = validation.choose_actors(actors, config.validation_share, config.seed, config.fold)
    except ValueError as e:
      raise TrainingError(f'{config.dataset} {pipeline.train_split(config.fold)}: {e}') from None
    train_source, val_source = validation.hold_out(train_source, actors, held_out)
    train_indices = train_source.indices
    split_record = validation.describe(actors, held_out)
    if is_main:
      (workdir / validation.FILENAME).write_text(json.dumps(split_record, indent=1))
      print(f'Validation: actors {", ".join(map(str, held_out))} ({len(val_source)} clips) held out of the training '
            f'folds; training on {len(split_record["train_actors"])} actors ({len(train_source)} clips).')
  names = class_names(test_source, config.num_classes)
  if len(names) != config.num_classes:
    raise TrainingError(f'{config.dataset} has {len(names)} classes but config.num_classes={config.num_classes}')
  # After the checks of the config and data above, so that a wrong config stays one error line.
  warn_without_pretrained(config, is_main)
  steps_per_epoch = max(len(train_source) // config.batch_size, 1)
  total_steps = config.num_steps or config.num_epochs * steps_per_epoch
  eval_every = config.eval_every_steps or steps_per_epoch
  checkpoint_every = config.checkpoint_every_steps or eval_every

  # ---------------- Model and optimizer, created directly sharded ----------------
  graphdef, state, state_sharding = sharding.create_sharded(
      step_lib.train_state_maker(config, total_steps, steps_per_epoch), mesh)
  abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)

  # ---------------- Checkpoints: resume, or start from a converted encoder ----------------
  ckpt = checkpointing.Checkpoints(workdir / 'checkpoints', keep=config.keep_checkpoints)
  start_step = data_step = 0
  if ckpt.all_steps():
    def read(step):
      changed = config_changes(ckpt.run_config(step), config_json)
      if changed:
        raise TrainingError(f'{workdir} holds a run with another config (differs in {", ".join(changed)}); '
                            'use a new --workdir or the same config')
      return ckpt.restore(step, abstract_state, state_sharding)
    # The newest intact checkpoint; damaged ones after it are moved aside, and with none intact the run stops
    # rather than silently starting over.
    start_step, restored = ckpt.first_intact(sorted(ckpt.all_steps(), reverse=True), read, move_aside=True,
                                             note=lambda line: is_main and print(line, file=sys.stderr))
    if start_step is None:
      raise TrainingError(f'no intact checkpoint in {workdir / "checkpoints"} (each is named above); nothing was '
                          'moved: to start over, move that directory away')
    state, record = restored
    data_step = start_step
    stats = (record['target_stats'] if 'target_stats' in record
             else training_target_stats(config, train_indices, train_targets))
    if record.get('validation_actors', held_out) != held_out:
      raise TrainingError(f'{workdir} held out validation actors {record["validation_actors"]}, but this data gives '
                          f'{held_out}: the dataset changed since; use a new --workdir')
    if 'data' in record:  # the input iterator's state (runs saved before it was kept resume at their step)
      try:
        data_step = pipeline.resume_step(record['data'], train_source, config.batch_size, config.seed)
      except ValueError as e:
        raise TrainingError(f'{workdir}: {e}') from None
    if is_main:
      print(f'Resuming from step {start_step} of {total_steps} ({workdir / "checkpoints"}).' if
            not record.get('stopped_early') else f'The run in {workdir} stopped early at step {start_step}.')
  else:
    record = {}
    stats = training_target_stats(config, train_indices, train_targets)
    model, opt = nnx.merge(graphdef, state)
    if config.init_from:
      from mtcae_jax.pretrained import converted  # pylint: disable=g-import-not-at-top
      loaded = converted.maybe_init_from(model, config)
      if is_main:
        print(f'Encoder from {config.init_from}: loaded {", ".join(loaded)}.')
    if stats and config.model.head.regression_init == 'target_mean':
      model.start_regression_at(stats)
    state = jax.device_put(nnx.state((model, opt)), state_sharding)
  if is_main and stats:
    target_stats.save(stats, workdir)
  # What watches the validation loss, as the last checkpoint left it.
  plateau = stopper = None
  if config.optimizer.plateau_patience:
    plateau = watch.ReduceOnPlateau(config.optimizer.plateau_patience, config.optimizer.plateau_factor,
                                    config.optimizer.plateau_min_delta, state=record.get('plateau'))
  if config.early_stopping_patience:
    stopper = watch.EarlyStopping(config.early_stopping_patience, state=record.get('early_stopping'))
  stopped_early = record.get('stopped_early')  # the step at which a finished run stopped early

  # ---------------- Steps ----------------
  train_step = step_lib.make_train_step(config, graphdef, state_sharding, mesh, stats)
  eval_step = jax.jit(evaluate.make_eval_step(graphdef, config.input, *step_lib.loss_settings(config, stats)))

  def run_eval(step, source=test_source, split='eval'):
    batches = pipeline.eval_batches(source, config, config.eval_batch_size, mesh=mesh, num_views=config.eval_views)
    desc = f'eval fold{config.fold}' if split == 'eval' else 'validation'
    with tqdm(total=pipeline.num_eval_batches(len(source), config.eval_batch_size), desc=desc, leave=False,
              disable=not is_main) as bar:
      result, rows = evaluate.evaluate(eval_step, state, batches, config.num_classes, baseline=stats, progress=bar,
                                       box_format=config.box_format)
    if split == 'val':
      result['loss'] = watch.validation_loss(config, result)
    log.write(step, split, {k: v for k, v in result.items() if np.isscalar(v)})
    return result, rows

  def watch_validation(step, val):
    """Reduce-on-plateau and early stopping after a validation evaluation `val` (the new lr multiplier goes into
    `state`); returns whether to stop."""
    nonlocal state
    if plateau is not None:
      monitor, before = config.optimizer.plateau_monitor, plateau.scale
      if plateau.update(watch.objective(val, monitor)) != before:
        state = optim.with_lr_scale(state, plateau.scale)
        if is_main:
          best = watch.shown(monitor, plateau.best)
          print(f'Step {step}: validation {monitor} {val[monitor]:.4f} on a plateau ({plateau.patience} evaluations '
                f'without one better than {best:.4f}); learning rate x{plateau.factor:g}, now x{plateau.scale:.3g} '
                'of the schedule.')
    return stopper is not None and stopper.update(watch.objective(val, config.early_stopping_monitor), step)

  # ---------------- Loop ----------------
  log = run_log.RunLog(workdir, is_main=is_main)
  stop = {'signal': None}
  # Several processes must stop at the same step: there JAX's preemption service catches SIGTERM and agrees on
  # the step (a handler here would replace its own); alone, a handler notes the signal.
  multi_process = jax.process_count() > 1
  if not multi_process:
    previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(signal=signum))
  pending = []  # (step, metrics on device): checked for NaN at log time, without a host sync per step

  def check_and_log(step):
    if not pending:
      return
    fetched = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, fetched):
      if not np.isfinite(m['loss']):
        last = ckpt.latest_step()
        raise TrainingError(f'loss is {m["loss"]} at step {s}; stopped there. The last good checkpoint is '
                            f'{"step " + str(last) if last else "none"} in {workdir / "checkpoints"}')
    mean = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    mean['clips_per_second'] = len(pending) * config.batch_size / max(time.perf_counter() - timer[0], 1e-9)
    log.write(step, 'train', mean)
    bar.set_postfix(loss=f'{mean["loss"]:.4f}', clips_s=f'{mean["clips_per_second"]:.1f}')
    pending.clear()
    timer[0] = time.perf_counter()

  # A run that stopped early has no steps left.
  batches = pipeline.train_batches(train_source, config, config.batch_size, mesh=mesh, start_step=data_step,
                                   num_steps=0 if stopped_early else total_steps - start_step,
                                   augment=augment.AugmentConfig.of(config.augment))
  timer = [time.perf_counter()]
  result = rows = None
  step = start_step
  with tqdm(total=total_steps, initial=start_step, desc='train', disable=not is_main) as bar:
    for step, batch in enumerate(batches, start_step + 1):
      state, step_metrics = train_step(state, {k: batch[k] for k in pipeline.TRAIN_KEYS})
      pending.append((step, step_metrics))
      bar.update(1)
      last = step == total_steps
      if multi_process and multihost_utils.reached_preemption_sync_point(step):
        stop['signal'] = signal.SIGTERM
      preempted = stop['signal'] is not None or (stop_after is not None and step - start_step >= stop_after)
      if step % config.log_every_steps == 0 or last or preempted or step % checkpoint_every == 0:
        check_and_log(step)
      result = val_result = None
      if step % eval_every == 0 or last:
        result, rows = run_eval(step)
        if val_source is not None:
          val_result, _ = run_eval(step, val_source, 'val')
          stopped_early = step if watch_validation(step, val_result) and not last else None
          if stopped_early:
            check_and_log(step)  # the steps since the last log, before the checkpoint that ends the run
      if step % checkpoint_every == 0 or last or preempted or stopped_early:
        record = {'config': config_json, 'step': step, 'target_stats': stats, 'data': batches.get_state()}
        if val_source is not None:
          record.update(validation_actors=held_out, stopped_early=stopped_early,
                        plateau=plateau and plateau.state(), early_stopping=stopper and stopper.state())
        # The best is the best validation `checkpoint_monitor`, or without a validation split the highest test UAR
        # (see checkpointing.selection_score).
        metrics = ({'val_objective': watch.objective(val_result, config.checkpoint_monitor)} if val_result
                   else {'uar': result['uar']} if result else None)
        ckpt.save(step, state, record, metrics=metrics, force=True)
      if stopped_early:
        if is_main:
          monitor = config.early_stopping_monitor
          best = watch.shown(monitor, stopper.best)
          print(f'Stopped early at step {step} of {total_steps}: no validation {monitor} better than {best:.4f} '
                f'(step {stopper.best_step}) in {stopper.patience} evaluations (early_stopping_patience).')
        break
      if preempted and not last:
        if is_main:
          print(f'Stopped at step {step} ({"SIGTERM" if stop["signal"] else "stop_after"}) with a checkpoint; '
                'rerun the same command to resume.', file=sys.stderr)
        break
  batches.close()  # its worker processes
  ckpt.wait()
  if not multi_process:
    signal.signal(signal.SIGTERM, previous_handler)

  # ---------------- Final evaluation and reports ----------------
  if step == total_steps or stopped_early:
    if rows is None:  # the run had already finished: evaluate its final state again
      result, rows = run_eval(step)
    if is_main:
      evaluate.write_reports(workdir, result, rows, names)
      print(f'fold{config.fold} after {step} steps: {evaluate.summary(result)}'
            f'  ({result["num_clips"]} test clips; {workdir / "predictions.csv"})')
  log.close()
  ckpt.close()
  return result


def evaluate_checkpoint(config, workdir, step=None, split=None):
  """Evaluates the best (or given) checkpoint of `workdir` on its test fold (or `split`); writes the reports."""
  workdir = pathlib.Path(workdir)
  start_distributed(config)
  mesh = sharding.make_mesh(tuple(config.mesh_shape))
  test_source = pipeline.data_source(config.dataset, split or f'fold{config.fold}', config.data_dir or None)
  pipeline.check_views(test_source, config, config.eval_views)
  ckpt = checkpointing.Checkpoints(workdir / 'checkpoints', keep=config.keep_checkpoints)
  steps = sorted(ckpt.all_steps(), reverse=True)
  if not steps:
    raise TrainingError(f'no checkpoint in {workdir / "checkpoints"}')
  if step and step not in steps:
    raise TrainingError(f'no checkpoint at step {step} in {workdir / "checkpoints"} (there are '
                        f'{", ".join(map(str, sorted(steps)))})')
  # The one asked for, else the best, else the newest intact one; a damaged one is named and left in place (eval
  # only reads).
  candidates = [step] if step else ckpt.best_first()
  is_main = jax.process_index() == 0
  chosen, restored = ckpt.first_intact(candidates, lambda s: restore_train_state(config, ckpt, s, mesh),
                                       note=lambda line: is_main and print(line, file=sys.stderr))
  if chosen is None:
    raise TrainingError(f'checkpoint step {step} in {workdir / "checkpoints"} is damaged (named above)' if step
                        else f'no intact checkpoint to evaluate in {workdir / "checkpoints"} (named above)')
  if chosen != candidates[0] and is_main:
    print(f'Evaluating step {chosen} instead.', file=sys.stderr)
  step = chosen
  graphdef, state, state_sharding, record = restored
  stats = record['target_stats'] if 'target_stats' in record else training_target_stats(config)
  eval_step = jax.jit(evaluate.make_eval_step(graphdef, config.input, *step_lib.loss_settings(config, stats)))
  batches = pipeline.eval_batches(test_source, config, config.eval_batch_size, mesh=mesh,
                                  num_views=config.eval_views)
  result, rows = evaluate.evaluate(eval_step, state, batches, config.num_classes, baseline=stats,
                                   box_format=config.box_format)
  if jax.process_index() == 0:
    evaluate.write_reports(workdir / f'eval_step{step}' / (split or f'fold{config.fold}'), result, rows,
                           class_names(test_source, config.num_classes))
    print(f'step {step}, {split or f"fold{config.fold}"}: {evaluate.summary(result)}')
  ckpt.close()
  return result
