r"""Train-step and inference speed of a config's model on whatever device JAX has; optionally against PyTorch.

    python tools/benchmark.py --config=configs/default.py:variant=S/16,strategy=stl --batch=2 --compare=torch \
        --json=bench.json

One process, one run: the training run's own step (forward, backward, AdamW; state donated) on synthetic batches,
its compile time and the median step time, inference clips/s, memory, analytic FLOPs per clip (as
`mtcae_jax.measure.summary` counts them) -> TFLOP/s and MFU against the device's peak (on CPUs a big matmul of the
compute dtype measured in the same run), and with `--compare=torch` the same encoder in PyTorch. When the
config's strategy is not `stl`, the encoder-only (`stl`) step is timed as well; `--profile=DIR` also writes a
trace of three steps and prints the device time per kernel. Figures: docs/BENCHMARKS.md.

    python tools/benchmark.py --predict=runs/demo [--videos=mtcae_jax/data/demo/ravdess] --json=videos.json

instead measures batch prediction as `python -m mtcae_jax.predict` runs it (decoding included): clips/s, the
median of `--steps` passes over the videos after a warm-up pass. Figures: docs/PREDICT.md.
"""

import json
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mtcae_jax.measure import speed
from mtcae_jax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from mtcae_jax.data import demo_data  # pylint: disable=g-import-not-at-top,wrong-import-position

# Flags of their own: mtcae_jax.measure.summary (which counts the FLOPs) defines --config and --batch on absl's global
# flags at import, with another meaning for --batch.
FLAGS = flags.FlagValues()
config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/default.py:variant=S/16.',
                                flag_values=FLAGS)
flags.DEFINE_integer('batch', None, "Global batch size (default: the config's batch_size).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('steps', 5, 'Timed steps after the untimed first one; the median is reported.',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum('compare', None, ['torch'], 'Also time the same encoder in PyTorch (transformers).',
                  flag_values=FLAGS)
flags.DEFINE_string('profile', None, 'Also trace 3 train steps into this directory (TensorBoard profile plugin or '
                    'Perfetto) and print the device time per kernel.', flag_values=FLAGS)
flags.DEFINE_bool('encoder_only', True, 'With a strategy other than stl, also time the stl step.', flag_values=FLAGS)
flags.DEFINE_integer('matmul_size', None, 'Side of the peak-measuring matmul (default: by backend).',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string('predict', None, 'Instead: batch-prediction throughput of this checkpoint (a training '
                    'workdir or a converted checkpoint).', flag_values=FLAGS)
flags.DEFINE_multi_string('videos', [str(demo_data.RAW)], 'With --predict: videos or folders to predict on.',
                          flag_values=FLAGS)
flags.DEFINE_integer('predict_batch', 8, 'With --predict: the batch size of prediction.', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('workers', 0, 'With --predict: decoding threads (0: one per core, up to 8).', lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_string('json', None, 'Write all figures to this JSON file.', flag_values=FLAGS)


def parse_flags(argv):
  if {'-h', '--help', '--helpfull'} & set(argv[1:]):
    print(__doc__ + '\n' + FLAGS.main_module_help())
    sys.exit(0)
  rest = cli.parse_flags(argv, FLAGS)
  if (FLAGS.config is None) == (FLAGS.predict is None):
    print('error: give --config (train step and inference) or --predict (batch prediction), not both',
          file=sys.stderr)
    sys.exit(2)
  flags.FLAGS.mark_as_parsed()
  return rest


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  config = FLAGS.config
  if FLAGS.predict:
    from mtcae_jax.predict import inference  # pylint: disable=g-import-not-at-top
    logging.set_verbosity(logging.ERROR)  # orbax warns about metadata files of older checkpoints, every time
    try:
      result = {'predict': speed.predict_throughput(FLAGS.predict, FLAGS.videos, FLAGS.steps, FLAGS.predict_batch,
                                                    FLAGS.workers)}
    except (inference.PredictError, OSError) as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
  else:
    try:
      result = speed.run(config, FLAGS.batch or config.batch_size, FLAGS.steps,
                         compare_torch=FLAGS.compare == 'torch', encoder_only=FLAGS.encoder_only,
                         matmul_size=FLAGS.matmul_size, profile=FLAGS.profile)
    except ValueError as e:  # a config the model rejects, e.g. an unknown variant
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
  result['command'] = ' '.join(['tools/benchmark.py'] + sys.argv[1:])
  if FLAGS.json:
    pathlib.Path(FLAGS.json).write_text(json.dumps(result, indent=1))
    print(f'wrote {FLAGS.json}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
