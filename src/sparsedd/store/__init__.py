"""Storage: the SQLite results database, safetensors checkpoints and atomic file writes."""
