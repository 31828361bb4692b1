"""Prediction: a trained model loaded for inference (`trained_model`), videos run through it (`inference`),
drawings of its output (`overlay`), and the command line (`python -m mtcae_jax.predict`)."""
