"""Shared test helpers: tiny configs that run in seconds on a CPU."""

import os

# Tests check values, not speed: XLA's unoptimised CPU backend compiles about three times faster.
os.environ.setdefault('XLA_FLAGS', '--xla_backend_optimization_level=0')

import sys

if sys.version_info >= (3, 12):
  # On Python 3.12, torch 2.13 crashes (segfault) importing torch._dynamo, which its optimizers and transformers
  # load, once TensorFlow 2.21 is loaded; the other order works. The data tests load TensorFlow first.
  try:
    import torch._dynamo  # pylint: disable=unused-import
  except ImportError:
    pass

import atexit
import contextlib
import importlib.resources
import shutil
import tempfile

try:
  import fcntl
except ImportError:  # not POSIX: each xdist worker builds its own datasets
  fcntl = None

import jax
import numpy as np
import pytest
from flax import nnx

from mtcae_jax import models
from mtcae_jax.configs import default, demo
from mtcae_jax.data import demo_data, faces, prepare

jax.config.update('jax_default_matmul_precision', 'highest')  # parity checks must not use TF32 on a GPU
# Many tests compile the same programs (a training run and its resumption, the folds of a cross-validation).
_CACHE = tempfile.mkdtemp(prefix='mtcae_jax_test_cache_')
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
os.environ.update(JAX_COMPILATION_CACHE_DIR=_CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')  # subprocesses


def tiny_config(strategy='cascaded', **model):
  """4 frames of 32 px -> a 2x2x2 token grid; 2-layer encoder of width 32, 2-layer decoders of width 16."""
  c = default.get_config(f'variant=tiny,strategy={strategy}')
  c.num_frames, c.image_size = 4, 32
  c.model.decoder.update(depth=2, width=16, num_heads=3, head_dim=8, mlp_dim=24)
  c.model.encoder.frozen = False  # the tests train the tiny encoder too
  c.optimizer.schedule = 'warmup_cosine'
  c.model.update(model)
  return c


# The demo config at 4 frames of 32 px on data already built in `data_dir`: a training run in seconds.
def small_config(data_dir, **overrides):
  c = demo.get_config()
  c.prepare_demo_data = False
  c.data_dir = data_dir
  c.num_frames, c.image_size = 4, 32
  c.batch_size = c.eval_batch_size = 4
  c.num_steps, c.eval_every_steps, c.log_every_steps = 4, 2, 1
  c.update(overrides)
  return c


def split_call(model):
  """A jitted pure function (state, video, key) -> outputs for `model`."""
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda s, video, key=None: nnx.merge(graphdef, s)(video, key=key))
  return fn, state


@pytest.fixture
def video():
  return jax.random.normal(jax.random.key(42), (2, 4, 32, 32, 3))


@pytest.fixture
def build():
  return lambda config, seed=0: models.build_model(config, rngs=nnx.Rngs(seed))


def pytest_collection_modifyitems(items):
  """The slow tests first, so that xdist does not leave one of them running alone at the end."""
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)  # a stable sort keeps the rest in order


def build_once(tmp_path_factory, name, build):
  """`build(path)` once per test run: the first xdist worker builds under a lock, the others wait and reuse it.

  Each worker's base temporary directory (popen-gw0, popen-gw1, ...) is a child of the run's, so the run's is
  where they meet; without xdist it is this process's own.
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER') and fcntl is not None:
    root = root.parent
  path, done = root / name, root / f'{name}.done'
  with open(root / f'{name}.lock', 'w') as lock:
    if fcntl is not None:
      fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when a worker dies holding it
    if not done.exists():
      shutil.rmtree(path, ignore_errors=True)  # what a failed build in another worker left
      path.mkdir()
      build(path)
      done.touch()
  return str(path)


def fixed_faces(frames):
  """A stand-in for MTCNN in tests that need a dataset, not labels: the same face in every frame but the last."""
  n = len(frames)
  points = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.4, 0.7], [0.6, 0.7]], np.float32)
  return faces.FaceLabels(boxes=np.tile(np.float32([0.2, 0.2, 0.8, 0.9]), (n, 1)),
                           landmarks=np.tile(points, (n, 1, 1)), face_mask=np.arange(n) < n - 1)


@contextlib.contextmanager
def fixed_face_labels():
  """Builders label faces with `fixed_faces` instead of MTCNN while this is open."""
  previous = faces._shared.get(faces.MIN_FACE_SIZE)  # pylint: disable=protected-access
  faces._shared[faces.MIN_FACE_SIZE] = fixed_faces  # pylint: disable=protected-access
  try:
    yield
  finally:
    faces._shared.pop(faces.MIN_FACE_SIZE)  # pylint: disable=protected-access
    if previous is not None:
      faces._shared[faces.MIN_FACE_SIZE] = previous  # pylint: disable=protected-access


@pytest.fixture(scope='session')
def demo_data_dir(tmp_path_factory):
  """The bundled demo clips prepared as the `ravdess_dfer` TFDS dataset (in-process, fixed face labels)."""
  def build(data_dir):
    with fixed_face_labels():
      prepare_demo(data_dir)
  return build_once(tmp_path_factory, 'tfds', build)


@pytest.fixture(scope='session')
def mtcnn_demo_data_dir(tmp_path_factory):
  """The bundled demo clips as the `ravdess_dfer` dataset with real MTCNN labels (in-process, about 15 s)."""
  return build_once(tmp_path_factory, 'tfds_mtcnn', prepare_demo)


def prepare_demo(data_dir, **builder_kwargs):
  builder = prepare.make_builder(demo_data.DATASET, str(data_dir), workers=0, **builder_kwargs)
  with importlib.resources.as_file(demo_data.RAW) as raw:
    prepare.prepare(builder, str(raw))


DEMO_32F = 'ravdess_dfer/video_speech_7class_32f'  # the demo dataset with 32 stored frames


@pytest.fixture(scope='session')
def demo_32f_data_dir(tmp_path_factory):
  """The demo clips prepared with 32 stored frames a clip (`DEMO_32F`; in-process, fixed face labels)."""
  def build(data_dir):
    with fixed_face_labels():
      prepare_demo(data_dir, stored_frames=32)
  return build_once(tmp_path_factory, 'tfds_32f', build)
