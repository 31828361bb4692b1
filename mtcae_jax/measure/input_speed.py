"""Host input throughput: how many training clips a second the data pipeline makes, and what the device gets.

`input_throughput(config, ...)` times `pipeline.train_batches`' host side alone (read, decode, sample, augment,
stack; nothing goes to the device) with the config's training augmentation; `real_batches(config, batch_size)`
gives `speed.jax_train` the real pipeline, to time the training step fed by it beside the step on a synthetic
batch. The command line is `tools/benchmark.py --input` / `--real_data`; figures:
docs/BENCHMARKS.md#input-pipeline.
"""

import os
import time

from mtcae_jax.data import augment, loader, pipeline
from mtcae_jax.measure import speed


def train_source(config):
  return pipeline.data_source(config.dataset, pipeline.train_split(config.fold), config.data_dir or None)


def input_throughput(config, batch_size, steps, log=print):
  """Host clips/s of training batches (after an untimed first batch, which starts the workers), per worker process
  and in total, and the bytes per clip that go to the device. config.input.num_workers -1 here means one worker
  per core: nothing else runs."""
  workers = config.input.num_workers if config.input.num_workers >= 0 else os.cpu_count() or 1
  batches = pipeline.train_batches(train_source(config), config, batch_size, num_steps=steps + 1,
                                   augment=augment.AugmentConfig.of(config.augment),
                                   num_workers=workers)
  it = batches.local_batches()
  start = time.perf_counter()
  first = next(it)
  first_s = time.perf_counter() - start
  sent = {k: first[k].nbytes // batch_size for k in pipeline.TRAIN_KEYS}
  float32_video = first['video'][0].size * 4
  del first  # grain unlinks a batch's shared memory when its arrays go
  times = []
  start = time.perf_counter()
  for _ in range(steps):
    next(it)
    times.append(time.perf_counter() - start)
  it.close()
  total = steps * batch_size / times[-1]
  out = {'clips_per_s': total, 'clips_per_s_per_worker': total / max(workers, 1), 'num_workers': workers,
         'threads_per_worker': loader.THREADS, 'batch': batch_size, 'steps': steps, 'first_batch_s': first_s,
         'bytes_per_clip_to_device': int(sum(sent.values())), 'bytes_per_clip_by_key': sent,
         'float32_video_bytes_per_clip': int(float32_video), 'cpu_count': os.cpu_count(),
         'cpu_affinity': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
         'load_avg': speed.load_average(), 'frames': config.num_frames, 'image_size': config.image_size}
  log(f'input: {total:.1f} clips/s with {workers} worker processes ({out["clips_per_s_per_worker"]:.1f} each, '
      f'{loader.THREADS} threads each), {out["bytes_per_clip_to_device"] / 2 ** 20:.2f} MiB a clip to the device '
      f'(float32 video: {out["float32_video_bytes_per_clip"] / 2 ** 20:.2f} MiB)')
  return out


def real_batches(config, batch_size):
  """mesh -> endless training batches of the config's dataset on that mesh, for `speed.jax_train`."""
  source = train_source(config)
  settings = augment.AugmentConfig.of(config.augment)
  return lambda mesh: pipeline.train_batches(source, config, batch_size, mesh=mesh, augment=settings)
