"""Training half of petseg: data, model, training, evaluation and export (see docs/training.md)."""
