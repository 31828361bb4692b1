"""The bundled demo dataset (`demo/ravdess`, see its README): built into the workdir on first use."""

import importlib.resources
import pathlib

from mtcae_jax.data import prepare

RAW = importlib.resources.files('mtcae_jax.data') / 'demo' / 'ravdess'
DATASET = 'ravdess_dfer'


def ensure_prepared(config, workdir, workers=2):
  """Points `config.data_dir` at `WORKDIR/data` (unless set) and builds the demo dataset there if needed: as
  config.dataset names it where that is a `ravdess_dfer` config (e.g. `ravdess_dfer/video_speech_7class_32f`, with
  32 stored frames), else as `ravdess_dfer`."""
  if not config.data_dir:
    config.data_dir = str(pathlib.Path(workdir) / 'data')
  name = config.get('dataset') or DATASET
  name = name if name.split('/')[0] == DATASET else DATASET
  builder = prepare.make_builder(name, config.data_dir, workers=workers)
  if not builder.is_prepared():
    print(f'Building the demo dataset into {config.data_dir} (once) ...')
    with importlib.resources.as_file(RAW) as raw:
      prepare.prepare(builder, str(raw))
  return config
