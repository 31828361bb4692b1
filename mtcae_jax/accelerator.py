"""Refuse to run on the CPU where the machine has a GPU or TPU that JAX does not use.

JAX falls back to the CPU with a warning when its accelerator plugin is missing or does not match jaxlib (e.g.
`pip install -e .` downgraded jax below a newer `jax[cuda12]`): training would run for days on the CPU. `check`
looks for the hardware without starting JAX, and only where it finds some asks JAX for its backend; the one-line
error says what was found, why JAX is on the CPU where the installed versions tell, and the fix. `--allow_cpu`
(or `JAX_PLATFORMS=cpu`) runs on the CPU on purpose.
"""

import importlib.metadata
import os
import re
import shutil

from mtcae_jax import cli

CUDA_PLUGINS = ('jax-cuda12-plugin', 'jax-cuda12-pjrt', 'jax-cuda13-plugin', 'jax-cuda13-pjrt')
TPU_ENV = ('TPU_NAME', 'TPU_ACCELERATOR_TYPE', 'TPU_WORKER_ID', 'COLAB_TPU_ADDR')
ACCELERATOR_PLATFORMS = ('cuda', 'gpu', 'rocm', 'tpu')


def find(dev='/dev', environ=None, which=shutil.which):
  """('gpu' or 'tpu', what was found) for the machine's accelerator, else None. Starts nothing."""
  environ = os.environ if environ is None else environ
  nvidia = [n for n in ('nvidia0', 'nvidiactl') if os.path.exists(os.path.join(dev, n))]
  if nvidia:
    return 'gpu', 'an NVIDIA GPU (' + ', '.join(os.path.join(dev, n) for n in nvidia) + ')'
  smi = which('nvidia-smi')
  if smi:
    return 'gpu', f'an NVIDIA GPU ({smi})'
  accel = _listdir(dev, lambda n: re.fullmatch(r'accel\d+', n))
  # v5e and later TPU VMs expose the chips through VFIO, as numbered groups
  vfio = [os.path.join('vfio', n) for n in _listdir(os.path.join(dev, 'vfio'), lambda n: n.isdigit())]
  if accel or vfio:
    return 'tpu', 'a TPU (' + ', '.join(os.path.join(dev, n) for n in (accel + vfio)[:4]) + ')'
  names = [n for n in TPU_ENV if environ.get(n)]
  if names:
    return 'tpu', 'a TPU (' + ', '.join(f'{n}={environ[n]}' for n in names) + ')'
  return None


def _listdir(path, keep):
  try:
    return sorted(n for n in os.listdir(path) if keep(n))
  except OSError:
    return []


def _version(name):
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def why(kind, version=_version):
  """Why JAX is on the CPU, as far as the installed versions tell; '' where they look right."""
  jax, jaxlib = version('jax'), version('jaxlib')
  reasons = [f'jaxlib {jaxlib} does not match jax {jax}'] if jax and jaxlib and jax != jaxlib else []
  if kind == 'gpu':
    plugins = {n: version(n) for n in CUDA_PLUGINS if version(n)}
    if not plugins:
      reasons.append('no CUDA plugin installed (jax-cuda12-plugin or jax-cuda13-plugin)')
    reasons += [f'{n} {v} does not match jaxlib {jaxlib}' for n, v in plugins.items() if v != jaxlib]
    if plugins and not reasons:
      reasons.append(f'{", ".join(f"{n} {v}" for n, v in plugins.items())} match jaxlib but found no usable GPU '
                     '(see the CUDA warning above)')
  else:
    libtpu = version('libtpu')
    if not libtpu:
      reasons.append('libtpu not installed')
    elif not reasons:
      reasons.append(f'libtpu {libtpu} is installed but found no usable TPU (in use by another process?)')
  return '; '.join(reasons)


def _fix(kind, version):
  if kind == 'tpu':
    return 'pip install -e ".[tpu]"'
  if version('jax-cuda13-plugin') and not version('jax-cuda12-plugin'):
    return 'pip install -e ".[cuda13]"'
  return 'pip install -e ".[cuda12]" (".[cuda13]" for CUDA 13)'


def problem(allow_cpu=False, *, dev='/dev', environ=None, which=shutil.which, backend=None, version=_version):
  """The one-line refusal, or None where JAX runs on the accelerator, the machine has none, or the CPU is chosen.
  `backend`: a function returning JAX's backend name (default: jax.default_backend, called only where an
  accelerator is found, as it starts JAX's backends)."""
  environ = os.environ if environ is None else environ
  platforms = environ.get('JAX_PLATFORMS', '').lower()
  if allow_cpu or (platforms and not any(p in platforms for p in ACCELERATOR_PLATFORMS)):
    return None
  found = find(dev, environ, which)
  if found is None:
    return None
  if backend is None:
    import jax  # pylint: disable=g-import-not-at-top
    backend = jax.default_backend
  if backend() != 'cpu':
    return None
  kind, what = found
  reason = why(kind, version)
  return (f'JAX runs on the CPU but this machine has {what}' + (f': {reason}' if reason else '')
          + f'; install the matching JAX with {_fix(kind, version)}, or pass --allow_cpu to run on the CPU on purpose')


def check(allow_cpu=False, **kwargs):
  """Raises cli.Error with `problem`'s line, if any."""
  message = problem(allow_cpu, **kwargs)
  if message:
    raise cli.Error(message)
