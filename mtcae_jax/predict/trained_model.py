"""A trained model ready for prediction, loaded from a training workdir or a converted checkpoint.

`load(checkpoint)` restores only the model's half of a training state, onto this process's first device, whatever
mesh saved it, and refuses a checkpoint whose parameters differ from what this version builds from its config.
No TensorFlow: the class names come from the run's metrics.json, not from TFDS.
"""

import dataclasses
import json
import pathlib
import re
import sys

import numpy as np



class PredictError(ValueError):
  """A checkpoint or request that cannot be used; the message is one line."""


@dataclasses.dataclass
class Predictor:
  """A model ready to run: `__call__(videos (B, T, S, S, 3) uint8) -> dict of NumPy arrays`; the videos are
  normalised on the device with the model's input mean and std."""
  fn: object  # jitted (state, video) -> outputs
  state: object
  num_frames: int
  image_size: int
  class_names: list
  source: str  # what was loaded, for the JSON: 'DIR (step N)' or 'DIR (converted)'
  has_faces: bool
  frame_sampling: str = 'centres'  # how a video's frames are chosen: as the training dataset chose them

  def __call__(self, videos):
    out = self.fn(self.state, videos)
    return {k: np.asarray(v) for k, v in out.items()}


def frame_sampling_of(dataset):
  """The frame sampling a dataset name says (datasets/base.py `sampling_name`: a config name ending in `_stride`,
  before any `_<N>f`, or a bare `stride`): 'stride' for the authors' rule, else 'centres'. Read from the name, so
  predicting needs neither the dataset nor TFDS."""
  config = str(dataset).partition('/')[2]
  return 'stride' if re.search(r'(^|_)stride(_\d+f)?$', config) else 'centres'


def _class_names(workdir, num_classes):
  """The names a finished run wrote into metrics.json (no TFDS, so no TensorFlow); else the indices."""
  for path in [workdir / 'metrics.json', *sorted(workdir.glob('eval_step*/metrics.json'))]:
    try:
      names = json.loads(path.read_text()).get('class_names')
    except (OSError, ValueError):
      continue
    if names and len(names) == num_classes:
      return list(names)
  return [str(i) for i in range(num_classes)]


def _jit_model(graphdef, extract, mean, std, box_format='xyxy'):
  """The jitted model: uint8 video -> probabilities and the `extract`ed outputs, boxes as corners whatever
  `box_format` the model was trained in."""
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from mtcae_jax.data import box_format as box_format_lib  # pylint: disable=g-import-not-at-top
  from mtcae_jax.data import device_input  # pylint: disable=g-import-not-at-top

  def run(state, video):
    out = nnx.merge(graphdef, state)(device_input.model_video({'video': video}, mean, std))
    result = {'probabilities': jax.nn.softmax(out['logits'].astype('float32'), axis=-1)}
    result.update({k: out[k] for k in extract if k in out})
    if 'boxes' in result:
      result['boxes'] = box_format_lib.to_xyxy(result['boxes'], box_format)
    return result
  return jax.jit(run)


def _workdir_of(path):
  """(training workdir, step or None) for a workdir, its checkpoints/ or one step in it; (None, None) otherwise."""
  if path.name.isdigit() and path.parent.name == 'checkpoints':
    return path.parent.parent, int(path.name)
  if path.name == 'checkpoints':
    path = path.parent
  if (path / 'checkpoints').is_dir() and any(p.name.isdigit() for p in (path / 'checkpoints').iterdir()):
    return path, None
  return None, None


def load(checkpoint, *, step=None, class_names=None):
  """A Predictor from a training workdir or a converted checkpoint directory. Raises PredictError."""
  path = pathlib.Path(checkpoint)
  if not path.is_dir():
    raise PredictError(f'{checkpoint}: no such directory (expected a training workdir or a converted checkpoint)')
  workdir, named_step = _workdir_of(path)
  if workdir is not None:
    return _load_workdir(workdir, step or named_step, class_names)
  if (path / 'config.json').is_file():
    return _load_converted(path, class_names)
  if (path / 'fold_0').is_dir():
    raise PredictError(f'{checkpoint} is a cross-validation workdir: pass one fold, e.g. {path / "fold_0"}')
  raise PredictError(f'{checkpoint}: not a checkpoint (neither a training workdir with checkpoints/ nor a '
                     'directory written by mtcae_jax.pretrained.convert)')


