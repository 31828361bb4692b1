"""Both notebooks run top to bottom on a CPU with small settings; they are kept without outputs."""

import importlib.resources
import json
import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

from mtcae_jax.data import demo_data

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / 'notebooks'


def execute(name, parameters, tmp_path, timeout=600):
  """Runs notebooks/NAME with `parameters` appended to its parameters cell; returns the executed notebook."""
  nb = nbformat.read(NOTEBOOKS / name, as_version=4)
  cell = next(c for c in nb.cells if 'parameters' in c.metadata.get('tags', []))
  cell.source += '\n# test settings\n' + '\n'.join(f'{k} = {v!r}' for k, v in parameters.items())
  NotebookClient(nb, timeout=timeout, kernel_name='python3',
                 resources={'metadata': {'path': str(tmp_path)}}).execute()
  nbformat.write(nb, tmp_path / name)  # the executed copy, for a look when a test fails
  return nb


def outputs(nb):
  return '\n'.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.outputs)


def images(nb):
  return [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if 'image/png' in o.get('data', {})
          or 'image/gif' in o.get('data', {})]


@pytest.mark.parametrize('name', ['quickstart.ipynb', 'tpu_finetune.ipynb'])
def test_notebooks_are_stored_without_outputs(name):
  nb = json.loads((NOTEBOOKS / name).read_text())
  code = [c for c in nb['cells'] if c['cell_type'] == 'code']
  assert all(c['outputs'] == [] and c['execution_count'] is None for c in code)
  assert sum('parameters' in c['metadata'].get('tags', []) for c in code) == 1


@pytest.mark.slow
def test_quickstart(demo_data_dir, tmp_path):
  # Started in tmp_path: the notebook finds the repository (REPO_DIR) and works from there.
  work = tmp_path / 'run'
  nb = execute('quickstart.ipynb', dict(REPO_DIR=str(REPO), WORKDIR=str(work), DATA_DIR=demo_data_dir,
                                        NUM_STEPS=2, NUM_FRAMES=4, IMAGE_SIZE=32), tmp_path)
  prediction = json.loads((work / 'clip.json').read_text())
  assert len(prediction['frames']) == 4 and prediction['label'] in prediction['probabilities']
  assert 'label: ' + prediction['label'] in outputs(nb)
  assert len(images(nb)) == 4  # overlay, sheet, curves, confusion
  assert (work / 'report' / 'curves.png').stat().st_size > 5000


@pytest.mark.slow
def test_tpu_finetune_on_cpu(tmp_path, monkeypatch):
  # Two host devices: the training really is sharded over all devices there are.
  monkeypatch.setenv('XLA_FLAGS', os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=2')
  work = tmp_path / 'run'
  with importlib.resources.as_file(demo_data.RAW) as raw:
    nb = execute('tpu_finetune.ipynb', dict(
        REPO_DIR=str(REPO), MOUNT_DRIVE=False, WORKDIR=str(work),
        CHECKPOINT=str(REPO / 'tests' / 'fixtures' / 'mae_dfer' / 'vit_tiny_finetune.pth'), NUM_HEADS=4,
        RAW_DIR=str(raw), BATCH_SIZE=4, NUM_STEPS=1, PREPARE_WORKERS=2,
        CONFIG_OVERRIDES={'model.decoder.depth': 1, 'model.decoder.width': 16, 'model.decoder.head_dim': 8,
                          'model.decoder.mlp_dim': 32, 'eval_views': 1}), tmp_path)
  text = outputs(nb)
  assert '2 cpu devices' in text and 'batch 4 over 2 devices' in text
  assert 'encoder:  vit width 64, depth 2, 4 heads' in text
  assert 'Encoder from' in text and 'loaded encoder' in text  # init_from took the converted weights
  cv = json.loads((work / 'cv' / 'cv_report.json').read_text())
  assert len(cv['folds']) == 5 and sum(f['num_clips'] for f in cv['folds']) == 18
  assert (work / 'cv' / 'report' / 'confusion.png').exists() and (work / 'sheet.png').exists()
  assert 'mean ± std (5 folds)' in json.dumps(nb.cells[-1].outputs, ensure_ascii=False)
