"""Import TensorFlow silently and keep it off the accelerators; or tell which extra to install when it is missing.

TensorFlow only prepares data here (MTCNN, TFDS's builders); training and prediction read the prepared datasets
without it. Where it is installed anyway (Colab, NGC images), left alone it prints oneDNN and CUDA notices on
import and grabs all GPU memory at its first op, leaving none to JAX. Call `import_tf()` instead of
`import tensorflow`, and `require_data_extra()` where preparation starts.
"""

import contextlib
import importlib.util
import logging
import os

DATA_EXTRA = 'pip install -e ".[data]"'
MTCNN_EXTRA = 'pip install -e ".[mtcnn]"'  # where TensorFlow is installed: [data]'s tensorflow-cpu would overwrite it
_tf = None


class MissingDataExtra(ImportError):
  """TensorFlow or mtcnn, needed to prepare datasets, is not installed; the message is one line naming the extra."""


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
  """TensorFlow, imported once without start-up noise, with GPUs and TPUs hidden from it; None if not installed."""
  global _tf
  if _tf is None:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    # TF turns its oneDNN CPU kernels on by default only where the CPU has AVX512-VNNI, AVX-VNNI or AMX; on AVX2
    # machines it falls back to Eigen, which runs MTCNN's small convolutions slower
    # (docs/DATA.md#preprocessing-throughput).
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
    try:
      with _stderr_silenced():
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
    except ImportError:
      return None  # training and prediction go on without it; require_data_extra() says what preparing needs
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger('absl').setLevel(logging.ERROR)
    for kind in ('GPU', 'TPU'):
      try:
        tf.config.set_visible_devices([], kind)
      except (RuntimeError, ValueError):
        pass  # already initialised, or no such device type in this build
    _tf = tf
  return _tf


def _installed(module):
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):  # ValueError: blocked with sys.modules[module] = None
    return False


def require_data_extra():
  """TensorFlow, imported as `import_tf()` does; raises MissingDataExtra if it or mtcnn is not installed."""
  tf = import_tf()
  missing = [name for name, ok in (('tensorflow', tf is not None), ('mtcnn', _installed('mtcnn'))) if not ok]
  if missing:
    raise MissingDataExtra(f'preparing datasets needs {" and ".join(missing)} (training and prediction do not): '
                           f'{DATA_EXTRA if tf is None else MTCNN_EXTRA}')
  return tf


def single_threaded():
  """One intra-op and one inter-op thread: for worker processes, where the pool supplies the parallelism."""
  tf = require_data_extra()
  try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:
    pass  # TF already ran an op; the setting can no longer change
