"""Kept for old instructions: the converter is `python -m mtcae_jax.pretrained` (installed as `mtcae-convert`).

    python tools/convert_checkpoint.py --src=checkpoint-99.pth --out=converted/mae_dfer_dfew [--num_heads=N]
"""

import sys

from mtcae_jax.pretrained.__main__ import main

if __name__ == '__main__':
  sys.exit(main())
