"""A trained run's model to ship: writing a pruned export (``pruned``), checking every field
and tensor of one (``checks``) and classifying image files with it (``predict``)."""
