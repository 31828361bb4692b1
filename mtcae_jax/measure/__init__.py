"""Measurement: model summaries and FLOPs, speed against the device's peak and PyTorch, device profiles, and the
report of a finished training run."""
