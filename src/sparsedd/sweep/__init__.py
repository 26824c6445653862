"""Sweeps: grids expanded into runs, planned against what is recorded, run on a backend."""
