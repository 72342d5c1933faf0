"""Shared test setup: offline hub, one torch thread per process (CI has 2 cores), GPU/SLURM skips."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="needs CUDA; this machine has no GPU")
    one_gpu = pytest.mark.skip(reason=f"needs 2 GPUs; this machine has {torch.cuda.device_count()}")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_cuda)
        if "multigpu" in item.keywords and torch.cuda.device_count() < 2:
            item.add_marker(one_gpu)


@pytest.fixture(scope="session")
def world_cache(tmp_path_factory):
    """One BENCH_CACHE for every test that runs bench.run on the default synthetic world (generated
    once per session, about a minute on 2 cores, instead of once per test)."""
    return tmp_path_factory.mktemp("cache")
