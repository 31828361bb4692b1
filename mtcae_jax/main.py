r"""Train, evaluate or cross-validate MTCAE-DFER (also installed as `mtcae-train`).

    python -m mtcae_jax.main --config=configs/demo.py --workdir=runs/demo
    python -m mtcae_jax.main --config=configs/mead.py --workdir=runs/mead --config.fold=2
    python -m mtcae_jax.main --config=configs/mead.py --workdir=runs/mead_cv --mode=cv
"""

import os
import pathlib
import sys

from absl import flags, logging

from mtcae_jax import accelerator, cli


def define_flags(fv):
  flags.mark_flag_as_required('config', flag_values=fv)
  cli.DEFINE_path('workdir', None, 'Where checkpoints, logs and reports go; rerun to resume.', fv, required=True)
  flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'cv'],
                    'train: train on all folds but config.fold, then test on it; eval: test the best checkpoint; '
                    'cv: all five folds and a report.', flag_values=fv)
  cli.DEFINE_allow_cpu(fv)


def check_workdir(workdir):
  """A one-line cli.Error for a --workdir that is a file, or below one: each mode would fail late with a traceback
  (mkdir's FileExistsError), after loading TensorFlow and the data."""
  path = pathlib.Path(workdir).absolute()
  for p in (path, *path.parents):
    if os.path.lexists(p):
      if not p.is_dir():  # a file, or a link to a file or to nothing
        raise cli.Error(f'--workdir={workdir}: ' + ('is not a directory' if p == path else f'{p} is not a directory'))
      return


def command(fv, args):
  del args
  check_workdir(fv.workdir)
  logging.set_verbosity(logging.WARNING)
  from mtcae_jax.data import silent_tensorflow  # pylint: disable=g-import-not-at-top
  silent_tensorflow.import_tf()  # where installed: before TFDS imports it, silently and off the accelerators
  from mtcae_jax.train import cross_validation, loop  # pylint: disable=g-import-not-at-top
  config = fv.config
  if not config.get('distributed'):  # JAX's backends must not start before jax.distributed.initialize()
    accelerator.check(fv.allow_cpu)
  try:
    if config.get('prepare_demo_data'):
      from mtcae_jax.data import demo_data  # pylint: disable=g-import-not-at-top
      demo_data.ensure_prepared(config, fv.workdir)
    if fv.mode == 'cv':
      cross_validation.run(config, fv.workdir)
    elif fv.mode == 'eval':
      loop.evaluate_checkpoint(config, fv.workdir)
    else:
      loop.train_and_evaluate(config, fv.workdir)
  except (loop.TrainingError, ValueError, FileNotFoundError, silent_tensorflow.MissingDataExtra) as e:
    raise cli.Error(e) from None


def main(argv=None):
  return cli.run(__doc__, define_flags, command, argv,
                 config='Config file, e.g. configs/mead.py[:variant=B/16]; --config.x=... overrides its fields.')


if __name__ == '__main__':
  sys.exit(main())
