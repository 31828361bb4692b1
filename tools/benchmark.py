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

    python tools/benchmark.py --input --config=configs/demo.py --config.num_frames=16 --config.image_size=224 \
        --json=input.json

instead measures the host input pipeline alone: training clips/s (read, decode, sample, augment, stack; nothing on
the device) with config.input.num_workers worker processes (-1: one per core), per worker and in total, and the
bytes per clip sent to the device. `--real_data` adds to the train benchmark the step fed by the real pipeline
(the config's dataset). The demo config's data is built into WORKDIR/data first. Figures:
docs/BENCHMARKS.md#input-pipeline.
"""

import json
import pathlib
import sys

from absl import flags, logging

from mtcae_jax import accelerator, cli
from mtcae_jax.data import demo_data
from mtcae_jax.measure import speed


def define_flags(fv):
  flags.DEFINE_integer('batch', None, "Global batch size (default: the config's batch_size).", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer('steps', 5, 'Timed steps after the untimed first one; the median is reported.',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_enum('compare', None, ['torch'], 'Also time the same encoder in PyTorch (transformers).',
                    flag_values=fv)
  cli.DEFINE_path('profile', None, 'Also trace 3 train steps into this directory (TensorBoard profile plugin or '
                  'Perfetto) and print the device time per kernel.', fv)
  flags.DEFINE_bool('encoder_only', True, 'With a strategy other than stl, also time the stl step.', flag_values=fv)
  flags.DEFINE_integer('matmul_size', None, 'Side of the peak-measuring matmul (default: by backend).',
                       lower_bound=1, flag_values=fv)
  cli.DEFINE_path('predict', None, 'Instead: batch-prediction throughput of this checkpoint (a training workdir '
                  'or a converted checkpoint).', fv)
  cli.DEFINE_multi_path('videos', [str(demo_data.RAW)], 'With --predict: videos or folders to predict on.', fv)
  flags.DEFINE_integer('predict_batch', 8, 'With --predict: the batch size of prediction.', lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer('workers', 0, 'With --predict: decoding threads (0: one per core, up to 8).', lower_bound=0,
                       flag_values=fv)
  flags.DEFINE_bool('input', False, 'Instead: host clips/s of the training input pipeline.', flag_values=fv)
  flags.DEFINE_bool('real_data', False, "Also time the train step fed by the config's dataset.", flag_values=fv)
  cli.DEFINE_path('workdir', 'runs/demo', 'With --input or --real_data and a config that prepares the demo data: '
                  'its data is built into WORKDIR/data (once; the demo run uses the same).', fv)
  cli.DEFINE_path('json', None, 'Write all figures to this JSON file.', fv)
  cli.DEFINE_allow_cpu(fv)


def command(fv, argv):
  if (fv.config is None) == (fv.predict is None):
    raise cli.Error('give --config (train step and inference) or --predict (batch prediction), not both')
  accelerator.check(fv.allow_cpu)
  logging.set_verbosity(logging.WARNING)
  config = fv.config
  if (fv.input or fv.real_data) and config is not None and config.get('prepare_demo_data'):
    demo_data.ensure_prepared(config, fv.workdir)
  if fv.predict:
    from mtcae_jax.predict import inference  # pylint: disable=g-import-not-at-top
    logging.set_verbosity(logging.ERROR)  # orbax warns about metadata files of older checkpoints, every time
    try:
      result = {'predict': speed.predict_throughput(fv.predict, fv.videos, fv.steps, fv.predict_batch,
                                                    fv.workers)}
    except (inference.PredictError, OSError) as e:
      raise cli.Error(e) from None
  else:
    from mtcae_jax.measure import input_speed  # pylint: disable=g-import-not-at-top
    batch = fv.batch or config.batch_size
    try:
      if fv.input:
        result = {'input': input_speed.input_throughput(config, batch, fv.steps),
                  'machine': speed.machine_summary()}
      else:
        result = speed.run(config, batch, fv.steps, compare_torch=fv.compare == 'torch',
                           encoder_only=fv.encoder_only, matmul_size=fv.matmul_size, profile=fv.profile,
                           real_batches=input_speed.real_batches(config, batch) if fv.real_data else None)
    except (ValueError, FileNotFoundError) as e:  # a config the model rejects, a dataset not prepared
      raise cli.Error(e) from None
  result['command'] = ' '.join(['tools/benchmark.py'] + argv)
  if fv.json:
    pathlib.Path(fv.json).write_text(json.dumps(result, indent=1))
    print(f'wrote {fv.json}')


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  return cli.run(__doc__, define_flags, lambda fv, rest: command(fv, argv), argv,
                 config='Config file, e.g. configs/default.py:variant=S/16.')


if __name__ == '__main__':
  sys.exit(main())
