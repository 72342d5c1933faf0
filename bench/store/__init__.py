"""The results store: run records (one JSON file per run), the per-video predictions and training
curves they carry or point to, and their provenance."""
