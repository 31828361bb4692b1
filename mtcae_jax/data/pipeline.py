"""TFDS splits -> per-process batches -> global jax.Arrays sharded over the mesh's batch axes.

    source = pipeline.data_source('ravdess_dfer', pipeline.train_split(0), data_dir)
    for batch in pipeline.train_batches(source, config, global_batch_size=32, mesh=mesh, start_step=step): ...
    for batch in pipeline.eval_batches(pipeline.data_source(..., 'fold0', ...), config, 32, mesh=mesh): ...

A batch is a dict: `video` uint8 (B, T, H, W, 3) at config.image_size (the jitted steps normalise it on the
device: `device_input.model_video`), `boxes` (B, T, 4), `landmarks` (B, T, 5, 2), `face_mask` (B, T), `label`
(B,), `mask` (B,) (a real example, not padding) and, in training, `colour` (B, 3) (each clip's colour-jitter
factors) as global jax.Arrays; `index` (the example's position in the source) and `path` as this process's NumPy
arrays. In evaluation with `num_views` temporal views x config.eval_crops spatial crops > 1, the per-frame arrays
get a view axis after B: (B, V, T, ...), V = views x crops (view-major: view 0's crops first).

Loading runs in grain worker processes (`loader.py`; config.input.num_workers). Order is a pure function of
(seed, epoch): example i of step s is the same for any number of processes and workers and after any restart,
so resuming is `start_step=s` (the training iterator's `get_state()`, saved with each checkpoint). Augmentation
randomness is seeded per (seed, epoch, example).
"""

import numpy as np

from mtcae_jax import sharding as sharding_lib
from mtcae_jax.data import box_format, folds, loader, silent_tensorflow
from mtcae_jax.data import augment as augment_lib
from mtcae_jax.data import video as video_lib

DEVICE_KEYS = ('video', 'boxes', 'landmarks', 'face_mask', 'label', 'mask')
TRAIN_KEYS = DEVICE_KEYS + ('colour',)  # training batches also carry each clip's colour-jitter factors
train_split = folds.train_split


def data_source(name, split, data_dir, **kwargs):
  """Random access to a prepared split (no TensorFlow ops), e.g. split='fold1+fold2+fold3+fold4'.

  `kwargs` go to `tfds.data_source` (e.g. `deserialize_method`)."""
  silent_tensorflow.import_tf()  # hides GPUs and TPUs from TensorFlow before TFDS can run anything with it
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mtcae_jax.data import datasets  # pylint: disable=g-import-not-at-top  # registers the builders
  base, _, config = name.split(':')[0].partition('/')
  if base not in datasets.BUILDERS:
    raise ValueError(f'config.dataset={name!r} is not one of {", ".join(datasets.BUILDERS)}'
                     + ('; a dataset config such as configs/mead.py sets it' if not name else ''))
  cls = datasets.BUILDERS[base]
  if config and '/' not in config and cls.get_builder_config(config) is None:
    raise ValueError(f'config.dataset={name!r}: {base} has no config {config!r}; one of '
                     f'{", ".join(cls.config_names()) or "(none)"}, or one of those with _<N>f (N stored frames)')
  # Without this check TFDS would try to build the dataset here, from a manual_dir nobody gave it.
  if not tfds.builder(name, data_dir=data_dir).is_prepared():
    raise FileNotFoundError(f'dataset {name} is not prepared in {data_dir or "the TFDS default data_dir"}; '
                            f'run python -m mtcae_jax.data.prepare --dataset={name} --manual_dir=DIR '
                            f'--data_dir={data_dir or "DIR"}')
  return tfds.data_source(name, split=split, data_dir=data_dir, **kwargs)


TARGET_KEYS = ('boxes', 'landmarks', 'face_mask')


