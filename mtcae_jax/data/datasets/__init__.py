"""TFDS builders of the paper's three datasets; importing this package registers them with TFDS.

    python -m mtcae_jax.data.prepare --dataset=ravdess_dfer --manual_dir=DIR --data_dir=DIR
    python -m mtcae_jax.data.prepare --dataset=ravdess_dfer --stored_frames=32 ...  # -> .../video_speech_7class_32f
    python -m mtcae_jax.data.prepare --dataset=ravdess_dfer --frame_sampling=stride ...  # the authors' frames
        # -> ravdess_dfer/video_speech_7class_stride
"""

from mtcae_jax.data.datasets.crema_d import CremaDDfer
from mtcae_jax.data.datasets.mead import MeadDfer
from mtcae_jax.data.datasets.ravdess import RavdessDfer

BUILDERS = {b.name: b for b in (RavdessDfer, CremaDDfer, MeadDfer)}
