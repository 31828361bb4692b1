"""Training: the loop (`loop.train_and_evaluate`), losses, metrics, the optimizer, checkpoints, evaluation, the run
log and subject-independent cross-validation."""
