"""Training end to end on the demo data: resume equals uninterrupted, refusals, NaN, frozen encoder, reports."""

import csv
import json
import math
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from mtcae_jax import checkpointing, models, sharding
from mtcae_jax.train import cross_validation, loop, run_log

from conftest import small_config


def final_params(workdir, step):
  ckpt = checkpointing.Checkpoints(workdir / 'checkpoints')
  state = ckpt.arrays(step)
  ckpt.close()
  return state


@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(demo_data_dir, tmp_path):
  config = small_config(demo_data_dir)
  straight = loop.train_and_evaluate(config, tmp_path / 'a')
  assert loop.train_and_evaluate(config, tmp_path / 'b', stop_after=1) is None  # preempted after step 1
  ckpt = checkpointing.Checkpoints(tmp_path / 'b' / 'checkpoints')
  assert ckpt.latest_step() == 1
  # The input iterator's state: the next step, and what the order depends on (12 training clips).
  assert ckpt.record(1)['data'] == {'step': 1, 'seed': config.seed, 'num_examples': 12,
                                    'global_batch_size': config.batch_size}
  ckpt.close()
  # Resumed with a worker process loading the data (the first part had none): the same batches.
  config.input.num_workers = 1
  resumed = loop.train_and_evaluate(config, tmp_path / 'b')
  a, b = final_params(tmp_path / 'a', 4), final_params(tmp_path / 'b', 4)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert resumed['uar'] == straight['uar'] and resumed['num_clips'] == straight['num_clips']

  # The reports: every test clip once in the CSV, the confusion matrix, train and eval records in the log.
  rows = list(csv.DictReader(open(tmp_path / 'a' / 'predictions.csv')))
  assert len(rows) == straight['num_clips'] == sum(map(sum, straight['confusion_matrix']))
  assert len({r['path'] for r in rows}) == len(rows)
  assert all(math.isclose(sum(float(v) for k, v in r.items() if k.startswith('p_')), 1.0, abs_tol=1e-4)
             for r in rows)
  assert (tmp_path / 'a' / 'confusion.png').stat().st_size > 1000
  log = run_log.read(tmp_path / 'a')
  assert [r['step'] for r in log if r['split'] == 'train'] == [1, 2, 3, 4]
  assert [r['step'] for r in log if r['split'] == 'eval'] == [2, 4]
  assert {'loss', 'loss_boxes', 'loss_landmarks', 'loss_expression', 'clips_per_second'} <= set(log[0])
  metrics = json.loads((tmp_path / 'a' / 'metrics.json').read_text())
  assert {'uar', 'war', 'box_iou', 'landmark_nme', 'per_class_recall', 'class_names'} <= set(metrics)

  # Resuming with another config is refused, naming what changed.
  changed = small_config(demo_data_dir, label_smoothing=0.1)
  with pytest.raises(loop.TrainingError, match='label_smoothing'):
    loop.train_and_evaluate(changed, tmp_path / 'a')


def test_nan_loss_stops_at_its_step_keeping_good_checkpoints(demo_data_dir, tmp_path):
  config = small_config(demo_data_dir, checkpoint_every_steps=1)
  config.loss.expression = float('nan')
  with pytest.raises(loop.TrainingError, match='at step 1; stopped there. The last good checkpoint is none'):
    loop.train_and_evaluate(config, tmp_path)


@pytest.mark.slow
def test_frozen_encoder_keeps_its_weights(demo_data_dir, tmp_path):
  config = small_config(demo_data_dir, num_steps=2, eval_every_steps=2)
  config.model.encoder.frozen = True
  # Plain heads: from the mean-target start (zero kernel), with these fixed labels already exact, a box head's
  # LayerNorm gets no gradient in two steps.
  config.model.head.regression_init = 'plain'
  loop.train_and_evaluate(config, tmp_path)
  initial = nnx.state(models.build_model(config, rngs=nnx.Rngs(config.seed)), nnx.Param)
  ckpt = checkpointing.Checkpoints(tmp_path / 'checkpoints')
  graphdef, state, _, _ = loop.restore_train_state(config, ckpt, 2, sharding.make_mesh())
  trained = nnx.state(nnx.merge(graphdef, state)[0], nnx.Param)
  for (path, before), (_, after) in zip(nnx.to_flat_state(initial), nnx.to_flat_state(trained)):
    assert np.array_equal(before[...], after[...]) == (path[0] == 'encoder'), path


