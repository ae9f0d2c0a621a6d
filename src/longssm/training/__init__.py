"""Training: run configs, state-initialisation schemes, the loop, checkpoints, distributed glue."""
