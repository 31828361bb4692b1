"""The per-clip work of every builder: one video file -> one multi-task example (paper Fig. 3).

`clip_example` is a pure function of the file (given a face labeler), so it runs unchanged in the builders'
process pool or, later, in an Apache Beam pipeline. `process` is the process-pool entry point: it never raises
for a bad file, it returns the reason instead.
"""

import cv2
import numpy as np

from mtcae_jax.data import faces, silent_tensorflow, video

NUM_FRAMES = 16  # Sec. III-A; a builder config may store more (`<config>_<N>f`)
IMAGE_SIZE = 224
JPEG_QUALITY = 95  # about 230 KiB per 16 x 224 x 224 clip

def init_worker(min_face_size=faces.MIN_FACE_SIZE):
  """Process-pool initializer: one thread per worker for OpenCV and TensorFlow, one MTCNN made before any clip."""
  cv2.setNumThreads(1)
  silent_tensorflow.single_threaded()
  faces.shared_labeler(min_face_size)


def encode_jpeg(frame, quality=JPEG_QUALITY):
  ok, data = cv2.imencode('.jpg', cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
  if not ok:
    raise video.VideoError('cannot be encoded as JPEG')
  return data.tobytes()


def as_stored(frames):
  """RGB frames as a dataset stores them and gives them back: JPEG-coded at JPEG_QUALITY, then decoded."""
  return np.stack([cv2.cvtColor(cv2.imdecode(np.frombuffer(encode_jpeg(f), np.uint8), cv2.IMREAD_COLOR),
                                cv2.COLOR_BGR2RGB) for f in frames])


def clip_example(path, labeler, num_frames=NUM_FRAMES, size=IMAGE_SIZE, crop='squash', frame_sampling='centres'):
  """Reads, samples (`video.frame_indices`: the segments' centres, or 'stride', the authors' rule), resizes and
  labels one clip. Raises video.VideoError for an unusable file.

  MTCNN runs on the resized frames, so boxes and landmarks are relative to exactly the pixels that are stored.
  """
  clip = video.read_clip(path, num_frames=num_frames, size=size, crop=crop, frame_sampling=frame_sampling)
  faces = labeler(clip.frames)
  return {
      'video': [encode_jpeg(f) for f in clip.frames],
      'boxes': faces.boxes,
      'landmarks': faces.landmarks,
      'face_mask': faces.face_mask,
      'frame_index': clip.indices.astype(np.int32),
  }


def _one_line(error):
  return ' '.join(f'{type(error).__name__}: {error}'.split())[:300]


def process(path, min_face_size=faces.MIN_FACE_SIZE, num_frames=NUM_FRAMES, frame_sampling='centres'):
  """(example, None) or (None, reason). For the process pool: a bad file is a reason, never an exception.

  In-process (workers=0) the labeler is made here, and this process's threading is left alone.
  """
  try:
    return clip_example(path, faces.shared_labeler(min_face_size), num_frames=num_frames,
                        frame_sampling=frame_sampling), None
  except video.VideoError as e:
    return None, str(e)
  except Exception as e:  # pylint: disable=broad-except  # a decoder or detector failure on one file
    return None, _one_line(e)
