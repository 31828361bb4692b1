"""Installs that cannot silently fall back to the CPU: the accelerator extras resolve jax, jaxlib and the plugin of
one version, and the commands refuse to run on the CPU where the machine has a GPU or TPU that JAX does not use."""

import configparser
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mtcae_jax import accelerator, cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXTRAS = ('cuda12', 'cuda13', 'tpu')


def _requirements(text):
  return [Requirement(line.split('#')[0].strip()) for line in text.splitlines() if line.split('#')[0].strip()]


def _setup_cfg():
  cfg = configparser.ConfigParser()
  cfg.read(ROOT / 'setup.cfg')
  return cfg


def _extra_requirement(extra):
  (req,) = _requirements(_setup_cfg()['options.extras_require'][extra])
  return req


def test_the_accelerator_extras_pin_jax_to_the_install_requires_range():
  (jax,) = [r for r in _requirements(_setup_cfg()['options']['install_requires']) if r.name == 'jax']
  for extra in EXTRAS:
    req = _extra_requirement(extra)
    assert (req.name, req.extras, req.specifier) == ('jax', {extra}, jax.specifier), extra


# Measured on 2 shared cores with the local index (the CUDA plugins' metadata comes from the remote one): tpu 7 s,
# cuda12 44-71 s, cuda13 35-39 s one after the other; the three resolve at once here, hence one slow test.
@pytest.mark.slow
def test_the_extras_resolve_jax_jaxlib_and_the_plugin_of_one_version(tmp_path):
  # Resolving each extra's jax requirement alone: `.[extra]` would build the project and resolve all of it too.
  runs = {extra: (tmp_path / f'{extra}.json', subprocess.Popen(
      [sys.executable, '-m', 'pip', 'install', '--dry-run', '--ignore-installed', '--quiet', '--report',
       str(tmp_path / f'{extra}.json'), str(_extra_requirement(extra))],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)) for extra in ('cuda12', 'cuda13', 'tpu')}
  unreachable = []
  for extra, (report, proc) in runs.items():
    _, stderr = proc.communicate(timeout=600)
    if proc.returncode:
      if 'ResolutionImpossible' in stderr or 'conflict' in stderr.lower():
        pytest.fail(f'{extra}: {stderr[-2000:]}')
      unreachable.append(f'{extra}: {stderr.strip().splitlines()[-1][:200]}')  # e.g. no network for the plugins
      continue
    installed = {canonicalize_name(i['metadata']['name']): i['metadata']['version']
                 for i in json.loads(report.read_text())['install']}
    assert installed['jaxlib'] == installed['jax'], (extra, installed)
    if extra == 'tpu':
      assert 'libtpu' in installed, installed
    else:
      for plugin in (f'jax-{extra}-plugin', f'jax-{extra}-pjrt'):
        assert installed.get(plugin) == installed['jax'], (plugin, installed)
  if unreachable:
    pytest.skip('pip cannot resolve here: ' + '; '.join(unreachable))


def _versions(**versions):
  table = {'jax': '0.10.2', 'jaxlib': '0.10.2', **{k.replace('_', '-'): v for k, v in versions.items()}}
  return table.get


def _problem(dev, environ=None, which=lambda name: None, backend='cpu', versions=None, **kwargs):
  return accelerator.problem(dev=str(dev), environ={} if environ is None else environ, which=which,
                             backend=lambda: backend, version=versions or _versions(), **kwargs)


def _one_line(message):
  assert message and '\n' not in message, message
  assert '--allow_cpu' in message, message
  return message


def test_a_gpu_with_a_plugin_of_another_jaxlib_is_refused(tmp_path):
  for name in ('nvidia0', 'nvidiactl'):
    (tmp_path / name).touch()
  message = _one_line(_problem(tmp_path, versions=_versions(jax_cuda12_plugin='0.12.0')))
  assert f'an NVIDIA GPU ({tmp_path / "nvidia0"}, {tmp_path / "nvidiactl"})' in message
  assert 'jax-cuda12-plugin 0.12.0 does not match jaxlib 0.10.2' in message
  assert 'pip install -e ".[cuda12]"' in message
  assert _problem(tmp_path, allow_cpu=True) is None
  assert _problem(tmp_path, backend='gpu') is None
  assert _problem(tmp_path, environ={'JAX_PLATFORMS': 'cpu'}) is None  # the CPU chosen on purpose
  with pytest.raises(cli.Error, match='no CUDA plugin installed'):
    accelerator.check(dev=str(tmp_path), environ={}, backend=lambda: 'cpu', version=_versions())


