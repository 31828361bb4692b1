"""What watches the validation split, as Keras' callbacks did in the authors' code: reduce-on-plateau, early
stopping and the choice of the best checkpoint, each on a `monitor` of the validation results.

Both watchers live on the host and keep a JSON state, saved in each checkpoint's record, so a resumed run watches
on exactly as an uninterrupted one; reduce-on-plateau's multiplier reaches the step through the optimizer state
(`optim.with_lr_scale`).
"""

import math

from mtcae_jax.train import optim

# What reduce-on-plateau, early stopping and the best checkpoint may watch on the validation split: the total loss
# (the task losses weighted as in training), one task's loss (lower is better) or UAR / WAR (higher is better).
MONITORS = ('loss', 'loss_expression', 'loss_boxes', 'loss_landmarks', 'uar', 'war')


def validation_loss(config, result):
  """The total validation loss: the task losses of `evaluate` weighted as in training (config.loss)."""
  return sum(config.loss[k[len('loss_'):]] * v for k, v in result.items() if k.startswith('loss_'))


def objective(result, monitor):
  """The validation metric `monitor` as a quantity to minimise (UAR and WAR negated), as Keras' mode 'auto'."""
  return result[monitor] if monitor.startswith('loss') else -result[monitor]


def shown(monitor, value):
  """An objective back in the metric's own sign, for messages."""
  return value if monitor.startswith('loss') else -value


def check(config):
  """ValueError (one line) for a validation setting that cannot work, before any data is read."""
  share, opt = config.get('validation_share', 0.0), config.optimizer
  if not 0 <= share < 1:
    raise ValueError(f'validation_share must be in [0, 1), got {share}')
  patiences = {'optimizer.plateau_patience': opt.get('plateau_patience', 0),
               'early_stopping_patience': config.get('early_stopping_patience', 0)}
  for field, value in patiences.items():
    if value < 0:
      raise ValueError(f'{field} must be >= 0 (0: off), got {value}')
  watchers = [f for f, v in patiences.items() if v]
  if watchers and not share:
    raise ValueError(f'{" and ".join(watchers)} watch the validation split: set validation_share > 0 (a share of '
                     'the training actors held out), or set them to 0')
  if opt.get('plateau_patience', 0) and not 0 < opt.plateau_factor < 1:
    raise ValueError(f'optimizer.plateau_factor must be in (0, 1), got {opt.plateau_factor}')
  for field, monitor in (('optimizer.plateau_monitor', opt.get('plateau_monitor', 'loss')),
                         ('early_stopping_monitor', config.get('early_stopping_monitor', 'loss')),
                         ('checkpoint_monitor', config.get('checkpoint_monitor', 'loss'))):
    if monitor not in MONITORS:
      raise ValueError(f'{field} must be one of {MONITORS}, got {monitor!r}')
  if opt.get('weight_decay_mask', 'kernels') not in optim.DECAY_MASKS:
    raise ValueError(f'optimizer.weight_decay_mask must be one of {optim.DECAY_MASKS}, got '
                     f'{opt.weight_decay_mask!r}')


class EarlyStopping:
  """Keras' EarlyStopping (mode 'min', min_delta 0) on the host: `update(loss)` after each evaluation says whether
  to stop: after `patience` evaluations without a loss below the best so far (never at the first). `state()` is
  JSON (saved in each checkpoint's record) and `EarlyStopping(patience, state=...)` resumes it."""

  def __init__(self, patience, state=None):
    self.patience = patience
    state = state or {}
    self.best = math.inf if state.get('best') is None else state['best']
    self.best_step, self.wait, self.count = state.get('best_step'), state.get('wait', 0), state.get('count', 0)

  def update(self, loss, step=None):
    self.wait, self.count = self.wait + 1, self.count + 1
    if loss < self.best:  # NaN is no improvement
      self.best, self.best_step, self.wait = float(loss), step, 0
      return False
    return self.wait >= self.patience and self.count > 1

  def state(self):
    return {'best': None if math.isinf(self.best) else self.best, 'best_step': self.best_step, 'wait': self.wait,
            'count': self.count}


class ReduceOnPlateau:
  """Keras' ReduceLROnPlateau (mode 'min', no cooldown, no minimum lr) on the host: after each evaluation
  `update(loss)` returns the learning-rate multiplier. A loss below best - min_delta is an improvement (wait 0);
  after `patience` evaluations without one the multiplier is multiplied by `factor` and the wait starts over.
  `state()` is JSON (saved in each checkpoint's record) and `ReduceOnPlateau(..., state=...)` resumes it."""

  def __init__(self, patience, factor=0.1, min_delta=1e-4, state=None):
    if patience < 1 or not 0 < factor < 1:
      raise ValueError(f'reduce-on-plateau needs patience >= 1 and 0 < factor < 1, got {patience} and {factor}')
    self.patience, self.factor, self.min_delta = patience, factor, min_delta
    state = state or {}
    self.best = math.inf if state.get('best') is None else state['best']  # JSON has no infinity
    self.wait, self.scale = state.get('wait', 0), state.get('scale', 1.0)

  def update(self, loss):
    if loss < self.best - self.min_delta:  # NaN is no improvement
      self.best, self.wait = float(loss), 0
    else:
      self.wait += 1
      if self.wait >= self.patience:
        self.scale, self.wait = self.scale * self.factor, 0
    return self.scale

  def state(self):
    return {'best': None if math.isinf(self.best) else self.best, 'wait': self.wait, 'scale': self.scale}
