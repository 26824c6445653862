"""Analysis: pure functions on result tables (``tables``), figures (``plot``) and the HTML
report (``report``). Nothing here imports torch or the training code."""
