"""Resuming a search whose driver was killed: nothing evaluated twice, nothing lost, the
searcher's state as it was, and a readable experiment directory at every moment."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import raynas
from conftest import shared_data_path
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


def test_an_adopted_arch_answers_a_later_equivalent_proposal():
    """An adopted arch is known under its dedup key, like every other: when Optuna later proposes
    an equivalent arch (a duplicate), it is told the adopted result, not a failure."""
    from test_strategies import PairedOpsSpace   # ops 0 and 1 are equivalent in every layer

    space = PairedOpsSpace(num_layers=4, num_choices=3, seed=0)
    space.name = "paired_test"
    searcher = make_searcher("optuna").setup(space, parse_objectives("score"), budget=10, batch_size=1, seed=2)
    proposed = searcher.propose()
    while not any(op in (0, 1) for op in proposed["ops"]):
        proposed = searcher.propose()
    swapped = {"ops": [{0: 1, 1: 0}.get(op, op) for op in proposed["ops"]]}
    assert arch_id(swapped) != arch_id(proposed) and space.equivalence_key(swapped) == space.equivalence_key(proposed)
    assert searcher.adopt(swapped, {"score": 0.25})
    searcher.on_rejected(proposed, "duplicate")
    last = searcher.history.calls[-1]
    assert last["op"] == "tell" and last.get("values") == [0.25], last


# ---------------------------------------------------------------------------- Optuna through the CLI
NB201_SEARCH = ["search", "--space", "nb201", "--table-metric", "accuracy=c10valid_valid_12ep",
                "--strategy", "optuna:nsga2", "--objective", "accuracy", "--objective", "params:min", "-n", "60"]


def _table_order(directory: Path) -> list:
    return list(raynas.SearchResult.load(directory).df["arch_id"])


def test_optuna_nsga2_cli_search_on_nb201_runs(ray_session, tmp_path, capsys):
    """The issue's command: NSGA-II (a sampler holding a lock in Optuna 5) through the CLI."""
    from raynas.cli.main import main

    table = shared_data_path("nb201/nb201_cifar10.csv")
    gcs = ray_session.get_runtime_context().gcs_address
    code = main(NB201_SEARCH + ["--table", str(table), "--output", str(tmp_path), "--name", "nsga2",
                                "--address", gcs])
    assert code == 0, capsys.readouterr().err[-2000:]
    result = raynas.SearchResult.load(tmp_path / "nsga2")
    assert len(result.df) == 60 and result.df["arch_id"].is_unique and result.df["error"].isna().all()
    assert (tmp_path / "nsga2" / "pareto.json").exists()
    state = json.loads(sorted((tmp_path / "nsga2").glob("searcher-state-*.pkl"))[-1].read_text())
    asks = [c for c in state["strategy_state"]["history"]["calls"] if c["op"] == "ask"]
    assert len(asks) >= 60


def test_optuna_cli_search_killed_and_resumed_continues_with_the_same_proposals(ray_session, tmp_path, capsys):
    """The issue's command (one trial in flight at a time, so the uninterrupted run is one fixed
    sequence) killed by SIGKILL after 8 trials, then ``raynas search --resume``: the table is the
    uninterrupted run's, row for row, so the resumed study proposed what the killed one would have."""
    from raynas.cli.main import main

    table = shared_data_path("nb201/nb201_cifar10.csv")
    gcs = ray_session.get_runtime_context().gcs_address
    command = NB201_SEARCH + ["--table", str(table), "--output", str(tmp_path), "--batch-size", "2",
                              "--max-concurrent", "1", "--address", gcs]
    assert main(command + ["--name", "whole"]) == 0, capsys.readouterr().err[-2000:]
    whole = _table_order(tmp_path / "whole")
    assert len(whole) == 60

    # A Tune checkpoint at every step: the last one before the kill knows every trial created.
    # (Trials created after a checkpoint are adopted from the journal as finished Optuna trials,
    # which keeps the study's results but not the sampler's random state: see raynas.resume.)
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.run([sys.executable, str(HERE / "driver_kill_helper.py"), "cli", "8",
                             *command, "--name", "killed"], env=env, capture_output=True, text=True, timeout=240)
    assert driver.returncode == -signal.SIGKILL, driver.stderr[-3000:]
    experiment = tmp_path / "killed"
    assert 16 <= len(_table_order(experiment)) < 60

    assert main(["search", "--resume", str(experiment), "--address", gcs]) == 0, capsys.readouterr().err[-2000:]
    resumed = _table_order(experiment)
    assert resumed == whole, (len(resumed), capsys.readouterr().err[-3000:])


def test_a_search_stopped_by_ctrl_c_exits_non_zero_and_resumes(ray_session, tmp_path, capsys):
    """Tune catches SIGINT and ends its run quietly: the search must still say it stopped short
    (exit 130, how to continue), and ``--resume`` completes it."""
    from raynas.cli.main import main

    table = shared_data_path("nb201/nb201_cifar10.csv")
    gcs = ray_session.get_runtime_context().gcs_address
    experiment = tmp_path / "stopped"
    command = ["search", "--space", "nb201", "--table", str(table), "--table-metric", "accuracy=c10valid_valid_12ep",
               "--strategy", "optuna:tpe", "-n", "300", "--batch-size", "1", "--max-concurrent", "1",
               "--output", str(tmp_path), "--name", "stopped", "--address", gcs]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-m", "raynas.cli.main", *command], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        journal = experiment / JOURNAL_FILE
        while driver.poll() is None:     # a few trials done: Tune runs the search and holds SIGINT
            if journal.exists() and sum(e["event"] == "complete" for e in read_journal(experiment)) >= 5:
                driver.send_signal(signal.SIGINT)
                break
            time.sleep(0.02)
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err[-3000:]
    assert "the search stopped after" in err and "raynas search --resume" in err, err[-3000:]
    assert "finished_at" not in json.loads((experiment / "search.json").read_text())
    assert len(raynas.SearchResult.load(experiment).df) < 300

    assert main(["search", "--resume", str(experiment), "--address", gcs]) == 0, capsys.readouterr().err[-2000:]
    df = raynas.SearchResult.load(experiment).df
    assert len(df) == 300 and df["arch_id"].is_unique and df["error"].isna().all()
