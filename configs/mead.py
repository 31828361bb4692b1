r"""MTCAE-DFER on MEAD: 8 classes, frontal view (paper Sec. IV-A, Tables I and IV).

    python -m mtcae_jax.measure.summary --config=configs/mead.py
    python -m mtcae_jax.measure.summary --config=configs/mead.py:variant=B/16 --config.model.strategy=nonshared_vit

The config itself is `mtcae_jax/configs/mead.py`, inside the package, so this file works from any directory.
"""

from mtcae_jax.configs.mead import get_config  # pylint: disable=unused-import
