"""The notebooks run top to bottom on a CPU with small settings; they are kept without outputs.

Their install and runtime cells are the same in each: the install's choice of extras is tested here on faked
machines (accelerator.find on a fake /dev and environment), the runtime cell's refusal of a CPU-bound JAX on a
machine with a TPU in a kernel, and the executed notebooks say they ran on this machine's platform."""

import ast
import importlib.resources
import json
import os
import pathlib

import jax
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from mtcae_jax import accelerator
from mtcae_jax.data import demo_data

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / 'notebooks'
NAMES = ['quickstart.ipynb', 'tpu_finetune.ipynb']


def read(name):
  return nbformat.read(NOTEBOOKS / name, as_version=4)


def code_cell(nb, starts):
  """The code cell whose source starts with `starts` (after the comments)."""
  found = [c for c in nb.cells if c.cell_type == 'code'
           and '\n'.join(l for l in c.source.splitlines() if not l.startswith('#')).lstrip().startswith(starts)]
  assert len(found) == 1, starts
  return found[0]


def install_cell(nb):
  return next(c for c in nb.cells if c.cell_type == 'code' and 'def pip_extras' in c.source)


def runtime_cell(nb):
  return code_cell(nb, 'import jax\n\n')


def functions(cell, **namespace):
  """The functions a cell defines (and its upper-case constants), without running the rest of it."""
  tree = ast.parse(cell.source)
  keep = [n for n in tree.body if isinstance(n, ast.FunctionDef) or (
      isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in n.targets)
      and literal(n.value))]
  namespace.setdefault('importlib', __import__('importlib.metadata'))
  exec(compile(ast.Module(keep, []), cell.source[:40], 'exec'), namespace)  # pylint: disable=exec-used
  return namespace


def literal(node):
  try:
    ast.literal_eval(node)
    return True
  except ValueError:
    return False


def execute(name, parameters, tmp_path, timeout=600, cells=None):
  """Runs notebooks/NAME (its first `cells` cells, or all) with `parameters` appended to its parameters cell;
  returns the executed notebook."""
  nb = read(name)
  nb.cells = nb.cells[:cells]
  cell = next(c for c in nb.cells if 'parameters' in c.metadata.get('tags', []))
  cell.source += '\n# test settings\n' + '\n'.join(f'{k} = {v!r}' for k, v in parameters.items())
  try:
    NotebookClient(nb, timeout=timeout, kernel_name='python3',
                   resources={'metadata': {'path': str(tmp_path)}}).execute()
  finally:
    nbformat.write(nb, tmp_path / name)  # the executed copy, for a look when a test fails
  return nb


def outputs(nb):
  return '\n'.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.outputs)


def images(nb):
  return [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if 'image/png' in o.get('data', {})
          or 'image/gif' in o.get('data', {})]


def expected_install_line():
  """What the install cell says on this machine: the plain JAX (no GPU or TPU here) and MTCNN."""
  found = accelerator.find()
  extra = 'mtcnn' if importlib.util.find_spec('tensorflow') else 'data'
  return f'machine: {found[1] if found else "no GPU or TPU found"} -> pip install -e ".[' + (
      {'gpu': 'cuda12,', 'tpu': 'tpu,'}[found[0]] if found else '') + extra + ']"'


@pytest.mark.parametrize('name', NAMES)
def test_notebooks_are_stored_without_outputs(name):
  nb = json.loads((NOTEBOOKS / name).read_text())
  code = [c for c in nb['cells'] if c['cell_type'] == 'code']
  assert all(c['outputs'] == [] and c['execution_count'] is None for c in code)
  assert sum('parameters' in c['metadata'].get('tags', []) for c in code) == 1


def test_notebooks_share_install_and_runtime_cells():
  quick, tpu = read(NAMES[0]), read(NAMES[1])
  assert install_cell(quick).source == install_cell(tpu).source
  assert runtime_cell(quick).source == runtime_cell(tpu).source
  for nb in (quick, tpu):
    source = '\n'.join(c.source for c in nb.cells if c.cell_type == 'code')
    assert "'-e', f'.[{" in source and 'jax[' not in source  # JAX only through the project's pinned extras
    assert '/dev/accel0' not in source and 'COLAB_TPU_ADDR' not in source  # accelerator.find looks for them


def fake_machine(tmp_path, files=(), env=None, smi=False):
  """accelerator.find on a fake /dev holding `files`, with `env` and with or without nvidia-smi."""
  dev = tmp_path / 'dev'
  for f in files:
    (dev / f).parent.mkdir(parents=True, exist_ok=True)
    (dev / f).touch()
  dev.mkdir(exist_ok=True)
  return accelerator.find(str(dev), env or {}, lambda name: '/usr/bin/nvidia-smi' if smi else None)


