"""sparsedd: study sparse double descent by pruning models trained on noisy labels."""

__version__ = "0.1.0"
