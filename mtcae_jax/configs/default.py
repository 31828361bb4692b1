"""MTCAE-DFER with the paper's settings; the base of the per-dataset configs.

    python -m mtcae_jax.measure.summary --config=configs/default.py
    python -m mtcae_jax.measure.summary --config=configs/default.py:variant=B/16,preset=paper_code

Config string keys (`--config=FILE:variant=B/16,preset=paper_code`, read by `parse_arg`): `variant` (encoder:
tiny, S/16, B/16, L/16, H/16, or MAE-DFER's LGI/512; default L/16, LGI/512 with `mae_dfer`), `strategy` (Table I:
stl, nonshared_mlp, nonshared_vit, shared_mlp, shared_vit, cascaded) and `preset`, the recipe: `paper` (the
paper's text; default), `paper_code` (the authors' Keras code) or `mae_dfer` (MAE-DFER's fine-tuning); see
presets.py and docs/FIDELITY.md. Below, the fields with the paper's architecture; the preset then sets its recipe."""

import ml_collections

from mtcae_jax.configs import presets
from mtcae_jax.models import lgi_former

# Input normalisation of the MAE-DFER / VideoMAE encoders (ImageNet statistics); converted checkpoints use it too.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_arg(arg, **defaults):
  """'k=v,k2=v2' -> ConfigDict of `defaults` updated with those values, each cast to its default's type."""
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    key = key.strip()
    if not sep or key not in defaults:
      raise ValueError(f'bad config argument {item!r}: expected key=value with key in {sorted(defaults)}')
    default = defaults[key]
    if isinstance(default, bool):
      value = value.strip().lower() in ('1', 'true', 'yes')
    out[key] = type(default)(value) if default is not None and not isinstance(default, bool) else value
  return out


def config_arg(arg=None):
  """The config string's keys, checked, with the preset's default encoder where none is named."""
  arg = parse_arg(arg, variant='', strategy='cascaded', preset='paper')
  if arg.preset not in presets.PRESETS:
    raise ValueError(f'preset must be one of {presets.PRESETS}, got {arg.preset!r}')
  arg.variant = arg.variant or presets.default_variant(arg.preset)
  return arg


