"""Subject-independent 5-fold cross-validation: one run per test fold, then a report like the paper's tables.

Each fold trains in `WORKDIR/fold_k` (rerunning resumes, and finished folds are not trained again); the report is
`WORKDIR/cv_report.json` and `WORKDIR/cv_report.md` with per-fold and mean ± std UAR and WAR (in %).
"""

import json
import pathlib

import numpy as np

from mtcae_jax.data import folds
from mtcae_jax.train import loop

REPORTED = ('uar', 'war', 'box_iou', 'baseline_box_iou', 'landmark_nme', 'baseline_landmark_nme', 'loss_expression',
            'loss_boxes', 'loss_landmarks')


def run(config, workdir):
  workdir = pathlib.Path(workdir)
  per_fold = []
  for k in range(folds.NUM_FOLDS):
    fold_config = config.copy_and_resolve_references()
    fold_config.fold = k
    fold_dir = workdir / f'fold_{k}'
    print(f'=== fold {k} of {folds.NUM_FOLDS}: {fold_dir}')
    result = loop.train_and_evaluate(fold_config, fold_dir)
    per_fold.append({m: result[m] for m in REPORTED if m in result} | {'num_clips': result['num_clips']})
  report = summarize(per_fold)
  report.update(dataset=config.dataset, strategy=config.model.strategy, encoder=config.model.encoder.variant)
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
  """The report as Markdown: UAR and WAR in % per fold and mean ± std, as in the paper's Tables II-IV."""
  extra = [m for m in ('box_iou', 'baseline_box_iou', 'landmark_nme', 'baseline_landmark_nme')
           if m in report['mean']]
  name = lambda m: m.replace('baseline_', '').replace('_', ' ') + (' (constant)' if m.startswith('baseline') else '')
  head = ['fold', 'UAR (%)', 'WAR (%)'] + [name(m) for m in extra] + ['test clips']
  lines = [f'# {report.get("dataset", "")} cross-validation ({report.get("strategy", "")}, '
           f'{report.get("encoder", "")})', '', '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for k, f in enumerate(report['folds']):
    cells = [str(k), f'{100 * f["uar"]:.2f}', f'{100 * f["war"]:.2f}'] + [f'{f[m]:.4f}' for m in extra]
    lines.append('| ' + ' | '.join(cells + [str(f['num_clips'])]) + ' |')
  mean, std = report['mean'], report['std']
  cells = ['mean ± std', f'{100 * mean["uar"]:.2f} ± {100 * std["uar"]:.2f}',
           f'{100 * mean["war"]:.2f} ± {100 * std["war"]:.2f}'] + [f'{mean[m]:.4f} ± {std[m]:.4f}' for m in extra]
  lines.append('| ' + ' | '.join(cells + [str(sum(f['num_clips'] for f in report['folds']))]) + ' |')
  return '\n'.join(lines) + '\n'
