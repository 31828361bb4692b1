"""Import TensorFlow silently and keep it off the accelerators.

TensorFlow only prepares data here (MTCNN, TFDS). Left alone it prints oneDNN and CUDA notices on import and
grabs all GPU memory at its first op, leaving none to JAX. Call `import_tf()` instead of `import tensorflow`.
"""

import contextlib
import logging
import os

_tf = None


@contextlib.contextmanager
def _stderr_silenced():
  # TF_CPP_MIN_LOG_LEVEL does not silence the lines printed from C++ during import: redirect fd 2 itself.
  try:
    saved = os.dup(2)
  except OSError:
    yield
    return
  try:
    with open(os.devnull, 'w') as devnull:
      os.dup2(devnull.fileno(), 2)
      yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def import_tf():
  """TensorFlow, imported once without start-up noise, with GPUs and TPUs hidden from it."""
  global _tf
  if _tf is None:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    # TF turns its oneDNN CPU kernels on by default only where the CPU has AVX512-VNNI, AVX-VNNI or AMX; on AVX2
    # machines it falls back to Eigen, which runs MTCNN's small convolutions slower
    # (docs/DATA.md#preprocessing-throughput).
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
    with _stderr_silenced():
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger('absl').setLevel(logging.ERROR)
    for kind in ('GPU', 'TPU'):
      try:
        tf.config.set_visible_devices([], kind)
      except (RuntimeError, ValueError):
        pass  # already initialised, or no such device type in this build
    _tf = tf
  return _tf


def single_threaded():
  """One intra-op and one inter-op thread: for worker processes, where the pool supplies the parallelism."""
  tf = import_tf()
  try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:
    pass  # TF already ran an op; the setting can no longer change
