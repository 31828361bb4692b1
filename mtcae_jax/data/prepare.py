"""Builds one of the datasets from its manual download: what users run (no `tfds` command-line extras needed; also
installed as `mtcae-prepare`).

    python -m mtcae_jax.data.prepare --dataset=ravdess_dfer --manual_dir=DIR --data_dir=DIR [--workers=N]
        [--clip_timeout=SECONDS]
    python -m mtcae_jax.data.prepare --dataset=ravdess_dfer/video_speech_8class --manual_dir=DIR --data_dir=DIR
    python -m mtcae_jax.data.prepare --dataset=ravdess_dfer --stored_frames=32 ...  # -> .../video_speech_7class_32f
    python -m mtcae_jax.data.prepare --dataset=ravdess_dfer --frame_sampling=stride ...  # -> ..._7class_stride
    python -m mtcae_jax.data.prepare --dataset=mead_dfer/front_fifth --exclude_actors=W017 ...

`--stored_frames=N` (default 16, the paper's) keeps N frames a clip, so that training jitter and evaluation views
can pick different ones; the dataset is then its own TFDS config `<config>_<N>f`, which the training config
selects (`config.dataset`). `--frame_sampling=stride` chooses the frames as the authors' preprocessing did (every
floor(T / N)-th frame from frame 0, not the centres of N equal segments): `<config>_stride`, before any `_<N>f`.
`--actors`/`--exclude_actors` (MEAD) likewise name `<config>-only-...`/`-without-...`, before both.

Writes array_record files (read with `tfds.data_source`) and prints the split sizes and the skipped files.
Bad arguments, and data that would leave a cross-validation fold empty, give a one-line error and exit status 2.
"""

import os
import sys

from absl import flags

from mtcae_jax import cli
from mtcae_jax.data import faces, silent_tensorflow
from mtcae_jax.data import folds as folds_lib
from mtcae_jax.data import pool as pool_lib

SHOW_SKIPPED = 20


class UsageError(ValueError):
  pass


def define_flags(fv):
  flags.DEFINE_string('dataset', None, 'ravdess_dfer, crema_d_dfer or mead_dfer, optionally /CONFIG.', flag_values=fv)
  flags.mark_flag_as_required('dataset', flag_values=fv)
  cli.DEFINE_path('manual_dir', None, 'The unpacked download, in the layout of docs/DATA.md.', fv, required=True)
  cli.DEFINE_path('data_dir', None, 'Where TFDS writes the prepared dataset.', fv, required=True)
  flags.DEFINE_integer('workers', os.cpu_count() or 1, 'Worker processes (0: in-process).', flag_values=fv)
  flags.DEFINE_float('clip_timeout', pool_lib.CLIP_TIMEOUT, 'Seconds a clip may take in a worker process; past '
                     'them the worker is killed and the clip skipped (0: no limit; none with --workers=0).',
                     flag_values=fv)
  flags.DEFINE_bool('drop_faceless', False, 'Leave out clips with no face in any frame.', flag_values=fv)
  flags.DEFINE_integer('min_face_size', faces.MIN_FACE_SIZE, 'Smallest face MTCNN searches for, in pixels of the '
                       '224x224 frame (mtcnn itself: 20).', flag_values=fv)
  flags.DEFINE_bool('overwrite', False, 'Rebuild if the prepared dataset already exists.', flag_values=fv)
  flags.DEFINE_integer('stored_frames', None, 'Frames stored per clip (default: the config\'s, 16): more than '
                       'the model reads lets training jitter and evaluation views differ; the dataset is then '
                       'CONFIG_<N>f.', flag_values=fv)
  flags.DEFINE_string('frame_sampling', None, 'How the stored frames are chosen: centres (default: one at the centre '
                      'of each of N equal segments) or stride (the authors\' preprocessing: every floor(T / N)-th '
                      'frame from frame 0); the dataset is then CONFIG_stride.', flag_values=fv)
  flags.DEFINE_list('actors', [], 'mead_dfer: only these actors (e.g. M003,W009); the dataset is then '
                    'CONFIG-only-<IDs>.', flag_values=fv)
  flags.DEFINE_list('exclude_actors', [], 'mead_dfer: all actors but these; the dataset is then '
                    'CONFIG-without-<IDs>.', flag_values=fv)


