"""TFDS splits -> per-process batches -> global jax.Arrays sharded over the mesh's batch axes.

    source = pipeline.data_source('ravdess_dfer', pipeline.train_split(0), data_dir)
    for batch in pipeline.train_batches(source, config, global_batch_size=32, mesh=mesh, start_step=step): ...
    for batch in pipeline.eval_batches(pipeline.data_source(..., 'fold0', ...), config, 32, mesh=mesh): ...

A batch is a dict: `video` float32 (B, T, H, W, 3) normalised with config.input.mean/std at config.image_size,
`boxes` (B, T, 4), `landmarks` (B, T, 5, 2), `face_mask` (B, T), `label` (B,), `mask` (B,) (a real example, not
padding) as global jax.Arrays; `index` (the example's position in the source) and `path` as this process's NumPy
arrays. With `num_views` > 1 (evaluation), the per-frame arrays get a view axis after B: (B, V, T, ...).

Order is a pure function of (seed, epoch): example i of step s is the same on any number of processes and after
any restart, so resuming is `start_step=s`. Augmentation randomness is seeded per (seed, epoch, example).
"""

import concurrent.futures as cf
import itertools

import jax
import numpy as np

from mtcae_jax import sharding as sharding_lib
from mtcae_jax.data import folds, silent_tensorflow
from mtcae_jax.data import augment as augment_lib
from mtcae_jax.data import video as video_lib

DEVICE_KEYS = ('video', 'boxes', 'landmarks', 'face_mask', 'label', 'mask')
train_split = folds.train_split


def data_source(name, split, data_dir, **kwargs):
  """Random access to a prepared split (no TensorFlow ops), e.g. split='fold1+fold2+fold3+fold4'.

  `kwargs` go to `tfds.data_source` (e.g. `deserialize_method`)."""
  silent_tensorflow.import_tf()  # hides GPUs and TPUs from TensorFlow before TFDS can run anything with it
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mtcae_jax.data import datasets  # pylint: disable=g-import-not-at-top  # registers the builders
  if name.split('/')[0].split(':')[0] not in datasets.BUILDERS:
    raise ValueError(f'config.dataset={name!r} is not one of {", ".join(datasets.BUILDERS)}'
                     + ('; a dataset config such as configs/mead.py sets it' if not name else ''))
  # Without this check TFDS would try to build the dataset here, from a manual_dir nobody gave it.
  if not tfds.builder(name, data_dir=data_dir).is_prepared():
    raise FileNotFoundError(f'dataset {name} is not prepared in {data_dir or "the TFDS default data_dir"}; '
                            f'run python -m mtcae_jax.data.prepare --dataset={name} --manual_dir=DIR '
                            f'--data_dir={data_dir or "DIR"}')
  return tfds.data_source(name, split=split, data_dir=data_dir, **kwargs)


TARGET_KEYS = ('boxes', 'landmarks', 'face_mask')


