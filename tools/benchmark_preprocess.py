"""Preprocessing throughput: clips/s for the builders' per-clip work (decode, sample 16, resize to 224, batched
MTCNN, JPEG encode) in a pool of worker processes. Worker start-up is excluded (a warm-up round runs first).
On a shared machine other jobs stretch the wall clock, so it also reports the workers' CPU seconds per clip and
how many CPUs other processes kept busy during the timed run (from /proc/stat, on Linux).

    python tools/benchmark_preprocess.py [--workers=2] [--clips=48] [--src=mtcae_jax/data/demo/ravdess] \
        [--min_face_size=32]

By default it uses the 640x360 clips of the bundled demo data (actors 01 and 02, 16-32 frames each), cycled.
"""

import functools
import os
import sys
import time

import cv2
from absl import flags

from mtcae_jax import cli
from mtcae_jax.data import faces, stored_example
from mtcae_jax.data import pool as pool_lib

DEMO = os.path.join(os.path.dirname(__file__), '..', 'mtcae_jax', 'data', 'demo', 'ravdess')


def _clips(src, width, height):
  found = []
  for d, _, files in sorted(os.walk(src)):
    for f in sorted(files):
      cap = cv2.VideoCapture(os.path.join(d, f))
      size = (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
      frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
      cap.release()
      if size == (width, height):
        found.append((os.path.join(d, f), frames))
  return found


def _busy_cpu_seconds():
  """CPU seconds that all processes on the machine have used (Linux /proc/stat), or None."""
  try:
    with open('/proc/stat') as f:
      ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
  except (OSError, ValueError):
    return None
  return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf('SC_CLK_TCK')


def _timed(path, min_face_size):
  """stored_example.process in a worker, with the CPU seconds it took there."""
  start = time.process_time()
  result = stored_example.process(path, min_face_size)
  return result, time.process_time() - start


def define_flags(fv):
  cli.DEFINE_path('src', DEMO, 'Folder of clips (searched recursively).', fv)
  flags.DEFINE_integer('workers', 2, 'Worker processes (0: in-process).', flag_values=fv)
  flags.DEFINE_integer('clips', 48, 'Clips to process, cycling through those found.', flag_values=fv)
  flags.DEFINE_integer('min_face_size', faces.MIN_FACE_SIZE, 'As in mtcae_jax.data.prepare.', flag_values=fv)
  flags.DEFINE_integer('width', 640, 'Only clips this wide (pixels) are used.', flag_values=fv)
  flags.DEFINE_integer('height', 360, 'Only clips this high (pixels) are used.', flag_values=fv)


def command(args, rest):
  del rest
  if args.clips < 1 or args.workers < 0:
    raise cli.Error('--clips must be at least 1 and --workers at least 0')
  try:
    faces.check_min_face_size(args.min_face_size)
  except ValueError as e:
    raise cli.Error(f'--{e}') from None
  sources = _clips(args.src, args.width, args.height)
  if not sources:
    raise cli.Error(f'no {args.width}x{args.height} clips under {args.src}')
  paths = [sources[i % len(sources)][0] for i in range(args.clips)]
  mean_frames = sum(sources[i % len(sources)][1] for i in range(args.clips)) / args.clips
  init = functools.partial(stored_example.init_worker, args.min_face_size)
  timed = functools.partial(_timed, min_face_size=args.min_face_size)
  with pool_lib.ClipPool(args.workers, initializer=init) as pool:
    crash = lambda _: ((None, pool_lib.CRASH), 0.0)
    list(pool.imap(timed, paths[:4 * args.workers], crash, desc='warm-up'))
    busy, own, start = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
    results = [r for _, r in pool.imap(timed, paths, crash, desc='benchmark')]
    seconds = time.perf_counter() - start
    busy = None if busy is None else _busy_cpu_seconds() - busy
    own = time.process_time() - own + sum(c for _, c in results)
  failed = [reason for (_, reason), _ in results if reason is not None]
  if len(failed) == len(results):
    cli.error(f'every clip failed, e.g. {failed[0]}')
    return 1
  cpu = sum(c for _, c in results) / args.clips
  others = 'unknown' if busy is None else f'{max(busy - own, 0) / seconds:.2f}'
  print(f'{args.clips} clips of {args.width}x{args.height} ({mean_frames:.0f} frames on average) with '
        f'{args.workers} workers: {seconds:.1f} s, {args.clips / seconds:.2f} clips/s ({len(failed)} failed); '
        f'{cpu:.3f} CPU s a clip in the workers ({args.workers / cpu:.1f} clips/s with a free core each); '
        f'{os.cpu_count()} CPUs, other processes kept {others} CPUs busy, load average {os.getloadavg()[0]:.2f}')
  return 0


def main(argv=None):
  return cli.run(__doc__, define_flags, command, argv)


if __name__ == '__main__':
  sys.exit(main())
