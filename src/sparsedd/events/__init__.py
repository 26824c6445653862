"""Events of a run as it trains: the console reporter (``progress``) and the experiment
trackers (``trackers``: TensorBoard, MLflow), both fed through the one reporter protocol."""
