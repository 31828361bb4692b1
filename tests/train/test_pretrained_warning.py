"""Training a paper-sized encoder from scratch prints one warning line that points at the pre-trained weights."""

import pytest

from mtcae_jax.configs import default, demo
from mtcae_jax.train import loop


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
  monkeypatch.setattr(loop, '_warned_from_scratch', [])


@pytest.mark.parametrize('variant', ['B/16', 'L/16', 'H/16', 'LGI/512'])
def test_large_encoder_without_init_from_warns_once(variant, capsys):
  config = default.get_config(f'variant={variant}')
  assert loop.warn_without_pretrained(config)
  assert not loop.warn_without_pretrained(config)  # the next fold of a cross-validation: silent
  out, err = capsys.readouterr()
  assert not out
  assert err.count('\n') == 1
  assert variant in err and 'pre-trained' in err and 'README.md' in err and 'init_from' in err


def test_silent_for_tiny_with_init_from_and_off_process_0(capsys):
  assert not loop.warn_without_pretrained(demo.get_config())
  assert not loop.warn_without_pretrained(default.get_config('variant=tiny'))
  config = default.get_config('variant=L/16')
  config.init_from = 'converted/videomae_l'
  assert not loop.warn_without_pretrained(config)
  assert not loop.warn_without_pretrained(default.get_config('variant=L/16'), is_main=False)
  assert capsys.readouterr() == ('', '')
