r"""MTCAE-DFER with the paper's settings; the base of the per-dataset configs.

    python -m mtcae_jax.measure.summary --config=configs/default.py
    python -m mtcae_jax.measure.summary --config=configs/default.py:variant=B/16,preset=paper_code

The config itself is `mtcae_jax/configs/default.py`, inside the package, so this file works from any directory.
"""

from mtcae_jax.configs.default import get_config  # pylint: disable=unused-import
