"""Reading containers and sampling frames: checked against videos whose frames encode their own index."""

import os

import cv2
import numpy as np
import pytest

from mtcae_jax.data import video

# Frame i of a synthetic clip is flat grey at level 20 + 2i, so the decoded level tells which frame it was.
_LEVEL0, _STEP = 20, 2


def _write(path, num_frames, fourcc='MJPG', size=(48, 32), color=True):
  w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, size, isColor=color)
  assert w.isOpened(), fourcc
  for i in range(num_frames):
    level = _LEVEL0 + _STEP * i
    w.write(np.full((size[1], size[0], 3) if color else (size[1], size[0]), level, np.uint8))
  w.release()
  return str(path)


def _decoded_levels(path):
  """Mean level of every frame, decoded straight through with OpenCV: the reference for which frame is which."""
  cap, levels = cv2.VideoCapture(str(path)), []
  while True:
    ok, frame = cap.read()
    if not ok:
      return np.array(levels)
    levels.append(frame.mean())


def _source_indices(frames, path):
  levels = _decoded_levels(path)
  assert np.all(np.diff(levels) > 0.5)  # the codec kept the frames apart
  return [int(np.argmin(np.abs(levels - f.mean()))) for f in frames]


@pytest.mark.parametrize('ext,fourcc', [('mp4', 'mp4v'), ('avi', 'MJPG'), ('avi', 'XVID'), ('mov', 'mp4v'),
                                        ('flv', 'FLV1')])
def test_reads_each_container(tmp_path, ext, fourcc):
  path = _write(tmp_path / f'clip.{ext}', 40, fourcc)
  clip = video.read_clip(path, num_frames=16, size=24)
  assert clip.frames.shape == (16, 24, 24, 3) and clip.frames.dtype == np.uint8
  assert clip.num_source_frames == 40
  # floor((i + 0.5) * 40 / 16), by hand:
  assert clip.indices.tolist() == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28, 31, 33, 36, 38]
  assert _source_indices(clip.frames, path) == clip.indices.tolist()


def test_long_clip_is_sampled_evenly_over_the_whole_clip(tmp_path):
  path = _write(tmp_path / 'long.avi', 100)
  clip = video.read_clip(path, num_frames=16, size=None)
  expected = [3, 9, 15, 21, 28, 34, 40, 46, 53, 59, 65, 71, 78, 84, 90, 96]  # floor((i + 0.5) * 100 / 16)
  assert clip.indices.tolist() == expected
  assert _source_indices(clip.frames, path) == expected
  assert clip.frames.shape == (16, 32, 48, 3)  # size=None keeps the source size


def test_short_clip_repeats_frames_evenly(tmp_path):
  path = _write(tmp_path / 'short.avi', 5)
  clip = video.read_clip(path, num_frames=16, size=16)
  expected = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]  # floor((i + 0.5) * 5 / 16)
  assert clip.indices.tolist() == expected
  assert _source_indices(clip.frames, path) == expected
  assert sorted(np.bincount(expected).tolist()) == [3, 3, 3, 3, 4]  # every frame used 3 or 4 times


def test_exactly_num_frames_keeps_every_frame():
  assert video.sample_indices(16, 16).tolist() == list(range(16))
  assert video.sample_indices(1, 4).tolist() == [0, 0, 0, 0]


def test_greyscale_comes_out_with_three_equal_channels(tmp_path):
  clip = video.read_clip(_write(tmp_path / 'grey.avi', 20, color=False), num_frames=4, size=8)
  assert clip.frames.shape == (4, 8, 8, 3)
  assert np.array_equal(clip.frames[..., 0], clip.frames[..., 1])
  assert np.array_equal(clip.frames[..., 1], clip.frames[..., 2])


def test_squash_and_centre_crop():
  # 40 x 20 frame: left quarter red, right quarter blue, middle half green.
  frame = np.zeros((20, 40, 3), np.uint8)
  frame[:, :10, 0] = 255
  frame[:, 10:30, 1] = 255
  frame[:, 30:, 2] = 255
  squashed = video.resize(frame, 8, 'squash')
  assert squashed.shape == (8, 8, 3)
  assert squashed[4, 0].tolist() == [255, 0, 0] and squashed[4, 7].tolist() == [0, 0, 255]
  centred = video.resize(frame, 8, 'center')  # keeps the middle 20 x 20: all green
  assert (centred[..., 1] == 255).all() and (centred[..., [0, 2]] == 0).all()


