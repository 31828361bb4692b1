"""The configs: `default` holds the paper's numbers, the others change what their dataset or purpose needs.

They import only this package, so `--config=` accepts these files, or the thin ones in the repository's `configs/`,
from any working directory, and `mtcae_jax.configs.mead.get_config()` works in Python.
"""
