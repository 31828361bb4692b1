r"""Train, evaluate or cross-validate MTCAE-DFER.

    python -m mtcae_jax.main --config=configs/demo.py --workdir=runs/demo
    python -m mtcae_jax.main --config=configs/mead.py --workdir=runs/mead --config.fold=2
    python -m mtcae_jax.main --config=configs/mead.py --workdir=runs/mead_cv --mode=cv
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mtcae_jax import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/mead.py[:variant=B/16].')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, logs and reports go; rerun to resume.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'cv'],
                          'train: train on all folds but config.fold, then test on it; eval: test the best '
                          'checkpoint; cv: all five folds and a report.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from mtcae_jax.data import silent_tensorflow  # pylint: disable=g-import-not-at-top
  silent_tensorflow.import_tf()  # before clu and TFDS import TensorFlow: silently, and off the accelerators
  from mtcae_jax.train import cross_validation, loop  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  if config.get('prepare_demo_data'):
    from mtcae_jax.data import demo_data  # pylint: disable=g-import-not-at-top
    demo_data.ensure_prepared(config, _WORKDIR.value)
  try:
    if _MODE.value == 'cv':
      cross_validation.run(config, _WORKDIR.value)
    elif _MODE.value == 'eval':
      loop.evaluate_checkpoint(config, _WORKDIR.value)
    else:
      loop.train_and_evaluate(config, _WORKDIR.value)
  except (loop.TrainingError, ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=cli.parse_flags)
