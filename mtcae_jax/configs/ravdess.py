"""MTCAE-DFER on RAVDESS: 7 classes, calm merged into neutral (paper Sec. IV-A, Tables I and II).

    python -m mtcae_jax.measure.summary --config=configs/ravdess.py
"""

from mtcae_jax.configs import default, presets


def get_config(arg=None):
  c = default.get_config(arg)
  c.dataset = presets.dataset_name('ravdess_dfer', 'video_speech_7class', c)
  c.num_classes = 7
  return c
