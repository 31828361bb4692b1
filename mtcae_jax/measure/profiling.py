"""Where a step's device time goes: a profiler trace of a few calls, summed per kernel.

The trace (`jax.profiler.trace`) opens in TensorBoard's profile plugin or Perfetto; `kernel_table` reads the
trace-event file that it writes beside the raw profile and sums the device's kernels by name.
"""

import collections
import gzip
import json
import pathlib

import jax


def trace(fn, steps, directory):
  """Calls `fn` (which blocks until its result is ready) `steps` times under the profiler, writing `directory`."""
  with jax.profiler.trace(str(directory)):
    for _ in range(steps):
      fn()


def load_events(directory):
  """The complete ('X') events of the newest trace under `directory`, each with its process and thread names."""
  files = sorted(pathlib.Path(directory).glob('plugins/profile/*/*.trace.json.gz'))
  if not files:
    raise FileNotFoundError(f'no *.trace.json.gz under {directory}/plugins/profile')
  data = json.loads(gzip.open(files[-1]).read())
  events = data['traceEvents'] if isinstance(data, dict) else data
  names = {}
  for e in events:
    if e.get('ph') == 'M' and e.get('name') in ('process_name', 'thread_name'):
      names[(e['pid'], e.get('tid') if e['name'] == 'thread_name' else None)] = e['args']['name']
  return [dict(e, process=names.get((e['pid'], None), ''), thread=names.get((e['pid'], e.get('tid')), ''))
          for e in events if e.get('ph') == 'X']


def kernel_table(directory, steps, top=25):
  """Device time per step: the total, and the `top` kernels by time as (name, ms per step, calls per step).

  Only the GPU/TPU streams count (processes named '/device:...'; XLA's derived 'XLA Ops'/'XLA Modules' lines
  are skipped so that no kernel counts twice). Empty on CPU, whose trace has no device lines.
  """
  time_us, calls = collections.Counter(), collections.Counter()
  for e in load_events(directory):
    if not e['process'].startswith('/device:') or e['thread'].startswith(('XLA', 'Steps', 'Framework')):
      continue
    time_us[e['name']] += e.get('dur', 0)
    calls[e['name']] += 1
  total = sum(time_us.values()) / steps / 1e3
  rows = [(name, us / steps / 1e3, calls[name] / steps) for name, us in time_us.most_common(top)]
  return {'device_ms_per_step': total, 'kernels': rows}