def read_targets(name, split, data_dir, keys=TARGET_KEYS):
  """{'boxes' (N, T, 4), 'landmarks' (N, T, 5, 2), 'face_mask' (N, T)} of every example of a split, in source order
  (or the features `keys`, e.g. 'actor' (N,)).

  Reads the stored records without decoding their JPEG frames (faster than full examples:
  docs/BENCHMARKS.md#data-and-the-demo-cpu): TFDS keeps float tensors in a record's float_list and integers and
  booleans in its int64_list.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # TFDS's own copy of the tf.train.Example proto: DESERIALIZE_NO_DECODE would parse with TensorFlow's.
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  source = data_source(name, split, data_dir, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  features = source.dataset_info.features
  out = {k: [] for k in keys}
  for i in range(len(source)):
    stored = tf_example_pb2.Example.FromString(source[i]).features.feature
    for k in keys:
      dtype, kind = features[k].np_dtype, stored[k].WhichOneof('kind')
      out[k].append(np.asarray(getattr(stored[k], kind).value, dtype).reshape(features[k].shape))
  return {k: np.stack(v) if v else np.zeros((0,) + features[k].shape, features[k].np_dtype) for k, v in out.items()}


def default_mesh():
  """A one-device mesh, for when none is given."""
  return sharding_lib.make_mesh((1, 1, 1))


def view_offsets(num_views):
  return [(v + 0.5) / num_views for v in range(num_views)]


def crop_windows(height, width, num_crops):
  """MAE-DFER's test crops as windows (x0, y0, x1, y1) of a height x width frame: the short side resized to the
  input size and `num_crops` squares spread evenly along the long side, ends included. One crop is the whole
  frame, squashed to a square as in training (not a centre square); on a square frame every crop is the whole frame.
  """
  if num_crops == 1:
    return [augment_lib.FULL]
  if width >= height:
    side = height / width
    return [(k * (1 - side) / (num_crops - 1), 0.0, k * (1 - side) / (num_crops - 1) + side, 1.0)
            for k in range(num_crops)]
  side = width / height
  return [(0.0, k * (1 - side) / (num_crops - 1), 1.0, k * (1 - side) / (num_crops - 1) + side)
          for k in range(num_crops)]


def model_input(stored, num_frames, image_size, offset=0.5, window=augment_lib.FULL):
  """Stored frames (uint8, T x 224 x 224 x 3) -> (indices, frames): the `num_frames` frames sampled at `offset`,
  `window` of each (the whole frame by default) resized to `image_size` squared, still uint8
  (`device_input.model_video` normalises them on the device). What evaluation and prediction both give the model."""
  t = video_lib.sample_indices(len(stored), num_frames, offset)
  return t, augment_lib.warp(np.asarray(stored)[t], window, image_size)


def preprocess(raw, config, rng=None, offset=0.5, augment=augment_lib.AugmentConfig(), window=augment_lib.FULL):
  """One stored example -> arrays at config.num_frames x config.image_size, video uint8, boxes in
  config.box_format. With `rng` (training) the output has each clip's colour-jitter factors as `colour`, and the
  clip is augmented unless `augment` is None (`augment.policy='none'`: colour factors of 1). Without, `window`
  (evaluation's spatial crop) is the part of each frame kept, and the targets move with it."""
  stored = np.asarray(raw['video'])
  if rng is not None:
    window = augment_lib.FULL  # training moves the frame only by augmentation
  if rng is None or augment is None:
    t, video = model_input(stored, config.num_frames, config.image_size, offset, window)
  else:
    t, video = video_lib.sample_indices(len(stored), config.num_frames, offset), None
  boxes = np.asarray(raw['boxes'], np.float32)[t]
  landmarks, face_mask = np.asarray(raw['landmarks'], np.float32)[t], np.asarray(raw['face_mask'], bool)[t]
  if tuple(window) != augment_lib.FULL:
    boxes, landmarks, face_mask = augment_lib.move_targets(boxes, landmarks, face_mask, window)
  out = dict(video=video, boxes=boxes, landmarks=landmarks, face_mask=face_mask)
  if rng is not None:
    if augment is None:
      out['colour'] = np.ones(3, np.float32)
    else:
      out.update(zip(('video', 'boxes', 'landmarks', 'face_mask', 'colour'), augment_lib.augment(
          rng, stored[t], boxes, landmarks, face_mask, config.image_size, augment)))
  out['boxes'] = box_format.from_xyxy(out['boxes'], config.get('box_format', 'xyxy'))
  return out


def process_rows(sharding, global_batch_size):
  """(start, stop): the rows of a global batch that this process loads, those its devices hold (where the mesh
  puts them, not necessarily block p of P); on one process, all of them."""
  rows = [index[0].indices(global_batch_size)
          for index in sharding.addressable_devices_indices_map((global_batch_size,)).values()]
  return min(r[0] for r in rows), max(r[1] for r in rows)


class _TrainExample:
  """This process's j-th training example, counted from step 0 (a grain map: picklable, pure).

  Step s takes rows `rows` of the global batch at s: positions k*B + rows of epoch e's permutation, seeded by
  (seed, e), where s = e * steps_per_epoch + k; the example's augmentation is seeded by (seed, e, index).
  """

  def __init__(self, source, config, global_batch_size, rows, seed, augment):
    self.source, self.config, self.augment = source, config, augment
    self.global_batch_size, self.rows, self.seed = global_batch_size, rows, seed
    self.steps_per_epoch = len(source) // global_batch_size
    self._order = (None, None)

  def order(self, epoch):
    if self._order[0] != epoch:
      self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.source)))
    return self._order[1]

  def __call__(self, j):
    step, r = divmod(int(j), self.rows[1] - self.rows[0])
    epoch, k = divmod(step, self.steps_per_epoch)
    index = int(self.order(epoch)[k * self.global_batch_size + self.rows[0] + r])
    raw = self.source[index]
    rng = np.random.default_rng([self.seed, epoch, index])
    out = preprocess(raw, self.config, rng, offset=rng.uniform(), augment=self.augment)
    return _with_identity(out, raw, index, True)