@pytest.mark.parametrize('files, env, smi, choice, plugins, tensorflow, extras', [
    ((), {}, False, 'auto', {}, True, ['mtcnn']),  # a CPU runtime: the plain JAX
    ((), {}, False, 'auto', {}, False, ['data']),  # no TensorFlow: [data] brings tensorflow-cpu
    (('nvidia0', 'nvidiactl'), {}, False, 'auto', {'jax-cuda12-plugin': '0.11.1'}, True, ['cuda12', 'mtcnn']),
    ((), {}, True, 'auto', {}, True, ['cuda12', 'mtcnn']),  # nvidia-smi alone
    (('nvidia0',), {}, False, 'auto', {'jax-cuda13-plugin': '0.11.2'}, True, ['cuda13', 'mtcnn']),
    (('vfio/0',), {}, False, 'auto', {}, True, ['tpu', 'mtcnn']),  # a v5e/v6e host: VFIO, no /dev/accel*
    (('accel0', 'accel1'), {}, False, 'auto', {}, True, ['tpu', 'mtcnn']),
    ((), {'TPU_ACCELERATOR_TYPE': 'v6e-1'}, False, 'auto', {}, True, ['tpu', 'mtcnn']),
    ((), {'COLAB_TPU_ADDR': '10.0.0.2:8470'}, False, 'auto', {}, True, ['tpu', 'mtcnn']),
    (('vfio/0',), {}, False, 'cpu', {}, True, ['mtcnn']),  # the CPU on purpose
    ((), {}, False, 'tpu', {}, True, ['tpu', 'mtcnn']),  # not found, but asked for
    ((), {}, False, 'cuda13', {}, False, ['cuda13', 'data']),
])
def test_install_chooses_extras(tmp_path, files, env, smi, choice, plugins, tensorflow, extras):
  pip_extras = functions(install_cell(read(NAMES[0])))['pip_extras']
  found = fake_machine(tmp_path, files, env, smi)
  assert pip_extras(choice, found, tensorflow, version=plugins.get) == extras


def test_install_chooses_extras_refuses_unknown():
  with pytest.raises(SystemExit, match="ACCELERATOR = 'cuda11'"):
    functions(install_cell(read(NAMES[0])))['pip_extras']('cuda11', None, True)


@pytest.mark.parametrize('extras, versions, expected', [
    (['mtcnn'], {'mtcae-jax': '0.1.0', 'mtcnn': '1.0.0'}, True),
    (['mtcnn'], {'mtcnn': '1.0.0'}, False),  # a fresh runtime: this package is installed, with the tested JAX
    (['data'], {'mtcae-jax': '0.1.0', 'mtcnn': '1.0.0'}, False),  # TensorFlow missing
    (['cuda12', 'mtcnn'], {'mtcae-jax': '0.1.0', 'mtcnn': '1.0.0', 'jaxlib': '0.11.1'}, False),  # no plugin
    (['cuda12', 'mtcnn'], {'mtcae-jax': '0.1.0', 'mtcnn': '1.0.0', 'jaxlib': '0.11.1',
                           'jax-cuda12-plugin': '0.12.0'}, False),  # a plugin JAX would skip
    (['cuda12', 'mtcnn'], {'mtcae-jax': '0.1.0', 'mtcnn': '1.0.0', 'jaxlib': '0.11.1',
                           'jax-cuda12-plugin': '0.11.1'}, True),
    (['tpu', 'mtcnn'], {'mtcae-jax': '0.1.0', 'mtcnn': '1.0.0', 'jaxlib': '0.11.1'}, False),  # no libtpu
    (['tpu', 'mtcnn'], {'mtcae-jax': '0.1.0', 'mtcnn': '1.0.0', 'jaxlib': '0.11.1', 'libtpu': '0.0.21'}, True),
])
def test_install_skipped_only_where_installed(extras, versions, expected):
  installed = functions(install_cell(read(NAMES[0])))['installed']
  assert installed(extras, versions.get) is expected


def test_copy_dataset_to_local_disk(tmp_path):
  ns = functions(code_cell(read(NAMES[1]), 'import shutil, time'), os=os, shutil=__import__('shutil'))
  src, dst = tmp_path / 'drive' / 'ds' / '1.0.0', tmp_path / 'local' / 'ds' / '1.0.0'
  src.mkdir(parents=True)
  (src / 'train.array_record-00000-of-00001').write_bytes(b'x' * 1000)
  (src / 'dataset_info.json').write_text('{}')
  assert ns['copy_dataset'](str(src), str(dst))
  assert ns['files'](str(dst)) == ns['files'](str(src)) and not os.path.exists(f'{dst}.partial')
  assert not ns['copy_dataset'](str(src), str(dst))  # already there: skipped
  (dst / 'dataset_info.json').unlink()  # an incomplete copy is copied again
  assert ns['copy_dataset'](str(src), str(dst)) and (dst / 'dataset_info.json').exists()


