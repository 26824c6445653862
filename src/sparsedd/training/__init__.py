"""Training: the trainer and its masked step, pruning, the round loop of a run
(``experiment``) and its state (``run_state``). Progress and trackers live in
``sparsedd.events``, the pruned-model export in ``sparsedd.export``."""