class _EvalExample:
  """This process's j-th evaluation example: row `rows[0] + j % L` of batch j // L over the source in order;
  positions past its end repeat example 0 (real data, so no NaNs downstream) with mask False. `num_views`
  temporal views x `num_crops` spatial crops, view-major, on a view axis when more than one."""

  def __init__(self, source, config, global_batch_size, rows, num_views, num_crops=1):
    self.source, self.config, self.num_views, self.num_crops = source, config, num_views, num_crops
    self.global_batch_size, self.rows = global_batch_size, rows

  def __call__(self, j):
    b, r = divmod(int(j), self.rows[1] - self.rows[0])
    position = b * self.global_batch_size + self.rows[0] + r
    index = position if position < len(self.source) else 0
    raw = self.source[index]
    raw = dict(raw, video=np.asarray(raw['video']))  # stacked once for all views and crops
    windows = crop_windows(*raw['video'].shape[1:3], self.num_crops)
    views = [preprocess(raw, self.config, offset=o, window=w) for o in view_offsets(self.num_views) for w in windows]
    out = views[0] if len(views) == 1 else {k: np.stack([v[k] for v in views]) for k in views[0]}
    return _with_identity(out, raw, index, position < len(self.source))


def _with_identity(out, raw, index, valid):
  path = raw['path']
  return {**out, 'label': np.int32(raw['label']), 'index': np.int64(index), 'mask': np.bool_(valid),
          'path': path.decode() if isinstance(path, bytes) else str(path)}


def _num_workers(config, num_workers):
  if num_workers is None:
    num_workers = config.input.get('num_workers', -1)
  return loader.auto_workers() if num_workers < 0 else num_workers


