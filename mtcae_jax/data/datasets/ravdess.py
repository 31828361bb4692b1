"""RAVDESS (Livingstone & Russo, 2018): 24 actors, `Actor_NN/MM-VV-EE-II-SS-RR-NN.mp4`.

File name fields: modality (01 audio-video, 02 video-only, 03 audio-only), vocal channel (01 speech, 02 song),
emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised), intensity
(01 normal, 02 strong), statement, repetition, actor (odd male, even female).
The paper's setting (default config): video-only speech, 1,440 clips, 7 classes with calm merged into neutral.
"""

import dataclasses
import re

from mtcae_jax.data.datasets import base

EMOTIONS_8 = ('neutral', 'calm', 'happy', 'sad', 'angry', 'fearful', 'disgust', 'surprised')  # codes 01-08
EMOTIONS_7 = ('neutral', 'happy', 'sad', 'angry', 'fearful', 'disgust', 'surprised')
_MERGE_CALM = (0, 0, 1, 2, 3, 4, 5, 6)  # code - 1 -> 7-class label: calm (02) counts as neutral (01)
_NAME = re.compile(r'Actor_(\d\d)/(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.(mp4|wav)')
_VALID = dict(modality=('01', '02', '03'), vocal=('01', '02'), emotion=tuple(f'{i:02d}' for i in range(1, 9)),
              intensity=('01', '02'), statement=('01', '02'), repetition=('01', '02'))


@dataclasses.dataclass(eq=False, kw_only=True)
class RavdessConfig(base.DferConfig):
  modalities: tuple[str, ...] = ('02',)
  vocal_channels: tuple[str, ...] = ('01',)
  merge_calm: bool = True


def _config(name, description, modalities, vocal_channels, merge_calm):
  return RavdessConfig(name=name, description=description, modalities=modalities, vocal_channels=vocal_channels,
                       merge_calm=merge_calm, label_names=EMOTIONS_7 if merge_calm else EMOTIONS_8)


class RavdessDfer(base.DferBuilder):
  """RAVDESS faces as multi-task clips (expression, MTCNN boxes and landmarks) of 16 frames (`<config>_<N>f`: N;
  `<config>_stride`: chosen as the authors did)."""

  name = 'ravdess_dfer'
  LAYOUT = 'Actor_NN/MM-VV-EE-II-SS-RR-NN.mp4'
  HOMEPAGE = 'https://zenodo.org/record/1188976'
  LICENSE = 'CC BY-NC-SA 4.0 (Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International)'
  CITATION = """\
@article{livingstone2018ravdess,
  title = {The {Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS)}: A dynamic, multimodal set
           of facial and vocal expressions in {North American English}},
  author = {Livingstone, Steven R. and Russo, Frank A.},
  journal = {PLoS ONE},
  volume = {13},
  number = {5},
  pages = {e0196391},
  year = {2018},
  doi = {10.1371/journal.pone.0196391},
}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the video archives `Video_Speech_Actor_01.zip` ... `Video_Speech_Actor_24.zip` (and, for the `all_*`
  configs, `Video_Song_Actor_NN.zip`) from the RAVDESS Zenodo record and unzip them all into manual_dir, giving
  `manual_dir/Actor_01/02-01-06-01-02-01-01.mp4` etc.
  """
  BUILDER_CONFIGS = [
      _config('video_speech_7class', 'Video-only speech, calm merged into neutral (the paper).', ('02',),
              ('01',), True),
      _config('video_speech_8class', 'Video-only speech, 8 classes.', ('02',), ('01',), False),
      _config('all_7class', 'Audio-video and video-only files, speech and song; calm merged into neutral.',
              ('01', '02'), ('01', '02'), True),
      _config('all_8class', 'Audio-video and video-only files, speech and song; 8 classes.', ('01', '02'),
              ('01', '02'), False),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'video_speech_7class'

  def parse(self, relpath):
    m = _NAME.fullmatch(relpath)
    if not m:
      raise base.BadName(f'does not match {self.LAYOUT}')
    folder_actor, *fields, file_actor, ext = m.groups()
    for (field, valid), value in zip(_VALID.items(), fields):
      if value not in valid:
        raise base.BadName(f'{field} code {value} is not one of {"/".join(valid)}')
    modality, vocal, emotion, intensity = fields[:4]
    if folder_actor != file_actor:
      raise base.BadName(f'actor {file_actor} in the name but the folder is Actor_{folder_actor}')
    if modality == '03':
      return None  # audio only
    if ext != 'mp4':
      raise base.BadName(f'modality {modality} is a video but the file is .{ext}')
    config = self.builder_config
    if modality not in config.modalities or vocal not in config.vocal_channels:
      return None
    code = int(emotion) - 1
    return base.ClipName(label=_MERGE_CALM[code] if config.merge_calm else code, actor=int(file_actor),
                         intensity=int(intensity))
