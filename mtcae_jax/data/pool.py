"""An ordered, bounded map over a process pool that survives a worker crashing on one file.

Workers are started with `spawn`: forking after TensorFlow has run a multi-threaded op hangs the child.
"""

import collections
import concurrent.futures as cf
import multiprocessing
import os

import tqdm

CRASH = 'crashed the worker process (decoder or detector fault)'


class ClipPool:
  """`imap(fn, items)` yields (item, result) in order; `workers=0` runs in this process.

  A crashed worker breaks a whole ProcessPoolExecutor; the pool is then restarted and the unfinished items are
  retried one at a time, so exactly the item that crashes again gets `(item, CRASH)` via `on_crash`.
  """

  def __init__(self, workers=None, initializer=None):
    self.workers = (os.cpu_count() or 1) if workers is None else int(workers)
    self.initializer = initializer
    self._executor = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self):
    if self._executor is not None:
      self._executor.shutdown(wait=True, cancel_futures=True)
      self._executor = None

  def _start(self):
    if self._executor is None:
      self._executor = cf.ProcessPoolExecutor(
          self.workers, mp_context=multiprocessing.get_context('spawn'), initializer=self.initializer)
    return self._executor

  def imap(self, fn, items, on_crash, desc=None):
    """Yields (item, fn(item)) in order; for an item that crashes its worker, (item, on_crash(item))."""
    items = list(items)
    bar = tqdm.tqdm(total=len(items), desc=desc, unit='clip', dynamic_ncols=True, leave=False)
    try:
      if self.workers == 0:
        for item in items:
          yield item, fn(item)
          bar.update()
        return
      todo = collections.deque(items)
      window = 4 * self.workers
      while todo:
        pending = collections.deque()
        broken = False
        while todo or pending:
          while todo and len(pending) < window and not broken:
            item = todo.popleft()
            pending.append((item, self._start().submit(fn, item)))
          if not pending:
            break
          item, future = pending.popleft()
          try:
            result = future.result()
          except cf.process.BrokenProcessPool:
            # Unknown which pending item crashed: retry them all alone, in order.
            todo.extendleft(reversed([item] + [i for i, _ in pending]))
            self.close()
            pending.clear()
            yield from self._one_at_a_time(fn, todo, on_crash, bar)
            break
          yield item, result
          bar.update()
    finally:
      bar.close()

  def _one_at_a_time(self, fn, todo, on_crash, bar):
    """Runs items alone until one crashes (it gets on_crash) or all in `todo` that were pending have run."""
    while todo:
      item = todo.popleft()
      try:
        result = self._start().submit(fn, item).result()
      except cf.process.BrokenProcessPool:
        self.close()
        result = on_crash(item)
        yield item, result
        bar.update()
        return  # the culprit is found; the rest go back to the parallel path
      yield item, result
      bar.update()