def read_targets(name, split, data_dir):
  """{'boxes' (N, T, 4), 'landmarks' (N, T, 5, 2), 'face_mask' (N, T)} of every example of a split, in source order.

  Reads the stored records without decoding their JPEG frames (faster than full examples:
  docs/BENCHMARKS.md#data-and-the-demo-cpu): TFDS keeps float tensors in a record's float_list and booleans in its
  int64_list.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # TFDS's own copy of the tf.train.Example proto: DESERIALIZE_NO_DECODE would parse with TensorFlow's.
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  source = data_source(name, split, data_dir, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  features = source.dataset_info.features
  out = {k: [] for k in TARGET_KEYS}
  for i in range(len(source)):
    stored = tf_example_pb2.Example.FromString(source[i]).features.feature
    for k in TARGET_KEYS:
      dtype, kind = features[k].np_dtype, stored[k].WhichOneof('kind')
      out[k].append(np.asarray(getattr(stored[k], kind).value, dtype).reshape(features[k].shape))
  return {k: np.stack(v) if v else np.zeros((0,) + features[k].shape, features[k].np_dtype) for k, v in out.items()}


def default_mesh():
  """A one-device mesh, for when none is given."""
  return sharding_lib.make_mesh((1, 1, 1))


def view_offsets(num_views):
  return [(v + 0.5) / num_views for v in range(num_views)]


def normalize(pixels, mean, std):
  """Pixels in [0, 1] -> the encoder's input: standardised by the dataset-wide `mean` and `std` per channel."""
  return (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def model_input(stored, num_frames, image_size, mean, std, offset=0.5):
  """Stored frames (uint8, T x 224 x 224 x 3) -> (indices, input): the `num_frames` frames sampled at `offset`,
  each squashed whole to `image_size` and normalised. What evaluation and prediction both give the model."""
  t = video_lib.sample_indices(len(stored), num_frames, offset)
  pixels = augment_lib.warp(stored[t], augment_lib.FULL, image_size).astype(np.float32) / 255
  return t, normalize(pixels, mean, std)


def preprocess(raw, config, rng=None, offset=0.5, augment=augment_lib.AugmentConfig()):
  """One stored example -> float32 arrays at config.num_frames x config.image_size; augmented if `rng`."""
  stored = np.asarray(raw['video'])
  if rng is None:
    t, video = model_input(stored, config.num_frames, config.image_size, config.input.mean, config.input.std,
                           offset)
  else:
    t = video_lib.sample_indices(len(stored), config.num_frames, offset)
  boxes = np.asarray(raw['boxes'], np.float32)[t]
  landmarks, face_mask = np.asarray(raw['landmarks'], np.float32)[t], np.asarray(raw['face_mask'], bool)[t]
  if rng is not None:
    video, boxes, landmarks, face_mask = augment_lib.augment(
        rng, stored[t], boxes, landmarks, face_mask, config.image_size, augment)
    video = normalize(video, config.input.mean, config.input.std)
  return dict(video=video, boxes=boxes, landmarks=landmarks, face_mask=face_mask)


def process_rows(sharding, global_batch_size):
  """(start, stop): the rows of a global batch that this process loads, those its devices hold (where the mesh
  puts them, not necessarily block p of P); on one process, all of them."""
  rows = [index[0].indices(global_batch_size)
          for index in sharding.addressable_devices_indices_map((global_batch_size,)).values()]
  return min(r[0] for r in rows), max(r[1] for r in rows)


def _to_global(local, sharding, global_batch_size):
  out = {k: local[k] for k in ('index', 'path')}
  for k in DEVICE_KEYS:
    shape = (global_batch_size,) + local[k].shape[1:]
    out[k] = jax.make_array_from_process_local_data(sharding, local[k], shape)
  return out


class _Loader:
  """Loads and preprocesses one process's share of a batch with threads (decoding and OpenCV release the GIL)."""

  def __init__(self, source, config, num_threads):
    self.source, self.config = source, config
    self.pool = cf.ThreadPoolExecutor(num_threads)

  def load(self, indices, valid, make):
    """Stacked examples; `make(raw, index)` -> dict of per-example arrays."""
    def one(i):
      raw = self.source[int(i)]
      return make(raw, int(i)), raw['label'], raw['path']
    rows = list(self.pool.map(one, indices))
    batch = {k: np.stack([r[0][k] for r in rows]) for k in rows[0][0]}
    batch['label'] = np.array([r[1] for r in rows], np.int32)
    batch['path'] = np.array([p.decode() if isinstance(p, bytes) else str(p) for _, _, p in rows], object)
    batch['index'] = np.asarray(indices, np.int64)
    batch['mask'] = np.asarray(valid, bool)
    return batch


def _prefetched(batches):
  """Computes the next batch on a thread while the caller uses this one."""
  with cf.ThreadPoolExecutor(1) as ex:
    it = iter(batches)
    future = ex.submit(next, it, None)
    while True:
      batch = future.result()
      if batch is None:
        return
      future = ex.submit(next, it, None)
      yield batch


def train_batches(source, config, global_batch_size, *, mesh=None, seed=None, start_step=0, num_steps=None,
                  augment=augment_lib.AugmentConfig(), num_threads=4):
  """Endless (or `num_steps`) training batches from step `start_step`: shuffled per epoch, augmented.

  Each epoch is a permutation of the source seeded by (seed, epoch), cut into N // B batches (the remainder is
  left for the next epoch's shuffle). Each process loads the rows of each global batch that its devices hold.
  """
  mesh = mesh or default_mesh()
  sharding = sharding_lib.batch_sharding(mesh, global_batch_size)
  seed = config.seed if seed is None else seed
  steps_per_epoch = len(source) // global_batch_size
  if steps_per_epoch == 0:
    raise ValueError(f'{len(source)} examples make no batch of {global_batch_size}')
  rows = slice(*process_rows(sharding, global_batch_size))
  loader = _Loader(source, config, num_threads)

  def local_batches():
    steps = itertools.count(start_step) if num_steps is None else range(start_step, start_step + num_steps)
    for step in steps:
      epoch, k = divmod(step, steps_per_epoch)
      order = np.random.default_rng([seed, epoch]).permutation(len(source))
      indices = order[k * global_batch_size:(k + 1) * global_batch_size][rows]

      def make(raw, i, epoch=epoch):
        rng = np.random.default_rng([seed, epoch, i])
        return preprocess(raw, config, rng, offset=rng.uniform(), augment=augment)
      yield loader.load(indices, np.ones(len(indices), bool), make)

  for local in _prefetched(local_batches()):
    yield _to_global(local, sharding, global_batch_size)


def num_eval_batches(num_examples, global_batch_size):
  return -(-num_examples // global_batch_size)


def eval_batches(source, config, global_batch_size, *, mesh=None, num_views=1, num_threads=4):
  """Every example exactly once, in source order; the last batch is padded (mask False) to the full size.

  With num_views > 1, each example gives that many temporal views (offsets spread over each segment), stacked
  on axis 1: average the views' class scores per example, as MAE-DFER does.
  """
  mesh = mesh or default_mesh()
  sharding = sharding_lib.batch_sharding(mesh, global_batch_size)
  first, end = process_rows(sharding, global_batch_size)
  loader = _Loader(source, config, num_threads)
  n = len(source)

  def make(raw, _):
    views = [preprocess(raw, config, offset=o) for o in view_offsets(num_views)]
    if num_views == 1:
      return views[0]
    return {k: np.stack([v[k] for v in views]) for k in views[0]}

  def local_batches():
    for b in range(num_eval_batches(n, global_batch_size)):
      positions = np.arange(b * global_batch_size + first, b * global_batch_size + end)
      # Padding rows repeat example 0 (real data, so no NaNs downstream) and are masked out.
      yield loader.load(np.where(positions < n, positions, 0), positions < n, make)

  for local in _prefetched(local_batches()):
    yield _to_global(local, sharding, global_batch_size)
