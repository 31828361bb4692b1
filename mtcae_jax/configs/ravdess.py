r"""MTCAE-DFER on RAVDESS: 7 classes, calm merged into neutral (paper Sec. IV-A, Tables I and II).

Each recipe (configs/presets.py; docs/FIDELITY.md compares them with their sources) reads the clips as its source
prepared them, then runs the paper's 5-fold cross-validation from the converted encoder (README: "Starting from
pre-trained weights"):

    VITL='--config.init_from=converted/videomae_l_k400 --config.model.encoder.ln_eps=1e-12'  # the Hub's eps
    python -m mtcae_jax.data.prepare --dataset=ravdess_dfer --manual_dir=~/data/ravdess
    python -m mtcae_jax.main --config=configs/ravdess.py $VITL --workdir=runs/ravdess_paper --mode=cv
    python -m mtcae_jax.data.prepare --dataset=ravdess_dfer --frame_sampling=stride --manual_dir=~/data/ravdess
    python -m mtcae_jax.main --config=configs/ravdess.py:preset=paper_code $VITL --workdir=runs/ravdess_code --mode=cv
    python -m mtcae_jax.data.prepare --dataset=ravdess_dfer --stored_frames=32 --manual_dir=~/data/ravdess  # 2 views
    python -m mtcae_jax.main --config=configs/ravdess.py:preset=mae_dfer \
        --config.init_from=converted/mae_dfer_voxceleb2 --workdir=runs/ravdess_mae_dfer --mode=cv
    python -m mtcae_jax.measure.summary --config=configs/ravdess.py
"""

from mtcae_jax.configs import default, paper_results, presets

__doc__ += paper_results.describe('ravdess_dfer')


def get_config(arg=None):
  c = default.get_config(arg)
  c.dataset = presets.dataset_name('ravdess_dfer', 'video_speech_7class', default.config_arg(arg).preset)
  c.num_classes = 7
  return c
