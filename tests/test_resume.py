"""Resuming a search whose driver was killed: nothing evaluated twice, nothing lost, the
searcher's state as it was, and a readable experiment directory at every moment."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import raynas
from fault_helpers import SyntheticEvaluator, evaluation_counts
from raynas.arch import arch_id
from raynas.errors import CheckpointError
from raynas.ledger import JOURNAL_FILE, Journal, read_journal
from raynas.objectives import parse_objectives
from raynas.searchers import make_searcher

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from driver_kill_helper import SPACE, STRATEGY_OPTIONS  # noqa: E402


def _fresh_searcher(budget: int):
    space = raynas.create_space("synthetic", **SPACE)
    return make_searcher("evolution", STRATEGY_OPTIONS).setup(
        space, parse_objectives("score"), budget=budget, batch_size=2, max_concurrent=3, seed=5)


def test_driver_killed_mid_search_resumes_with_its_state_and_no_duplicates(ray_session, tmp_path):
    budget = 36
    logs = tmp_path / "logs"
    logs.mkdir()
    experiment = tmp_path / "exp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.run(
        [sys.executable, str(HERE / "driver_kill_helper.py"), "--address", ray_session.get_runtime_context().gcs_address,
         "--storage", str(tmp_path), "--name", "exp", "--log-dir", str(logs), "--dump", str(tmp_path / "dump.json"),
         "--num-samples", str(budget), "--kill-after", "7"],
        env=env, capture_output=True, text=True, timeout=240)
    assert driver.returncode == -9, driver.stderr[-3000:]

    # what the dead driver left is readable: a table (maybe seconds old) completed by the journal
    before = raynas.SearchResult.load(experiment)
    dump = json.loads((tmp_path / "dump.json").read_text())
    assert len(before.df) == dump["num_observed"] >= 14 and before.df["arch_id"].is_unique

    # Tune's checkpoint + the journal give back the searcher the driver had when it died
    state_file = sorted(experiment.glob("searcher-state-*.pkl"))[-1]
    restored = _fresh_searcher(budget)
    restored.attach_experiment(str(experiment))
    restored.restore(str(state_file))
    assert restored.get_strategy_state()["population"] == dump["strategy_state"]["population"]
    assert restored.num_observed == dump["num_observed"]
    assert restored._seen >= {arch_id(a) for a in before.archs()}

    result = raynas.resume_search(experiment, SyntheticEvaluator(SPACE, str(logs), delay_s=0.05), progress=False)
    space = raynas.create_space("synthetic", **SPACE)
    df = result.df
    assert len(df) == budget and df["arch_id"].is_unique and df["error"].isna().all()
    assert set(before.df["arch_id"]) <= set(df["arch_id"])                  # the union
    pre = before.df.set_index("arch_id")["score"]
    assert (df.set_index("arch_id").loc[pre.index, "score"] == pre).all()   # recorded rows kept as they were
    assert all(row.score == space.score(arch) for row, arch in zip(df.itertuples(), result.archs()))
    counts = evaluation_counts(logs)
    assert all(counts[key] == 1 for key in before.df["arch_id"])          # nothing recorded was evaluated again
    # only evaluations running in the dead driver's trials (never recorded) happened twice
    assert sum(counts.values()) - budget <= 3 * 2
    final = json.loads(sorted(experiment.glob("searcher-state-*.pkl"))[-1].read_text())
    assert final["proposed"] == budget and len(final["seen"]) == budget and not final["live"]
    assert json.loads((experiment / "search.json").read_text())["finished_at"] > 0


def test_a_trial_unknown_to_the_searcher_checkpoint_is_adopted_once():
    # Tune syncs its trial list and the searcher's state separately: a restored trial may be
    # newer than the searcher's state. What it evaluated counts, once.
    searcher = _fresh_searcher(budget=10)
    space = searcher.space
    archs = [space.sample(searcher.rng) for _ in range(2)]
    rows = [{"arch_id": arch_id(a), "score": space.score(a)} for a in archs]
    result = {"config/archs": archs, "batch": rows}
    searcher.on_trial_complete("unknown", result=result)
    searcher.on_trial_complete("unknown-again", result=result)
    assert searcher.num_proposed == 2 and searcher.num_observed == 2
    assert [a for a, _ in searcher.population] == archs


def test_journal_survives_a_torn_line_and_reports_real_damage(tmp_path):
    journal = Journal(tmp_path, fresh=True)
    journal.append({"event": "complete", "trial": "a"})
    journal.close()
    with open(tmp_path / JOURNAL_FILE, "a") as f:
        f.write('{"event":"result","trial":"b","ba')       # the kill hit mid-line
    journal = Journal(tmp_path, fresh=False)               # a resumed writer goes on after it
    journal.append({"event": "complete", "trial": "c"})
    journal.close()
    assert [e["trial"] for e in read_journal(tmp_path)] == ["a", "c"]
    with open(tmp_path / JOURNAL_FILE, "a") as f:
        f.write("garbage that no kill writes\n")
    with pytest.raises(CheckpointError, match="line 4 is not a journal event"):
        read_journal(tmp_path)


def test_an_adopted_arch_joins_the_optuna_study():
    space = raynas.create_space("synthetic", **SPACE)
    searcher = make_searcher("optuna").setup(space, parse_objectives("score"), budget=10, batch_size=1, seed=2)
    arch = space.sample(searcher.rng)
    assert searcher.adopt(arch, {"score": space.score(arch)})
    trials = searcher.inner._ot_study.trials
    assert len(trials) == 1 and trials[0].value == space.score(arch)
    assert space.from_decisions(trials[0].params) == arch
