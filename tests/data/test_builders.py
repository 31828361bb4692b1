"""The three TFDS builders on small raw trees in their layouts, made from the demo media, with planted bad files.

One pool of 2 worker processes serves all builds (their start-up, TensorFlow and MTCNN, is the slow part).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import fixed_face_labels
from mtcae_jax.configs import default
from mtcae_jax.data import pipeline, prepare, stored_example
from mtcae_jax.data import pool as pool_lib

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
DEMO = os.path.join(ROOT, 'mtcae_jax', 'data', 'demo', 'ravdess')
# Demo clips by what they show.
NEUTRAL, HAPPY_MAN = 'Actor_01/02-01-01-01-01-01-01.mp4', 'Actor_01/02-01-03-01-01-01-01.mp4'
SAD, HAPPY_WOMAN = 'Actor_02/02-01-04-01-01-01-02.mp4', 'Actor_02/02-01-03-01-01-01-02.mp4'
DISGUST, SURPRISE = 'Actor_03/02-01-07-01-01-01-03.mp4', 'Actor_04/02-01-08-01-01-01-04.mp4'
HAPPY, ANGRY = 'Actor_06/02-01-03-01-01-01-06.mp4', 'Actor_08/02-01-05-01-01-01-08.mp4'


@pytest.fixture(scope='module')
def pool():
  with pool_lib.ClipPool(2, initializer=stored_example.init_worker) as p:
    yield p


def _put(root, rel, content):
  """content: a demo clip (relative path), bytes, 'truncated:<demo clip>', 'faceless' or ('flv', demo clip)."""
  dst = os.path.join(root, rel)
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  if isinstance(content, bytes):
    with open(dst, 'wb') as f:
      f.write(content)
  elif content == 'faceless':  # a smooth grey gradient: no face anywhere
    w = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*'mp4v'), 25, (96, 64))
    for i in range(20):
      w.write(np.broadcast_to(np.linspace(40 + i, 200, 96, dtype=np.uint8)[None, :, None], (64, 96, 3)).copy())
    w.release()
  elif isinstance(content, tuple):  # transcode to Flash video, as CREMA-D ships
    cap = cv2.VideoCapture(os.path.join(DEMO, content[1]))
    w = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*'FLV1'), 25, (320, 180))
    ok, frame = cap.read()
    while ok:
      w.write(cv2.resize(frame, (320, 180)))
      ok, frame = cap.read()
    w.release()
  elif content.startswith('truncated:'):
    data = open(os.path.join(DEMO, content.split(':', 1)[1]), 'rb').read()
    with open(dst, 'wb') as f:
      f.write(data[:len(data) // 2])
  else:
    shutil.copy(os.path.join(DEMO, content), dst)


def _build(name, tree, tmp_path, pool, **kwargs):
  manual, data = tmp_path / 'manual', tmp_path / 'data'
  for rel, content in tree.items():
    _put(manual, rel, content)
  builder = prepare.make_builder(name, str(data))
  builder = type(builder)(data_dir=str(data), pool=pool, **kwargs)
  meta = prepare.prepare(builder, str(manual))
  with open(os.path.join(builder.data_dir, 'metadata.json')) as f:
    assert json.load(f) == json.loads(json.dumps(dict(meta)))  # what is saved is what the build reported
  examples = {}
  for k in range(5):
    source = pipeline.data_source(name, f'fold{k}', str(data))
    for i in range(len(source)):
      e = source[i]
      examples[e['path'].decode()] = e
  return builder, meta, examples


def _check_common(builder, meta, examples, labels, actors, frames=16):
  names = builder.info.features['label'].names
  assert {p: names[e['label']] for p, e in examples.items()} == labels
  assert {p: int(e['actor']) for p, e in examples.items()} == {p: actors[p] for p in labels}
  # Subject-independent folds: each actor in exactly one fold, as stored in each example and in the metadata.
  fold_actors = {f'fold{k}': {int(e['actor']) for e in examples.values() if e['fold'] == k} for k in range(5)}
  for k, fa in fold_actors.items():
    assert fa <= set(meta['fold_actors'][k])
    for j, fb in fold_actors.items():
      assert k == j or not fa & fb
  assert sum(builder.info.splits[f'fold{k}'].num_examples for k in range(5)) == len(labels)
  for p, e in examples.items():
    assert len(e['video']) == frames and e['video'][0].shape == (224, 224, 3) and e['video'][0].dtype == np.uint8
    assert e['boxes'].shape == (frames, 4) and e['landmarks'].shape == (frames, 5, 2)
    assert e['face_mask'].shape == (frames,) and e['frame_index'].shape == (frames,)
    assert (e['boxes'] >= 0).all() and (e['boxes'] <= 1).all()
    if e['face_mask'].any():
      m = e['face_mask']
      assert (e['boxes'][m, 2] > e['boxes'][m, 0]).all() and (e['boxes'][m, 3] > e['boxes'][m, 1]).all()
      assert (e['landmarks'][m, 0, 0] < e['landmarks'][m, 1, 0]).all(), p  # left eye left of right eye


RAVDESS_TREE = {
    NEUTRAL: NEUTRAL, 'Actor_01/02-01-02-01-01-01-01.mp4': NEUTRAL, HAPPY_MAN: HAPPY_MAN,
    SAD: SAD, HAPPY_WOMAN: HAPPY_WOMAN, DISGUST: DISGUST, SURPRISE: SURPRISE, HAPPY: HAPPY, ANGRY: ANGRY,
    'Actor_08/02-01-06-01-01-01-08.mp4': 'faceless',
    # Unusable files, skipped with a reason:
    'Actor_03/02-01-07-01-01-02-03.mp4': f'truncated:{DISGUST}',
    'Actor_04/02-01-08-01-01-02-04.mp4': b'not a video\n' * 100,
    'Actor_06/02-01-03-01-01-02-06.mp4': b'',
    'Actor_01/clip.mp4': NEUTRAL,
    'Actor_02/02-01-03-01-01-02-08.mp4': HAPPY_WOMAN,  # actor 08's name in actor 02's folder
    'Actor_01/02-01-09-01-01-01-01.mp4': NEUTRAL,  # emotion 09 does not exist
    # Valid names the default config leaves out: audio-video, audio-only.
    'Actor_01/01-01-01-01-01-01-01.mp4': NEUTRAL, 'Actor_01/03-01-01-01-01-01-01.wav': b'RIFF',
}


@pytest.fixture(scope='module')
def ravdess(tmp_path_factory, pool):
  return _build('ravdess_dfer', RAVDESS_TREE, tmp_path_factory.mktemp('ravdess'), pool)


def test_ravdess_builder(ravdess):
  builder, meta, examples = ravdess
  labels = {NEUTRAL: 'neutral', 'Actor_01/02-01-02-01-01-01-01.mp4': 'neutral',  # calm merged into neutral
            HAPPY_MAN: 'happy', SAD: 'sad', HAPPY_WOMAN: 'happy', DISGUST: 'disgust', SURPRISE: 'surprised',
            HAPPY: 'happy', ANGRY: 'angry', 'Actor_08/02-01-06-01-01-01-08.mp4': 'fearful'}
  _check_common(builder, meta, examples, labels, {p: int(p[6:8]) for p in labels})
  skipped = {s['path']: s['reason'] for s in meta['skipped']}
  assert set(skipped) == {'Actor_03/02-01-07-01-01-02-03.mp4', 'Actor_04/02-01-08-01-01-02-04.mp4',
                          'Actor_06/02-01-03-01-01-02-06.mp4', 'Actor_01/clip.mp4',
                          'Actor_02/02-01-03-01-01-02-08.mp4', 'Actor_01/02-01-09-01-01-01-01.mp4'}
  assert meta['num_skipped'] == 6 and meta['num_excluded_by_config'] == 2
  assert skipped['Actor_06/02-01-03-01-01-02-06.mp4'].startswith('cannot be read')
  assert skipped['Actor_03/02-01-07-01-01-02-03.mp4'].startswith(('truncated', 'cannot be read'))
  assert 'does not match' in skipped['Actor_01/clip.mp4']
  assert 'folder is Actor_02' in skipped['Actor_02/02-01-03-01-01-02-08.mp4']
  assert 'emotion code 09' in skipped['Actor_01/02-01-09-01-01-01-01.mp4']
  # The clip without a face is kept, all-false mask, and listed.
  assert meta['faceless'] == ['Actor_08/02-01-06-01-01-01-08.mp4'] and meta['num_faceless'] == 1
  assert not examples['Actor_08/02-01-06-01-01-01-08.mp4']['face_mask'].any()
  assert examples[HAPPY]['face_mask'].all() and examples[DISGUST]['face_mask'].all()
  # Folds by hand. They are fixed before decoding, from the files with valid names: clips per actor 01:3,
  # 02:2, 03:2, 04:2, 06:2, 08:2; largest first (then by id) into the emptiest fold (then the lowest).
  assert meta['fold_actors'] == {'fold0': [1], 'fold1': [2, 8], 'fold2': [3], 'fold3': [4], 'fold4': [6]}
  assert examples[SAD]['intensity'] == 1 and examples[SAD]['frame_index'].tolist()[:3] == [1, 3, 5]  # 32 frames: 2i + 1


def test_ravdess_configs_parse_names():
  from mtcae_jax.data.datasets import ravdess  # pylint: disable=g-import-not-at-top
  eight = ravdess.RavdessDfer(config='video_speech_8class', data_dir='unused')
  assert eight.parse('Actor_01/02-01-02-02-01-01-01.mp4') == ravdess.base.ClipName(label=1, actor=1, intensity=2)
  assert eight.parse('Actor_01/01-01-02-02-01-01-01.mp4') is None  # audio-video: not in this config
  everything = ravdess.RavdessDfer(config='all_7class', data_dir='unused')
  assert everything.parse('Actor_12/01-02-08-01-01-01-12.mp4').label == 6  # song, surprised
  assert everything.parse('Actor_01/02-01-02-02-01-01-01.mp4').label == 0  # calm -> neutral


def test_eval_pipeline_yields_every_clip_once(ravdess):
  builder, _, examples = ravdess
  data_dir = pathlib.Path(builder.data_dir).parents[2]  # DATA_DIR/ravdess_dfer/CONFIG/VERSION
  source = pipeline.data_source('ravdess_dfer', 'fold0+fold1+fold2+fold3+fold4', str(data_dir))
  config = default.get_config()
  config.num_frames, config.image_size = 4, 32
  batches = list(pipeline.eval_batches(source, config, global_batch_size=4))
  assert len(source) == 10 and len(batches) == 3  # 10 clips, batches of 4: the last has 2 and 2 padding rows
  assert [int(np.asarray(b['mask']).sum()) for b in batches] == [4, 4, 2]
  seen = [p for b in batches for p, m in zip(b['path'], np.asarray(b['mask'])) if m]
  assert sorted(seen) == sorted(examples) and len(set(seen)) == 10
  b = batches[-1]
  assert b['video'].shape == (4, 4, 32, 32, 3) and b['video'].dtype == np.uint8
  assert b['boxes'].shape == (4, 4, 4) and b['landmarks'].shape == (4, 4, 5, 2) and b['label'].shape == (4,)


def test_crema_d_builder(tmp_path, pool):
  tree = {
      'VideoFlash/1001_DFA_NEU_XX.flv': ('flv', NEUTRAL), 'VideoFlash/1001_IEO_HAP_HI.flv': ('flv', HAPPY_MAN),
      'VideoFlash/1002_DFA_SAD_LO.flv': ('flv', SAD), 'VideoFlash/1003_DFA_DIS_MD.flv': ('flv', DISGUST),
      'VideoFlash/1004_DFA_FEA_XX.flv': ('flv', SURPRISE), 'VideoFlash/1006_DFA_HAP_XX.flv': ('flv', HAPPY),
      'VideoFlash/1008_DFA_ANG_HI.flv': ('flv', ANGRY),
      'VideoFlash/1002_ITS_SAD_XX.flv': b'FLV\x01' + b'\x00' * 500,  # a header and nothing decodable
      'VideoFlash/1003_TIE_DIS_XX.flv': b'',
      'VideoFlash/1001_DFA_XYZ_XX.flv': ('flv', NEUTRAL), 'VideoFlash/notes.txt': b'notes',
      'AudioWAV/1001_DFA_ANG_XX.wav': b'RIFF',
  }
  builder, meta, examples = _build('crema_d_dfer', tree, tmp_path, pool)
  labels = {'VideoFlash/1001_DFA_NEU_XX.flv': 'neutral', 'VideoFlash/1001_IEO_HAP_HI.flv': 'happy',
            'VideoFlash/1002_DFA_SAD_LO.flv': 'sad', 'VideoFlash/1003_DFA_DIS_MD.flv': 'disgust',
            'VideoFlash/1004_DFA_FEA_XX.flv': 'fear', 'VideoFlash/1006_DFA_HAP_XX.flv': 'happy',
            'VideoFlash/1008_DFA_ANG_HI.flv': 'angry'}
  _check_common(builder, meta, examples, labels, {p: int(p[11:15]) for p in labels})
  assert builder.info.features['label'].names == ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad']
  assert sorted(s['path'] for s in meta['skipped']) == [
      'VideoFlash/1001_DFA_XYZ_XX.flv', 'VideoFlash/1002_ITS_SAD_XX.flv', 'VideoFlash/1003_TIE_DIS_XX.flv',
      'VideoFlash/notes.txt']
  assert meta['num_excluded_by_config'] == 1
  assert [examples[p]['intensity'] for p in sorted(labels)] == [0, 3, 1, 2, 0, 0, 3]


def test_mead_builder_dropping_faceless_clips(tmp_path, pool):
  tree = {
      'M003/video/front/neutral/level_1/001.mp4': NEUTRAL, 'M003/video/front/happy/level_2/001.mp4': HAPPY_MAN,
      'W009/video/front/sad/level_3/001.mp4': SAD, 'M011/video/front/disgusted/level_1/001.mp4': DISGUST,
      'W014/video/front/surprised/level_2/001.mp4': SURPRISE, 'W015/video/front/happy/level_1/001.mp4': HAPPY,
      'W016/video/front/angry/level_3/001.mp4': ANGRY, 'W016/video/front/fear/level_1/002.mp4': 'faceless',
      'M003/video/left_30/happy/level_2/001.mp4': HAPPY_MAN, 'M003/audio/happy/level_2/001.m4a': b'audio',
      'M003/video/back/happy/level_1/001.mp4': HAPPY_MAN, 'W009/video/front/sad/level_4/001.mp4': SAD,
      'W009/video/front/sad/level_1/1.mp4': SAD, 'W015/video/front/happy/level_1/002.mp4': f'truncated:{HAPPY}',
  }
  # A minimum face size other than the pool's: its workers make a second labeler for it.
  builder, meta, examples = _build('mead_dfer', tree, tmp_path, pool, drop_faceless=True, min_face_size=24)
  labels = {'M003/video/front/neutral/level_1/001.mp4': 'neutral', 'M003/video/front/happy/level_2/001.mp4': 'happy',
            'W009/video/front/sad/level_3/001.mp4': 'sad', 'M011/video/front/disgusted/level_1/001.mp4': 'disgusted',
            'W014/video/front/surprised/level_2/001.mp4': 'surprised',
            'W015/video/front/happy/level_1/001.mp4': 'happy', 'W016/video/front/angry/level_3/001.mp4': 'angry'}
  actor = lambda p: (1000 if p[0] == 'M' else 2000) + int(p[1:4])
  _check_common(builder, meta, examples, labels, {p: actor(p) for p in labels})
  assert sorted(s['path'] for s in meta['skipped']) == [
      'M003/video/back/happy/level_1/001.mp4', 'W009/video/front/sad/level_1/1.mp4',
      'W009/video/front/sad/level_4/001.mp4', 'W015/video/front/happy/level_1/002.mp4']
  assert meta['faceless'] == ['W016/video/front/fear/level_1/002.mp4'] and meta['faceless_dropped']
  assert meta['mtcnn_min_face_size'] == 24
  assert meta['num_excluded_by_config'] == 2
  assert examples['W009/video/front/sad/level_3/001.mp4']['intensity'] == 3
  assert meta['stored_frames'] == 16


def test_mead_selection_and_32_stored_frames_build(tmp_path, pool):
  """`front_fifth` without actor W014, 32 frames a clip: the files left out are never opened (an empty one too)."""
  tree = {
      'M003/video/front/neutral/level_1/006.mp4': NEUTRAL, 'M003/video/front/happy/level_2/002.mp4': HAPPY_MAN,
      'W009/video/front/sad/level_3/011.mp4': SAD, 'W009/video/left_30/sad/level_3/001.mp4': SAD,
      'M011/video/front/disgusted/level_1/001.mp4': DISGUST, 'W014/video/front/surprised/level_2/001.mp4': SURPRISE,
      'W015/video/front/happy/level_1/026.mp4': HAPPY, 'W016/video/front/angry/level_3/001.mp4': ANGRY,
      'M017/video/front/fear/level_2/016.mp4': SURPRISE, 'M017/video/front/fear/level_2/030.mp4': b'',
  }
  config = 'front_fifth-without-W014_32f'
  assert prepare.dataset_name('mead_dfer/front_fifth', 32, exclude_actors=['W014']) == f'mead_dfer/{config}'
  builder, meta, examples = _build(f'mead_dfer/{config}', tree, tmp_path, pool, config=config)
  labels = {'M003/video/front/neutral/level_1/006.mp4': 'neutral', 'W009/video/front/sad/level_3/011.mp4': 'sad',
            'M011/video/front/disgusted/level_1/001.mp4': 'disgusted',
            'W015/video/front/happy/level_1/026.mp4': 'happy', 'W016/video/front/angry/level_3/001.mp4': 'angry',
            'M017/video/front/fear/level_2/016.mp4': 'fear'}
  actor = lambda p: (1000 if p[0] == 'M' else 2000) + int(p[1:4])
  _check_common(builder, meta, examples, labels, {p: actor(p) for p in labels}, frames=32)
  assert builder.data_dir.split(os.sep)[-3:] == ['mead_dfer', config, '1.0.0']
  assert meta['stored_frames'] == 32 and meta['num_excluded_by_config'] == 4 and meta['skipped'] == []
  assert (meta['views'], meta['levels'], meta['exclude_actors'], meta['clip_stride']) == (['front'], [1, 2, 3],
                                                                                          ['W014'], 5)
  assert examples['W009/video/front/sad/level_3/011.mp4']['frame_index'].tolist() == list(range(32))  # 32 frames


def _mead_names(actors, views=('front', 'left_30')):
  """MEAD's published layout, nominally: per actor and view, neutral clips 001-040 (level_1 only), and 001-030 at
  each of the 3 levels of the 7 other emotions."""
  from mtcae_jax.data.datasets import mead  # pylint: disable=g-import-not-at-top
  names = []
  for a in actors:
    for v in views:
      names += [f'{a}/video/{v}/neutral/level_1/{n:03d}.mp4' for n in range(1, 41)]
      names += [f'{a}/video/{v}/{e}/level_{k}/{n:03d}.mp4' for e in mead.EMOTIONS if e != 'neutral'
                for k in (1, 2, 3) for n in range(1, 31)]
  return names


@pytest.mark.parametrize('config,per_actor,per_class', [
    ('front', 670, {'neutral': 40, 'other': 90}),  # 40 + 7 x 3 x 30
    ('all_views', 1340, {'neutral': 80, 'other': 180}),  # both views of the tree
    ('left_30', 670, {'neutral': 40, 'other': 90}),
    ('front_level_3', 250, {'neutral': 40, 'other': 30}),  # neutral (level_1 only) stays
    ('front_fifth', 134, {'neutral': 8, 'other': 18}),  # clip numbers 1, 6, 11, ...: 48 actors -> 384 and 864
])
def test_mead_configs_select_views_levels_and_clip_numbers(config, per_actor, per_class):
  from mtcae_jax.data.datasets import mead  # pylint: disable=g-import-not-at-top
  builder = mead.MeadDfer(config=config, data_dir='unused')
  kept = [(p, builder.parse(p)) for p in _mead_names(['M003', 'W009'])]
  kept = [(p, c) for p, c in kept if c is not None]
  assert len(kept) == 2 * per_actor
  for label in range(8):
    count = sum(c.label == label for _, c in kept) / 2
    assert count == per_class['neutral' if mead.EMOTIONS[label] == 'neutral' else 'other'], mead.EMOTIONS[label]
  if config == 'front_level_3':
    assert {c.intensity for _, c in kept if c.label != mead.EMOTIONS.index('neutral')} == {3}
  if config == 'front_fifth':
    assert {int(p[-7:-4]) for p, _ in kept} == {1, 6, 11, 16, 21, 26, 31, 36}


@pytest.mark.parametrize('config,actors', [
    ('front-only-W009', {2009}), ('front-without-W009', {1003, 1017}), ('front-only-M003-M017', {1003, 1017}),
    ('front_level_2-without-M017_32f', {1003, 2009}),
])
def test_mead_actor_selections(config, actors):
  from mtcae_jax.data.datasets import mead  # pylint: disable=g-import-not-at-top
  builder = mead.MeadDfer(config=config, data_dir='unused')
  kept = [c for c in map(builder.parse, _mead_names(['M003', 'W009', 'M017'], views=('front',))) if c is not None]
  assert {c.actor for c in kept} == actors
  assert len(kept) == len(actors) * (250 if 'level_2' in config else 670)
  assert builder.info.features['video'].shape[0] == (32 if config.endswith('_32f') else 16)


def test_mead_actor_names_are_one_per_selection():
  from mtcae_jax.data.datasets import mead  # pylint: disable=g-import-not-at-top
  assert mead.actors_name('front', exclude_actors=['W017', 'M003', 'W017']) == 'front-without-M003-W017'
  assert mead.actors_name('front') == 'front'
  for name in ('front-without-W017-M003', 'front-only-M3', 'back-only-M003', 'front_32f-only-M003'):
    assert mead.MeadDfer.get_builder_config(name) is None, name  # unsorted, bad ID, unknown or frames first
  with pytest.raises(ValueError, match='like M003 or W009'):
    mead.actors_name('front', actors=['m003'])


@pytest.mark.parametrize('args,message', [
    (['--dataset=ravdess_dfer', '--manual_dir=/nonexistent', '--data_dir=/tmp/x'], 'is not a directory'),
    (['--dataset=ravdess_dfer', f'--manual_dir={DEMO}', '--data_dir=/tmp/x', '--workers=-1'], '--workers'),
    (['--dataset=ravdess_dfer'], '--manual_dir must have a value'),
    (['--dataset=nope', f'--manual_dir={DEMO}', '--data_dir=/tmp/x'], 'unknown --dataset=nope'),
    (['--dataset=mead_dfer/back', f'--manual_dir={DEMO}', '--data_dir=/tmp/x'], "no config 'back'"),
    (['--dataset=ravdess_dfer', f'--manual_dir={DEMO}', '--data_dir=/tmp/x', '--min_face_size=8'], '--min_face_size'),
    (['--dataset=ravdess_dfer', f'--manual_dir={DEMO}', '--data_dir=/tmp/x', '--clip_timeout=-1'], '--clip_timeout'),
])
def test_prepare_bad_arguments_one_line_exit_2(args, message):
  r = subprocess.run([sys.executable, '-m', 'mtcae_jax.data.prepare', *args], capture_output=True, text=True,
                     cwd=ROOT, timeout=120)
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0] and 'Traceback' not in r.stderr


@pytest.mark.parametrize('args,message', [
    (['--dataset=ravdess_dfer', '--stored_frames=0'], '--stored_frames must be an integer from 1 to 256, got 0'),
    (['--dataset=ravdess_dfer', '--actors=M003'], 'select MEAD actors; ravdess_dfer has no such option'),
    (['--dataset=mead_dfer', '--exclude_actors=X1'], "MEAD actor IDs are like M003 or W009, got 'X1'"),
    (['--dataset=mead_dfer', '--actors=M003', '--exclude_actors=W009'], 'not both'),
    (['--dataset=mead_dfer/front_32f', '--stored_frames=64'], 'mead_dfer/front_32f already stores 32 frames'),
    (['--dataset=ravdess_dfer', '--frame_sampling=centers'],
     "--frame_sampling must be one of centres, stride, got 'centers'"),
    (['--dataset=ravdess_dfer/video_speech_7class_32f', '--frame_sampling=stride'], 'already names its frames'),
    (['--dataset=crema_d_dfer/stride', '--frame_sampling=stride'], 'crema_d_dfer/stride already names its frames'),
    (['--dataset=ravdess_dfer/video_speech_7class_32f_stride'], "no config 'video_speech_7class_32f_stride'"),
])
def test_prepare_bad_options_one_line_exit_2(args, message, tmp_path, capsys):
  assert prepare.main([*args, f'--manual_dir={DEMO}', f'--data_dir={tmp_path}']) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith('error: ') and message in err, err
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize('name', ['ravdess_dfer', 'crema_d_dfer', 'mead_dfer'])
def test_builder_info_cites_the_dataset_and_names_its_homepage_and_licence(name, tmp_path):
  info = prepare.make_builder(name, str(tmp_path)).info  # nothing built: the info is the builder's code
  assert info.citation.startswith('@') and info.citation.rstrip().endswith('}') and 'year = {20' in info.citation
  assert info.homepage.startswith('https://')
  license_text = info.redistribution_info.license
  assert license_text and license_text in info.description


# --- The authors' frame sampling (`--frame_sampling=stride`). ----------------------------------------------------

@pytest.mark.parametrize('dataset,kwargs,full', [
    ('ravdess_dfer', dict(frame_sampling='stride'), 'ravdess_dfer/video_speech_7class_stride'),
    ('ravdess_dfer/all_8class', dict(frame_sampling='stride', stored_frames=32), 'ravdess_dfer/all_8class_stride_32f'),
    ('ravdess_dfer/video_speech_7class_stride', dict(stored_frames=32), 'ravdess_dfer/video_speech_7class_stride_32f'),
    ('ravdess_dfer', dict(frame_sampling='centres'), 'ravdess_dfer/video_speech_7class'),  # ours: the plain name
    ('crema_d_dfer', dict(frame_sampling='stride'), 'crema_d_dfer/stride'),
    ('crema_d_dfer', dict(frame_sampling='stride', stored_frames=32), 'crema_d_dfer/stride_32f'),
    ('mead_dfer/front_fifth', dict(frame_sampling='stride', exclude_actors=['W017']),
     'mead_dfer/front_fifth-without-W017_stride'),
])
def test_stride_sampling_has_its_own_dataset_name(dataset, kwargs, full, tmp_path):
  assert prepare.dataset_name(dataset, **kwargs) == full
  builder = prepare.make_builder(full, str(tmp_path))  # the name alone selects it, as config.dataset does
  assert builder.frame_sampling == kwargs.get('frame_sampling', 'stride')
  assert builder.stored_frames == kwargs.get('stored_frames', 16)
  assert builder.data_dir.split(os.sep)[-3:-1] == full.split('/')


def test_stride_names_are_one_per_dataset():
  from mtcae_jax.data.datasets import crema_d, mead, ravdess  # pylint: disable=g-import-not-at-top
  for cls, name in ((ravdess.RavdessDfer, 'video_speech_7class_32f_stride'),  # frames last
                    (ravdess.RavdessDfer, 'video_speech_7class_stride_stride'), (ravdess.RavdessDfer, 'stride'),
                    (crema_d.CremaDDfer, 'stride_stride'), (crema_d.CremaDDfer, '32f_stride'),
                    (mead.MeadDfer, 'front_stride-without-W017'), (mead.MeadDfer, 'front_stride_16f')):
    assert cls.get_builder_config(name) is None, name


def _decoded_frame_count(path):
  cap, n = cv2.VideoCapture(path), 0
  while cap.grab():
    n += 1
  cap.release()
  return n


def test_a_stride_build_stores_the_authors_frames_under_its_own_name(tmp_path, capsys, demo_data_dir):
  """The demo clips (16, 24 or 32 frames) built with `--frame_sampling=stride`, in-process with fixed faces."""
  with fixed_face_labels():
    assert prepare.main(['--dataset=ravdess_dfer', '--frame_sampling=stride', '--workers=0', f'--manual_dir={DEMO}',
                         f'--data_dir={tmp_path}']) == 0
  name = 'ravdess_dfer/video_speech_7class_stride'
  assert f'Train on it with --config.dataset={name}\n' in capsys.readouterr().out
  with open(tmp_path / name / '1.0.0' / 'metadata.json') as f:
    meta = json.load(f)
  assert (meta['frame_sampling'], meta['stored_frames'], meta['num_skipped']) == ('stride', 16, 0)
  source = pipeline.data_source(name, 'fold0+fold1+fold2+fold3+fold4', str(tmp_path))
  clips = {source[i]['path'].decode(): source[i] for i in range(len(source))}
  # i * floor(T / 16), by hand, for each decoded frame count T of the demo clips:
  expected = {16: list(range(16)), 24: list(range(16)), 32: list(range(0, 32, 2))}
  counts = {p: _decoded_frame_count(os.path.join(DEMO, p)) for p in clips}
  assert len(clips) == 18 and set(counts.values()) == set(expected)
  for p, e in clips.items():
    assert e['frame_index'].tolist() == expected[counts[p]], p
  # The default build's frames are the segments' centres: where both keep the same frames the pixels agree.
  centres = pipeline.data_source('ravdess_dfer', 'fold0+fold1+fold2+fold3+fold4', demo_data_dir)
  centres = {centres[i]['path'].decode(): centres[i] for i in range(len(centres))}
  assert centres[SAD]['frame_index'].tolist() == [2 * i + 1 for i in range(16)]  # 32 frames: 2i + 1, not 2i
  assert not np.array_equal(clips[SAD]['video'], centres[SAD]['video'])
  np.testing.assert_array_equal(clips[NEUTRAL]['video'], centres[NEUTRAL]['video'])  # 16 frames: all, both ways
  # The default dataset is another config: not written by this build.
  assert not os.path.exists(tmp_path / 'ravdess_dfer' / 'video_speech_7class')
