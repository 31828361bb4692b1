"""The named recipes a config starts from (`--config=configs/ravdess.py:preset=NAME`); docs/FIDELITY.md compares
them point by point with their sources.

- `paper`: the paper's text (Sec. III-B, IV-B): Algorithm 1 decoders of 5 layers, 3 heads, width 512; AdamW at
  1e-3 with weight decay 1e-3; loss weights 0.5 / 0.5 / 1.5. The text says nothing of the encoder's training, the
  schedule, epochs or batch; for those it follows the authors' code, the one runnable account of what gave the
  paper's numbers: the encoder frozen (fine-tuning all of ViT-L at lr 1e-3 would wreck the pre-trained weights),
  a constant lr, 100 epochs of batch 16, no augmentation. The paper's protocol has no validation split, so the
  final weights are tested and nothing watches a plateau. Two additions of ours stay on, as switches: the box and
  landmark heads start at the training split's mean targets and their MSEs are normalised by its variance
  (docs/HEADS.md: without them those heads learn less than a constant).
- `paper_code`: the authors' Keras notebook (T06_MTCAE_DFER_Cascaded_ViTDecoder.ipynb) exactly: 3 decoder layers of
  width 256, one shared Dense on F after Dropout(0.3), attention dropout 0.3, no encoder LayerNorm, key biases;
  the frozen encoder; AdamW (eps 1e-7, Keras' default) decaying every variable at a constant lr 1e-3, x0.1 after
  10 epochs without a lower validation expression loss, stopping after 50 without a higher validation expression
  accuracy; a third of the training actors held out for that (their split: 12 / 6 / 6 actors); boxes as
  (x, y, w, h); plain heads and MSE in frame units; input std 0.225. 9,800,935 trainable parameters for 7
  classes beside the frozen 303,858,688 of ViT-L. It reads clips prepared with their frame sampling
  (`--frame_sampling=stride`), and runs, like every preset, in the paper's 5 folds, not the notebook's one split.
- `mae_dfer`: MAE-DFER's fine-tuning recipe (its run_class_finetuning.py and DFEW script): the whole encoder trained
  with layer-wise lr decay 0.75, 5 warmup epochs then cosine decay to 1e-3 of the peak, lr 1e-3 x batch / 256 at
  its batch of 96, weight decay 0.05, drop path 0.1, label smoothing 0.1, random resized crops (0.08-1) and flips,
  the last epoch's weights tested on 2 temporal views (a dataset prepared with `--stored_frames=32`; its 2 spatial
  crops are the same pixels on square frames, so one is evaluated). Not here: RandAugment, random erasing,
  mixup/cutmix. Its default encoder is MAE-DFER's LGI-Former (`variant=LGI/512`, 160 px).
"""

PRESETS = ('paper', 'paper_code', 'mae_dfer')
# How each preset's dataset is prepared, as the suffix of its TFDS config name (docs/DATA.md): the authors' frames
# (`prepare --frame_sampling=stride`: every floor(T/16)-th frame from the first), or 32 frames a clip
# (`prepare --stored_frames=32`) so that MAE-DFER's 2 test views see different frames.
PREPARED = {'paper': '', 'paper_code': '_stride', 'mae_dfer': '_32f'}


def default_variant(preset):
  """The encoder a preset uses when the config string names none."""
  return 'LGI/512' if preset == 'mae_dfer' else 'L/16'


def dataset_name(builder, builder_config, preset):
  """The prepared dataset a preset reads: `builder` (its default config: 16 frames at the segments' centres) or
  `builder_config` prepared as PREPARED says."""
  suffix = PREPARED[preset]
  if not suffix:
    return builder
  return f'{builder}/{builder_config}{suffix}' if builder_config else f'{builder}/{suffix[1:]}'


def apply(c, preset):
  """Sets the recipe `preset` on the config `c` (made with the paper's architecture)."""
  if preset not in PRESETS:
    raise ValueError(f'preset must be one of {PRESETS}, got {preset!r}')
  if preset in ('paper', 'paper_code'):
    c.model.encoder.frozen = True
    c.optimizer.schedule = 'constant'  # at the paper's lr and weight decay (default.py)
  if preset == 'paper_code':
    c.model.decoder.update(depth=3, width=256, head_dim=256, mlp_dim=512, attention_dropout=0.3, key_bias=True)
    c.model.update(feature_proj='shared', feature_dropout=0.3)
    c.model.head.update(norm_first=False, regression_init='plain')  # mean over tokens, then LayerNorm
    c.loss.normalize_regression = False
    c.input.std = (0.225, 0.225, 0.225)
    c.box_format = 'xywh'
    c.optimizer.update(eps=1e-7, weight_decay_mask='all', plateau_patience=10, plateau_factor=0.1,
                       plateau_monitor='loss_expression')
    c.validation_share = 1 / 3
    c.early_stopping_patience = 50
    c.early_stopping_monitor = c.checkpoint_monitor = 'war'  # Keras' val accuracy: the expression's
  if preset == 'mae_dfer':
    c.model.encoder.update(frozen=False, drop_path=0.1)
    c.batch_size = 96
    c.optimizer.update(schedule='warmup_cosine', learning_rate=1e-3 * c.batch_size / 256, weight_decay=0.05,
                       layer_decay=0.75, warmup_epochs=5, min_lr_ratio=1e-3)
    c.label_smoothing = 0.1
    c.augment.update(policy='crop_flip_colour', crop_prob=1.0, crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
                     brightness=0.0, contrast=0.0, saturation=0.0)
    c.eval_views = 2
  return c