def test_rgb_order(tmp_path):
  path = str(tmp_path / 'red.avi')
  w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 25, (16, 16))
  for _ in range(4):
    w.write(np.tile(np.array([0, 0, 255], np.uint8), (16, 16, 1)))  # red in OpenCV's BGR
  w.release()
  frame = video.read_clip(path, num_frames=1, size=None).frames[0]
  assert frame[..., 0].mean() > 200 and frame[..., 2].mean() < 50


def test_bad_files_raise_one_line_reasons(tmp_path):
  good = _write(tmp_path / 'good.avi', 60)
  data = open(good, 'rb').read()
  cases = {'empty.mp4': b'', 'text.mp4': b'not a video\n' * 50}
  for name, content in cases.items():
    with open(tmp_path / name, 'wb') as f:
      f.write(content)
    with pytest.raises(video.VideoError, match='cannot be read'):
      video.read_clip(str(tmp_path / name))
  with open(tmp_path / 'cut.avi', 'wb') as f:
    f.write(data[:len(data) // 2])  # the AVI index is at the end: half the frames remain
  with pytest.raises(video.VideoError) as e:
    video.read_clip(str(tmp_path / 'cut.avi'))
  assert 'truncated' in str(e.value) or 'cannot be read' in str(e.value)
  assert '\n' not in str(e.value)
  with pytest.raises(video.VideoError, match='cannot be read'):
    video.read_clip(os.path.join(tmp_path, 'missing.mp4'))


@pytest.mark.parametrize('num_source_frames,expected', [
    (105, [0, 6, 12, 18, 24, 30, 36, 42, 48, 54, 60, 66, 72, 78, 84, 90]),  # stride floor(105 / 16) = 6
    (16, list(range(16))),
    (31, list(range(16))),  # stride 1: frames 16-30 are never seen
    (40, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30]),
    (47, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30]),  # stride 2 up to 47
    (48, [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45]),
])
def test_stride_indices_are_the_authors_every_floor_t_over_n_th_frame_from_0(num_source_frames, expected):
  assert video.stride_indices(num_source_frames, 16).tolist() == expected
  assert video.frame_indices(num_source_frames, 16, 'stride').tolist() == expected


def test_stride_indices_of_a_clip_shorter_than_n_repeat_frames_evenly():
  # The authors' stride would be 0 (frame 0 sixteen times); ours falls back to the segments' centres.
  assert video.stride_indices(5, 16).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]
  assert video.stride_indices(1, 4).tolist() == [0, 0, 0, 0]
  assert video.stride_indices(10, 4).tolist() == [0, 2, 4, 6]  # other N: i * floor(10 / 4)
  with pytest.raises(video.VideoError, match='no frames'):
    video.stride_indices(0, 16)


def test_read_clip_with_stride_sampling_reads_the_authors_frames(tmp_path):
  path = _write(tmp_path / 'stride.avi', 40)
  clip = video.read_clip(path, num_frames=16, size=8, frame_sampling='stride')
  expected = list(range(0, 32, 2))  # i * floor(40 / 16), by hand
  assert clip.indices.tolist() == expected and clip.num_source_frames == 40
  assert _source_indices(clip.frames, path) == expected
  centres = video.read_clip(path, num_frames=16, size=8)  # the default is unchanged
  assert centres.indices.tolist() == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28, 31, 33, 36, 38]


def test_unknown_frame_sampling_is_refused_in_one_line(tmp_path):
  path = _write(tmp_path / 'clip.avi', 20)
  with pytest.raises(ValueError, match=r"^frame_sampling must be one of centres, stride, got 'centers'$"):
    video.read_clip(path, frame_sampling='centers')
  with pytest.raises(ValueError, match='frame_sampling must be one of'):
    video.frame_indices(20, 16, 'random')
