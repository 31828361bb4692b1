"""MEAD (Wang et al., 2020): 60 actors, 8 emotions at 3 levels, 7 views,
`<ACTOR>/video/<view>/<emotion>/level_<k>/<NNN>.mp4` with ACTOR like M003 or W009.

`actor` is stored as an int: 1000 + number for M (men), 2000 + number for W (women): M003 -> 1003.
"""

import dataclasses
import re

from mtcae_jax.data.datasets import base

EMOTIONS = ('angry', 'contempt', 'disgusted', 'fear', 'happy', 'neutral', 'sad', 'surprised')
VIEWS = ('front', 'down', 'top', 'left_30', 'left_60', 'right_30', 'right_60')
_NAME = re.compile(r'([MW])(\d{3})/video/([a-z0-9_]+)/([a-z]+)/level_(\d)/(\d{3})\.mp4')
_SEX = {'M': 1000, 'W': 2000}


@dataclasses.dataclass(eq=False, kw_only=True)
class MeadConfig(base.DferConfig):
  views: tuple[str, ...] = ('front',)


class MeadDfer(base.DferBuilder):
  """MEAD faces as 16-frame multi-task clips (expression, MTCNN boxes and landmarks); 8 classes."""

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
      [MeadConfig(name=v, description=f'The {v} camera, all intensity levels.', views=(v,), label_names=EMOTIONS)
       for v in VIEWS]
      + [MeadConfig(name='all_views', description='All 7 cameras, all levels.', views=VIEWS,
                    label_names=EMOTIONS)])
  DEFAULT_CONFIG_NAME = 'front'

  def parse(self, relpath):
    parts = relpath.split('/')
    if len(parts) > 1 and parts[1] != 'video':
      return None  # the actor's audio folder
    m = _NAME.fullmatch(relpath)
    if not m:
      raise base.BadName(f'does not match {self.LAYOUT}')
    sex, number, view, emotion, level, _ = m.groups()
    if view not in VIEWS:
      raise base.BadName(f'view {view} is not one of {", ".join(VIEWS)}')
    if emotion not in EMOTIONS:
      raise base.BadName(f'emotion {emotion} is not one of {", ".join(EMOTIONS)}')
    if not 1 <= int(level) <= 3:
      raise base.BadName(f'level_{level} is not level_1, level_2 or level_3')
    if view not in self.builder_config.views:
      return None
    return base.ClipName(label=EMOTIONS.index(emotion), actor=_SEX[sex] + int(number), intensity=int(level))
