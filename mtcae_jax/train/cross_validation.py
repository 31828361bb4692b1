"""Subject-independent 5-fold cross-validation: one run per test fold, then a report like the paper's tables.

Each fold trains in `WORKDIR/fold_k` (rerunning resumes, and finished folds are not trained again); the report is
`WORKDIR/cv_report.json` and `WORKDIR/cv_report.md` with per-fold and mean ± std UAR and WAR (in %), and the
paper's numbers for the same dataset and strategy beneath them (configs/paper_results.py).
"""

import json
import pathlib

import jax
import numpy as np

from mtcae_jax.configs import paper_results
from mtcae_jax.data import folds
from mtcae_jax.train import loop

REPORTED = ('uar', 'war', 'box_iou', 'baseline_box_iou', 'landmark_nme', 'baseline_landmark_nme', 'loss_expression',
            'loss_boxes', 'loss_landmarks')
FACE_METRICS = {'box_iou': 'box IoU', 'landmark_nme': 'landmark NME'}  # the fold table's columns


def run(config, workdir):
  workdir = pathlib.Path(workdir)
  per_fold = []
  for k in range(folds.NUM_FOLDS):
    fold_config = config.copy_and_resolve_references()
    fold_config.fold = k
    fold_dir = workdir / f'fold_{k}'
    if jax.process_index() == 0:
      print(f'=== fold {k} of {folds.NUM_FOLDS}: {fold_dir}')
    result = loop.train_and_evaluate(fold_config, fold_dir)
    per_fold.append({m: result[m] for m in REPORTED if m in result} | {'num_clips': result['num_clips']})
  report = summarize(per_fold)
  report.update(dataset=config.dataset, strategy=config.model.strategy, encoder=config.model.encoder.variant)
  if jax.process_index() == 0:  # every process has the folds' results; one writes them
    (workdir / 'cv_report.json').write_text(json.dumps(report, indent=1))
    (workdir / 'cv_report.md').write_text(markdown(report))
    print(markdown(report))
  return report


def summarize(per_fold):
  """{'folds': [...], 'mean': {...}, 'std': {...}} over the folds (std: population, as over a fixed set)."""
  metrics = [m for m in REPORTED if all(m in f for f in per_fold)]
  return {'folds': per_fold,
          'mean': {m: float(np.mean([f[m] for f in per_fold])) for m in metrics},
          'std': {m: float(np.std([f[m] for f in per_fold])) for m in metrics}}


def markdown(report):
  """The cross-validation report as Markdown (see `fold_table`)."""
  title = (f'# {report.get("dataset", "")} cross-validation ({report.get("strategy", "")}, '
           f'{report.get("encoder", "")})\n\n')
  paper = paper_results.paper_result(report.get('dataset'), report.get('strategy'))
  return title + fold_table([(str(k), f, None) for k, f in enumerate(report['folds'])], paper=paper)


def _percent(x):
  return f'{100 * x:.2f}' if x is not None and np.isfinite(x) else '-'


def _with_baseline(value, baseline):
  """'0.7012 (constant 0.5980)': a box or landmark metric beside the constant predictor's, when recorded."""
  return value + (f' (constant {baseline})' if baseline else '')


def fold_table(folds, mean=True, paper=None):
  """Markdown as in the paper's Tables II-IV: a row per fold, from (name, metrics or None while it runs, steps or
  None), with UAR and WAR in %, box IoU and landmark NME beside the constant predictor's, and mean ± std over the
  finished folds (population std, as over a fixed set of folds); then the paper's row (`paper_results`) if given."""
  done = [m for _, m, _ in folds if m is not None]
  faces = [k for k in FACE_METRICS if any(k in m for m in done)]
  steps = any(s is not None for _, _, s in folds)
  head = ['fold', 'UAR (%)', 'WAR (%)', *(FACE_METRICS[k] for k in faces), 'test clips'] + (['steps'] if steps else [])
  row = lambda cells: '| ' + ' | '.join(cells) + ' |'
  lines = [row(head), '|' + '---|' * len(head)]
  for name, m, step in folds:
    if m is None:
      lines.append(row([name] + ['-'] * (len(head) - 2) + [f'{step} (not finished)']))
      continue
    face_cells = [_with_baseline(f'{m.get(k, float("nan")):.4f}',
                                 f'{m[f"baseline_{k}"]:.4f}' if f'baseline_{k}' in m else '') for k in faces]
    lines.append(row([name, _percent(m['uar']), _percent(m['war']), *face_cells, str(m['num_clips'])]
                     + ([str(step)] if steps else [])))
  if done and mean:
    stat = lambda k, f: f(np.array([m.get(k, np.nan) for m in done], np.float64))
    both = lambda k, fmt: f'{fmt(stat(k, np.mean))} ± {fmt(stat(k, np.std))}'
    face_cells = [_with_baseline(both(k, '{:.4f}'.format),
                                 f'{stat(f"baseline_{k}", np.mean):.4f}' if all(f'baseline_{k}' in m for m in done)
                                 else '') for k in faces]
    lines.append(row([f'mean ± std ({len(done)} folds)', both('uar', _percent), both('war', _percent), *face_cells,
                      str(sum(m['num_clips'] for m in done))] + ([''] if steps else [])))
  if paper:
    lines.append(row([f'paper ({paper["source"]})', f'{paper["uar"]:.2f}', f'{paper["war"]:.2f}']
                     + ['-'] * (len(head) - 3)))
  return '\n'.join(lines) + '\n'