def _load_workdir(workdir, step, class_names):
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from mtcae_jax import checkpointing, models  # pylint: disable=g-import-not-at-top
  ckpt = checkpointing.Checkpoints(workdir / 'checkpoints')
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def read(step):
    config = ml_collections.ConfigDict(ckpt.run_config(step))
    graphdef, abstract = nnx.split(models.abstract_model(config))
    # The model half of the saved (model, optimizer) state, on this process's first device, whatever mesh saved it.
    try:
      state, _ = ckpt.restore(step, abstract, device, part=0)
    except checkpointing.CheckpointMismatch as e:
      raise PredictError(f'{workdir} (step {step}) was saved by a model with other parameters than this version '
                         f'builds from its config ({len(e.saved_only)} saved only, {len(e.missing)} missing, e.g. '
                         f'{", ".join(e.saved_only[:2] + e.missing[:2])})') from None
    return config, graphdef, state

  try:
    steps = sorted(ckpt.all_steps(), reverse=True)
    if step is not None and step not in steps:
      raise PredictError(f'{workdir}: no checkpoint at step {step} (there are {", ".join(map(str, steps[::-1]))})')
    if not steps:
      raise PredictError(f'{workdir}: no finished checkpoint in {workdir / "checkpoints"}')
    # The one asked for; else the best, then the newest intact one. A damaged one is named (on stderr) and left
    # in place: predicting only reads the workdir.
    candidates = [step] if step is not None else ckpt.best_first()
    chosen, loaded = ckpt.first_intact(candidates, read, note=lambda line: print(line, file=sys.stderr))
    if chosen is None:
      raise PredictError(f'{workdir}: no intact checkpoint in {workdir / "checkpoints"} (named above)'
                         if step is None else f'{workdir}: checkpoint step {step} is damaged (named above)')
    if chosen != candidates[0]:
      print(f'Predicting with step {chosen} instead.', file=sys.stderr)
    step, (config, graphdef, state) = chosen, loaded
  finally:
    ckpt.close()
  faces = config.model.strategy != 'stl'
  names = list(class_names) if class_names else _class_names(workdir, config.num_classes)
  return Predictor(fn=_jit_model(graphdef, ('boxes', 'landmarks') if faces else (), config.input.mean,
                                  config.input.std, config.get('box_format', 'xyxy')), state=state,
                   num_frames=config.num_frames, image_size=config.image_size,
                   class_names=_checked_names(names, config.num_classes), source=f'{workdir} (step {step})',
                   has_faces=faces, frame_sampling=frame_sampling_of(config.get('dataset', '')))


def _load_converted(path, class_names):
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from mtcae_jax.configs import default  # pylint: disable=g-import-not-at-top
  from mtcae_jax.pretrained import converted  # pylint: disable=g-import-not-at-top
  meta = converted.read_config(path)
  if not meta.get('num_classes'):
    raise PredictError(f'{path}: the converted checkpoint has no classifier head (a pre-trained encoder); '
                       'fine-tune it first (config.init_from)')
  graphdef, state = nnx.split(converted.load_converted(path))
  names = list(class_names or meta.get('class_names') or map(str, range(meta['num_classes'])))
  return Predictor(fn=_jit_model(graphdef, (), default.IMAGENET_MEAN, default.IMAGENET_STD), state=state,
                   num_frames=meta['encoder']['num_frames'], image_size=meta['encoder']['image_size'],
                   class_names=_checked_names(names, meta['num_classes']), source=f'{path} (converted)',
                   has_faces=False)


def _checked_names(names, num_classes):
  if len(names) != num_classes:
    raise PredictError(f'{len(names)} class names given for a model of {num_classes} classes')
  return names
