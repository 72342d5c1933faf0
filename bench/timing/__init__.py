"""The GPU speed and memory benchmark behind ``python -m bench.perf``: cases and settings, step
timing, profiles, micro-benchmarks, the cached-feature comparison and the perf records."""
