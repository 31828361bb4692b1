"""tools/benchmark_preprocess.py: bad input is a one-line error and a non-zero exit, not a traceback."""

import importlib.util
import pathlib
import re

import pytest

from mtcae_jax.data import stored_example

TOOL = pathlib.Path(__file__).parents[2] / 'tools' / 'benchmark_preprocess.py'


@pytest.fixture(name='tool')
def fixture_tool():
  spec = importlib.util.spec_from_file_location('benchmark_preprocess', TOOL)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('args, message', [
    (['--min_face_size=8'], '--min_face_size must be at least 12 pixels, got 8'),
    (['--clips=0'], '--clips must be at least 1 and --workers at least 0'),
])
def test_rejects_bad_arguments(tool, capsys, args, message):
  assert tool.main(args) == 2
  assert capsys.readouterr().err == f'error: {message}\n'


def test_says_so_when_every_clip_fails(tool, capsys, monkeypatch):
  monkeypatch.setattr(stored_example, 'process', lambda path, min_face_size: (None, f'{path}: unreadable'))
  # In this process, so the stand-in for stored_example.process is used.
  assert tool.main(['--workers=0', '--clips=2']) == 1
  # stderr also holds the progress bars' carriage-return updates.
  errors = [line for line in re.split(r'[\r\n]', capsys.readouterr().err) if 'error' in line]
  assert len(errors) == 1, errors
  assert errors[0].startswith('error: every clip failed, e.g. ') and errors[0].endswith('.mp4: unreadable')
