"""MTCAE-DFER on CREMA-D: 6 classes (paper Sec. IV-A, Tables I and III).

    python -m mtcae_jax.measure.summary --config=configs/crema_d.py
"""

from mtcae_jax.configs import default, presets


def get_config(arg=None):
  c = default.get_config(arg)
  c.dataset = presets.dataset_name('crema_d_dfer', '', c)
  c.num_classes = 6
  return c