@pytest.mark.slow
def test_tiny_model_learns_all_three_tasks_and_fits_its_training_set(demo_data_dir, tmp_path):
  config = small_config(demo_data_dir, num_steps=120, eval_every_steps=120, log_every_steps=10)
  config.augment.update(hflip=0.0, crop_prob=0.0, scale_jitter=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
  config.model.decoder.dropout = config.model.head.dropout = 0.0
  # The paper's plain FC heads: with these fixed labels the mean-target start would already be exact.
  config.model.head.regression_init = 'plain'
  config.optimizer.update(learning_rate=3e-3, warmup_steps=10)
  loop.train_and_evaluate(config, tmp_path)
  log = [r for r in run_log.read(tmp_path) if r['split'] == 'train']
  for task in ('loss_boxes', 'loss_landmarks', 'loss_expression'):
    assert log[-1][task] < 0.5 * log[0][task], (task, log[0][task], log[-1][task])
  fitted = loop.evaluate_checkpoint(config, tmp_path, split=loop.pipeline.train_split(config.fold))
  assert fitted['war'] >= 0.9


@pytest.mark.slow
def test_cross_validation_report(demo_data_dir, tmp_path):
  config = small_config(demo_data_dir, num_steps=1, eval_every_steps=1, eval_views=2)
  report = cross_validation.run(config, tmp_path)
  assert len(report['folds']) == 5
  assert report['mean']['uar'] == pytest.approx(np.mean([f['uar'] for f in report['folds']]))
  assert sum(f['num_clips'] for f in report['folds']) == 18  # every demo clip tested exactly once
  table = (tmp_path / 'cv_report.md').read_text()
  # Header (after the separator), 5 folds, the mean, and the paper's RAVDESS cascaded row (Table I).
  assert 'mean ± std' in table and table.count('\n| ') == 1 + 5 + 1 + 1
  assert table.splitlines()[-1].startswith('| paper (Table I; Table II) | 82.73 | 83.69 |')
  assert json.loads((tmp_path / 'cv_report.json').read_text())['folds'] == report['folds']


def test_markdown_report_from_hand_values():
  report = cross_validation.summarize([{'uar': 0.5, 'war': 0.6, 'num_clips': 10},
                                       {'uar': 0.7, 'war': 0.8, 'num_clips': 12}])
  assert report['mean'] == pytest.approx({'uar': 0.6, 'war': 0.7})
  assert report['std'] == pytest.approx({'uar': 0.1, 'war': 0.1})
  assert '| mean ± std (2 folds) | 60.00 ± 10.00 | 70.00 ± 10.00 | 22 |' in cross_validation.markdown(report)
  faces = dict(box_iou=0.6, baseline_box_iou=0.3, landmark_nme=0.2, baseline_landmark_nme=0.9)
  table = cross_validation.markdown(cross_validation.summarize([{'uar': 0.5, 'war': 0.6, 'num_clips': 10, **faces}]))
  assert '| fold | UAR (%) | WAR (%) | box IoU | landmark NME | test clips |' in table
  assert '| 0 | 50.00 | 60.00 | 0.6000 (constant 0.3000) | 0.2000 (constant 0.9000) | 10 |' in table
  assert '| mean ± std (1 folds) | 50.00 ± 0.00 | 60.00 ± 0.00 | 0.6000 ± 0.0000 (constant 0.3000) |' in table


@pytest.mark.slow
def test_command_line_trains_evaluates_and_stops_cleanly_on_sigterm(demo_data_dir, tmp_path):
  command = [sys.executable, '-m', 'mtcae_jax.main', '--config=configs/demo.py', f'--workdir={tmp_path}',
             f'--config.data_dir={demo_data_dir}', '--config.num_frames=4', '--config.image_size=32',
             '--config.num_steps=30', '--config.log_every_steps=1']
  proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while time.time() < deadline and not [r for r in run_log.read(tmp_path) if r['split'] == 'train']:
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  assert 'rerun the same command to resume' in err
  step = checkpointing.Checkpoints(tmp_path / 'checkpoints').latest_step()
  assert 1 <= step < 30

  # The same command again resumes there, finishes and reports.
  done = subprocess.run(command, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-2000:]
  assert f'Resuming from step {step} of 30' in done.stdout
  assert re.search(r'fold0 after 30 steps: UAR \d+\.\d\d  WAR \d+\.\d\d', done.stdout)
  assert (tmp_path / 'predictions.csv').exists() and (tmp_path / 'confusion.png').exists()

  # A bad config: one line on stderr, exit status 2.
  bad = subprocess.run(command[:4] + [f'--workdir={tmp_path / "other"}', '--config.prepare_demo_data=False',
                                      f'--config.data_dir={tmp_path / "nothing"}',
                                      '--config.num_steps=2'], capture_output=True, text=True)
  assert bad.returncode == 2 and bad.stderr.strip().startswith('error: ') and bad.stderr.count('\n') == 1


def test_a_run_saved_before_the_regression_switches_resumes_with_them_given():
  current = json.loads(small_config('d').to_json())
  saved = json.loads(small_config('d').to_json())
  del saved['model']['head']['regression_init'], saved['loss']['normalize_regression']
  assert loop.config_changes(saved, current) == ['loss.normalize_regression', 'model.head.regression_init']
  current['model']['head']['regression_init'], current['loss']['normalize_regression'] = 'plain', False
  assert loop.config_changes(saved, current) == []
