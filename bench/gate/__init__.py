"""The regression gate behind ``python -m bench.check``: baselines, the comparison rules, and the
check that committed tables match their records."""
