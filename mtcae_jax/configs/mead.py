r"""MTCAE-DFER on MEAD: 8 classes, frontal view, all actors and levels (paper Sec. IV-A, Tables I and IV; the
paper's 6,568-clip selection is not published: docs/DATA.md#mead-selections compares `mead_dfer/front_fifth`).

Each recipe (configs/presets.py; docs/FIDELITY.md compares them with their sources) reads the clips as its source
prepared them, then runs the paper's 5-fold cross-validation from the converted encoder (README: "Starting from
pre-trained weights"):

    VITL='--config.init_from=converted/videomae_l_k400 --config.model.encoder.ln_eps=1e-12'  # the Hub's eps
    python -m mtcae_jax.data.prepare --dataset=mead_dfer --manual_dir=~/data/mead
    python -m mtcae_jax.main --config=configs/mead.py $VITL --workdir=runs/mead_paper --mode=cv
    python -m mtcae_jax.data.prepare --dataset=mead_dfer --frame_sampling=stride --manual_dir=~/data/mead
    python -m mtcae_jax.main --config=configs/mead.py:preset=paper_code $VITL --workdir=runs/mead_code --mode=cv
    python -m mtcae_jax.data.prepare --dataset=mead_dfer --stored_frames=32 --manual_dir=~/data/mead  # 2 views
    python -m mtcae_jax.main --config=configs/mead.py:preset=mae_dfer \
        --config.init_from=converted/mae_dfer_voxceleb2 --workdir=runs/mead_mae_dfer --mode=cv
    python -m mtcae_jax.measure.summary --config=configs/mead.py
    python -m mtcae_jax.measure.summary --config=configs/mead.py:variant=B/16 --config.model.strategy=nonshared_vit
"""

from mtcae_jax.configs import default, paper_results, presets

__doc__ += paper_results.describe('mead_dfer')


def get_config(arg=None):
  c = default.get_config(arg)
  c.dataset = presets.dataset_name('mead_dfer', 'front', default.config_arg(arg).preset)
  c.num_classes = 8
  return c
