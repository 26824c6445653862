"""Training: the trainer and its masked step, pruning, the round loop of a run
(``experiment``), batched λ runs, progress reporting and pruned-model export."""
