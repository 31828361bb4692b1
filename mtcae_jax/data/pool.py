"""An ordered, bounded map over a process pool that survives a worker crashing or hanging on one file.

Workers are started with `spawn`: forking after TensorFlow has run a multi-threaded op hangs the child.
"""

import collections
import concurrent.futures as cf
import multiprocessing
import os

import tqdm

CRASH = 'crashed the worker process (decoder or detector fault)'
# Seconds a clip may take in a worker: a dataset's clip takes about a second; a decoder stuck on a broken stream
# would hold its worker, and the build, forever.
CLIP_TIMEOUT = 300


def timed_out(seconds):
  """The skipped-file reason for a clip that ran past its time limit."""
  return f'timed out after {seconds:g} s (a stuck decoder or detector; its worker was killed)'


class ClipPool:
  """`imap(fn, items)` yields (item, result) in order; `workers=0` runs in this process.

  A crashed worker breaks a whole ProcessPoolExecutor; the pool is then restarted and the items that were
  unfinished are retried one at a time, so exactly the item that crashes again gets `on_crash(item)`. An item that
  runs past `timeout` cannot be stopped alone either: the workers are killed, it gets `on_timeout(item)`, and the
  other unfinished items run again.
  """

  def __init__(self, workers=None, initializer=None):
    self.workers = (os.cpu_count() or 1) if workers is None else int(workers)
    self.initializer = initializer
    self._executor = None

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *exc):
    # On an error (or Ctrl-C) do not wait for workers that may be stuck.
    self.close(kill=exc_type is not None)

  def close(self, kill=False):
    """Stops the workers: after their current items, or at once with `kill`."""
    executor, self._executor = self._executor, None
    if executor is None:
      return
    if not kill:
      executor.shutdown(wait=True, cancel_futures=True)
      return
    # The executor has no public handle on its workers before Python 3.14 (kill_workers).
    processes = list((getattr(executor, '_processes', None) or {}).values())
    manager = getattr(executor, '_executor_manager_thread', None)
    executor.shutdown(wait=False, cancel_futures=True)
    for p in processes:
      p.kill()
    for p in processes:
      p.join()
    if manager is not None:
      manager.join()  # it sees the dead workers and ends

  def _start(self):
    if self._executor is None:
      self._executor = cf.ProcessPoolExecutor(
          self.workers, mp_context=multiprocessing.get_context('spawn'), initializer=self.initializer)
    return self._executor

  def imap(self, fn, items, on_crash, desc=None, timeout=None, on_timeout=None):
    """Yields (item, fn(item)) in order; (item, on_crash(item)) for an item that crashes its worker, and
    (item, on_timeout(item)) (default on_crash) for one still running `timeout` seconds after it became the oldest
    unfinished item (by then it has a worker: the clock includes a fresh worker's start-up, never a wait in the
    queue). `timeout` None: no limit. In-process (`workers=0`) nothing can stop a stuck call: no limit there.
    """
    items = list(items)
    on_timeout = on_timeout or on_crash
    bar = tqdm.tqdm(total=len(items), desc=desc, unit='clip', dynamic_ncols=True, leave=False)
    try:
      if self.workers == 0:
        for item in items:
          yield item, fn(item)
          bar.update()
        return
      todo = collections.deque(items)
      window = 4 * self.workers
      pending = collections.deque()
      while todo or pending:
        while todo and len(pending) < window:
          item = todo.popleft()
          pending.append((item, self._start().submit(fn, item)))
        item, future = pending.popleft()
        outcome, result = self._wait(future, timeout)
        if outcome == 'crash':
          # Unknown which unfinished item crashed: retry them all alone, in order.
          suspects = [item] + [i for i, _ in pending]
          pending.clear()
          todo.extendleft(reversed(suspects))
          yield from self._one_at_a_time(fn, todo, len(suspects), on_crash, timeout, on_timeout, bar)
          continue
        if outcome == 'timeout':
          # The others were interrupted with it: back to the queue, in order.
          todo.extendleft(reversed([i for i, _ in pending]))
          pending.clear()
          result = on_timeout(item)
        yield item, result
        bar.update()
    finally:
      bar.close()

  def _wait(self, future, timeout):
    """('ok', result), ('crash', None) or ('timeout', None); the pool is closed after a crash or timeout."""
    try:
      return 'ok', future.result(timeout)
    except cf.process.BrokenProcessPool:
      self.close()
      return 'crash', None
    except cf.TimeoutError:
      if future.done():  # fn itself raised TimeoutError, or it finished just now
        return 'ok', future.result()
      self.close(kill=True)
      return 'timeout', None

  def _one_at_a_time(self, fn, todo, count, on_crash, timeout, on_timeout, bar):
    """Runs up to `count` items of `todo` alone, until one crashes (it gets on_crash: the culprit is found, the
    rest go back to the parallel path). One that times out gets on_timeout; the search goes on."""
    for _ in range(count):
      item = todo.popleft()
      outcome, result = self._wait(self._start().submit(fn, item), timeout)
      if outcome == 'crash':
        result = on_crash(item)
      elif outcome == 'timeout':
        result = on_timeout(item)
      yield item, result
      bar.update()
      if outcome == 'crash':
        return
