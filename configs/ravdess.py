r"""MTCAE-DFER on RAVDESS: 7 classes, calm merged into neutral (paper Sec. IV-A, Tables I and II).

    python -m mtcae_jax.measure.summary --config=configs/ravdess.py

The config itself is `mtcae_jax/configs/ravdess.py`, inside the package, so this file works from any directory.
"""

from mtcae_jax.configs.ravdess import get_config  # pylint: disable=unused-import
