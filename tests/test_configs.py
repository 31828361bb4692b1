"""The configs load from any working directory: by file path (the top-level thin files or the package's own) and
from Python, with no `configs` package on the path."""

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PAPER = {'ravdess': ['ravdess_dfer', 7], 'crema_d': ['crema_d_dfer', 6], 'mead': ['mead_dfer', 8],
         'demo': ['ravdess_dfer', 7]}  # Sec. IV-A: the datasets and their classes

SCRIPT = '''
import importlib, json, sys
from absl import flags
from ml_collections import config_flags
out = {}
for path in sys.argv[1:]:
  name = path.rsplit('/', 1)[1][:-3]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=fv)
  fv(['prog', f'--config={path}'])
  api = importlib.import_module(f'mtcae_jax.configs.{name}').get_config()
  out[name] = [fv.config.dataset, fv.config.num_classes, fv.config.to_json() == api.to_json()]
try:
  import configs  # pylint: disable=unused-import
  out['configs package'] = True
except ImportError:
  out['configs package'] = False
print(json.dumps(out))
'''


@pytest.mark.parametrize('where', ['configs', 'mtcae_jax/configs'])
def test_configs_load_from_another_directory(where, tmp_path):
  paths = [str(REPO / where / f'{name}.py') for name in PAPER]
  r = subprocess.run([sys.executable, '-c', SCRIPT, *paths], cwd=tmp_path, capture_output=True, text=True,
                     timeout=120, env={'PATH': '/usr/bin:/bin'})  # no PYTHONPATH: the checkout is not on the path
  assert r.returncode == 0, r.stderr[-2000:]
  assert json.loads(r.stdout) == {**{k: v + [True] for k, v in PAPER.items()}, 'configs package': False}
