r"""Run a trained model on videos: expression probabilities, and per frame the face box and five landmarks (also
installed as `mtcae-predict`).

    python -m mtcae_jax.predict --checkpoint=runs/demo --video=clip.mp4 --output=clip.json \
        --overlay=clip.gif --sheet=clip.png
    python -m mtcae_jax.predict --checkpoint=runs/demo --video=videos/ --output=predictions.jsonl

`--checkpoint` is a training workdir (its best checkpoint, else its latest; `--step` picks another) or a
directory written by `python -m mtcae_jax.pretrained` (run as `stl`: expression only). Frames are sampled and
resized as for training: 16 evenly spaced frames squashed to 224 px and JPEG-coded as the datasets store them, then
the model's `num_frames` of those at its `image_size`. No face detector runs: the model's own heads give the face,
mapped back to the source video's pixels (x right, y down, edges of the frame at 0 and width/height).

A folder (searched recursively for video files), several `--video`s or `--videos_from=LIST` run as a batch and
write JSON lines, one per video; a video that cannot be read, or whose outputs are not finite (NaN or inf: a
damaged checkpoint), gets a line with its `error` and the rest go on; each model call pads its clips only to the
next power of two up to `--batch_size`.
Exit status: 0 when every video was predicted, 1 when some were (the failed ones are in the output and on
stderr), 2 when none was or the command itself is wrong (bad flags, not a checkpoint): then one line `error: ...`.
"""

import json
import os
import pathlib
import sys

from absl import flags, logging

from mtcae_jax import accelerator, cli
from mtcae_jax.predict.inference import expand, predict_many, predict_video
from mtcae_jax.predict.trained_model import PredictError, load


def define_flags(fv):
  cli.DEFINE_path('checkpoint', None, 'A training workdir or a converted checkpoint directory.', fv, required=True)
  cli.DEFINE_multi_path('video', [], 'A video file or folder; repeat for a batch.', fv)
  cli.DEFINE_path('videos_from', None, 'A text file listing videos, one a line.', fv)
  cli.DEFINE_path('output', None, 'JSON (one video) or JSON lines (a batch); default: stdout.', fv)
  cli.DEFINE_path('overlay', None, 'One video only: write the annotated frames as .mp4 or .gif.', fv)
  cli.DEFINE_path('sheet', None, 'One video only: write a contact sheet of the annotated frames (.png).', fv)
  flags.DEFINE_integer('step', None, 'The checkpoint step (default: the best, else the latest).', flag_values=fv)
  flags.DEFINE_string('class_names', None, 'Comma-separated names (default: those of the run).', flag_values=fv)
  flags.DEFINE_integer('batch_size', 8, 'Clips per model call in a batch.', flag_values=fv)
  flags.DEFINE_integer('workers', 0, 'Decoding threads (0: up to 8, one per core).', flag_values=fv)
  cli.DEFINE_allow_cpu(fv)


def _check(fv):
  if not fv.video and not fv.videos_from:
    raise cli.Error('give --video=PATH (a file or folder) or --videos_from=LIST')
  if fv.batch_size < 1:
    raise cli.Error(f'--batch_size must be >= 1, got {fv.batch_size}')
  for flag, suffixes in (('overlay', ('.mp4', '.gif')), ('sheet', ('.png', '.jpg'))):
    value = fv[flag].value
    if value and not value.lower().endswith(suffixes):
      raise cli.Error(f'--{flag} must end in {" or ".join(suffixes)}, got {value}')


def _write(path, text):
  if path is None:
    sys.stdout.write(text)
  else:
    pathlib.Path(path).write_text(text)


def command(args, rest):
  del rest
  _check(args)
  accelerator.check(args.allow_cpu)
  logging.set_verbosity(logging.ERROR)  # orbax warns about metadata files of older checkpoints, every time
  # FFmpeg prints its own diagnosis of a bad file ('moov atom not found') to stderr; ours is the one line.
  os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')
  from mtcae_jax.data import video  # pylint: disable=g-import-not-at-top
  try:
    paths = expand(args.video, args.videos_from)
    single = len(paths) == 1 and not os.path.isdir(args.video[0] if args.video else '') and not args.videos_from
    if not single and (args.overlay or args.sheet):
      raise PredictError('--overlay and --sheet are for one video; a batch writes JSON lines only')
    if single and not os.path.isfile(paths[0]):  # before loading the model: a typo should fail fast
      raise video.VideoError(f'{paths[0]}: no such file')
    names = [c.strip() for c in args.class_names.split(',')] if args.class_names else None
    try:
      predictor = load(args.checkpoint, step=args.step, class_names=names)
    except (PredictError, OSError):
      raise
    except Exception as e:  # pylint: disable=broad-except  # orbax and JSON errors of a damaged checkpoint
      raise PredictError(f'{args.checkpoint}: cannot load the checkpoint: '
                         + ' '.join(f'{type(e).__name__}: {e}'.split())[:300]) from None
    if single:
      try:
        record = predict_video(predictor, paths[0], overlay_path=args.overlay, sheet_path=args.sheet)
      except (video.VideoError, PredictError) as e:
        raise type(e)(f'{paths[0]}: {e}') from None
      _write(args.output, json.dumps(record, indent=1, allow_nan=False) + '\n')
      return 0
    return _batch(predictor, paths, args)
  except (PredictError, video.VideoError, OSError) as e:
    raise cli.Error(e) from None


def _batch(predictor, paths, args):
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  failed, reasons = 0, set()
  out = open(args.output, 'w') if args.output else sys.stdout  # pylint: disable=consider-using-with
  try:
    with tqdm(total=len(paths), desc='predict', unit='video', file=sys.stderr) as bar:
      for record in predict_many(predictor, paths, batch_size=args.batch_size, workers=args.workers):
        if 'error' in record:
          failed += 1
          if len(reasons) < 2:  # enough to tell whether all failed for one reason
            reasons.add(record['error'])
          tqdm.write(f'skipped {record["video"]}: {record["error"]}', file=sys.stderr)
        out.write(json.dumps(record, allow_nan=False) + '\n')
        out.flush()
        bar.update(1)
  finally:
    if out is not sys.stdout:
      out.close()
  if failed == len(paths):
    # One shared reason (a checkpoint whose outputs are NaN, say) is the diagnosis: name it.
    raise cli.Error(f'none of the {len(paths)} videos could be predicted'
                    + (f': {next(iter(reasons))}' if len(reasons) == 1 else ''))
  if failed:
    print(f'{failed} of {len(paths)} videos could not be predicted (their lines have an "error")', file=sys.stderr)
  return 1 if failed else 0


def main(argv=None):
  """The command line (default sys.argv[1:], without the program name) -> the exit status."""
  return cli.run(__doc__, define_flags, command, argv)


if __name__ == '__main__':
  sys.exit(main())
