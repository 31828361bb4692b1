"""MTCAE-DFER on MEAD: 8 classes, frontal view (paper Sec. IV-A, Tables I and IV).

    python -m mtcae_jax.measure.summary --config=configs/mead.py
    python -m mtcae_jax.measure.summary --config=configs/mead.py:variant=B/16 --config.model.strategy=nonshared_vit
"""

from mtcae_jax.configs import default, presets


def get_config(arg=None):
  c = default.get_config(arg)
  c.dataset = presets.dataset_name('mead_dfer', 'front', c)
  c.num_classes = 8
  return c