def get_config(arg=None):
  arg = config_arg(arg)
  c = ml_collections.ConfigDict()
  c.seed = 0
  # A directory written by `python -m mtcae_jax.pretrained`: the encoder (and with `stl` its fc_norm and head) starts
  # from those weights; see mtcae_jax.pretrained.converted.maybe_init_from.
  c.init_from = ''
  c.dataset = ''
  c.num_classes = 7
  c.num_frames = 16  # Sec. III-A: 16 x 224 x 224 x 3 clips
  c.image_size = 160 if arg.variant.startswith('LGI') else 224  # MAE-DFER's LGI-Former is trained at 160 px
  c.input = ml_collections.ConfigDict(dict(mean=IMAGENET_MEAN, std=IMAGENET_STD))
  # Host processes that decode and augment clips (grain workers); -1: none on a CPU backend, else cores - 2.
  # Batches do not depend on it.
  c.input.num_workers = -1

  c.model = ml_collections.ConfigDict()
  c.model.strategy = arg.strategy
  c.model.encoder = ml_collections.ConfigDict(dict(
      # 'vit' (VideoMAE) or 'lgi_former' (MAE-DFER; variant LGI/512 at image_size=160).
      name='lgi_former' if arg.variant.startswith('LGI') else 'vit', variant=arg.variant, tubelet_size=2,
      layer_scale_init=0.0, drop_path=0.0, ln_eps=1e-6, output_norm=False, frozen=False,
      # LGI-Former only: token-grid region size, and what the decoders attend to: 'local' (the local tokens in
      # raster order), 'local+region' (those, then the region tokens) or 'region' (with `stl`: MAE-DFER's head).
      region_size=lgi_former.LGIConfig.region_size, decoder_tokens='local'))
  # Sec. IV-B: "5-layer, 3-head ViT Decoder"; Sec. III-C: feature dimension 512. The per-head width follows the
  # authors' Keras code (key_dim = width); the MLP (2 x width, GELU on both layers) and dropout as in that code.
  c.model.decoder = ml_collections.ConfigDict(dict(
      depth=5, width=512, num_heads=3, head_dim=512, mlp_dim=1024, mlp_final_gelu=True, dropout=0.3,
      attention_dropout=0.0, key_bias=False, ln_eps=1e-6))
  # How the decoders read F: 'per_decoder' (Algorithm 1: each decoder projects F to its keys and values) or
  # 'shared' (the authors' code: one Dense on F, shared by the three decoders, is their keys/values and the first
  # stage's query); `feature_dropout` is applied to F first (the authors' code: 0.3).
  c.model.feature_proj = 'per_decoder'
  c.model.feature_dropout = 0.0
  # regression_init: 'target_mean' starts the box and landmark heads at the training split's mean targets (zero
  # kernel); 'plain' is the paper's FC with the usual initialisation (see docs/HEADS.md).
  c.model.head = ml_collections.ConfigDict(dict(pool='mean', norm_first=True, dropout=0.1,
                                                regression_init='target_mean'))
  c.model.num_landmarks = 5
  c.model.dtype = 'float32'  # compute dtype; parameters stay float32
  c.model.attention_impl = 'auto'  # auto, blockwise, einsum, xla, cudnn
  # 'scan' (one compiled layer: fast to compile), 'unroll' (on GPUs a shorter step, a longer compile:
  # docs/BENCHMARKS.md#gpu-h100-measured-2026-11-26) or 'auto': unrolled on GPUs, scanned elsewhere. Checkpoints are
  # the same either way.
  c.model.layer_loop = 'auto'
  c.model.remat = 'none'  # none, full, dots, dots_no_batch

  # Data: a TFDS dataset prepared with `python -m mtcae_jax.data.prepare`; fold k is the test fold.
  c.data_dir = ''  # TFDS data_dir; empty: TFDS's default
  c.fold = 0
  # Stored boxes are (x_min, y_min, x_max, y_max); 'xywh' trains and predicts (x_min, y_min, width, height), as the
  # authors' code regresses MTCNN's boxes. Both in frame units.
  c.box_format = 'xyxy'
  # policy 'none' (neither the paper nor its sources augment) or 'crop_flip_colour' (ours: the fields below).
  c.augment = ml_collections.ConfigDict(dict(policy='none', hflip=0.5, crop_prob=0.5, crop_scale=(0.7, 1.0),
                                             crop_ratio=(3 / 4, 4 / 3), scale_jitter=0.1, brightness=0.2,
                                             contrast=0.2, saturation=0.2))
  # Temporal views averaged per test clip (MAE-DFER: 2). More than 1 needs more stored frames than num_frames:
  # the builders store 16 (the paper's protocol) unless prepared with --stored_frames=N, which gives the dataset
  # '<name>/<config>_<N>f'; at 16 any more is refused.
  c.eval_views = 1
  # Spatial crops per temporal view (MAE-DFER: 2, along the long side); the builders store square frames, on which
  # every crop is the same pixels, so more than 1 is refused.
  c.eval_crops = 1
  # Share of the training folds' actors held out as a validation split (never the test fold): the best checkpoint,
  # reduce-on-plateau and early stopping then watch it. 0: none, the paper's protocol (final weights, 5 folds).
  c.validation_share = 0.0
  # Evaluations without a better validation `early_stopping_monitor` before training stops (0: never), as Keras'
  # EarlyStopping. Monitors: 'loss' (the weighted total), 'loss_expression', 'loss_boxes', 'loss_landmarks' (lower
  # is better), 'uar', 'war' (higher). `checkpoint_monitor` picks the best checkpoint on the validation split.
  c.early_stopping_patience = 0
  c.early_stopping_monitor = 'loss'
  c.checkpoint_monitor = 'loss'

  # Training loop. The authors' code: batch 16, 100 epochs.
  c.batch_size = 16
  c.eval_batch_size = 16
  c.num_epochs = 100
  c.num_steps = 0  # if > 0, overrides num_epochs
  c.log_every_steps = 20
  c.eval_every_steps = 0  # 0: once per epoch
  c.checkpoint_every_steps = 0  # 0: at every evaluation
  # The latest ones; the best is kept as well (with validation_share > 0 by checkpoint_monitor on the validation
  # split, else by the test fold's UAR, for inspection only).
  c.keep_checkpoints = 2
  c.mesh_shape = (-1, 1, 1)  # devices along (data, fsdp, tensor); -1: the rest
  c.distributed = False  # call jax.distributed.initialize() (multi-host TPU pods)
  # Passed to jax.distributed.initialize where set; empty: JAX detects the cluster (TPU pods, SLURM, ...).
  c.coordinator_address = ''  # host:port of process 0
  c.num_processes = 0
  c.process_id = -1
  c.label_smoothing = 0.0

  # Sec. IV-B: loss weights and AdamW.
  # normalize_regression: the box and landmark MSEs are divided by the training split's target variance (the
  # constant predictor's MSE), so the weights balance tasks of like scale; False: MSE in frame units, as in the
  # authors' code (see mtcae_jax/train/losses.py, docs/HEADS.md).
  c.loss = ml_collections.ConfigDict(dict(boxes=0.5, landmarks=0.5, expression=1.5, normalize_regression=True))
  c.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-3, weight_decay=1e-3, b1=0.9, b2=0.999, eps=1e-8,
      schedule='warmup_cosine', warmup_steps=0, warmup_epochs=0,  # warmup_steps, if > 0, overrides warmup_epochs
      min_lr_ratio=0.0, grad_clip_norm=0.0, layer_decay=1.0,
      accumulate_steps=1,
      # 'kernels' (no decay on biases, norms, tokens) or 'all' (Keras' AdamW decays every variable).
      weight_decay_mask='kernels',
      # Reduce-on-plateau, as Keras' ReduceLROnPlateau: lr x factor after `plateau_patience` evaluations without a
      # better validation `plateau_monitor` (0: off; monitors as early_stopping_monitor). Needs validation_share > 0.
      plateau_patience=0, plateau_factor=0.1, plateau_min_delta=1e-4, plateau_monitor='loss'))

  presets.apply(c, arg.preset)
  return c
