"""Every command line: a wrong flag or config is one line on stderr and exit status 2, `~` is expanded in paths,
flags are defined per run (never at import), and the console scripts are installed."""

import importlib
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from mtcae_jax import cli
from mtcae_jax.data import pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]


def parse(args, capsys, monkeypatch):
  monkeypatch.setattr(sys, 'argv', ['prog', *args])  # ml_collections finds the --config.* overrides there
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'a config file', flag_values=fv)
  flags.DEFINE_integer('steps', 1, 'a number', flag_values=fv)
  flags.mark_flag_as_required('config', flag_values=fv)
  try:
    rest = cli.parse_flags(['prog', *args], fv)
  except SystemExit as e:
    return e.code, capsys.readouterr().err
  return rest, fv


@pytest.mark.parametrize('args, message', [
    (['--config=no/such/file.py'], "--config: [Errno 2] No such file or directory: 'no/such/file.py'"),
    (['--config=configs/default.py:colour=red'],
     "flag --config=configs/default.py:colour=red: Error whilst parsing config file: ValueError: bad config "
     "argument 'colour=red': expected key=value with key in ['preset', 'strategy', 'variant']"),
    ([], 'flag --config=None: Flag --config must have a value other than None.'),
    (['--config=configs/default.py', '--steps=many'],
     "flag --steps=many: invalid literal for int() with base 10: 'many'"),
])
def test_bad_flags_are_one_line(args, message, capsys, monkeypatch):
  code, err = parse(args, capsys, monkeypatch)
  assert (code, err) == (2, f'error: {message}\n')


def test_good_flags_load_the_config(capsys, monkeypatch):
  rest, fv = parse(['--config=configs/default.py:variant=S/16', '--config.fold=3', 'extra'], capsys,
                   monkeypatch)
  assert rest == ['prog', 'extra']
  assert fv.config.model.encoder.variant == 'S/16' and fv.config.fold == 3


def test_unknown_dataset_names_the_known_ones():
  with pytest.raises(ValueError, match=r"config.dataset='' is not one of ravdess_dfer, crema_d_dfer, mead_dfer; "
                                       r'a dataset config such as configs/mead.py sets it'):
    pipeline.data_source('', 'fold0', None)
  with pytest.raises(ValueError, match=r"config.dataset='voxceleb' is not one of"):
    pipeline.data_source('voxceleb', 'fold0', None)


@pytest.mark.parametrize('command, message', [
    (['-m', 'mtcae_jax.measure.summary', '--config=configs/default.py:variant=XL/8'], 'unknown ViT variant'),
    (['-m', 'mtcae_jax.main', '--config=configs/default.py', '--workdir=WORKDIR'], "config.dataset='' is not"),
    (['tools/benchmark.py'], 'give --config (train step and inference) or --predict'),
])
def test_commands_report_a_wrong_config_in_one_line(command, message, tmp_path):
  command = [a.replace('WORKDIR', str(tmp_path)) for a in command]
  proc = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.startswith('error: ') and proc.stderr.count('\n') == 1 and message in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# Every command: absl flags on a fresh FlagValues (cli.run), one-line errors, `~` expanded, console scripts.

SCRIPTS = {'mtcae-train': 'mtcae_jax.main', 'mtcae-predict': 'mtcae_jax.predict.__main__',
           'mtcae-convert': 'mtcae_jax.pretrained.__main__', 'mtcae-prepare': 'mtcae_jax.data.prepare',
           'mtcae-report': 'mtcae_jax.measure.report', 'mtcae-summary': 'mtcae_jax.measure.summary'}
TOOLS = ('benchmark', 'benchmark_preprocess', 'convert_checkpoint', 'make_demo_data')


