"""The encoder's input, made on the device inside the jitted steps: uint8 frames -> colour jitter -> normalised.

The host sends uint8 video (a quarter of float32's bytes) and, for training, each clip's colour-jitter factors,
drawn on the host with the rest of its augmentation (`augment.colour_factors`), so a clip's pixels depend only on
its seed, as before. The geometric augmentation, which moves the targets, stays on the host (`augment.py`).
"""

import jax.numpy as jnp

# ITU-R BT.601 luma weights: the grey image that saturation blends towards.
LUMA = (0.299, 0.587, 0.114)


def colour_jitter(video, factors):
  """Float clips (B, T, H, W, 3) in [0, 1] with factors (B, 3): brightness scales, contrast stretches about the
  clip's mean, saturation blends with the grey image; one factor of each per clip, clipped back to [0, 1]."""
  per_clip = lambda i: factors[:, i].reshape((-1,) + (1,) * (video.ndim - 1))
  video = video * per_clip(0)
  mean = video.mean(axis=tuple(range(1, video.ndim)), keepdims=True)
  video = (video - mean) * per_clip(1) + mean
  grey = (video @ jnp.asarray(LUMA, video.dtype))[..., None]
  video = (video - grey) * per_clip(2) + grey
  return jnp.clip(video, 0, 1)


def model_video(batch, mean, std):
  """`batch['video']` uint8 (B, [V,] T, H, W, 3) -> float32 standardised per channel by the dataset's `mean` and
  `std` (of pixels in [0, 1]); colour-jittered first when the batch has `colour` (B, 3) factors (training)."""
  video = batch['video'].astype(jnp.float32) / 255
  if 'colour' in batch:
    video = colour_jitter(video, batch['colour'])
  return (video - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
