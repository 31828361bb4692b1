r"""Convert a VideoMAE / MAE-DFER / Hugging Face VideoMAE checkpoint into a directory `load_converted` reads (also
installed as `mtcae-convert`).

    python -m mtcae_jax.pretrained --src=checkpoint-99.pth --out=converted/mae_dfer_dfew
    python -m mtcae_jax.pretrained --src=model.safetensors --out=converted/videomae_b --num_heads=12

Sizes the tensors cannot show (heads, input size, frames) come from the checkpoint's own `args` (or a Hugging Face
config.json beside the weights), else from these flags, else from the known widths; the command says which it used.
Errors are one line on stderr, exit status 2; --out is checked before the file is read, and written whole or not at
all. Nothing in the file is executed: PyTorch is not needed.
"""

import sys

from absl import flags

from mtcae_jax import cli


class _RegionSizeParser(flags.ArgumentParser):
  syntactic_help = 'T,H,W: three integers'

  def parse(self, argument):
    if isinstance(argument, tuple):
      return argument
    parts = argument.replace('x', ',').split(',')
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
      raise ValueError(f'expected T,H,W (three integers), got {argument!r}')
    return tuple(int(p) for p in parts)

  def flag_type(self):
    return 'T,H,W'


def define_flags(fv):
  cli.DEFINE_path('src', None, '.pth / .pt / .bin (torch zip format) or .safetensors.', fv, required=True)
  cli.DEFINE_path('out', None, 'Output directory (new or empty), written whole or not at all.', fv, required=True)
  flags.DEFINE_integer('num_heads', None, 'Attention heads, when the file does not say.', flag_values=fv)
  flags.DEFINE_integer('image_size', None, 'Input frame size in pixels, when the file does not say.', flag_values=fv)
  flags.DEFINE_integer('num_frames', None, 'Frames per clip, when the file does not say.', flag_values=fv)
  flags.DEFINE(_RegionSizeParser(), 'region_size', None, 'LGI-Former region size T,H,W in tokens (default 2,5,10).',
               fv)
  flags.DEFINE_float('ln_eps', None, 'LayerNorm eps of the blocks (default: that of the format).', flag_values=fv)


def command(args, rest):
  del rest
  from mtcae_jax.pretrained import convert  # pylint: disable=g-import-not-at-top  # JAX and orbax: after the flags
  try:
    meta = convert.convert_checkpoint(args.src, args.out, num_heads=args.num_heads, image_size=args.image_size,
                                      num_frames=args.num_frames, region_size=args.region_size, ln_eps=args.ln_eps)
  except ValueError as e:  # CheckpointError is a ValueError
    raise cli.Error(e) from None
  print(convert.summary(meta, args.out))


def main(argv=None):
  """The command line (default sys.argv[1:], without the program name) -> the exit status."""
  return cli.run(__doc__, define_flags, command, argv)


if __name__ == '__main__':
  sys.exit(main())
