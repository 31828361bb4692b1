r"""MTCAE-DFER on CREMA-D: 6 classes (paper Sec. IV-A, Tables I and III).

    python -m mtcae_jax.measure.summary --config=configs/crema_d.py

The config itself is `mtcae_jax/configs/crema_d.py`, inside the package, so this file works from any directory.
"""

from mtcae_jax.configs.crema_d import get_config  # pylint: disable=unused-import
