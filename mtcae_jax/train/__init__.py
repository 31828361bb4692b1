"""Training: the loop (`loop.train_and_evaluate`), the step, losses, metrics, the optimizer, evaluation, the run
log and subject-independent cross-validation."""
