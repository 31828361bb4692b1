"""Batches through grain: positions -> examples (on worker processes) -> stacked batches -> global jax.Arrays.

What a batch holds is a pure function of its position: `example(j)` gives this process's j-th example, counted
from step 0, and `Batches` stacks examples [s * L, (s + 1) * L) into step s's share of L rows. Grain gives each
worker process whole batches (worker w builds batches w, w + W, ...) and returns them in order, so the batches do
not depend on the number of workers, threads or processes. The iterator's state is therefore its next step.
"""

import concurrent.futures as cf
import os

import grain
import jax
from absl import flags
import numpy as np

from mtcae_jax.data import silent_tensorflow

ENDLESS = 2 ** 40  # steps: the end of training when none is given

# Threads per worker process (or in this process, without workers): JPEG decoding and OpenCV release the GIL.
THREADS = 2


def auto_workers():
  """Worker processes when the config says -1: none on a CPU backend (its cores run the model), else all cores
  but two (the training loop and the transfers to the device)."""
  return 0 if jax.default_backend() == 'cpu' else max(1, (os.cpu_count() or 1) - 2)


def _init_worker(worker_index, worker_count):
  del worker_index, worker_count
  # TFDS imports TensorFlow where it is installed; without this it would take the GPUs' memory in every worker.
  silent_tensorflow.import_tf()


def stack(rows):
  """Per-example dicts -> one dict of stacked arrays (`path` as an object array of str)."""
  out = {k: np.stack([r[k] for r in rows]) for k in rows[0] if k != 'path'}
  out['path'] = np.array([r['path'] for r in rows], object)
  return out


def to_global(local, sharding, global_batch_size, device_keys):
  """This process's rows -> global jax.Arrays for `device_keys`; `index` and `path` stay this process's NumPy."""
  out = {k: local[k] for k in ('index', 'path')}
  for k in device_keys:
    out[k] = jax.make_array_from_process_local_data(sharding, local[k], (global_batch_size,) + local[k].shape[1:])
  return out


class Batches:
  """An iterator over steps [start_step, stop_step) of global batches; `get_state()` is what a checkpoint saves.

  `example(j)` -> dict of arrays (with `path`); `local_batch` rows per step on this process; `num_workers` grain
  worker processes (0: threads in this process).
  """

  def __init__(self, example, local_batch, start_step, stop_step, *, sharding, global_batch_size, device_keys,
               num_workers=0, identity=None):
    self.example, self.local_batch = example, local_batch
    self.start_step, self.stop_step = start_step, stop_step
    self.sharding, self.global_batch_size, self.device_keys = sharding, global_batch_size, device_keys
    self.num_workers = num_workers
    self.identity = dict(identity or {})
    self.step = start_step
    self._batches = None

  def local_batches(self):
    """This process's shares of the batches of steps [step, stop_step) as NumPy (nothing on the device)."""
    # Past stop_step the grain pipeline goes on (never ends): grain's workers leave the shared memory of their last
    # batches to the resource tracker when they reach the end of their slice, not when they are closed.
    ds = grain.MapDataset.range(self.step * self.local_batch, ENDLESS * self.local_batch)
    ds = ds.map(self.example).batch(self.local_batch, batch_fn=stack)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=THREADS, prefetch_buffer_size=2 * THREADS))
    if self.num_workers:
      # Grain reads its settings from absl's global flags, which our commands (fresh FlagValues per run) and
      # library callers never parse: its defaults then.
      if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
      it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers, per_worker_buffer_size=2),
                          worker_init_fn=_init_worker)
    it = iter(it)
    try:
      for _ in range(self.step, self.stop_step):
        batch = next(it)
        # A worker's arrays live in shared memory until they are dropped: copied out, they are freed now rather
        # than whenever the last reference goes (or at exit, with a warning), and nothing on the device aliases them.
        yield {k: np.array(v) for k, v in batch.items()} if self.num_workers else batch
    finally:
      it.close()

  def get_state(self):
    """{'step': the next step this iterator gives, ...identity}: resuming there gives the same batches."""
    return {'step': self.step, **self.identity}

  def __iter__(self):
    return self

  def __next__(self):
    if self._batches is None:
      self._batches = self._generate()
    return next(self._batches)

  def close(self):
    """Stops the worker processes (also when the iterator is garbage-collected)."""
    if self._batches is not None:
      self._batches.close()

  def _generate(self):
    local = self.local_batches()
    # The next batch goes to the device on a thread while the caller uses this one.
    with cf.ThreadPoolExecutor(1) as pool:
      put = lambda: to_global(next(local), self.sharding, self.global_batch_size, self.device_keys)
      try:
        future = pool.submit(put) if self.step < self.stop_step else None
        while future is not None:
          batch = future.result()
          self.step += 1
          future = pool.submit(put) if self.step < self.stop_step else None
          yield batch
      finally:
        if future is not None and not future.cancel():
          try:  # a batch being made: let it finish before the workers go
            future.result()
          except Exception:  # pylint: disable=broad-except  # the caller stopped early; this batch is unused
            pass
        local.close()
