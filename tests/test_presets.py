"""The presets against their sources' values, typed here from the sources (docs/FIDELITY.md gives the places)."""

import pytest

from mtcae_jax import models
from mtcae_jax.configs import crema_d, default, mead, ravdess


def test_paper_is_the_texts_architecture_with_the_codes_recipe():
  c = ravdess.get_config()
  assert c.model.encoder.variant == 'L/16' and c.dataset == 'ravdess_dfer'
  d = c.model.decoder
  assert (d.depth, d.num_heads, d.width) == (5, 3, 512) and c.model.feature_proj == 'per_decoder'  # Sec. IV-B, III-C
  o = c.optimizer
  assert (o.learning_rate, o.weight_decay, o.schedule) == (1e-3, 1e-3, 'constant')
  assert c.model.encoder.frozen and c.augment.policy == 'none' and c.validation_share == 0
  assert (c.num_epochs, c.batch_size, c.eval_views, c.box_format) == (100, 16, 1, 'xyxy')


def test_paper_code_is_the_keras_notebook():
  c = ravdess.get_config('preset=paper_code')
  d, o = c.model.decoder, c.optimizer
  assert (d.depth, d.width, d.num_heads, d.head_dim, d.mlp_dim, d.dropout, d.attention_dropout, d.key_bias) == (
      3, 256, 3, 256, 512, 0.3, 0.3, True)
  assert (c.model.feature_proj, c.model.feature_dropout, c.model.encoder.output_norm) == ('shared', 0.3, False)
  assert (c.model.head.norm_first, c.model.head.dropout, c.model.head.regression_init) == (False, 0.1, 'plain')
  assert (o.learning_rate, o.weight_decay, o.eps, o.schedule, o.weight_decay_mask) == (
      1e-3, 1e-3, 1e-7, 'constant', 'all')
  assert (o.plateau_patience, o.plateau_factor, o.plateau_min_delta, o.plateau_monitor) == (
      10, 0.1, 1e-4, 'loss_expression')
  assert (c.early_stopping_patience, c.early_stopping_monitor, c.checkpoint_monitor) == (50, 'war', 'war')
  assert c.validation_share == pytest.approx(6 / 18)  # their 6 validation actors of 18 not tested
  assert tuple(c.input.std) == (0.225,) * 3 and c.box_format == 'xywh' and not c.loss.normalize_regression
  assert c.augment.policy == 'none' and (c.num_epochs, c.batch_size) == (100, 16)
  # Their frames: every floor(T/16)-th from the first (`prepare --frame_sampling=stride`).
  assert (c.dataset, crema_d.get_config('preset=paper_code').dataset) == (
      'ravdess_dfer/video_speech_7class_stride', 'crema_d_dfer/stride')


def test_mae_dfer_is_its_fine_tuning_recipe():
  c = mead.get_config('preset=mae_dfer')
  assert (c.model.encoder.variant, c.model.encoder.name, c.image_size) == ('LGI/512', 'lgi_former', 160)
  o = c.optimizer
  assert c.batch_size == 96 and o.learning_rate == pytest.approx(1e-3 * 96 / 256)
  assert o.learning_rate * o.min_lr_ratio == pytest.approx(1e-6 * 96 / 256)
  assert (o.schedule, o.warmup_epochs, o.layer_decay, o.weight_decay, o.eps) == ('warmup_cosine', 5, 0.75, 0.05, 1e-8)
  assert (c.model.encoder.frozen, c.model.encoder.drop_path, c.label_smoothing) == (False, 0.1, 0.1)
  assert (c.eval_views, c.eval_crops) == (2, 1) and c.dataset == 'mead_dfer/front_32f'
  assert crema_d.get_config('preset=mae_dfer').dataset == 'crema_d_dfer/32f'
  assert c.augment.policy == 'crop_flip_colour' and tuple(c.augment.crop_scale) == (0.08, 1.0)
  assert models.abstract_model(c).encoder.cfg.width == 512
  # A variant given still wins over the preset's default encoder.
  assert ravdess.get_config('preset=mae_dfer,variant=B/16').model.encoder.variant == 'B/16'


def test_an_unknown_preset_is_one_line():
  with pytest.raises(ValueError, match=r"preset must be one of \('paper', 'paper_code', 'mae_dfer'\)"):
    default.get_config('preset=keras')