@pytest.mark.parametrize('name', NAMES)
def test_runtime_cell_refuses_cpu_jax_on_a_tpu_machine(name, tmp_path, monkeypatch):
  # TPU_ACCELERATOR_TYPE is what a TPU VM sets; the kernel's JAX has no TPU plugin, so it runs on the CPU.
  monkeypatch.setenv('TPU_ACCELERATOR_TYPE', 'v5litepod-1')
  monkeypatch.delenv('JAX_PLATFORMS', raising=False)
  notebook = read(name)
  upto = notebook.cells.index(runtime_cell(notebook)) + 1
  with pytest.raises(CellExecutionError) as error:
    execute(name, dict(REPO_DIR=str(REPO), INSTALL=False), tmp_path, cells=upto)
  nb = nbformat.read(tmp_path / name, as_version=4)  # the executed cells
  assert 'JAX runs on the CPU but this machine has a TPU (TPU_ACCELERATOR_TYPE=v5litepod-1)' in str(error.value)
  assert 'pip install -e ".[tpu]"' in str(error.value) and "ACCELERATOR = 'cpu'" in str(error.value)
  # the install cell chose the TPU's JAX (and did not install it: INSTALL = False)
  assert 'a TPU (TPU_ACCELERATOR_TYPE=v5litepod-1) -> pip install -e ".[tpu,' in outputs(nb)
  assert 'INSTALL = False: skipped' in outputs(nb) or 'installed already' in outputs(nb)


def check_runtime(nb, devices):
  text = outputs(nb)
  assert expected_install_line() in text
  platform = jax.devices()[0].platform  # 'cpu' here
  assert f'runtime: {platform}, {devices} x ' in text and '1 process(es)' in text


@pytest.mark.slow
def test_quickstart(demo_data_dir, tmp_path):
  # Started in tmp_path: the notebook finds the repository (REPO_DIR) and works from there.
  work = tmp_path / 'run'
  nb = execute('quickstart.ipynb', dict(REPO_DIR=str(REPO), INSTALL=False, WORKDIR=str(work),
                                        DATA_DIR=demo_data_dir, NUM_STEPS=2, NUM_FRAMES=4, IMAGE_SIZE=32),
               tmp_path)
  check_runtime(nb, jax.device_count())
  prediction = json.loads((work / 'clip.json').read_text())
  assert len(prediction['frames']) == 4 and prediction['label'] in prediction['probabilities']
  assert 'label: ' + prediction['label'] in outputs(nb)
  assert len(images(nb)) == 4  # overlay, sheet, curves, confusion
  assert (work / 'report' / 'curves.png').stat().st_size > 5000


@pytest.mark.slow
def test_tpu_finetune_on_cpu(tmp_path, monkeypatch):
  # Two host devices: the training really is sharded over all devices there are.
  monkeypatch.setenv('XLA_FLAGS', os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=2')
  work, local = tmp_path / 'run', tmp_path / 'local_disk' / 'data'
  with importlib.resources.as_file(demo_data.RAW) as raw:
    nb = execute('tpu_finetune.ipynb', dict(
        REPO_DIR=str(REPO), INSTALL=False, MOUNT_DRIVE=False, WORKDIR=str(work), LOCAL_DATA_DIR=str(local),
        CHECKPOINT=str(REPO / 'tests' / 'fixtures' / 'mae_dfer' / 'vit_tiny_finetune.pth'), NUM_HEADS=4,
        RAW_DIR=str(raw), BATCH_SIZE=4, NUM_STEPS=1, PREPARE_WORKERS=2,
        CONFIG_OVERRIDES={'model.decoder.depth': 1, 'model.decoder.width': 16, 'model.decoder.head_dim': 8,
                          'model.decoder.mlp_dim': 32, 'eval_views': 1}), tmp_path)
  text = outputs(nb)
  check_runtime(nb, 2)
  assert 'float32 compute, batch 4 over 2 devices, data from ' + str(local) in text
  assert 'encoder:  vit width 64, depth 2, 4 heads' in text
  assert 'Encoder from' in text and 'loaded encoder' in text  # init_from took the converted weights
  # The dataset prepared on "Drive" (the workdir) was copied whole to the local disk, which training read.
  drive = work / 'tfds'
  prepared = [p.parent for p in drive.rglob('dataset_info.json')]
  assert len(prepared) == 1
  copy = local / prepared[0].relative_to(drive)
  files = lambda root: {str(p.relative_to(root)): p.stat().st_size for p in root.rglob('*') if p.is_file()}
  assert files(copy) == files(prepared[0]) and any(n.endswith('.array_record-00000-of-00001') or '.array_record'
                                                    in n for n in files(copy))
  assert f'dataset: {copy} ({len(files(copy))} files' in text and 'copied from Drive in' in text
  cv = json.loads((work / 'cv' / 'cv_report.json').read_text())
  assert len(cv['folds']) == 5 and sum(f['num_clips'] for f in cv['folds']) == 18
  assert (work / 'cv' / 'report' / 'confusion.png').exists() and (work / 'sheet.png').exists()
  assert 'mean ± std (5 folds)' in json.dumps(nb.cells[-2].outputs, ensure_ascii=False)
