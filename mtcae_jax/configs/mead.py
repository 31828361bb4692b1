"""MTCAE-DFER on MEAD: 8 classes, frontal view (paper Sec. IV-A, Tables I and IV).

    python -m mtcae_jax.measure.summary --config=configs/mead.py
    python -m mtcae_jax.measure.summary --config=configs/mead.py:variant=B/16 --config.model.strategy=nonshared_vit
"""

from mtcae_jax.configs import default


def get_config(arg=None):
  c = default.get_config(arg)
  c.dataset = 'mead_dfer'
  c.num_classes = 8
  return c