def dataset_name(dataset, stored_frames=None, actors=(), exclude_actors=(), frame_sampling=None):
  """The full name ('name/config') of `dataset` ('name' or 'name/config') with the options applied; UsageError for
  an unknown name or config, or an option that does not apply."""
  silent_tensorflow.import_tf()  # TensorFlow quiet and off the accelerators before TFDS imports it
  from mtcae_jax.data import datasets  # pylint: disable=g-import-not-at-top  # imports TFDS: after silent_tensorflow
  from mtcae_jax.data import stored_example, video  # pylint: disable=g-import-not-at-top
  from mtcae_jax.data.datasets import base, mead  # pylint: disable=g-import-not-at-top
  name, _, config = dataset.partition('/')
  if name not in datasets.BUILDERS:
    raise UsageError(f'unknown --dataset={name}; one of {", ".join(datasets.BUILDERS)}')
  cls = datasets.BUILDERS[name]
  found = cls.get_builder_config(config or cls.DEFAULT_BUILDER_CONFIG_NAME or '')
  if config and found is None:
    listed = ', '.join(cls.config_names()) or '(none)'
    raise UsageError(f'{name} has no config {config!r}; one of {listed} (with _<N>f: N stored frames; _stride: '
                     'the authors\' frames)')
  if actors or exclude_actors:
    if cls is not mead.MeadDfer:
      raise UsageError(f'--actors and --exclude_actors select MEAD actors; {name} has no such option')
    if (found.actors or found.exclude_actors or found.stored_frames != stored_example.NUM_FRAMES
        or found.frame_sampling != base.DEFAULT_SAMPLING):
      raise UsageError(f'{dataset} already names its actors or frames; give --actors or --exclude_actors with a '
                       'listed config')
    try:
      config = mead.actors_name(found.name, actors, exclude_actors)
    except ValueError as e:
      raise UsageError(str(e)) from None
    found = cls.get_builder_config(config)
  if frame_sampling is not None:
    try:
      video.check_frame_sampling(frame_sampling)
    except ValueError as e:
      raise UsageError(f'--{e}') from None
    if found is not None and (found.frame_sampling != base.DEFAULT_SAMPLING
                              or found.stored_frames != stored_example.NUM_FRAMES):
      raise UsageError(f'{dataset} already names its frames; give --frame_sampling (and --stored_frames) with a '
                       'listed config')
    config = base.sampling_name(found.name if found is not None else '', frame_sampling)
    found = cls.get_builder_config(config) if config else found
  if stored_frames is not None:
    have = found.stored_frames if found is not None else stored_example.NUM_FRAMES
    if have != stored_example.NUM_FRAMES:
      raise UsageError(f'{dataset} already stores {have} frames; give --stored_frames with a listed config')
    try:
      config = base.frames_name(found.name if found is not None else '', stored_frames)
    except ValueError as e:
      raise UsageError(f'--{e}') from None
  elif found is not None:
    config = found.name
  return f'{name}/{config}' if config else name


def make_builder(dataset, data_dir, workers=None, drop_faceless=False, min_face_size=faces.MIN_FACE_SIZE,
                 clip_timeout=pool_lib.CLIP_TIMEOUT, stored_frames=None, actors=(), exclude_actors=(),
                 frame_sampling=None):
  """The builder for 'name' or 'name/config' (with `dataset_name`'s options); raises UsageError for an unknown
  name or config or a bad option."""
  full = dataset_name(dataset, stored_frames, actors, exclude_actors, frame_sampling)
  from mtcae_jax.data import datasets  # pylint: disable=g-import-not-at-top
  name, _, config = full.partition('/')
  kwargs = dict(config=config) if config else {}
  try:
    faces.check_min_face_size(min_face_size)
  except ValueError as e:
    raise UsageError(f'--{e}') from None
  return datasets.BUILDERS[name](data_dir=data_dir, workers=workers, drop_faceless=drop_faceless,
                                 min_face_size=min_face_size, clip_timeout=clip_timeout, **kwargs)


def prepare(builder, manual_dir, overwrite=False):
  """Builds into the builder's data_dir from `manual_dir` (array_record); returns the dataset's metadata.

  Raises UsageError, one line naming the `[data]` extra, where TensorFlow or mtcnn is missing: only building needs
  them (a builder is made, and a prepared dataset read, without)."""
  try:
    silent_tensorflow.require_data_extra()
  except silent_tensorflow.MissingDataExtra as e:
    raise UsageError(str(e)) from None
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
  if overwrite:
    mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD
  builder.download_and_prepare(
      file_format='array_record',
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, download_mode=mode))
  return builder.info.metadata


def command(args, rest):
  del rest
  if not os.path.isdir(args.manual_dir):
    raise cli.Error(f'--manual_dir={args.manual_dir} is not a directory')
  if args.workers < 0:
    raise cli.Error(f'--workers must be >= 0, got {args.workers}')
  if not args.clip_timeout >= 0:  # also NaN
    raise cli.Error(f'--clip_timeout must be >= 0 seconds (0: no limit), got {args.clip_timeout}')
  if os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
    raise cli.Error(f'--data_dir={args.data_dir} exists and is not a directory')
  silent_tensorflow.import_tf()
  try:
    builder = make_builder(args.dataset, args.data_dir, args.workers, args.drop_faceless, args.min_face_size,
                           args.clip_timeout, args.stored_frames, args.actors, args.exclude_actors,
                           args.frame_sampling)
    meta = prepare(builder, args.manual_dir, args.overwrite)
  except (UsageError, folds_lib.EmptyFold) as e:
    raise cli.Error(e) from None
  except ValueError as e:
    if str(e).startswith('no '):  # no clip of the dataset under manual_dir
      raise cli.Error(e) from None
    raise
  splits = builder.info.splits
  print(f'{builder.info.full_name}: ' + ', '.join(f'{s} {splits[s].num_examples}' for s in sorted(splits)) +
        f' clips of {builder.stored_frames} frames ({builder.frame_sampling}); written to '
        f'{builder.data_dir}')
  config = builder.builder_config.name if builder.builder_config is not None else ''
  print(f'Train on it with --config.dataset={builder.name}' + (f'/{config}' if config else ''))
  skipped = meta.get('skipped', [])
  print(f'{len(skipped)} files skipped, {meta.get("num_faceless", 0)} clips without a face '
        f'({"dropped" if args.drop_faceless else "kept, face_mask all false"}); all listed in '
        f'{os.path.join(builder.data_dir, "metadata.json")}')
  for s in skipped[:SHOW_SKIPPED]:
    print(f'  skipped {s["path"]}: {s["reason"]}')
  if len(skipped) > SHOW_SKIPPED:
    print(f'  ... and {len(skipped) - SHOW_SKIPPED} more')
  return 0


def main(argv=None):
  """The command line (default sys.argv[1:], without the program name) -> the exit status."""
  return cli.run(__doc__, define_flags, command, argv)


if __name__ == '__main__':
  sys.exit(main())
