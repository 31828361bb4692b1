"""Pre-trained encoders from PyTorch: a reader that runs no code from the file, the checkpoint layouts it
recognises, and the conversion to (and loading from) this project's Flax parameters."""
