"""The results store: run records (one JSON file per run) and the provenance they carry."""
