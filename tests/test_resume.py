"""Resuming a search whose driver was killed: the journal replays into the searcher the driver
had, nothing is evaluated twice, nothing is lost, and the experiment directory is readable at
every moment. (The row-for-row kill-and-resume check of every strategy: test_kill_resume.py.)"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import raynas
from conftest import shared_data_path
from fault_helpers import SyntheticEvaluator, evaluation_counts
from raynas.arch import arch_id
from raynas.errors import CheckpointError, ConfigError
from raynas.ledger import JOURNAL_FILE, Journal, read_journal
from raynas.objectives import parse_objectives
from raynas.resume import replay_journal
from raynas.searchers import make_searcher

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from driver_kill_helper import SPACE, STRATEGY_OPTIONS  # noqa: E402


class _MemoryJournal(list):
    """A journal kept in memory: each event as the file would give it back (through JSON)."""

    def append(self, event):
        super().append(json.loads(json.dumps(event)))


def _fresh_searcher(budget: int):
    space = raynas.create_space("synthetic", **SPACE)
    return make_searcher("evolution", STRATEGY_OPTIONS).setup(
        space, parse_objectives("score"), budget=budget, batch_size=2, max_concurrent=3, seed=5)


def test_driver_killed_mid_search_resumes_with_its_state_and_no_duplicates(ray_session, tmp_path):
    # three trials in flight: the order results arrive in depends on timing, so what is exact
    # here is the replayed searcher (the killed driver's, to the last bit) and the record
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
    assert len(before.df) >= dump["num_observed"] >= 14 and before.df["arch_id"].is_unique

    # the journal alone gives back the searcher the driver had when it died: its whole state
    restored = _fresh_searcher(budget)
    replay_journal(restored, read_journal(experiment))
    assert json.loads(json.dumps(restored.get_state())) == dump

    # the search was started with a strategy object: resuming needs one again
    with pytest.raises(ConfigError, match="strategy object"):
        raynas.resume_search(experiment, SyntheticEvaluator(SPACE, str(logs)), progress=False)
    result = raynas.resume_search(experiment, SyntheticEvaluator(SPACE, str(logs), delay_s=0.05), progress=False,
                                  strategy=make_searcher("evolution", STRATEGY_OPTIONS))
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
    events = read_journal(experiment)
    assert sum(e["event"] == "reissue" for e in events) == len(dump["live"])   # in-flight trials ran again
    final = _fresh_searcher(budget)
    replay_journal(final, events)
    assert final.num_proposed == budget and final.num_observed == budget and not final.live_trials
    assert json.loads((experiment / "search.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("strategy", ["evolution", "reinforce", "local_search", "random", "optuna:tpe"])
def test_a_resumed_searcher_continues_exactly_as_the_uninterrupted_one(strategy):
    """The journal of a prefix, replayed into a fresh searcher, gives the state of the searcher
    that wrote it: the next proposals are the same (driven as Tune drives it, one trial at a time)."""
    space = raynas.create_space("synthetic", num_layers=8, num_choices=4, seed=3)

    def fresh():
        return make_searcher(strategy).setup(space, parse_objectives("score"), budget=60, batch_size=3, seed=4)

    def drive(searcher, trials, first=0):
        proposals = []
        for t in range(first, first + trials):
            config = searcher.suggest(f"t{t}")
            if not isinstance(config, dict):
                break
            proposals.append(config["arch_ids"])
            batch = [{"arch_id": k, "score": space.score(a)} for k, a in zip(config["arch_ids"], config["archs"])]
            searcher.on_trial_complete(f"t{t}", {"batch": batch})
        return proposals

    uninterrupted = fresh()
    expected = drive(uninterrupted, 20)
    journal, killed = _MemoryJournal(), fresh()
    killed.attach_journal(journal)
    assert drive(killed, 8) == expected[:8]
    resumed = fresh()
    replay_journal(resumed, journal)
    assert drive(resumed, 12, first=8) == expected[8:]


@pytest.mark.parametrize("strategy", ["local_search", "evolution", "reinforce", "optuna:tpe"])
def test_replay_gives_the_exact_state_with_trials_in_flight(strategy):
    """Three trials in flight, results arriving out of order, and a strategy that sometimes has
    nothing to propose until a result arrives (local search): the replayed searcher's state,
    and its next proposals, are the original's."""
    space = raynas.create_space("synthetic", num_layers=6, num_choices=3, seed=2)
    rng = np.random.default_rng(0)

    def fresh():
        return make_searcher(strategy).setup(space, parse_objectives("score"), budget=80, batch_size=2,
                                             max_concurrent=3, seed=1)

    journal, original = _MemoryJournal(), fresh()
    original.attach_journal(journal)
    for step in range(60):
        if rng.random() < 0.6:
            original.suggest(f"t{step}")          # may be refused: in flight, waiting, or finished
        live = original.live_trials
        if live and rng.random() < 0.5:
            trial = live[int(rng.integers(len(live)))]
            batch = [{"arch_id": k, "score": space.score(a)} for k, a in original._live[trial]]
            original.on_trial_complete(trial, {"batch": batch})
    replayed = fresh()
    replay_journal(replayed, journal)

    def state(searcher):
        out = json.loads(json.dumps(searcher.get_state()))
        out["strategy_state"].pop("optuna", None)   # the Optuna study carries wall-clock times
        return out

    assert state(replayed) == state(original)
    assert any(e["event"] == "observe" for e in journal) and original.live_trials
    for searcher in (original, replayed):   # the same future, proposals and all
        searcher.attach_journal(None)
    nexts = [[s.suggest(f"n{i}") for s in (original, replayed)] for i in range(3)]
    assert all(a == b for a, b in nexts)


def test_a_journal_that_does_not_replay_is_refused(tmp_path):
    searcher = _fresh_searcher(budget=10)
    journal = Journal(tmp_path, fresh=True)
    searcher.attach_journal(journal)
    config = searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"batch": [{"arch_id": k, "score": 1.0} for k in config["arch_ids"]]})
    searcher.suggest("t1")
    journal.close()
    events = read_journal(tmp_path)
    assert [e["event"] for e in events] == ["suggest", "observe", "suggest"]
    with pytest.raises(CheckpointError, match="event 1 .*does not replay: the strategy now proposes"):
        other = make_searcher("evolution", STRATEGY_OPTIONS).setup(
            searcher.space, parse_objectives("score"), budget=10, batch_size=2, max_concurrent=3, seed=6)
        replay_journal(other, events)
    events[1]["trial"] = "t9"
    with pytest.raises(CheckpointError, match="event 2 .*not in flight"):
        replay_journal(_fresh_searcher(budget=10), events)


def test_a_trial_unknown_to_the_searcher_is_adopted_once():
    # only when Tune itself restores an experiment (raynas resumes from the journal)
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

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.run([sys.executable, str(HERE / "driver_kill_helper.py"), "cli", "8",
                             *command, "--name", "killed"], env=env, capture_output=True, text=True, timeout=240)
    assert driver.returncode == -signal.SIGKILL, driver.stderr[-3000:]
    experiment = tmp_path / "killed"
    assert 16 <= len(_table_order(experiment)) < 60

    assert main(["search", "--resume", str(experiment), "--address", gcs]) == 0, capsys.readouterr().err[-2000:]
    resumed = _table_order(experiment)
    assert resumed == whole, (len(resumed), capsys.readouterr().err[-3000:])

