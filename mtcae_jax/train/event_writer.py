"""Scalars to TensorBoard event files and the log, without TensorFlow.

clu's metric writers import TensorFlow (for tf.summary) as soon as `clu.metric_writers` is imported, which would
make TensorFlow a requirement of training. The tensorboard package writes the same event files by itself.
"""

import time

from absl import logging


class EventWriter:
  """`write_scalars(step, {tag: value})` to absl's log and, with a logdir, to a TensorBoard event file there."""

  def __init__(self, logdir=None):
    self._events = None
    if logdir is not None:
      from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top
      self._events = event_file_writer.EventFileWriter(str(logdir))  # writes from its own thread, as clu's async

  def write_scalars(self, step, scalars):
    logging.info('[%d] %s', step, ', '.join(f'{k}={v:.6g}' for k, v in sorted(scalars.items())))
    if self._events is None:
      return
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
    self._events.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                           summary=summary_pb2.Summary(value=values)))

  def flush(self):
    if self._events is not None:
      self._events.flush()

  def close(self):
    if self._events is not None:
      self._events.close()
      self._events = None
