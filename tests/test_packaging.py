"""What setup.cfg declares: the imports' distributions, TensorFlow and mtcnn only in the data-preparation extras,
and training and prediction without TensorFlow (Colab and NGC images ship `tensorflow`, which `tensorflow-cpu`
would be written over)."""

import ast
import configparser
import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA_ONLY = {'tensorflow', 'tensorflow-cpu', 'mtcnn'}
# Imported by the package but installed on purpose by hand: PyTorch (pinned in the README; measure/speed.py only).
BY_HAND = {'torch'}


def _requirements(text):
  names = set()
  for line in text.splitlines():
    line = line.split('#')[0].strip()
    if line:
      names.add(re.split(r'[\s\[<>=!~;]', line, maxsplit=1)[0])
  return {_normalise(n) for n in names}


def _normalise(name):
  return re.sub(r'[-_.]+', '-', name).lower()


def _setup_cfg():
  cfg = configparser.ConfigParser()
  cfg.read(ROOT / 'setup.cfg')
  extras = {k: _requirements(v) for k, v in cfg['options.extras_require'].items()}
  return cfg, _requirements(cfg['options']['install_requires']), extras


def test_tensorflow_and_mtcnn_are_only_in_the_data_extras():
  _, install, extras = _setup_cfg()
  assert not install & DATA_ONLY, 'training and prediction must not install TensorFlow or mtcnn'
  assert {'tensorflow-cpu', 'mtcnn'} <= extras['data']
  assert extras['mtcnn'] == {'mtcnn'}  # for machines that already have TensorFlow
  assert extras['data'] <= extras['dev'], 'the tests build datasets: [dev] must repeat [data]'


def test_metadata_names_the_licence_and_the_project_urls():
  cfg, _, _ = _setup_cfg()
  meta = cfg['metadata']
  assert meta['license'] == 'Apache-2.0' and meta['license_files'].strip() == 'LICENSE'
  text = (ROOT / 'LICENSE').read_text()
  assert 'Apache License' in text and 'Version 2.0, January 2004' in text and 'END OF TERMS AND CONDITIONS' in text
  urls = dict(line.split(' = ', 1) for line in meta['project_urls'].strip().splitlines())
  assert {'Source', 'Documentation', 'Issues'} <= set(urls)
  assert any('2412.18988' in u for u in urls.values())


def _imported_top_level_modules():
  found = set()
  for path in (ROOT / 'mtcae_jax').rglob('*.py'):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        found.update(a.name.split('.')[0] for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        found.add(node.module.split('.')[0])
  return found - set(sys.stdlib_module_names) - {'mtcae_jax', '__future__'}


def test_every_imported_distribution_is_declared():
  _, install, extras = _setup_cfg()
  declared = install | set().union(*extras.values()) | BY_HAND
  by_module = importlib.metadata.packages_distributions()
  undeclared = {}
  for module in _imported_top_level_modules():
    dists = {_normalise(d) for d in by_module.get(module, [module])}
    if not dists & declared:
      undeclared[module] = sorted(dists)
  assert not undeclared, f'imported but not in setup.cfg: {undeclared}'
  imported = {_normalise(d) for m in _imported_top_level_modules() for d in by_module.get(m, [m])}
  assert not {'chex', 'clu'} & (install - imported), 'declared but never imported'


_WITHOUT_TF = r'''
import json, sys


class NotInstalled:
  """An import finder that finds nothing of TensorFlow or mtcnn, as where they are not installed.

  Not sys.modules['tensorflow'] = None: TFDS reads a 'tensorflow' key there as TensorFlow being loaded."""

  def __init__(self, finder):
    self.finder = finder

  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ('tensorflow', 'mtcnn') or not hasattr(self.finder, 'find_spec'):
      return None
    return self.finder.find_spec(name, path, target)

  def __getattr__(self, name):
    return getattr(self.finder, name)


sys.meta_path[:] = [NotInstalled(f) for f in sys.meta_path]
data_dir, workdir = sys.argv[1], sys.argv[2]
from mtcae_jax.train import loop, run_log
from mtcae_jax.predict import inference
from mtcae_jax.data import pipeline, prepare
source = pipeline.data_source('ravdess_dfer', 'fold0', data_dir)
example = source[0]
targets = pipeline.read_targets('ravdess_dfer', 'fold0', data_dir)
log = run_log.RunLog(workdir)
log.write(1, 'train', {'loss': 0.5})
log.close()
try:
  prepare.prepare(prepare.make_builder('ravdess_dfer', workdir + '/new'), data_dir)
  error = None
except prepare.UsageError as e:
  error = str(e)
print(json.dumps({'len': len(source), 'video': list(__import__('numpy').asarray(example['video']).shape),
                  'boxes': list(targets['boxes'].shape), 'error': error,
                  'tf_imported': 'tensorflow' in sys.modules}))
'''


def test_training_and_prediction_run_without_tensorflow(demo_data_dir, tmp_path):
  out = subprocess.run([sys.executable, '-c', _WITHOUT_TF, demo_data_dir, str(tmp_path)], capture_output=True,
                       text=True, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got['len'] > 0 and got['video'] == [16, 224, 224, 3] and got['boxes'][0] == got['len']
  assert not got['tf_imported']
  assert 'needs tensorflow and mtcnn' in got['error']  # both seen as missing: the finder blocked them
  assert got['error'].count('\n') == 0 and 'pip install -e ".[data]"' in got['error']
  assert list(tmp_path.glob('events.out.tfevents.*')), 'the TensorBoard event file is written without TensorFlow'
