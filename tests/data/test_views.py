"""More stored frames than the model reads: distinct evaluation views, real training jitter, spatial crops."""

import json
import os

import cv2
import numpy as np
import pytest

from conftest import DEMO_32F, small_config
from mtcae_jax.configs import default
from mtcae_jax.data import augment, demo_data, pipeline, prepare
from test_pipeline import fake_source

ALL = 'fold0+fold1+fold2+fold3+fold4'
SAD = 'Actor_02/02-01-04-01-01-01-02.mp4'  # 32 frames in the source video
NEUTRAL = 'Actor_01/02-01-01-01-01-01-01.mp4'  # 16 frames in the source video


def config_16():
  c = default.get_config()
  c.num_frames, c.image_size = 16, 32
  return c


def by_path(source):
  return {source[i]['path'].decode(): source[i] for i in range(len(source))}


def test_a_32_frame_build_stores_32_frames_under_its_own_name(demo_32f_data_dir):
  source = pipeline.data_source(DEMO_32F, ALL, demo_32f_data_dir)
  assert pipeline.stored_shape(source)[0] == 32 and len(source) == 18
  clips = by_path(source)
  for e in clips.values():
    assert len(e['video']) == 32 and e['boxes'].shape == (32, 4) and e['landmarks'].shape == (32, 5, 2)
    assert e['face_mask'].shape == (32,) and e['frame_index'].shape == (32,)
  # Evenly spread over the clip: all 32 frames of a 32-frame video, each of a 16-frame one twice.
  assert clips[SAD]['frame_index'].tolist() == list(range(32))
  assert clips[NEUTRAL]['frame_index'].tolist() == [t // 2 for t in range(32)]
  path = os.path.join(demo_32f_data_dir, 'ravdess_dfer', 'video_speech_7class_32f', '1.0.0', 'metadata.json')
  with open(path) as f:
    assert json.load(f)['stored_frames'] == 32
  # The paper's 16-frame dataset is another config: it is not there, and asking for it says how to build it.
  with pytest.raises(FileNotFoundError, match='ravdess_dfer is not prepared'):
    pipeline.data_source(demo_data.DATASET, ALL, demo_32f_data_dir)


def test_the_32_frame_build_holds_the_16_frame_one_s_frames(demo_32f_data_dir, demo_data_dir):
  """Same decoder, same resize, same JPEG: where both keep source frame k, its stored pixels are the same."""
  wide = by_path(pipeline.data_source(DEMO_32F, ALL, demo_32f_data_dir))[SAD]
  narrow = by_path(pipeline.data_source(demo_data.DATASET, ALL, demo_data_dir))[SAD]
  assert narrow['frame_index'].tolist() == [2 * i + 1 for i in range(16)]
  for t, k in enumerate(narrow['frame_index']):
    np.testing.assert_array_equal(wide['video'][k], narrow['video'][t])


def test_two_eval_views_see_different_frames_at_32_stored(demo_32f_data_dir):
  source = pipeline.data_source(DEMO_32F, ALL, demo_32f_data_dir)
  pipeline.check_views(source, config_16(), 2)
  batches = list(pipeline.eval_batches(source, config_16(), global_batch_size=6, num_views=2))
  clips = by_path(source)
  checked = 0
  for b in batches:
    video = np.asarray(b['video'])
    assert video.shape[1:3] == (2, 16)
    for row, (path, valid) in enumerate(zip(b['path'], np.asarray(b['mask']))):
      if not valid:
        continue
      stored = clips[path]
      # Offsets 1/4 and 3/4 into 16 segments of 2 stored frames: stored frames 2i and 2i + 1.
      for v in (0, 1):
        t = [2 * i + v for i in range(16)]
        expected = np.stack([cv2.resize(stored['video'][k], (32, 32), interpolation=cv2.INTER_AREA) for k in t])
        np.testing.assert_array_equal(video[row, v], expected)
      if path == SAD:  # the views are the source's even and odd frames
        assert stored['frame_index'][0::2].tolist() != stored['frame_index'][1::2].tolist()
        assert not np.array_equal(video[row, 0], video[row, 1])
        checked += 1
  assert checked == 1


def test_eval_views_at_16_stored_are_refused_in_one_line(demo_data_dir):
  source = pipeline.data_source(demo_data.DATASET, ALL, demo_data_dir)
  with pytest.raises(ValueError) as e:
    pipeline.eval_batches(source, config_16(), global_batch_size=4, num_views=2)
  assert str(e.value) == ('eval_views=2 needs more stored frames than num_frames=16; this split stores 16, so every '
                          'view would see the same frames: use eval_views=1 or a dataset prepared with more '
                          '(--stored_frames)')


def _frames_seen(source, config, epochs):
  """{example index: [the stored frames its clip showed in each epoch]} with augmentation off."""
  seen = {}
  for b in pipeline.train_batches(source, config, global_batch_size=4, seed=1, num_steps=epochs, augment=None,
                                  num_workers=0):
    for i, clip in zip(b['index'], np.asarray(b['video'])):
      seen.setdefault(int(i), []).append(tuple(clip[:, 4, 4, 1]))  # fake_source: pixel (i, t, 0)
  return seen


def test_training_jitter_picks_different_frames_across_epochs_at_32_stored():
  config = default.get_config()
  config.num_frames, config.image_size = 16, 8
  seen = _frames_seen(fake_source(4, frames=32, size=8), config, epochs=8)  # one step per epoch
  for frames in seen.values():
    assert len(frames) == 8
    # Each epoch: one of the 2 stored frames of each of 16 segments, drawn per epoch.
    for f in frames:
      assert all(2 * i <= t <= 2 * i + 1 for i, t in enumerate(f))
    assert len(set(frames)) > 1
  # With as many stored as read, every epoch shows the same frames (the paper's protocol: no temporal jitter).
  for frames in _frames_seen(fake_source(4, frames=16, size=8), config, epochs=4).values():
    assert set(frames) == {tuple(range(16))}


def wide_source(n=2, frames=8, height=24, width=40):
  """Frames wider than high: pixel (column, row, frame); a box over columns 16-24 (x 0.4-0.6)."""
  out = []
  x, y = np.meshgrid(np.arange(width), np.arange(height))
  for i in range(n):
    video = [np.stack([x, y, np.full_like(x, f)], -1).astype(np.uint8) for f in range(frames)]
    out.append({'video': video, 'boxes': np.tile(np.float32([0.4, 0.25, 0.6, 0.75]), (frames, 1)),
                'landmarks': np.tile(np.float32([0.45, 0.4]), (frames, 5, 1)), 'face_mask': np.ones(frames, bool),
                'label': i, 'path': f'wide{i}.mp4'.encode()})
  return out


def test_eval_crops_spread_along_the_long_side_of_wide_frames():
  config = default.get_config()
  config.num_frames, config.image_size, config.eval_crops = 4, 24, 2
  b = next(pipeline.eval_batches(wide_source(), config, global_batch_size=2, num_views=2))
  video = np.asarray(b['video'])
  assert video.shape == (2, 4, 4, 24, 24, 3)  # 2 views x 2 crops, view-major
  # Short side 24 = the input size; crops at columns 0-23 and 16-39, each pixel exactly one source pixel.
  np.testing.assert_array_equal(video[0, 0, 0, 0, :, 0], np.arange(24))
  np.testing.assert_array_equal(video[0, 1, 0, 0, :, 0], np.arange(16, 40))
  np.testing.assert_array_equal(video[0, 0, 0, :, 0, 1], np.arange(24))
  # Views: frames 0, 2, 4, 6 (offset 1/4 into segments of 2) in view 0's two crops, 1, 3, 5, 7 in view 1's.
  np.testing.assert_array_equal(video[0, :, :, 0, 0, 2], [[0, 2, 4, 6], [0, 2, 4, 6], [1, 3, 5, 7], [1, 3, 5, 7]])
  # The box (columns 16-24 of 40) moves with each crop: 16-24 of crop 0's 0-24, 0-8 of crop 1's 16-40.
  boxes = np.asarray(b['boxes'])[0, :, 0]
  np.testing.assert_allclose(boxes[0], [16 / 24, 0.25, 1, 0.75], atol=1e-6)
  np.testing.assert_allclose(boxes[1], [0, 0.25, 8 / 24, 0.75], atol=1e-6)
  np.testing.assert_allclose(boxes[2:], boxes[:2])


def test_crop_windows_of_tall_frames_and_one_crop():
  assert pipeline.crop_windows(40, 24, 1) == [augment.FULL]  # one crop: the whole frame, squashed as in training
  np.testing.assert_allclose(pipeline.crop_windows(40, 24, 3), [(0, 0, 1, 0.6), (0, 0.2, 1, 0.8), (0, 0.4, 1, 1)])


def test_eval_crops_on_square_frames_are_refused_in_one_line():
  config = default.get_config()
  config.num_frames, config.image_size, config.eval_crops = 4, 16, 2
  with pytest.raises(ValueError) as e:
    pipeline.eval_batches(fake_source(2, frames=8, size=24), config, global_batch_size=2)
  assert str(e.value) == ('eval_crops=2 needs frames that are not square; this split stores 24x24 frames, so every '
                          'crop would be the whole frame: use eval_crops=1')
  config.eval_crops = 0
  with pytest.raises(ValueError, match='eval_crops must be an integer >= 1, got 0'):
    pipeline.check_views(fake_source(1), config, 1)


def test_a_stored_frame_count_names_its_own_config():
  assert prepare.dataset_name('ravdess_dfer', 32) == DEMO_32F
  assert prepare.dataset_name('ravdess_dfer', 16) == 'ravdess_dfer/video_speech_7class'  # the paper's, as before
  assert prepare.dataset_name('ravdess_dfer/all_8class', 48) == 'ravdess_dfer/all_8class_48f'
  assert prepare.dataset_name('crema_d_dfer') == 'crema_d_dfer'  # no configs: its 16-frame data stay where they were
  assert prepare.dataset_name('crema_d_dfer', 32) == 'crema_d_dfer/32f'
  assert prepare.dataset_name('mead_dfer/front_level_3', 32) == 'mead_dfer/front_level_3_32f'
  assert prepare.dataset_name(DEMO_32F) == DEMO_32F
  builder = prepare.make_builder(DEMO_32F, 'unused')
  assert builder.info.features['video'].shape == (32, 224, 224, 3) and builder.info.features['boxes'].shape == (32, 4)
  assert prepare.make_builder('ravdess_dfer', 'unused').info.features['video'].shape == (16, 224, 224, 3)
  for args, message in (((DEMO_32F, 64), 'already stores 32 frames'), (('ravdess_dfer', 0), 'from 1 to 256'),
                        (('ravdess_dfer/video_speech_7class_16f',), "no config 'video_speech_7class_16f'"),
                        (('ravdess_dfer/video_speech_7class_32f_64f',), 'no config')):
    with pytest.raises(prepare.UsageError, match=message):
      prepare.dataset_name(*args)


def test_an_unknown_config_is_one_line(demo_32f_data_dir):
  with pytest.raises(ValueError) as e:
    pipeline.data_source('ravdess_dfer/video_speech_7class_16f', ALL, demo_32f_data_dir)
  assert str(e.value) == ("config.dataset='ravdess_dfer/video_speech_7class_16f': ravdess_dfer has no config "
                          "'video_speech_7class_16f'; one of video_speech_7class, video_speech_8class, all_7class, "
                          'all_8class, or one of those with _<N>f (N stored frames)')


@pytest.mark.slow
def test_training_on_32_stored_frames_with_two_eval_views(demo_32f_data_dir, tmp_path):
  from mtcae_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = small_config(demo_32f_data_dir, dataset=DEMO_32F, eval_views=2, num_steps=2, eval_every_steps=2)
  result = loop.train_and_evaluate(config, tmp_path)
  assert result['num_clips'] == len(pipeline.data_source(DEMO_32F, f'fold{config.fold}', demo_32f_data_dir))
  assert 0 <= result['uar'] <= 1 and np.isfinite(result['loss_expression'])
