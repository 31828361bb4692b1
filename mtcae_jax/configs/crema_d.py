r"""MTCAE-DFER on CREMA-D: 6 classes (paper Sec. IV-A, Tables I and III).

Each recipe (configs/presets.py; docs/FIDELITY.md compares them with their sources) reads the clips as its source
prepared them, then runs the paper's 5-fold cross-validation from the converted encoder (README: "Starting from
pre-trained weights"):

    VITL='--config.init_from=converted/videomae_l_k400 --config.model.encoder.ln_eps=1e-12'  # the Hub's eps
    python -m mtcae_jax.data.prepare --dataset=crema_d_dfer --manual_dir=~/data/crema_d
    python -m mtcae_jax.main --config=configs/crema_d.py $VITL --workdir=runs/crema_d_paper --mode=cv
    python -m mtcae_jax.data.prepare --dataset=crema_d_dfer --frame_sampling=stride --manual_dir=~/data/crema_d
    python -m mtcae_jax.main --config=configs/crema_d.py:preset=paper_code $VITL --workdir=runs/crema_d_code --mode=cv
    python -m mtcae_jax.data.prepare --dataset=crema_d_dfer --stored_frames=32 --manual_dir=~/data/crema_d  # 2 views
    python -m mtcae_jax.main --config=configs/crema_d.py:preset=mae_dfer \
        --config.init_from=converted/mae_dfer_voxceleb2 --workdir=runs/crema_d_mae_dfer --mode=cv
    python -m mtcae_jax.measure.summary --config=configs/crema_d.py
"""

from mtcae_jax.configs import default, paper_results, presets

__doc__ += paper_results.describe('crema_d_dfer')


def get_config(arg=None):
  c = default.get_config(arg)
  c.dataset = presets.dataset_name('crema_d_dfer', '', default.config_arg(arg).preset)
  c.num_classes = 6
  return c
