r"""Train-step and inference speed of a config's model on whatever device JAX has; optionally against PyTorch.

    python tools/benchmark.py --config=configs/default.py:variant=S/16,strategy=stl --batch=2 --compare=torch \
        --json=bench.json

One process, one run: the training run's own step (forward, backward, AdamW; state donated) on synthetic batches,
its compile time and the median step time, inference clips/s, memory, analytic FLOPs per clip (as
`mtcae_jax.summary` counts them) -> TFLOP/s and MFU against the device's peak (on CPUs a big matmul of the
compute dtype measured in the same run), and with `--compare=torch` the same encoder in PyTorch. When the
config's strategy is not `stl`, the encoder-only (`stl`) step is timed as well. Figures: docs/BENCHMARKS.md.
"""

import json
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mtcae_jax import bench  # pylint: disable=g-import-not-at-top,wrong-import-position

# Flags of their own: mtcae_jax.summary (which counts the FLOPs) defines --config and --batch on absl's global
# flags at import, with another meaning for --batch.
FLAGS = flags.FlagValues()
config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/default.py:variant=S/16.',
                                flag_values=FLAGS)
flags.DEFINE_integer('batch', None, "Global batch size (default: the config's batch_size).", flag_values=FLAGS)
flags.DEFINE_integer('steps', 5, 'Timed steps after the untimed first one; the median is reported.',
                     flag_values=FLAGS)
flags.DEFINE_enum('compare', None, ['torch'], 'Also time the same encoder in PyTorch (transformers).',
                  flag_values=FLAGS)
flags.DEFINE_bool('encoder_only', True, 'With a strategy other than stl, also time the stl step.', flag_values=FLAGS)
flags.DEFINE_integer('matmul_size', None, 'Side of the peak-measuring matmul (default: by backend).',
                     flag_values=FLAGS)
flags.DEFINE_string('json', None, 'Write all figures to this JSON file.', flag_values=FLAGS)


def parse_flags(argv):
  if {'-h', '--help', '--helpfull'} & set(argv[1:]):
    print(__doc__ + '\n' + FLAGS.main_module_help())
    sys.exit(0)
  rest = FLAGS(argv)
  if FLAGS.config is None:
    raise app.UsageError('--config is required')
  flags.FLAGS.mark_as_parsed()
  return rest


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  config = FLAGS.config
  result = bench.run(config, FLAGS.batch or config.batch_size, FLAGS.steps, compare_torch=FLAGS.compare == 'torch',
                     encoder_only=FLAGS.encoder_only, matmul_size=FLAGS.matmul_size)
  result['command'] = ' '.join(['tools/benchmark.py'] + sys.argv[1:])
  if FLAGS.json:
    pathlib.Path(FLAGS.json).write_text(json.dumps(result, indent=1))
    print(f'wrote {FLAGS.json}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
