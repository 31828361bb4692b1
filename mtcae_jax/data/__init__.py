"""Data: video reading and sampling, MTCNN labels, TFDS builders, and the input pipeline to sharded jax.Arrays.

Importing this package imports neither TensorFlow nor the builders; `import mtcae_jax.data.datasets` registers
`ravdess_dfer`, `crema_d_dfer` and `mead_dfer` with TFDS.
"""
