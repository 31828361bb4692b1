"""Convert a VideoMAE / MAE-DFER / Hugging Face VideoMAE checkpoint into a directory `load_converted` reads.

    python tools/convert_checkpoint.py --src=checkpoint-99.pth --out=converted/mae_dfer_dfew
    python tools/convert_checkpoint.py --src=model.safetensors --out=converted/videomae_b --num-heads=12

Sizes the tensors cannot show (heads, input size, frames) come from the checkpoint's own `args` (or a Hugging Face
config.json beside the weights), else from these flags, else from the known widths; the tool says which it used.
Errors are one line on stderr, exit code 2. Nothing in the file is executed: PyTorch is not needed.
"""

import argparse
import sys

from mtcae_jax.pretrained import convert


def _region_size(text):
  parts = text.replace('x', ',').split(',')
  if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
    raise argparse.ArgumentTypeError(f'expected T,H,W (three integers), got {text!r}')
  return tuple(int(p) for p in parts)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--src', required=True, help='.pth / .pt / .bin (torch zip format) or .safetensors')
  p.add_argument('--out', required=True, help='output directory (new or empty)')
  p.add_argument('--num-heads', type=int, help='attention heads, when the file does not say')
  p.add_argument('--image-size', type=int, help='input frame size in pixels, when the file does not say')
  p.add_argument('--num-frames', type=int, help='frames per clip, when the file does not say')
  p.add_argument('--region-size', type=_region_size, help='LGI-Former region size T,H,W in tokens (default 2,5,10)')
  p.add_argument('--ln-eps', type=float, help='LayerNorm eps of the blocks (default: that of the format)')
  a = p.parse_args(argv)
  try:
    meta = convert.convert_checkpoint(a.src, a.out, num_heads=a.num_heads, image_size=a.image_size,
                                      num_frames=a.num_frames, region_size=a.region_size, ln_eps=a.ln_eps)
  except ValueError as e:  # CheckpointError is a ValueError
    print(f'error: {e}'.replace('\n', ' '), file=sys.stderr)
    return 2
  print(convert.summary(meta, a.out))
  return 0


if __name__ == '__main__':
  sys.exit(main())
