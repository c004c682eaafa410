"""Shared fixtures: one Ray session for the whole test run, and paths to the offline data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The offline data live beside the project (never committed); users and CI may point elsewhere.
SHARED_DATA = Path(os.environ.get("RAYNAS_TEST_DATA", PROJECT_ROOT.parent / "shared" / "data"))

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Test machines are often shared: idle OpenMP threads must sleep instead of spinning, or torch in
# one process slows every other process down (Ray workers inherit this).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (minutes each; 'make test-all')")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` are skipped unless ``--run-slow`` is given: the one switch for them."""
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow ('make test-all')")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def shared_data_path(relative: str) -> Path:
    """Path of a file under the shared data folder, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"offline data not present: {path} (set RAYNAS_TEST_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every test that needs it (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: extra intra-op threads cost more than they save (and the CPUs are shared).
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
