#!/usr/bin/env bash
# Re-resolve lock/requirements.txt from pyproject.toml's ranges and lock/pins.in, with hashes.
# Afterwards: reinstall from the lock, rerun the default suite and refresh the baselines, because a
# new torch, numpy or decoder moves the embedded default's numbers (README, "Reproducible installs").
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "pip-tools>=7.4"
python -m piptools compile --quiet --extra test --generate-hashes --allow-unsafe --strip-extras \
    --no-header --no-emit-index-url --no-emit-find-links \
    -o lock/requirements.txt pyproject.toml lock/pins.in
echo "lock/requirements.txt: sha256 $(sha256sum lock/requirements.txt | cut -c1-16)"
