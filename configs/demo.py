r"""The embedded default: a small MTCAE-DFER trained on the bundled demo clips, then tested on a held-out fold.

    python -m mtcae_jax.main --config=configs/demo.py --workdir=runs/demo

The config itself is `mtcae_jax/configs/demo.py`, inside the package, so this file works from any directory.
"""

from mtcae_jax.configs.demo import get_config  # pylint: disable=unused-import
