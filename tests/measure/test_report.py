"""Reports from a workdir's files: curves, confusion matrices, the table of folds; from hand-written runs."""

import json

import numpy as np
import pytest
from PIL import Image

from mtcae_jax.measure import report
from mtcae_jax.train import cross_validation

NAMES = ['neutral', 'happy', 'sad']


def write_run(workdir, uar, war, cm, steps=(1, 2, 3, 4), finished=True):
  """A workdir as training leaves it: log.jsonl (train every step, eval every 2) and, when done, metrics.json."""
  workdir.mkdir(parents=True)
  lines = []
  for s in steps:
    lines.append({'step': s, 'split': 'train', 'loss': 3.0 / s, 'loss_boxes': 1.0 / s, 'loss_landmarks': 0.5 / s,
                  'loss_expression': 1.5 / s})
    if s % 2 == 0:
      lines.append({'step': s, 'split': 'eval', 'loss_boxes': 1.2 / s, 'loss_landmarks': 0.6 / s,
                    'loss_expression': 2.0 / s, 'uar': uar, 'war': war})
  (workdir / 'log.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
  if finished:
    (workdir / 'metrics.json').write_text(json.dumps({
        'uar': uar, 'war': war, 'num_clips': int(np.sum(cm)), 'confusion_matrix': cm, 'box_iou': 0.5,
        'landmark_nme': 0.1, 'class_names': NAMES}))


def png(path):
  image = np.asarray(Image.open(path))
  assert image.ndim == 3 and min(image.shape[:2]) > 100
  return image


def test_one_run(tmp_path):
  write_run(tmp_path / 'run', 0.5, 0.6, [[2, 0, 0], [1, 1, 0], [0, 1, 0]])
  md = report.report(tmp_path / 'run')
  assert '| test fold | 50.00 | 60.00 | 0.5000 | 0.1000 | 5 | 4 |' in md
  assert 'mean' not in md
  curves = png(tmp_path / 'run' / 'report' / 'curves.png')
  assert curves.shape[1] > 3 * curves.shape[0]  # five panels side by side: four losses and UAR/WAR
  png(tmp_path / 'run' / 'report' / 'confusion.png')
  assert (tmp_path / 'run' / 'report' / 'report.md').read_text() == md


def test_cross_validation_table_and_summed_confusion(tmp_path):
  cms = [[[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[1, 1, 0], [0, 1, 0], [0, 0, 0]]]
  write_run(tmp_path / 'cv' / 'fold_0', 1.0, 1.0, cms[0])
  write_run(tmp_path / 'cv' / 'fold_1', 0.5, 2 / 3, cms[1])
  write_run(tmp_path / 'cv' / 'fold_2', 0.0, 0.0, cms[0], steps=(1,), finished=False)  # still training
  md = report.report(tmp_path / 'cv')
  rows = [l for l in md.splitlines() if l.startswith('| fold_') or l.startswith('| mean')]
  assert rows == ['| fold_0 | 100.00 | 100.00 | 0.5000 | 0.1000 | 3 | 4 |',
                  '| fold_1 | 50.00 | 66.67 | 0.5000 | 0.1000 | 3 | 4 |',
                  '| fold_2 | - | - | - | - | - | 1 (not finished) |',
                  '| mean ± std (2 folds) | 75.00 ± 25.00 | 83.33 ± 16.67 | 0.5000 ± 0.0000 | 0.1000 ± 0.0000 | 6 |  |']
  out = tmp_path / 'cv' / 'report'
  for k in range(3):
    png(out / f'fold_{k}' / 'curves.png')
  assert not (out / 'fold_2' / 'confusion.png').exists()
  png(out / 'confusion.png')
  assert report.main([str(tmp_path / 'cv')]) == 0


def test_summed_confusion_values(tmp_path, monkeypatch):
  seen = {}
  monkeypatch.setattr('mtcae_jax.train.evaluate.plot_confusion', lambda cm, names, path: seen.update({path.parent.name
                                                                                                 : cm}))
  write_run(tmp_path / 'cv' / 'fold_0', 1.0, 1.0, [[1, 0], [0, 2]])
  write_run(tmp_path / 'cv' / 'fold_1', 0.5, 0.5, [[0, 1], [1, 0]])
  report.report(tmp_path / 'cv')
  np.testing.assert_array_equal(seen['report'], [[1, 1], [1, 2]])


@pytest.mark.parametrize('make', ['missing', 'empty'])
def test_not_a_workdir_is_one_line_and_status_2(tmp_path, capsys, make):
  path = tmp_path / 'x'
  if make == 'empty':
    path.mkdir()
  assert report.main([str(path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1


def test_faces_beside_the_constant_baseline(tmp_path):
  run = tmp_path / 'run'
  write_run(run, 0.5, 0.6, [[2, 0, 0], [1, 1, 0], [0, 1, 0]])
  metrics = json.loads((run / 'metrics.json').read_text())
  metrics.update(baseline_box_iou=0.25, baseline_landmark_nme=1.5)
  (run / 'metrics.json').write_text(json.dumps(metrics))
  with (run / 'log.jsonl').open('a') as f:
    f.write(json.dumps({'step': 4, 'split': 'eval', 'box_iou': 0.5, 'baseline_box_iou': 0.25, 'landmark_nme': 0.1,
                        'baseline_landmark_nme': 1.5, 'uar': 0.5, 'war': 0.6}) + '\n')
  md = report.report(run)
  assert '| test fold | 50.00 | 60.00 | 0.5000 (constant 0.2500) | 0.1000 (constant 1.5000) | 5 | 4 |' in md
  curves = png(run / 'report' / 'curves.png')
  assert curves.shape[1] > 4.5 * curves.shape[0]  # six panels: four losses, faces, UAR/WAR


def test_a_resumed_run_is_reported_once(tmp_path, monkeypatch):
  # Killed at step 4 with its checkpoint at 2, resumed and now at step 3: the log holds the first run's records
  # of steps 3 and 4 too. The curves and the table show the resumed run only.
  run = tmp_path / 'run'
  write_run(run, 0.5, 0.6, [[1]], finished=False)
  with (run / 'log.jsonl').open('a') as f:
    f.write(json.dumps({'step': 3, 'split': 'train', 'loss': 0.25, 'loss_expression': 0.25}) + '\n')
  plotted = {}
  monkeypatch.setattr(report, 'plot_curves', lambda records, path, title='': plotted.update(records=records))
  md = report.report(run)
  assert '| 3 (not finished) |' in md
  assert [(r['split'], r['step']) for r in plotted['records']] == [
      ('train', 1), ('train', 2), ('eval', 2), ('train', 3)]
  assert plotted['records'][-1]['loss'] == 0.25


def test_the_papers_numbers_beneath_ours(tmp_path):
  write_run(tmp_path / 'cv' / 'fold_0', 1.0, 1.0, [[1, 0], [0, 1]])
  (tmp_path / 'cv' / 'cv_report.json').write_text(json.dumps({'dataset': 'crema_d_dfer', 'strategy': 'shared_vit'}))
  md = report.report(tmp_path / 'cv')
  assert '| paper (Table I) | 81.64 | 82.38 | - | - | - |' in md  # Table I, CREMA-D, fully shared ViT decoders
  cv = cross_validation.markdown({'dataset': 'ravdess_dfer', 'strategy': 'cascaded',
                                  'folds': [{'uar': 0.5, 'war': 0.5, 'num_clips': 4}]})
  assert cv.splitlines()[-1] == '| paper (Table I; Table II) | 82.73 | 83.69 | - |'
  other = cross_validation.markdown({'dataset': 'ravdess_dfer', 'strategy': 'cascaded_typo',
                                     'folds': [{'uar': 0.5, 'war': 0.5, 'num_clips': 4}]})
  assert 'paper' not in other
