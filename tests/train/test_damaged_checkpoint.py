"""A damaged latest checkpoint (truncated array data, a record that is not JSON, no _METADATA) is named, moved
aside and skipped: training resumes from the newest intact step; eval and predict use it, leaving the workdir."""

import shutil

import pytest

from mtcae_jax import checkpointing
from mtcae_jax.predict import trained_model
from mtcae_jax.train import loop

from conftest import small_config

# One short training run shared by all (about 30 s on 2 cores), then a resume, an eval or a load per case.
pytestmark = pytest.mark.slow

DAMAGES = {
    # Half of the largest array data file of the step's state (the "Encountered error while reading").
    'truncated': lambda step: _truncate(max((p for p in (step / 'state').rglob('*') if p.is_file()),
                                            key=lambda p: p.stat().st_size)),
    'record': lambda step: (step / 'record' / 'metadata').write_text('{"config": garbage'),
    'no_metadata': lambda step: (step / 'state' / '_METADATA').unlink(),
}


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(path.stat().st_size // 2)


def _config(data_dir):
  # Checkpoints at steps 2 and 3 (the run stops after 3); no evaluation before the end.
  return small_config(data_dir, checkpoint_every_steps=2, eval_every_steps=4)


@pytest.fixture(scope='module')
def trained(demo_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('damaged') / 'run'
  loop.train_and_evaluate(_config(demo_data_dir), workdir, stop_after=3)
  return workdir


def _damaged_copy(trained, tmp_path, damage, step=3):
  workdir = tmp_path / 'run'
  shutil.copytree(trained, workdir)
  DAMAGES[damage](workdir / 'checkpoints' / str(step))
  return workdir


def _steps(workdir):
  ckpt = checkpointing.Checkpoints(workdir / 'checkpoints')
  try:
    return ckpt.all_steps()
  finally:
    ckpt.close()


@pytest.mark.parametrize('damage', sorted(DAMAGES))
def test_training_resumes_from_the_newest_intact_step(trained, demo_data_dir, tmp_path, damage, capsys):
  assert _steps(trained) == [2, 3]
  workdir = _damaged_copy(trained, tmp_path, damage)
  loop.train_and_evaluate(_config(demo_data_dir), workdir, stop_after=1)
  out, err = capsys.readouterr()
  line, = [l for l in err.splitlines() if 'damaged' in l]
  assert line.startswith(f'checkpoint step 3 in {workdir / "checkpoints" / "3"} is damaged: ')
  assert line.endswith(f'; moved to {workdir / "damaged_checkpoints" / "3"}')
  assert 'Resuming from step 2 of 4' in out
  assert (workdir / 'damaged_checkpoints' / '3' / 'state').is_dir()  # moved, not deleted
  assert _steps(workdir) == [2, 3]  # step 3 trained again from step 2


def test_eval_and_predict_use_the_newest_intact_step_and_leave_the_workdir(trained, demo_data_dir, tmp_path,
                                                                           capsys):
  workdir = _damaged_copy(trained, tmp_path, 'no_metadata')
  predictor = trained_model.load(workdir)
  assert predictor.source == f'{workdir} (step 2)'
  err = capsys.readouterr().err
  assert f'checkpoint step 3 in {workdir / "checkpoints" / "3"} is damaged: no _METADATA' in err
  assert 'Predicting with step 2 instead.' in err
  result = loop.evaluate_checkpoint(_config(demo_data_dir), workdir)
  assert result['num_clips'] > 0 and (workdir / 'eval_step2').is_dir()
  assert 'Evaluating step 2 instead.' in capsys.readouterr().err
  assert _steps(workdir) == [2, 3] and not (workdir / 'damaged_checkpoints').exists()  # only read
  with pytest.raises(loop.TrainingError, match='checkpoint step 3 in .* is damaged'):
    loop.evaluate_checkpoint(_config(demo_data_dir), workdir, step=3)


def test_no_intact_checkpoint_refuses_and_moves_nothing(trained, demo_data_dir, tmp_path, capsys):
  workdir = _damaged_copy(trained, tmp_path, 'record')
  DAMAGES['no_metadata'](workdir / 'checkpoints' / '2')
  with pytest.raises(loop.TrainingError, match='no intact checkpoint in .*nothing was moved'):
    loop.train_and_evaluate(_config(demo_data_dir), workdir)
  err = capsys.readouterr().err
  assert 'step 3' in err and 'step 2' in err and _steps(workdir) == [2, 3]
  with pytest.raises(trained_model.PredictError, match='no intact checkpoint'):
    trained_model.load(workdir)