def test_nvidia_smi_on_the_path_counts_as_a_gpu(tmp_path):
  message = _one_line(_problem(tmp_path, which={'nvidia-smi': '/usr/bin/nvidia-smi'}.get,
                               versions=_versions(jax_cuda13_plugin='0.10.2', jax_cuda13_pjrt='0.10.2')))
  assert 'an NVIDIA GPU (/usr/bin/nvidia-smi)' in message
  assert 'jax-cuda13-plugin 0.10.2, jax-cuda13-pjrt 0.10.2 match jaxlib' in message
  assert 'pip install -e ".[cuda13]"' in message


@pytest.mark.parametrize('entry', ['accel0', 'vfio/0'])
def test_tpu_device_files_without_libtpu_are_refused(tmp_path, entry):
  (tmp_path / entry).parent.mkdir(exist_ok=True)
  (tmp_path / entry).touch()
  message = _one_line(_problem(tmp_path, versions=_versions(jaxlib='0.10.1')))
  assert f'a TPU ({tmp_path / entry})' in message
  assert 'jaxlib 0.10.1 does not match jax 0.10.2; libtpu not installed' in message
  assert 'pip install -e ".[tpu]"' in message
  assert _problem(tmp_path, allow_cpu=True) is None


def test_tpu_environment_variables_are_refused(tmp_path):
  message = _one_line(_problem(tmp_path, environ={'TPU_NAME': 'fake', 'TPU_WORKER_ID': '0'}))
  assert 'a TPU (TPU_NAME=fake, TPU_WORKER_ID=0): libtpu not installed' in message


def test_no_accelerator_no_error_and_jax_left_alone(tmp_path):
  (tmp_path / 'vfio').mkdir()
  (tmp_path / 'vfio' / 'vfio').touch()  # the control file alone: no device
  (tmp_path / 'accel').touch()

  def backend():
    raise AssertionError('JAX started without an accelerator')

  assert accelerator.problem(dev=str(tmp_path), environ={}, which=lambda name: None, backend=backend) is None


def _only_error_line(stderr):
  lines = [line for line in stderr.splitlines() if line.startswith('error:')]
  assert len(lines) == 1, stderr
  return lines[0]


@pytest.fixture
def cpu_jax():
  import jax  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != 'cpu':
    pytest.skip(f'JAX runs on {jax.default_backend()} here: the check has nothing to refuse')


def test_predict_refuses_a_fake_tpu_and_allow_cpu_gets_past(cpu_jax, tmp_path):
  del cpu_jax
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}
  env['TPU_NAME'] = 'fake'
  command = [sys.executable, '-m', 'mtcae_jax.predict', '--checkpoint=x', '--video=y']
  proc = subprocess.run(command, cwd=tmp_path, env={**env, 'PYTHONPATH': str(ROOT)}, capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 2, proc.stderr
  line = _only_error_line(proc.stderr)
  assert 'a TPU (TPU_NAME=fake)' in line and 'pip install -e ".[tpu]"' in line and '--allow_cpu' in line, line
  proc = subprocess.run(command + ['--allow_cpu'], cwd=tmp_path, env={**env, 'PYTHONPATH': str(ROOT)},
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 2 and _only_error_line(proc.stderr) == 'error: y: no such file', proc.stderr


def _benchmark():
  spec = importlib.util.spec_from_file_location('tool_benchmark', ROOT / 'tools' / 'benchmark.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('name', ['main', 'benchmark'])
def test_training_and_the_benchmark_refuse_a_fake_tpu(name, cpu_jax, capsys, monkeypatch, tmp_path):
  del cpu_jax
  monkeypatch.delenv('JAX_PLATFORMS', raising=False)
  monkeypatch.setenv('TPU_NAME', 'fake')
  monkeypatch.chdir(ROOT)
  if name == 'main':
    from mtcae_jax import main as module  # pylint: disable=g-import-not-at-top
  else:
    module = _benchmark()
  assert module.main(['--config=configs/demo.py', f'--workdir={tmp_path}'][:2 if name == 'main' else 1]) == 2
  assert 'a TPU (TPU_NAME=fake)' in _only_error_line(capsys.readouterr().err)
