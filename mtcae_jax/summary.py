r"""`python -m mtcae_jax.summary --config=configs/ravdess.py:preset=paper_code`: the model summary (parameters,
trainable and frozen, output shapes, GFLOPs); the same command as `python -m mtcae_jax.measure.summary` and
`mtcae-summary`, under the short name the docs use."""

import sys

from mtcae_jax.measure.summary import main

if __name__ == '__main__':
  sys.exit(main())
