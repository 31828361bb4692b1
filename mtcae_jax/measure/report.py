r"""Plots and tables of a finished (or running) training or cross-validation workdir.

    python -m mtcae_jax.measure.report runs/demo          # -> runs/demo/report/{curves.png, confusion.png, report.md}
    python -m mtcae_jax.measure.report runs/mead_cv       # the same per fold, the table of folds, the summed confusion
    mtcae-report runs/demo                                # the same, as the installed console script

From the workdir's files only (log.jsonl, metrics.json, cv_report.json): no TensorFlow, no model. Curves: the
loss of each task, training and evaluation, box IoU and landmark NME beside the constant baseline's, and UAR/WAR
at each evaluation. A fold still training shows its curves so far and is left out of the table's mean. After a
resume, the records the interrupted run logged past its checkpoint are superseded: only the latest run's show.
"""

import json
import pathlib
import sys

import numpy as np

from mtcae_jax import cli
from mtcae_jax.configs import paper_results
from mtcae_jax.train import run_log

TASKS = ('loss', 'loss_boxes', 'loss_landmarks', 'loss_expression')


class ReportError(ValueError):
  """A workdir with nothing to report; the message is one line."""


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot_curves(records, path, title=''):
  """Loss per task (train and eval) and UAR/WAR per evaluation, from log.jsonl records, as one PNG."""
  plt = _pyplot()
  tasks = [k for k in TASKS if any(k in r for r in records)]
  faces = any('box_iou' in r for r in records)
  panels = len(tasks) + 1 + faces
  fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.0), squeeze=False)
  for ax, key in zip(axes[0], tasks):
    for split, style in (('train', '-'), ('eval', 'o-')):
      pts = [(r['step'], r[key]) for r in records if r['split'] == split and key in r]
      if pts:
        ax.plot(*zip(*pts), style, label=split, markersize=3)
    ax.set_title(key.replace('loss_', 'loss: ') if key != 'loss' else 'loss (weighted sum)')
    ax.set_xlabel('step')
  if faces:
    _plot_faces(axes[0, -2], records)
  ax = axes[0, -1]
  for key in ('uar', 'war'):
    pts = [(r['step'], 100 * r[key]) for r in records if r['split'] == 'eval' and key in r]
    if pts:
      ax.plot(*zip(*pts), 'o-', label=key.upper(), markersize=3)
  ax.set_title('evaluation (%)')
  ax.set_xlabel('step')
  ax.set_ylim(-2, 102)
  for ax in axes[0]:
    if ax.get_legend_handles_labels()[0]:  # a run stopped before its first evaluation has no eval lines
      ax.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def _plot_faces(ax, records):
  """Box IoU and landmark NME per evaluation, each beside its constant baseline (dashed, same colour)."""
  for key, label in (('box_iou', 'box IoU'), ('landmark_nme', 'landmark NME')):
    pts = [(r['step'], r[key], r.get(f'baseline_{key}')) for r in records if r['split'] == 'eval' and key in r]
    if not pts:
      continue
    steps, values, baselines = zip(*pts)
    line, = ax.plot(steps, values, 'o-', label=label, markersize=3)
    if None not in baselines:
      ax.plot(steps, baselines, '--', color=line.get_color(), label=f'{label}, constant')
  ax.set_title('faces (evaluation)')
  ax.set_xlabel('step')


def _metrics(workdir):
  path = pathlib.Path(workdir) / 'metrics.json'
  return json.loads(path.read_text()) if path.exists() else None


def run_report(workdir, out):
  """Curves and the confusion matrix of one training workdir into `out`; returns its metrics (or None)."""
  from mtcae_jax.train import evaluate  # pylint: disable=g-import-not-at-top
  records = run_log.read(workdir)
  if records:
    plot_curves(records, out / 'curves.png', title=workdir.name)
  metrics = _metrics(workdir)
  if metrics:
    evaluate.plot_confusion(np.asarray(metrics['confusion_matrix']), metrics['class_names'], out / 'confusion.png')
  return records, metrics


def _json_or_empty(path):
  try:
    data = json.loads(path.read_text())
  except (OSError, ValueError):
    return {}
  return data if isinstance(data, dict) else {}


def report(workdir):
  """Writes WORKDIR/report/ and returns the Markdown summary. Raises ReportError."""
  from mtcae_jax.train import cross_validation, evaluate  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise ReportError(f'{workdir}: no such directory')
  fold_dirs = sorted((d for d in workdir.glob('fold_*') if d.is_dir()), key=lambda d: int(d.name.split('_')[1]))
  out = workdir / 'report'
  if fold_dirs:
    out.mkdir(exist_ok=True)
    folds, total, names = [], None, None
    for d in fold_dirs:
      (out / d.name).mkdir(exist_ok=True)
      records, m = run_report(d, out / d.name)
      folds.append((d.name, m, max((r['step'] for r in records), default=0)))
      if m:  # every clip is tested in exactly one fold: the folds' matrices add up to the whole dataset's
        total = np.asarray(m['confusion_matrix']) + (0 if total is None else total)
        names = m['class_names']
    cv = _json_or_empty(workdir / 'cv_report.json')  # written when all folds finish: the dataset and strategy
    paper = paper_results.paper_result(cv.get('dataset'), cv.get('strategy'))
    md = f'# Cross-validation: {workdir.name}\n\n' + cross_validation.fold_table(folds, paper=paper)
    if total is not None:
      evaluate.plot_confusion(total, names, out / 'confusion.png')
      md += '\n![confusion, all folds](confusion.png)\n'
    md += ''.join(f'\n## {d.name}\n\n![curves]({d.name}/curves.png)\n' for d in fold_dirs
                  if (out / d.name / 'curves.png').exists())
  else:
    if not run_log.read(workdir) and _metrics(workdir) is None:
      raise ReportError(f'{workdir}: not a training workdir (no log.jsonl or metrics.json) nor a '
                        'cross-validation one (no fold_k/)')
    out.mkdir(exist_ok=True)
    records, m = run_report(workdir, out)
    step = max((r['step'] for r in records), default=0)
    md = f'# {workdir.name}\n\n' + cross_validation.fold_table([('test fold', m, step)], mean=False)
    md += '\n![curves](curves.png)\n' if records else ''
    md += '\n![confusion](confusion.png)\n' if m else ''
  (out / 'report.md').write_text(md)
  return md


def _command(fv, args):
  del fv
  workdir = cli.expand(args[0])
  try:
    md = report(workdir)
  except (ReportError, OSError, ValueError, KeyError) as e:
    raise cli.Error(e) from None
  print(md, end='')
  print(f'written: {pathlib.Path(workdir) / "report"}')


def main(argv=None):
  """`python -m mtcae_jax.measure.report WORKDIR`: argv without the program name (default sys.argv[1:]) -> status."""
  return cli.run(__doc__, lambda fv: None, _command, argv, positional=('workdir',))


if __name__ == '__main__':
  sys.exit(main())