def command_module(name):
  """A command's module: a package module by name, or tools/NAME.py loaded from its file (tools is no package)."""
  if name not in TOOLS:
    return importlib.import_module(name)
  spec = importlib.util.spec_from_file_location(f'tool_{name}', ROOT / 'tools' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('name, args, message', [
    ('mtcae_jax.main', ['--config=configs/demo.py', '--workdir=x', '--mode=fly'],
     "flag --mode=fly: value should be one of <train|eval|cv>"),
    ('mtcae_jax.main', ['--config=configs/demo.py'],
     'flag --workdir=None: Flag --workdir must have a value other than None.'),
    ('mtcae_jax.measure.summary', ['--config=configs/demo.py', '--batch=0'],
     'flag --batch=0: 0 is not a positive integer'),
    ('mtcae_jax.measure.report', ['--bogus', 'runs/x'], "Unknown command line flag 'bogus'"),
    ('mtcae_jax.measure.report', [], 'expected WORKDIR besides the flags, got none'),
    ('mtcae_jax.predict.__main__', ['--checkpoint=c', '--video=v', '--batch-size=2'],
     "Unknown command line flag 'batch-size'. Did you mean: batch_size ?"),
    ('mtcae_jax.predict.__main__', ['--checkpoint=c', '--video=v', '--batch_size=0'],
     '--batch_size must be >= 1, got 0'),
    ('mtcae_jax.predict.__main__', ['--checkpoint=c', '--video=v', '--overlay=o.png'],
     '--overlay must end in .mp4 or .gif, got o.png'),
    ('mtcae_jax.predict.__main__', ['--checkpoint=c'], 'give --video=PATH (a file or folder) or --videos_from=LIST'),
    ('mtcae_jax.data.prepare', ['--dataset=ravdess_dfer', '--manual_dir=.', '--data_dir=d', '--workers=-1'],
     '--workers must be >= 0, got -1'),
    ('mtcae_jax.data.prepare', ['--dataset=ravdess_dfer'],
     'flag --manual_dir=None: Flag --manual_dir must have a value other than None.; '
     'flag --data_dir=None: Flag --data_dir must have a value other than None.'),
    ('mtcae_jax.pretrained.__main__', ['--src=a', '--out=b', '--num-heads=4'],
     "Unknown command line flag 'num-heads'. Did you mean: num_heads ?"),
    ('mtcae_jax.pretrained.__main__', ['--src=a', '--out=b', '--region_size=2,5'],
     "flag --region_size=2,5: expected T,H,W (three integers), got '2,5'"),
    ('convert_checkpoint', ['--src=a', '--out=b', '--image_size=big'],
     "flag --image_size=big: invalid literal for int() with base 10: 'big'"),
    ('benchmark', ['--predict=x', '--steps=0'], 'flag --steps=0: 0 is not a positive integer'),
    ('benchmark', [], 'give --config (train step and inference) or --predict (batch prediction), not both'),
    ('benchmark_preprocess', ['--clips=0'], '--clips must be at least 1 and --workers at least 0'),
    ('make_demo_data', ['--out=x'], 'flag --src=None: Flag --src must have a value other than None.'),
    ('make_demo_data', ['--src=.', 'extra'], 'expected no arguments besides the flags, got extra'),
])
def test_a_bad_command_line_is_one_error_line_and_status_2(name, args, message, capsys, monkeypatch):
  monkeypatch.chdir(ROOT)
  assert command_module(name).main(args) == 2
  assert capsys.readouterr().err == f'error: {message}\n'


def test_paths_expand_the_home_directory(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('HOME', str(tmp_path))
  assert cli.expand('~/data/ravdess') == str(tmp_path / 'data' / 'ravdess') and cli.expand(None) is None
  predict = command_module('mtcae_jax.predict.__main__')
  assert predict.main(['--checkpoint=~/missing', '--video=~/clip.mp4']) == 2  # the video is checked first
  assert capsys.readouterr().err == f'error: {tmp_path / "clip.mp4"}: no such file\n'
  prepare = command_module('mtcae_jax.data.prepare')
  assert prepare.main(['--dataset=ravdess_dfer', '--manual_dir=~/raw', '--data_dir=~/tfds']) == 2
  assert capsys.readouterr().err == f'error: --manual_dir={tmp_path / "raw"} is not a directory\n'
  # The config file too, which ml_collections reads from the flag's text.
  summary = command_module('mtcae_jax.measure.summary')
  assert summary.main(['--config=~/nothing.py:variant=S/16']) == 2
  assert capsys.readouterr().err == f"error: --config: [Errno 2] No such file or directory: '{tmp_path}/nothing.py'\n"


def test_every_command_module_can_be_imported_twice_and_run_twice(capsys, monkeypatch):
  monkeypatch.chdir(ROOT)
  for name in [*SCRIPTS.values(), *TOOLS]:
    module = command_module(name)
    if name not in TOOLS:
      module = importlib.reload(module)  # no flags are defined at import: no DuplicateFlagError
    for _ in range(2):  # each run defines its flags afresh
      assert module.main(['--no_such_flag']) == 2, name
      assert capsys.readouterr().err.startswith("error: Unknown command line flag 'no_such_flag'"), name
  assert 'no_such_flag' not in flags.FLAGS  # nothing reached absl's global flags


def test_help_prints_the_docstring_and_the_flags(capsys):
  assert command_module('mtcae_jax.pretrained.__main__').main(['--help']) == 0
  out = capsys.readouterr().out
  assert out.startswith('Convert a VideoMAE') and '--num_heads' in out and '--src' in out


def test_console_scripts_are_installed_and_run_outside_the_checkout(tmp_path):
  bin_dir = pathlib.Path(sys.executable).parent
  for script, module in SCRIPTS.items():
    path = bin_dir / script
    assert path.is_file(), f'{path} is missing: run pip install -e .'
    assert f'from {module} import main' in path.read_text(), path
  proc = subprocess.run([str(bin_dir / 'mtcae-summary'), f'--config={ROOT / "configs" / "demo.py"}'], cwd=tmp_path,
                        capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.startswith('MTCAE-DFER  strategy=') and 'GFLOPs per clip' in proc.stdout
  bad = subprocess.run([str(bin_dir / 'mtcae-convert'), '--src=a', '--out=b', '--num-heads=4'], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2
  assert bad.stderr == "error: Unknown command line flag 'num-heads'. Did you mean: num_heads ?\n"
