"""The validation watchers against Keras' callbacks' semantics, on stub metric sequences."""

import json

import numpy as np
import pytest

from mtcae_jax.train import watch


def test_reduce_on_plateau_as_keras():
  plateau = watch.ReduceOnPlateau(patience=2, factor=0.1, min_delta=1e-4)
  losses = [1.0, 0.9, 0.95, 0.89995, 0.8, 0.8, 0.8, 0.8, 0.8]
  # 0.95 waits 1; 0.89995 is lower but not by min_delta: wait 2, lr x0.1, wait 0. 0.8 is the new best; then every
  # second evaluation of 0.8 lowers the lr again.
  scales = []
  for i, loss in enumerate(losses):
    if i == 4:  # resumed from its JSON state, as from a checkpoint's record
      plateau = watch.ReduceOnPlateau(2, 0.1, 1e-4, state=json.loads(json.dumps(plateau.state())))
    scales.append(plateau.update(loss))
  np.testing.assert_allclose(scales, [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001], rtol=1e-12)
  assert plateau.state() == {'best': 0.8, 'wait': 0, 'scale': pytest.approx(1e-3)}
  assert watch.ReduceOnPlateau(1).state() == {'best': None, 'wait': 0, 'scale': 1.0}  # JSON: no infinity
  for patience, factor in ((0, 0.1), (1, 1.0)):
    with pytest.raises(ValueError, match='patience >= 1 and 0 < factor < 1'):
      watch.ReduceOnPlateau(patience, factor)


def test_early_stopping_after_patience_evaluations_without_a_lower_loss():
  stopper = watch.EarlyStopping(patience=2)
  losses = [1.0, 0.8, 0.9, 0.8, 0.7]
  stops = [stopper.update(v, step) for step, v in enumerate(losses[:4], 1)]
  # 0.9 is one evaluation without improvement, 0.8 (equal, not lower) the second: stop there.
  assert stops == [False, False, False, True]
  assert stopper.state() == {'best': 0.8, 'best_step': 2, 'wait': 2, 'count': 4}
  resumed = watch.EarlyStopping(2, state=json.loads(json.dumps(watch.EarlyStopping(2).state())))
  assert [resumed.update(v) for v in (float('nan'), 1.0, 1.1, 1.2)] == [False, False, False, True]
  never = watch.EarlyStopping(patience=1)
  assert not never.update(float('nan'))  # never at the first evaluation


def test_accuracy_monitors_are_maximised_as_keras_mode_auto():
  # The authors' callbacks: plateau on the validation expression loss, early stopping on its accuracy (WAR).
  evals = [dict(loss_expression=l, war=a) for l, a in ((1.0, 0.50), (0.90, 0.55), (0.95, 0.60), (0.97, 0.58),
                                                       (0.99, 0.59), (0.98, 0.57))]
  stopper = watch.EarlyStopping(patience=3)
  stops = [stopper.update(watch.objective(e, 'war'), step) for step, e in enumerate(evals, 1)]
  assert stops == [False] * 5 + [True]  # best accuracy 0.60 at step 3, then 3 evaluations below it
  assert watch.shown('war', stopper.best) == 0.60 and stopper.best_step == 3
  plateau = watch.ReduceOnPlateau(patience=2, factor=0.1, min_delta=1e-4)
  scales = [plateau.update(watch.objective(e, 'loss_expression')) for e in evals]
  # Lowest expression loss 0.90 at the 2nd; the 3rd and 4th do not beat it: x0.1; the 5th and 6th: x0.01.
  assert scales == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01])
  assert watch.objective({'loss': 0.3}, 'loss') == 0.3 and watch.objective({'uar': 0.7}, 'uar') == -0.7
