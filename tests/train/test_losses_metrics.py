"""Losses and metrics against hand-computed values."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from mtcae_jax.train import losses, metrics


def test_masked_mse_ignores_frames_without_a_face():
  pred = jnp.array([[[0.0, 0.0], [1.0, 1.0]], [[2.0, 2.0], [0.0, 4.0]]])  # (B=2, T=2, 2)
  target = jnp.zeros((2, 2, 2))
  mask = jnp.array([[True, False], [False, True]])
  # frame (0,0): 0; frame (1,1): (0 + 16) / 2 = 8 -> mean over the 2 valid frames = 4
  assert float(losses.masked_mse(pred, target, mask)) == pytest.approx(4.0)
  assert float(losses.masked_mse(pred, target, jnp.zeros((2, 2), bool))) == 0.0


def test_cross_entropy_matches_the_definition():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
  labels = jnp.array([0, 2])
  z = math.log(math.exp(2) + 1 + math.exp(-1))
  expected = ((z - 2.0) + math.log(3)) / 2
  assert float(losses.cross_entropy(logits, labels, jnp.array([True, True]))) == pytest.approx(expected, 1e-6)
  assert float(losses.cross_entropy(logits, labels, jnp.array([True, False]))) == pytest.approx(z - 2.0, 1e-6)
  # Label smoothing 0.3 over 3 classes: target 0.8 on the label, 0.1 elsewhere.
  smoothed = 0.8 * (z - 2.0) + 0.1 * (z - 0.0) + 0.1 * (z + 1.0)
  got = losses.cross_entropy(logits[:1], labels[:1], jnp.array([True]), label_smoothing=0.3)
  assert float(got) == pytest.approx(smoothed, 1e-6)


def test_multitask_loss_weights_and_stl():
  batch = {'label': jnp.array([1]), 'face_mask': jnp.ones((1, 2), bool), 'boxes': jnp.zeros((1, 2, 4)),
           'landmarks': jnp.zeros((1, 2, 5, 2))}
  outputs = {'logits': jnp.zeros((1, 4)), 'boxes': jnp.ones((1, 2, 4)), 'landmarks': jnp.full((1, 2, 5, 2), 2.0)}
  weights = {'boxes': 0.5, 'landmarks': 0.5, 'expression': 1.5}
  total, parts = losses.multitask_loss(outputs, batch, weights)
  assert float(parts['boxes']) == 1.0 and float(parts['landmarks']) == 4.0
  assert float(parts['expression']) == pytest.approx(math.log(4))
  assert float(total) == pytest.approx(0.5 + 2.0 + 1.5 * math.log(4))
  total, parts = losses.multitask_loss({'logits': outputs['logits']}, batch, weights)  # stl
  assert set(parts) == {'expression'} and float(total) == pytest.approx(1.5 * math.log(4))
  # Normalised: each MSE over the training targets' variance (floored), so 1 is the constant predictor's loss.
  scales = losses.regression_scales({'boxes_variance': 0.25, 'landmarks_variance': 1e-9})
  assert scales == {'boxes': 0.25, 'landmarks': losses.MIN_VARIANCE}
  _, parts = losses.multitask_loss(outputs, batch, weights, scales=scales)
  assert float(parts['boxes']) == pytest.approx(4.0) and float(parts['landmarks']) == pytest.approx(4e4)


def test_uar_war_from_a_hand_made_confusion_matrix():
  labels = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
  preds = [0, 0, 0, 1, 1, 0, 2, 2, 0, 1]
  cm = metrics.confusion_matrix(labels, preds, 4)  # class 3 never occurs
  assert cm.tolist() == [[3, 1, 0, 0], [1, 1, 0, 0], [1, 1, 2, 0], [0, 0, 0, 0]]
  assert metrics.war(cm) == pytest.approx(6 / 10)
  assert metrics.uar(cm) == pytest.approx((3 / 4 + 1 / 2 + 2 / 4) / 3)  # absent class 3 left out
  assert np.isnan(metrics.per_class_recall(cm)[3])
  # A class present in the labels but never predicted counts, with recall 0.
  cm = metrics.confusion_matrix([0, 0, 1, 1, 2], [0, 0, 0, 0, 2], 3)
  assert metrics.uar(cm) == pytest.approx((1 + 0 + 1) / 3) and metrics.war(cm) == pytest.approx(3 / 5)


def test_box_iou_and_landmark_nme():
  a = np.array([0.0, 0.0, 2.0, 2.0])
  assert metrics.box_iou(a, a) == pytest.approx(1.0)
  assert metrics.box_iou(a, [1.0, 1.0, 3.0, 3.0]) == pytest.approx(1 / 7)
  assert metrics.box_iou(a, [5.0, 5.0, 6.0, 6.0]) == 0.0
  target = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.5], [0.35, 0.7], [0.65, 0.7]])
  pred = target + np.array([0.04, 0.0])  # every point off by 0.04; eyes 0.4 apart
  assert metrics.landmark_nme(pred, target) == pytest.approx(0.1)
