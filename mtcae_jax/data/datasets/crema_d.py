"""CREMA-D (Cao et al., 2014): 91 actors, 7,442 clips, `VideoFlash/AAAA_SSS_EEE_II.flv`.

File name fields: actor (1001-1091), sentence (three letters), emotion (ANG, DIS, FEA, HAP, NEU, SAD), intensity
(LO low, MD medium, HI high, XX unspecified; stored as 1, 2, 3 and 0).
"""

import re

from mtcae_jax.data.datasets import base

EMOTION_CODES = ('ANG', 'DIS', 'FEA', 'HAP', 'NEU', 'SAD')
EMOTIONS = ('angry', 'disgust', 'fear', 'happy', 'neutral', 'sad')
INTENSITY = {'XX': 0, 'LO': 1, 'MD': 2, 'HI': 3}
_NAME = re.compile(r'VideoFlash/(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.flv')


class CremaDDfer(base.DferBuilder):
  """CREMA-D faces as multi-task clips (expression, MTCNN boxes and landmarks);
  16 frames a clip (`<N>f`: N; `stride`: chosen as the authors did); 6 classes."""

  name = 'crema_d_dfer'  # TFDS's own `crema_d` is the audio dataset
  LAYOUT = 'VideoFlash/AAAA_SSS_EEE_II.flv'
  HOMEPAGE = 'https://github.com/CheyneyComputerScience/CREMA-D'
  LICENSE = ('Open Database License (ODbL v1.0); the individual contents under the Database Contents License '
             '(DbCL v1.0)')
  CITATION = """\
@article{cao2014cremad,
  title = {{CREMA-D}: Crowd-sourced Emotional Multimodal Actors Dataset},
  author = {Cao, Houwei and Cooper, David G. and Keutmann, Michael K. and Gur, Ruben C. and Nenkova, Ani and
            Verma, Ragini},
  journal = {IEEE Transactions on Affective Computing},
  volume = {5},
  number = {4},
  pages = {377--390},
  year = {2014},
  doi = {10.1109/TAFFC.2014.2336244},
}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Clone or download the CREMA-D repository (its media are in Git LFS) and place its `VideoFlash` folder in
  manual_dir, giving `manual_dir/VideoFlash/1001_DFA_ANG_XX.flv` etc. Other folders (AudioWAV, ...) are ignored.
  """

  @property
  def label_names(self):
    return EMOTIONS

  def parse(self, relpath):
    if not relpath.startswith('VideoFlash/'):
      return None  # the dataset's audio folders and files beside the videos
    m = _NAME.fullmatch(relpath)
    if not m:
      raise base.BadName(f'does not match {self.LAYOUT}')
    actor, _, emotion, intensity = m.groups()
    if emotion not in EMOTION_CODES:
      raise base.BadName(f'emotion {emotion} is not one of {", ".join(EMOTION_CODES)}')
    if intensity not in INTENSITY:
      raise base.BadName(f'intensity {intensity} is not one of {", ".join(INTENSITY)}')
    return base.ClipName(label=EMOTION_CODES.index(emotion), actor=int(actor), intensity=INTENSITY[intensity])
