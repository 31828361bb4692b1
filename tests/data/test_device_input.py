"""uint8 clips normalised and colour-jittered on the device equal the float32 host path they replaced."""

import jax
import numpy as np

from mtcae_jax.data import augment, device_input, pipeline
from tests.data.test_pipeline import fake_source, tiny_config


def host_float32_reference(rng, stored, size, config, mean, std):
  """The former host path in NumPy float32: warp, flip, then colour jitter drawn from the same rng, normalise."""
  window = (augment.random_resized_crop(rng, config.crop_scale, config.crop_ratio) if rng.uniform() < config.crop_prob
            else augment.scale_jitter(rng, config.scale_jitter))
  video = augment.warp(stored, window, size)
  if rng.uniform() < config.hflip:
    video = video[:, :, ::-1]
  video = video.astype(np.float32) / 255
  video = video * rng.uniform(1 - config.brightness, 1 + config.brightness)
  mean_pixel = video.mean()
  video = (video - mean_pixel) * rng.uniform(1 - config.contrast, 1 + config.contrast) + mean_pixel
  grey = video @ np.array([0.299, 0.587, 0.114], np.float32)
  video = (video - grey[..., None]) * rng.uniform(1 - config.saturation, 1 + config.saturation) + grey[..., None]
  video = np.clip(video, 0, 1).astype(np.float32)
  return (video - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def test_training_clips_match_the_float32_host_path():
  config = tiny_config()
  config.image_size = 32
  rng = np.random.default_rng(0)
  examples = []
  for i in range(3):  # textured frames, so that warping, contrast and saturation all matter
    raw = fake_source(1, size=48)[0]
    raw['video'] = list(rng.integers(0, 256, (16, 48, 48, 3), np.uint8))
    examples.append(raw)
  settings = augment.AugmentConfig(hflip=0.5, crop_prob=0.5)
  made = [pipeline.preprocess(raw, config, np.random.default_rng([5, i]), offset=0.3, augment=settings)
          for i, raw in enumerate(examples)]
  batch = {k: np.stack([m[k] for m in made]) for k in ('video', 'colour')}
  assert batch['video'].dtype == np.uint8
  on_device = np.asarray(jax.jit(lambda b: device_input.model_video(b, config.input.mean, config.input.std))(batch))
  for i, raw in enumerate(examples):
    t = np.asarray([1, 5, 9, 13])  # offset 0.3 of 4 segments of 4 frames
    reference = host_float32_reference(np.random.default_rng([5, i]), np.asarray(raw['video'])[t], 32, settings,
                                        config.input.mean, config.input.std)
    np.testing.assert_allclose(on_device[i], reference, atol=1e-6, rtol=0)


def test_evaluation_clips_are_only_normalised():
  config = tiny_config()
  video = np.random.default_rng(1).integers(0, 256, (2, 2, 4, 8, 8, 3), np.uint8)  # with a view axis
  out = np.asarray(device_input.model_video({'video': video}, config.input.mean, config.input.std))
  expected = (video.astype(np.float32) / 255 - np.float32(config.input.mean)) / np.float32(config.input.std)
  np.testing.assert_allclose(out, expected, atol=1e-6, rtol=0)
