"""Exact resume: a 300-arch NB201 tabular search whose driver is SIGKILLed at 5 seeded random
points and resumed after each kill ends with the same table as the uninterrupted search, row for
row (arch, metrics, order of proposal). benchmarks/kill_resume.py runs it; its drivers are
processes of their own joining the test session's Ray. Every strategy is checked in the slow run,
a population strategy and an Optuna sampler (the benchmark's smoke mode) in the default one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_data_path

HERE = Path(__file__).resolve().parent
BENCHMARK = HERE.parent / "benchmarks" / "kill_resume.py"
ALL = ["evolution", "local_search", "reinforce", "random", "optuna:tpe", "optuna:nsga2"]


def _kill_and_resume(ray_session, tmp_path, strategies, kills=5, seed=0):
    table = shared_data_path("nb201/nb201_cifar10.csv")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(BENCHMARK), "--address", ray_session.get_runtime_context().gcs_address,
                          "--table", str(table), "--storage", str(tmp_path / "runs"),
                          "--strategies", ",".join(strategies), "--kills", str(kills), "--seed", str(seed),
                          "--out", str(tmp_path / "result.json")],
                         env=env, capture_output=True, text=True, timeout=300 * len(strategies))
    assert (tmp_path / "result.json").exists(), (out.stdout[-2000:], out.stderr[-4000:])
    summaries = json.loads((tmp_path / "result.json").read_text())["strategies"]
    assert [s["strategy"] for s in summaries] == list(strategies), out.stderr[-4000:]
    for summary in summaries:
        assert "error" not in summary, (summary, out.stderr[-4000:])
        assert summary["uninterrupted"] == summary["resumed"], summary["strategy"]
        brief = {k: v for k, v in summary.items() if k not in ("uninterrupted", "resumed")}
        assert summary["kills"] == kills and summary["endings"][-1] == 0, brief
        assert summary["rows"] == [300, 300] and summary["identical"], brief
        assert summary["differing_archs"] == 0 and summary["best_arch"][0] == summary["best_arch"][1], brief
    assert out.returncode == 0, out.stderr[-3000:]
    return summaries


def test_killed_five_times_equals_uninterrupted(ray_session, tmp_path):
    _kill_and_resume(ray_session, tmp_path, ["evolution", "optuna:tpe"])


@pytest.mark.slow   # every strategy, ~30 s each on 2 CPUs
def test_every_strategy_killed_five_times_equals_uninterrupted(ray_session, tmp_path):
    _kill_and_resume(ray_session, tmp_path, ALL, seed=1)