def train_batches(source, config, global_batch_size, *, mesh=None, seed=None, start_step=0, num_steps=None,
                  augment=augment_lib.AugmentConfig(), num_workers=None):
  """Training batches from step `start_step` (endless, or `num_steps` of them): shuffled per epoch, augmented.

  Each epoch is a permutation of the source seeded by (seed, epoch), cut into N // B batches (the remainder is
  left for the next epoch's shuffle). Each process loads the rows of each global batch that its devices hold,
  with `num_workers` grain worker processes (None: config.input.num_workers). The result's `get_state()` is the
  position to save with a checkpoint (`resume_step` checks it).
  """
  mesh = mesh or default_mesh()
  sharding = sharding_lib.batch_sharding(mesh, global_batch_size)
  seed = config.seed if seed is None else seed
  if len(source) // global_batch_size == 0:
    raise ValueError(f'{len(source)} examples make no batch of {global_batch_size}')
  rows = process_rows(sharding, global_batch_size)
  stop = start_step + num_steps if num_steps is not None else loader.ENDLESS
  return loader.Batches(_TrainExample(source, config, global_batch_size, rows, seed, augment), rows[1] - rows[0],
                        start_step, stop, sharding=sharding, global_batch_size=global_batch_size,
                        device_keys=TRAIN_KEYS, num_workers=_num_workers(config, num_workers),
                        identity=dict(seed=seed, num_examples=len(source), global_batch_size=global_batch_size))



def resume_step(state, source, global_batch_size, seed):
  """The step to resume the data at from a checkpoint's `get_state()`; ValueError if the batches would differ."""
  now = dict(seed=seed, num_examples=len(source), global_batch_size=global_batch_size)
  changed = [f'{k} {state[k]} -> {v}' for k, v in now.items() if k in state and state[k] != v]
  if changed:
    raise ValueError(f'the training data differ from the checkpoint\'s ({", ".join(changed)}): resuming would '
                     'not see the batches an uninterrupted run would')
  return int(state['step'])


def num_eval_batches(num_examples, global_batch_size):
  return -(-num_examples // global_batch_size)


def stored_shape(source):
  """(frames, height, width) of the stored clips: the `video` feature's (TFDS), else the first example's (a list of
  dicts); None for an empty list."""
  info = getattr(source, 'dataset_info', None)
  if info is not None:
    return tuple(info.features['video'].shape[:3])
  return np.asarray(source[0]['video']).shape[:3] if len(source) else None


def _count(name, value):
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
  return value


def check_views(source, config, num_views):
  """ValueError (one line) if `num_views` > 1 temporal views would all read the same frames (no more stored than
  config.num_frames), or config.eval_crops > 1 spatial crops the same pixels (square stored frames)."""
  num_views, num_crops = _count('eval_views', num_views), _count('eval_crops', config.get('eval_crops', 1))
  shape = stored_shape(source) if num_views > 1 or num_crops > 1 else None
  stored = shape[0] if shape is not None and num_views > 1 else None
  if stored is not None and stored <= config.num_frames:
    raise ValueError(f'eval_views={num_views} needs more stored frames than num_frames={config.num_frames}; '
                     f'this split stores {stored}, so every view would see the same frames: use eval_views=1 or a '
                     'dataset prepared with more (--stored_frames)')
  size = shape[1:] if shape is not None and num_crops > 1 else None
  if size is not None and size[0] == size[1]:
    raise ValueError(f'eval_crops={num_crops} needs frames that are not square; this split stores {size[0]}x'
                     f'{size[1]} frames, so every crop would be the whole frame: use eval_crops=1')


def eval_batches(source, config, global_batch_size, *, mesh=None, num_views=1, num_workers=None):
  """Every example exactly once, in source order; the last batch is padded (mask False) to the full size.

  Each example gives `num_views` temporal views (offsets spread over each segment) x config.eval_crops spatial
  crops (`crop_windows`); more than one are stacked on axis 1, view-major: average their class scores per example,
  as MAE-DFER does (2 x 2 at test time). Views need more stored frames than config.num_frames and crops frames
  that are not square, else they would repeat the same pixels: `check_views` refuses that.
  """
  check_views(source, config, num_views)
  num_crops = config.get('eval_crops', 1)
  mesh = mesh or default_mesh()
  sharding = sharding_lib.batch_sharding(mesh, global_batch_size)
  rows = process_rows(sharding, global_batch_size)
  example = _EvalExample(source, config, global_batch_size, rows, num_views, num_crops)
  return loader.Batches(example, rows[1] - rows[0], 0,
                        num_eval_batches(len(source), global_batch_size), sharding=sharding,
                        global_batch_size=global_batch_size, device_keys=DEVICE_KEYS,
                        num_workers=_num_workers(config, num_workers))
