"""MEAD (Wang et al., 2020): 60 actors, 8 emotions at 3 levels, 7 views,
`<ACTOR>/video/<view>/<emotion>/level_<k>/<NNN>.mp4` with ACTOR like M003 or W009.

`actor` is stored as an int: 1000 + number for M (men), 2000 + number for W (women): M003 -> 1003.

Which clips a config keeps: its camera `views`, the intensity `levels` of the seven emotions other than neutral
(neutral has only level_1 and is always kept), the `actors` (all, or only / all but those listed) and every
`clip_stride`-th clip number. Named configs cover the common choices (docs/DATA.md#mead-selections, with the
paper's counts); any listed config restricted to some actors is `<config>-only-<ID>-<ID>...` or
`<config>-without-<ID>...` (IDs sorted, e.g. `front-without-W017`), which `prepare --actors/--exclude_actors` names.
"""

import dataclasses
import re

from mtcae_jax.data.datasets import base

EMOTIONS = ('angry', 'contempt', 'disgusted', 'fear', 'happy', 'neutral', 'sad', 'surprised')
VIEWS = ('front', 'down', 'top', 'left_30', 'left_60', 'right_30', 'right_60')
_NAME = re.compile(r'([MW])(\d{3})/video/([a-z0-9_]+)/([a-z]+)/level_(\d)/(\d{3})\.mp4')
_SEX = {'M': 1000, 'W': 2000}
LEVELS = (1, 2, 3)
_ACTOR = re.compile(r'[MW]\d{3}')
_ACTOR_SUFFIX = re.compile(r'(.+?)-(only|without)((?:-[MW]\d{3})+)')


@dataclasses.dataclass(eq=False, kw_only=True)
class MeadConfig(base.DferConfig):
  views: tuple[str, ...] = ('front',)
  levels: tuple[int, ...] = LEVELS  # of the emotions other than neutral, whose clips are all level_1
  actors: tuple[str, ...] = ()  # only these (e.g. 'M003'); empty: every actor
  exclude_actors: tuple[str, ...] = ()
  clip_stride: int = 1  # keep clip numbers 1, 1 + stride, 1 + 2 * stride, ... of each folder


def check_actors(actors):
  """Sorted unique actor IDs; ValueError (one line) for one that is not like M003 or W009."""
  bad = [a for a in actors if not _ACTOR.fullmatch(a)]
  if bad:
    raise ValueError(f'MEAD actor IDs are like M003 or W009, got {", ".join(map(repr, bad))}')
  return tuple(sorted(set(actors)))


def actors_name(config_name, actors=(), exclude_actors=()):
  """The config name of `config_name` restricted to `actors` (only those) or without `exclude_actors`."""
  actors, exclude_actors = check_actors(actors), check_actors(exclude_actors)
  if actors and exclude_actors:
    raise ValueError('give the MEAD actors to keep or those to leave out, not both')
  if not actors and not exclude_actors:
    return config_name
  return f'{config_name}-{"only" if actors else "without"}-' + '-'.join(actors or exclude_actors)


def _named(name, description, views=('front',), levels=LEVELS, clip_stride=1):
  return MeadConfig(name=name, description=description, views=views, levels=levels, clip_stride=clip_stride,
                    label_names=EMOTIONS)


class MeadDfer(base.DferBuilder):
  """MEAD faces as multi-task clips (expression, MTCNN boxes and landmarks);
  16 frames a clip (`<config>_<N>f`: N; `<config>_stride`: chosen as the authors did); 8 classes."""

  name = 'mead_dfer'
  LAYOUT = '<ACTOR>/video/<view>/<emotion>/level_<k>/<NNN>.mp4'
  HOMEPAGE = 'https://wywu.github.io/projects/MEAD/MEAD.html'
  LICENSE = 'For research use only, under the terms on the MEAD page (accepted when downloading)'
  CITATION = """\
@inproceedings{wang2020mead,
  title = {{MEAD}: A Large-scale Audio-visual Dataset for Emotional Talking-face Generation},
  author = {Wang, Kaisiyuan and Wu, Qianyi and Song, Linsen and Yang, Zhuoqian and Wu, Wayne and Qian, Chen and
            He, Ran and Qiao, Yu and Loy, Chen Change},
  booktitle = {European Conference on Computer Vision (ECCV)},
  pages = {700--717},
  year = {2020},
  doi = {10.1007/978-3-030-58589-1_42},
}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the per-actor archives (`M003/video.tar`, ...) from the MEAD page and extract each into
  `manual_dir/<ACTOR>/`, giving `manual_dir/M003/video/front/angry/level_1/001.mp4` etc. Audio folders are ignored.
  """
  BUILDER_CONFIGS = (
      [_named(v, f'The {v} camera, all intensity levels.', views=(v,)) for v in VIEWS]
      + [_named('all_views', 'All 7 cameras, all levels.', views=VIEWS)]
      + [_named(f'front_level_{k}', f'The front camera: neutral and level {k} of the other emotions.', levels=(k,))
         for k in LEVELS]
      + [_named('front_fifth', 'The front camera, all levels, every fifth clip number (1, 6, 11, ...): nominally '
                '8 neutral and 18 clips per other emotion and actor, near the paper\'s 6,568 clips of 48 actors '
                '(which it does not say how it chose).', clip_stride=5)])
  DEFAULT_BUILDER_CONFIG_NAME = 'front'

  @classmethod
  def derive(cls, name):
    """`<config>-only-<IDs>` or `<config>-without-<IDs>` (sorted, as `actors_name` writes them) of a listed
    config."""
    m = _ACTOR_SUFFIX.fullmatch(name)
    if not m:
      return None
    config = cls.builder_configs.get(m.group(1))  # a listed config: one name per selection
    ids = tuple(m.group(3)[1:].split('-'))
    if config is None or ids != tuple(sorted(set(ids))):
      return None
    keep = m.group(2) == 'only'
    listed = ', '.join(ids)
    return dataclasses.replace(config, name=name, actors=ids if keep else (), exclude_actors=() if keep else ids,
                               description=f'{config.description} {"Only" if keep else "Without"} actors {listed}.')

  def selection(self):
    c = self.builder_config
    return {'views': list(c.views), 'levels': list(c.levels), 'actors': list(c.actors),
            'exclude_actors': list(c.exclude_actors), 'clip_stride': c.clip_stride}

  def parse(self, relpath):
    parts = relpath.split('/')
    if len(parts) > 1 and parts[1] != 'video':
      return None  # the actor's audio folder
    m = _NAME.fullmatch(relpath)
    if not m:
      raise base.BadName(f'does not match {self.LAYOUT}')
    sex, number, view, emotion, level, clip = m.groups()
    if view not in VIEWS:
      raise base.BadName(f'view {view} is not one of {", ".join(VIEWS)}')
    if emotion not in EMOTIONS:
      raise base.BadName(f'emotion {emotion} is not one of {", ".join(EMOTIONS)}')
    if not 1 <= int(level) <= 3:
      raise base.BadName(f'level_{level} is not level_1, level_2 or level_3')
    config, actor = self.builder_config, f'{sex}{number}'
    if view not in config.views or (emotion != 'neutral' and int(level) not in config.levels):
      return None
    if (config.actors and actor not in config.actors) or actor in config.exclude_actors:
      return None
    if (int(clip) - 1) % config.clip_stride:
      return None
    return base.ClipName(label=EMOTIONS.index(emotion), actor=_SEX[sex] + int(number), intensity=int(level))
