"""Exact resume: a 300-arch NB201 tabular search whose driver is SIGKILLed at 5 seeded random
points and resumed after each kill ends with the same table as the uninterrupted search, row for
row (arch, metrics, order of proposal). The drivers are processes of their own joining the test
session's Ray (see kill_resume_helper.py); every strategy is checked in the slow run, a
population strategy and an Optuna sampler in the default one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_data_path

HERE = Path(__file__).resolve().parent
ALL = ["evolution", "local_search", "reinforce", "random", "optuna:tpe", "optuna:nsga2"]
slow = pytest.mark.skipif(not os.environ.get("RAYNAS_SLOW_TESTS"),
                          reason="every strategy, ~30 s each on 2 CPUs; set RAYNAS_SLOW_TESTS=1")


def _kill_and_resume(ray_session, tmp_path, strategies, kills=5, seed=0):
    table = shared_data_path("nb201/nb201_cifar10.csv")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(HERE / "kill_resume_helper.py"),
                          "--address", ray_session.get_runtime_context().gcs_address, "--table", str(table),
                          "--storage", str(tmp_path), "--strategies", ",".join(strategies),
                          "--kills", str(kills), "--seed", str(seed)],
                         env=env, capture_output=True, text=True, timeout=300 * len(strategies))
    summaries = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [s["strategy"] for s in summaries] == list(strategies), (out.stdout[-2000:], out.stderr[-4000:])
    for summary in summaries:
        assert summary["kills"] == kills and summary["endings"][-1] == 0, summary
        assert summary["rows"] == [300, 300] and summary["identical"], summary
        assert summary["differing_archs"] == 0 and summary["best"][0] == summary["best"][1], summary
    assert out.returncode == 0, out.stderr[-3000:]
    return summaries


def test_killed_five_times_equals_uninterrupted(ray_session, tmp_path):
    _kill_and_resume(ray_session, tmp_path, ["evolution", "optuna:tpe"])


@pytest.mark.slow
@slow
def test_every_strategy_killed_five_times_equals_uninterrupted(ray_session, tmp_path):
    _kill_and_resume(ray_session, tmp_path, ALL, seed=1)
