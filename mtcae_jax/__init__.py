"""mtcae-jax: MTCAE-DFER (multi-task cascaded autoencoder for dynamic facial expression recognition) in JAX."""

__version__ = "0.1.0"
