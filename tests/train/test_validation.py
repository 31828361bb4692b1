"""The validation split (whole training actors, never the test fold), early stopping, and a run they end early."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from mtcae_jax import checkpointing, sharding
from mtcae_jax.data import pipeline, target_stats, validation
from mtcae_jax.train import loop, run_log

from conftest import small_config


def test_choose_actors_is_a_seeded_share_of_the_actors():
  actors = np.repeat(np.arange(100, 120), 3)  # 20 actors, 3 clips each
  chosen = validation.choose_actors(actors, 0.25, seed=0, fold=0)
  assert len(chosen) == 5 and set(chosen) <= set(range(100, 120)) and chosen == sorted(chosen)
  assert validation.choose_actors(actors, 0.25, seed=0, fold=0) == chosen  # a rerun holds out the same
  assert validation.choose_actors(actors, 0.25, seed=0, fold=1) != chosen  # another test fold, others
  assert validation.choose_actors(actors, 0.0, seed=0, fold=0) == []
  assert len(validation.choose_actors(actors, 0.01, seed=0, fold=0)) == 1  # at least one
  for share, match in ((1.0, r'in \[0, 1\)'), (-0.1, r'in \[0, 1\)'), (0.98, 'holds out 20 of the 20')):
    with pytest.raises(ValueError, match=match) as e:
      validation.choose_actors(actors, share, seed=0, fold=0)
    assert '\n' not in str(e.value)


def test_validation_split_shares_no_actor_with_training_or_test(demo_data_dir):
  train_split = pipeline.train_split(0)
  source = pipeline.data_source('ravdess_dfer', train_split, demo_data_dir)
  actors = pipeline.read_targets('ravdess_dfer', train_split, demo_data_dir, keys=('actor',))['actor']
  # Read without decoding, the actors are the decoded examples' own.
  assert actors.tolist() == [int(source[i]['actor']) for i in range(len(source))]
  held_out = validation.choose_actors(actors, 0.4, seed=0, fold=0)
  train, val = validation.hold_out(source, actors, held_out)
  train_actors = {int(train[i]['actor']) for i in range(len(train))}
  val_actors = {int(val[i]['actor']) for i in range(len(val))}
  test = pipeline.data_source('ravdess_dfer', 'fold0', demo_data_dir)
  test_actors = {int(test[i]['actor']) for i in range(len(test))}
  # The demo: 6 actors, 1 in the test fold; 0.4 of the other 5 is 2.
  assert len(test_actors) == 1 and len(val_actors) == 2 and len(train_actors) == 3 and len(val) + len(train) == 12
  assert val_actors == set(held_out) and train_actors | val_actors == set(actors.tolist())
  assert not val_actors & train_actors and not val_actors & test_actors and not train_actors & test_actors
  assert validation.describe(actors, held_out) == {'validation_actors': held_out,
                                                   'train_actors': sorted(train_actors),
                                                   'num_validation_clips': len(val), 'num_train_clips': len(train)}

  # The subset is a source for the pipeline: every validation clip evaluated once.
  config = small_config(demo_data_dir)
  batches = list(pipeline.eval_batches(val, config, 4, num_workers=0))
  paths = [p for b in batches for p, m in zip(b['path'], np.asarray(b['mask'])) if m]
  assert sorted(paths) == sorted(val[i]['path'].decode() for i in range(len(val)))
  # Target statistics over the training actors only: fixed_faces finds a face in 15 of each clip's 16 frames.
  stats = target_stats.compute('ravdess_dfer', train_split, demo_data_dir, indices=train.indices)
  assert stats['num_frames'] == 15 * len(train)
  assert target_stats.compute('ravdess_dfer', train_split, demo_data_dir)['num_frames'] == 15 * 12


def test_checkpoint_selection_prefers_the_lower_validation_loss(tmp_path):
  score = checkpointing.selection_score
  assert score({'val_objective': 0.5, 'uar': 0.1}) > score({'val_objective': 0.7, 'uar': 0.9})
  assert score({'val_objective': float('nan')}) == -np.inf
  assert score({'uar': 0.9}) > score({'uar': 0.1})  # without a validation split, the test UAR as before
  _, state, _ = sharding.create_sharded(lambda: nnx.Linear(2, 2, rngs=nnx.Rngs(0)), sharding.make_mesh())
  ckpt = checkpointing.Checkpoints(tmp_path / 'ckpt', keep=1)
  for step, loss in ((1, 0.9), (2, 0.4), (3, float('nan')), (4, 0.6)):
    ckpt.save(step, state, {'step': step}, metrics={'val_objective': loss})
  ckpt.wait()
  assert ckpt.best_step() == 2 and ckpt.all_steps() == [2, 4] and ckpt.best_first() == [2, 4]
  ckpt.close()


@pytest.mark.parametrize('overrides, match', [
    (dict(early_stopping_patience=2), 'early_stopping_patience watch the validation split: set validation_share'),
    (dict(optimizer=dict(plateau_patience=3)), 'optimizer.plateau_patience watch the validation split'),
    (dict(validation_share=0.2, early_stopping_monitor='accuracy'), "early_stopping_monitor must be one of .*'war'"),
    (dict(validation_share=1.0), r'validation_share must be in \[0, 1\), got 1.0'),
    (dict(validation_share=0.2, early_stopping_patience=-1), 'early_stopping_patience must be >= 0'),
    (dict(optimizer=dict(weight_decay_mask='biases')), "weight_decay_mask must be one of .*, got 'biases'"),
])
def test_validation_settings_that_cannot_work_are_refused_before_any_data(tmp_path, overrides, match):
  config = small_config(str(tmp_path / 'no_data'))
  for key, value in overrides.items():
    config[key].update(value) if isinstance(value, dict) else setattr(config, key, value)
  with pytest.raises(loop.TrainingError, match=match) as e:
    loop.train_and_evaluate(config, tmp_path / 'run')
  assert '\n' not in str(e.value)


def test_a_share_leaving_no_training_actor_is_refused(demo_data_dir, tmp_path):
  config = small_config(demo_data_dir, validation_share=0.95)  # 0.95 x 5 rounds to all 5 training actors
  with pytest.raises(loop.TrainingError, match='holds out 5 of the 5 training actors, leaving none') as e:
    loop.train_and_evaluate(config, tmp_path)
  assert '\n' not in str(e.value)


def lr_scale(workdir, step):
  ckpt = checkpointing.Checkpoints(workdir / 'checkpoints')
  leaves = [x for p, x in jax.tree_util.tree_leaves_with_path(ckpt.arrays(step))
            if 'lr_scale' in jax.tree_util.keystr(p)]
  record = ckpt.record(step)
  ckpt.close()
  assert len(leaves) == 1
  return float(np.asarray(leaves[0])), record


@pytest.mark.slow
def test_a_run_on_a_plateau_lowers_its_lr_stops_early_and_resumes_exactly(demo_data_dir, tmp_path, capsys):
  # lr 0: the weights (so the validation loss) stay put, a plateau at every evaluation after the first. The plateau
  # (patience 1) lowers the lr at steps 2 and 3; early stopping (patience 2) ends the run at step 3 of 6.
  config = small_config(demo_data_dir, num_steps=6, eval_every_steps=1, validation_share=0.25,
                        early_stopping_patience=2)
  config.optimizer.update(learning_rate=0.0, plateau_patience=1)
  straight = loop.train_and_evaluate(config, tmp_path / 'a')
  out = capsys.readouterr().out
  assert 'Stopped early at step 3 of 6: no validation loss better than' in out and 'x0.1, now x0.1 ' in out
  split = json.loads((tmp_path / 'a' / validation.FILENAME).read_text())
  assert len(split['validation_actors']) == 1 and split['num_validation_clips'] + split['num_train_clips'] == 12
  scale, record = lr_scale(tmp_path / 'a', 3)
  assert scale == np.float32(0.01) and record['stopped_early'] == 3
  assert record['validation_actors'] == split['validation_actors']
  best = record['plateau']['best']
  assert record['plateau'] == {'best': best, 'wait': 0, 'scale': pytest.approx(0.01)}
  assert record['early_stopping'] == {'best': best, 'best_step': 1, 'wait': 2, 'count': 3}
  log = run_log.read(tmp_path / 'a')
  assert [r['step'] for r in log if r['split'] == 'val'] == [1, 2, 3]
  assert [r['loss'] for r in log if r['split'] == 'val'] == [best] * 3
  assert straight['num_clips'] == 6 and (tmp_path / 'a' / 'predictions.csv').exists()

  # Interrupted after the first plateau: the checkpoint holds the lowered lr and the watchers' state.
  loop.train_and_evaluate(config, tmp_path / 'b', stop_after=2)
  assert 'Stopped at step 2 (stop_after)' in capsys.readouterr().err
  scale, record = lr_scale(tmp_path / 'b', 2)
  assert record['stopped_early'] is None
  assert scale == np.float32(0.1) and record['plateau'] == {'best': best, 'wait': 0, 'scale': 0.1}
  resumed = loop.train_and_evaluate(config, tmp_path / 'b')
  assert lr_scale(tmp_path / 'b', 3) == lr_scale(tmp_path / 'a', 3)
  assert resumed['uar'] == straight['uar']
  a, b = (checkpointing.Checkpoints(tmp_path / d / 'checkpoints') for d in 'ab')
  for x, y in zip(jax.tree.leaves(a.arrays(3)), jax.tree.leaves(b.arrays(3))):  # Adam's moments moved
    np.testing.assert_array_equal(x, y)
  assert a.all_steps() == b.all_steps() and 4 not in a.all_steps()
  a.close(), b.close()

  # Run again, a finished run is evaluated, not trained on.
  capsys.readouterr()
  again = loop.train_and_evaluate(config, tmp_path / 'a')
  assert 'stopped early at step 3' in capsys.readouterr().out and again['uar'] == straight['uar']
