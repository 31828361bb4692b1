"""What the three builders share: features, 5 subject-independent folds, the process pool, the skipped list.

A subclass names its layout (`parse`: relative path -> ClipName) and its classes; everything else is here.

Every config also exists with another number of stored frames, as its own TFDS config `<config>_<N>f` (e.g.
`ravdess_dfer/video_speech_7class_32f`): its own directory, so it never overwrites or passes for the 16-frame one
(the paper's protocol, the plain name). Likewise with the frames chosen by the authors' rule (`video.stride_indices`)
instead of the segments' centres: `<config>_stride`, before any frame count (`<config>_stride_32f`; CREMA-D, without
configs: `stride`, `stride_32f`). A subclass may derive further configs from a name (`derive`), which these suffixes
follow (MEAD: `front-without-W017_stride_32f`).
"""

import collections
import dataclasses
import functools
import os
import re
import stat
import threading

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from mtcae_jax.data import faces, stored_example, video
from mtcae_jax.data import folds as folds_lib
from mtcae_jax.data import pool as pool_lib

S = stored_example.IMAGE_SIZE
MAX_STORED_FRAMES = 256  # about 3.6 MiB of JPEGs a clip (a clip with fewer frames repeats them evenly)
_FRAMES_SUFFIX = re.compile(r'(?:(.+)_)?(\d+)f')
_STRIDE_SUFFIX = re.compile(r'(?:(.+)_)?stride')
DEFAULT_SAMPLING = 'centres'


class BadName(ValueError):
  """A file in the manual dir that does not fit the dataset's naming scheme; the message says how."""


@dataclasses.dataclass(frozen=True)
class ClipName:
  """What a file's name says about the clip."""
  label: int  # index into the builder's label names
  actor: int
  intensity: int


@dataclasses.dataclass(eq=False, kw_only=True)
class DferConfig(tfds.core.BuilderConfig):
  label_names: tuple[str, ...] = ()
  # Frames kept per clip, evenly spread over it. More than the model reads (config.num_frames) makes the training
  # jitter and the evaluation views pick different frames; the paper keeps 16.
  stored_frames: int = stored_example.NUM_FRAMES
  # How they are chosen (video.FRAME_SAMPLINGS): 'centres' of N equal segments (ours), or 'stride', every
  # floor(T / N)-th frame from frame 0 (the authors' preprocessing, `<config>_stride`).
  frame_sampling: str = DEFAULT_SAMPLING


def check_stored_frames(n):
  """`n` if it is a usable stored frame count; ValueError (one line) otherwise."""
  if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_STORED_FRAMES:
    raise ValueError(f'stored_frames must be an integer from 1 to {MAX_STORED_FRAMES}, got {n!r}')
  return n


def sampling_name(config_name, frame_sampling):
  """The TFDS config name of `config_name` (None or '' for a builder without configs) with its frames chosen by
  `frame_sampling`: itself for ours ('centres'), else `<config_name>_stride` (`stride` without configs). Give it a
  name without a frame count: the count goes last (`frames_name`)."""
  video.check_frame_sampling(frame_sampling)
  if frame_sampling == DEFAULT_SAMPLING:
    return config_name
  return f'{config_name}_{frame_sampling}' if config_name else frame_sampling


def frames_name(config_name, stored_frames):
  """The TFDS config name of `config_name` (None or '' for a builder without configs) with `stored_frames` per
  clip: itself at the paper's 16, else `<config_name>_<N>f` (`<N>f` without configs)."""
  check_stored_frames(stored_frames)
  if stored_frames == stored_example.NUM_FRAMES:
    return config_name
  return f'{config_name}_{stored_frames}f' if config_name else f'{stored_frames}f'


class DferBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of `ravdess_dfer`, `crema_d_dfer`, `mead_dfer`.

  Args (besides TFDS's): workers, the number of worker processes (default: all cores; 0 runs in-process);
  drop_faceless, leave out clips in which MTCNN finds no face in any frame (by default they are kept with an
  all-false `face_mask`; either way they are listed in the metadata); pool, a running pool_lib.ClipPool to use
  instead of starting one (several builds then share its workers' start-up); min_face_size, the smallest face
  MTCNN searches for, in pixels of the 224x224 frame (faces.MIN_FACE_SIZE); clip_timeout, seconds a clip may
  take in a worker before the worker is killed and the clip skipped (None or 0: no limit; in-process, none).
  The frames stored per clip are the config's `stored_frames` (16; `<config>_<N>f` for N), chosen by its
  `frame_sampling` (the segments' centres; `<config>_stride` for the authors' rule).

  Raises folds_lib.EmptyFold (a one-line message) where a fold would be empty: before any clip is decoded when
  there are fewer actors than folds, or at the end of a fold none of whose clips could be used.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release: 16 frames at 224 px, MTCNN boxes and landmarks, 5 actor folds.'}
  LAYOUT = ''  # the manual_dir layout, for messages
  HOMEPAGE = ''
  CITATION = ''  # BibTeX of the dataset's paper
  LICENSE = ''  # the dataset's own terms, which its clips keep when prepared

  def __init__(self, *, workers=None, drop_faceless=False, pool=None, min_face_size=faces.MIN_FACE_SIZE,
               clip_timeout=pool_lib.CLIP_TIMEOUT, **kwargs):
    self._workers = workers
    # Past threading's limit a wait raises OverflowError: that is no limit.
    self._clip_timeout = clip_timeout if clip_timeout and clip_timeout < threading.TIMEOUT_MAX else None
    self._drop_faceless = drop_faceless
    self._min_face_size = faces.check_min_face_size(min_face_size)  # here, not once per clip in the workers
    self._shared_pool = pool
    self._pool = None
    super().__init__(**kwargs)

  # --- Configs by name. -------------------------------------------------------------------------------------

  @classmethod
  def get_builder_config(cls, name, version=None):
    """A config of BUILDER_CONFIGS, else one derived from a name (`<config>_<N>f`, `<config>_stride`, both as
    `<config>_stride_<N>f`, or the subclass's `derive`), else None. TFDS looks configs up here when a builder is
    made, so derived names work in `tfds.builder` and `tfds.data_source` like the listed ones."""
    config = super().get_builder_config(name, version)
    return config if config is not None else cls._derived(name)

  @classmethod
  @functools.cache  # one object per name: TFDS refuses a second config object of a known name
  def _derived(cls, name):
    m = _FRAMES_SUFFIX.fullmatch(name)
    if m:
      base, n = cls._base(m.group(1)), int(m.group(2))
      if base is None or base.stored_frames != stored_example.NUM_FRAMES or n == stored_example.NUM_FRAMES:
        return None  # `x_32f_64f`, and `x_16f` beside `x` itself, would be two names for one dataset
      try:
        check_stored_frames(n)
      except ValueError:
        return None
      return dataclasses.replace(base, name=name, stored_frames=n,
                                 description=f'{base.description} {n} frames stored per clip.'.strip())
    m = _STRIDE_SUFFIX.fullmatch(name)
    if m:
      base = cls._base(m.group(1))
      if base is None or base.stored_frames != stored_example.NUM_FRAMES or base.frame_sampling != DEFAULT_SAMPLING:
        return None  # `x_32f_stride` is `x_stride_32f`, `x_stride_stride` is `x_stride`: one name per dataset
      return dataclasses.replace(base, name=name, frame_sampling='stride', description=(
          f'{base.description} Frames chosen as the authors did: every floor(T / N)-th from frame 0.').strip())
    return cls.derive(name)

  @classmethod
  def _base(cls, base_name):
    """The config a suffixed name extends: `base_name`'s, or for None (a bare suffix) the empty config of a builder
    without configs (CREMA-D: its data stay where they were); None where there is none."""
    if base_name is None:
      return None if cls.BUILDER_CONFIGS else DferConfig(name='', description='')
    return cls.get_builder_config(base_name)

  @classmethod
  def derive(cls, name):
    """A config that `name` describes beyond BUILDER_CONFIGS (without a frame or sampling suffix), or None."""
    del name
    return None

  @classmethod
  def config_names(cls):
    return [c.name for c in cls.BUILDER_CONFIGS]

  # --- What a subclass provides. ---------------------------------------------------------------------------

  @property
  def label_names(self):
    return self.builder_config.label_names

  def selection(self):
    """What the config selects beyond its label names, for metadata.json."""
    return {}

  def parse(self, relpath):
    """ClipName for a file (a posix path relative to manual_dir); None if this config leaves the file out
    (another modality, view, or the dataset's audio files); raises BadName if the name fits no scheme."""
    raise NotImplementedError

  # --- TFDS. ------------------------------------------------------------------------------------------------

  @property
  def stored_frames(self):
    config = self.builder_config
    return config.stored_frames if config is not None else stored_example.NUM_FRAMES

  @property
  def frame_sampling(self):
    config = self.builder_config
    return config.frame_sampling if config is not None else DEFAULT_SAMPLING

  def _info(self):
    T = self.stored_frames  # pylint: disable=invalid-name
    features = tfds.features.FeaturesDict({
        # What tfds.features.Video stores (the same records, so datasets built with it read the same), but Video
        # needs TensorFlow even to be constructed, and this lets training read the data without it.
        'video': tfds.features.Sequence(tfds.features.Image(shape=(S, S, 3), encoding_format='jpeg'), length=T),
        'boxes': tfds.features.Tensor(shape=(T, 4), dtype=np.float32),
        'landmarks': tfds.features.Tensor(shape=(T, 5, 2), dtype=np.float32),
        'face_mask': tfds.features.Tensor(shape=(T,), dtype=np.bool_),
        'frame_index': tfds.features.Tensor(shape=(T,), dtype=np.int32),
        'label': tfds.features.ClassLabel(names=list(self.label_names)),
        'actor': tfds.features.Scalar(dtype=np.int32),
        'fold': tfds.features.Scalar(dtype=np.int32),
        'intensity': tfds.features.Scalar(dtype=np.int32),
        'path': tfds.features.Text(),
    })
    return tfds.core.DatasetInfo(
        builder=self, description=f'{self.__doc__}\n\nLicence: {self.LICENSE}', features=features,
        homepage=self.HOMEPAGE, citation=self.CITATION, license=self.LICENSE, metadata=tfds.core.MetadataDict())

  def _download_and_prepare(self, dl_manager, download_config=None):
    self._skipped, self._faceless, self._excluded, self._fold_actors = [], [], 0, {}
    if self._shared_pool is not None:
      self._pool = self._shared_pool
      super()._download_and_prepare(dl_manager, download_config)
    else:
      initializer = functools.partial(stored_example.init_worker, self._min_face_size)
      with pool_lib.ClipPool(self._workers, initializer=initializer) as self._pool:
        super()._download_and_prepare(dl_manager, download_config)
    self._pool = None
    # Saved to metadata.json with the dataset; readable without this class (tfds.core.MetadataDict).
    self.info.metadata.update({
        'num_skipped': len(self._skipped),
        'skipped': sorted(self._skipped, key=lambda s: s['path']),
        'num_faceless': len(self._faceless),
        'faceless': sorted(self._faceless),
        'faceless_dropped': bool(self._drop_faceless),
        'mtcnn_min_face_size': self._min_face_size,
        'num_excluded_by_config': self._excluded,
        'fold_actors': self._fold_actors,
        'label_names': list(self.label_names),
        'stored_frames': self.stored_frames,
        'frame_sampling': self.frame_sampling,
        **self.selection(),
    })
    logging.info('%s: %d clips skipped, %d without a face; listed in metadata.json', self.name,
                 len(self._skipped), len(self._faceless))

  def _split_generators(self, dl_manager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    clips = []
    for relpath in tqdm.tqdm(list_files(manual_dir), desc='listing', unit='file', leave=False):
      try:
        name = self.parse(relpath)
      except BadName as e:
        self._skipped.append({'path': relpath, 'reason': str(e)})
        continue
      if name is None:
        self._excluded += 1
        continue
      reason = not_regular(os.fspath(manual_dir / relpath))
      if reason is not None:
        self._skipped.append({'path': relpath, 'reason': reason})
        continue
      clips.append((relpath, name))
    if not clips:
      raise ValueError(f'no {self.name} clips under {manual_dir} (expected {self.LAYOUT})')
    fold_of = folds_lib.assign_folds(collections.Counter(name.actor for _, name in clips))
    empty = folds_lib.empty_folds(fold_of)
    if empty:  # TFDS would fail on the empty split only after every clip is decoded
      raise folds_lib.EmptyFold(
          f'{self.name} needs at least one actor per fold ({folds_lib.NUM_FOLDS} '
          f'subject-independent folds), but the clips under {manual_dir} have {len(fold_of)} actor(s) '
          f'({", ".join(str(a) for a in sorted(fold_of))}): {", ".join(empty)} would be empty')
    self._fold_actors = {
        split: sorted({int(a) for a, f in fold_of.items() if f == k})
        for k, split in enumerate(folds_lib.split_names())}
    return {split: self._generate_examples(manual_dir, [c for c in clips if fold_of[c[1].actor] == k], k)
            for k, split in enumerate(folds_lib.split_names())}

  def _generate_examples(self, manual_dir, clips, fold):
    paths = [os.fspath(manual_dir / relpath) for relpath, _ in clips]
    names = dict(zip(paths, clips))
    work = functools.partial(stored_example.process, min_face_size=self._min_face_size,
                             num_frames=self.stored_frames, frame_sampling=self.frame_sampling)
    timeout = self._clip_timeout
    results = self._pool.imap(work, paths, on_crash=lambda _: (None, pool_lib.CRASH),
                              desc=f'{self.name} fold{fold}', timeout=timeout,
                              on_timeout=lambda _: (None, pool_lib.timed_out(timeout)))
    skipped, dropped, kept = [], 0, 0
    for path, (ex, reason) in results:
      relpath, name = names[path]
      if reason is not None:
        self._skipped.append({'path': relpath, 'reason': reason})
        skipped.append(f'{relpath}: {reason}')
        continue
      if not ex['face_mask'].any():
        self._faceless.append(relpath)
        if self._drop_faceless:
          dropped += 1
          continue
      kept += 1
      yield relpath, dict(ex, label=name.label, actor=name.actor, fold=fold, intensity=name.intensity,
                          path=relpath)
    if not kept:  # else TFDS: "Failed to finalize writing of split"
      actors = ', '.join(str(a) for a in sorted({name.actor for _, name in clips}))
      why = [f'{len(skipped)} skipped' + (f' (first: {skipped[0]})' if skipped else '')]
      if dropped:
        why.append(f'{dropped} without a face dropped (--drop_faceless)')
      raise folds_lib.EmptyFold(
          f'fold{fold} (actor(s) {actors}) has no usable clip: of its {len(clips)} clip(s), {" and ".join(why)}; '
          'fix or remove those files (an actor\'s clips all go to one fold, so every fold needs an actor with one '
          'usable clip)')


def not_regular(path):
  """Why `path` cannot be a clip before it is opened (a FIFO, socket or device, or a dangling link), or None.

  Opening a FIFO blocks until something writes to it: the decoder would wait forever (in-process, nothing can stop
  it), and a device may never end."""
  try:
    mode = os.stat(path).st_mode  # follows links: a link to a clip is a clip
  except OSError as e:
    return f'cannot be read: {e.strerror or e}'
  if stat.S_ISREG(mode):
    return None
  kinds = ((stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket'), (stat.S_ISCHR, 'a character device'),
           (stat.S_ISBLK, 'a block device'), (stat.S_ISDIR, 'a directory'))
  kind = next((k for test, k in kinds if test(mode)), 'a special file')
  return f'not a regular file ({kind}): not opened'


def list_files(root):
  """Every file under `root` as a sorted posix path relative to it, hidden files and folders excepted."""
  root = os.fspath(root)
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if not d.startswith('.')]
    rel = os.path.relpath(dirpath, root)
    for f in filenames:
      if not f.startswith('.'):
        found.append(f if rel == '.' else f'{rel}/{f}'.replace(os.sep, '/'))
  return sorted(found)
