"""A wrong flag or config is one line on stderr and exit status 2, for every command that reads a config."""

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
