"""Hostile input, property-based: malformed archs for every registered space, search configs,
CLI arguments, damaged experiment files and non-finite metrics each give one clear raynas error
(or a recorded failure), never a crash deep inside torch, Ray or pandas.

(Damaged checkpoints are covered by test_checkpoint.py.)"""
from __future__ import annotations

import json
import math
import re
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import raynas
from raynas.arch import arch_id, canonical_json
from raynas.cli.main import main
from raynas.constraints import Constraint, parse_constraints
from raynas.errors import ArchError, CheckpointError, ConfigError, RaynasError
from raynas.ledger import JOURNAL_FILE
from raynas.objectives import Objective, parse_objectives
from raynas.results import SearchResult
from raynas.searchers import list_strategies, make_searcher
from raynas.evaluators.batch import sanitize_metrics

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)), max_leaves=20)


# spaces that are families and need options to exist
SPACE_OPTIONS = {"vit": dict(embed_dims=[64, 96], depths=[2, 3], num_heads=[2, 4], mlp_ratios=[2.0, 4.0])}


@pytest.fixture(scope="module", params=raynas.list_spaces())
def space(request):
    return raynas.create_space(request.param, **SPACE_OPTIONS.get(request.param, {}))


def _check_outcome(space, candidate) -> None:
    try:
        arch = space.validate(candidate)
    except ArchError as exc:
        assert space.name in str(exc) or "invalid arch" in str(exc)
        return
    # accepted: canonical, stable, and costed without building a model
    assert space.validate(arch) == arch
    arch_id(arch)
    cost = space.cost(arch)
    assert all(math.isfinite(float(v)) for v in cost.values())


@FAST
@given(garbage=json_values)
def test_validate_rejects_garbage_with_arch_error_only(space, garbage):
    _check_outcome(space, garbage)


@FAST
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_validate_of_damaged_real_archs(space, seed, data):
    arch = space.sample(np.random.default_rng(seed))
    key = data.draw(st.sampled_from(sorted(arch)))
    damage = data.draw(st.sampled_from(["drop", "extra", "replace", "replace_item", "wrap"]))
    bad = json.loads(json.dumps(arch))
    if damage == "drop":
        del bad[key]
    elif damage == "extra":
        bad[data.draw(st.text(min_size=1, max_size=8))] = data.draw(json_values)
    elif damage == "replace":
        bad[key] = data.draw(json_values)
    elif damage == "replace_item" and isinstance(bad[key], list) and bad[key]:
        bad[key][data.draw(st.integers(0, len(bad[key]) - 1))] = data.draw(json_values)
    else:
        bad = [bad]
    _check_outcome(space, bad)


# metric names and size suffixes a spec may use
METRIC = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,10}")
SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}


@FAST
@given(text=st.one_of(st.text(max_size=30), st.lists(st.text(max_size=12), max_size=3), json_values))
def test_objective_and_constraint_specs_parse_or_fail_with_config_errors(text):
    """Any input gives well-formed specs or one ConfigError (any other exception fails the test)."""
    try:
        objectives = parse_objectives(text)
    except ConfigError:
        pass
    else:
        assert objectives and all(isinstance(o, Objective) and o.mode in ("max", "min") for o in objectives)
        assert all(o.metric and not re.search(r"[:\s]", o.metric) for o in objectives)
        assert len({o.metric for o in objectives}) == len(objectives)
        assert parse_objectives([str(o) for o in objectives]) == objectives    # they say what they mean
    try:
        constraints = parse_constraints(text)
    except ConfigError:
        pass
    else:
        for c in constraints:
            assert isinstance(c, Constraint) and (c.min is not None or c.max is not None)
            assert not any(b is not None and math.isnan(b) for b in (c.min, c.max))


@FAST
@given(metric=st.from_regex(METRIC, fullmatch=True), op=st.sampled_from(["<=", ">=", "<", ">"]),
       number=st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False)),
       suffix=st.sampled_from(sorted(SUFFIX)), pad=st.sampled_from(["", " ", "  "]))
def test_constraint_specs_mean_what_they_say(metric, op, number, suffix, pad):
    (c,) = parse_constraints(f"{pad}{metric}{pad}{op}{pad}{number!r}{suffix}{pad}")
    bound = float(repr(number)) * SUFFIX[suffix]
    assert c.metric == metric and c.strict == (op in ("<", ">"))
    assert (c.max, c.min) == ((bound, None) if op.startswith("<") else (None, bound))
    inside, outside = (bound - 1 - abs(bound), bound + 1 + abs(bound))[::1 if op.startswith("<") else -1]
    assert c.satisfied({metric: inside}) and not c.satisfied({metric: outside})
    assert c.satisfied({metric: bound}) == (not c.strict)


@FAST
@given(specs=st.lists(st.tuples(st.from_regex(METRIC, fullmatch=True), st.sampled_from(["max", "min"])),
                      min_size=1, max_size=3, unique_by=lambda s: s[0]),
       pad=st.sampled_from(["", " "]))
def test_objective_specs_mean_what_they_say(specs, pad):
    assert parse_objectives([f"{pad}{m}{pad}:{pad}{mode}{pad}" for m, mode in specs]) == \
        [Objective(m, mode) for m, mode in specs]
    for bad in ("lat\rency:min", "a b:max", "acc:max:min", ":max", "accuracy:up"):
        with pytest.raises(ConfigError):
            parse_objectives(bad)
    # the metrics whose direction goes without saying
    assert parse_objectives(["accuracy", "params", "macs", "latency_ms"]) == [
        Objective("accuracy", "max"), Objective("params", "min"), Objective("macs", "min"),
        Objective("latency_ms", "min")]


@FAST
@given(name=st.one_of(st.sampled_from(list_strategies()), st.text(max_size=12)),
       options=st.dictionaries(st.sampled_from(["population_size", "sample_size", "mutation_prob", "crossover_prob",
                                                "sampler", "sampler_options", "bogus"]), json_values, max_size=3))
def test_strategy_names_and_options_fail_with_config_errors(name, options):
    space = raynas.create_space("synthetic", num_layers=4, num_choices=3)
    try:
        searcher = make_searcher(name, options)
        searcher.setup(space, parse_objectives("score"), budget=4, batch_size=2)
        config = searcher.suggest("t0")
    except RaynasError:
        return
    assert len(config["archs"]) == 2


@pytest.mark.parametrize("bad", [{"num_samples": 0}, {"num_samples": -3}, {"num_samples": "many"},
                                 {"batch_size": 0}, {"max_concurrent": -1}, {"objectives": 7},
                                 {"strategy": 3}, {"constraints": "params = 4"}])
def test_search_arguments_are_checked_before_anything_starts(bad, tmp_path):
    space = raynas.create_space("synthetic", num_layers=4, num_choices=3)
    kwargs = {**dict(num_samples=4, objectives="score", storage_path=tmp_path, progress=False), **bad}
    with pytest.raises(ConfigError):
        raynas.search(space, lambda a: {"score": 1.0}, **kwargs)


@settings(max_examples=200, deadline=None)
@given(metrics=st.one_of(json_values, st.dictionaries(st.text(max_size=6), scalars, max_size=5)))
def test_non_finite_or_non_numeric_metrics_become_a_recorded_error(metrics):
    out = sanitize_metrics(metrics)
    if "error" not in out:
        assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
        assert set(out) == {str(k) for k in metrics}
    else:
        numbers = {k: v for k, v in out.items() if k != "error"}
        assert all(math.isfinite(v) for v in numbers.values())


# ---------------------------------------------------------------------------- experiment files
def _experiment(tmp_path: Path, journal: bool) -> Path:
    """A finished experiment directory written by the real collector (no Tune needed)."""
    from raynas.collector import ResultsCollector
    from raynas.results import write_search_meta

    directory = tmp_path / "exp"
    space = raynas.create_space("synthetic", num_layers=4, num_choices=3)
    collector = ResultsCollector(directory)
    rng = np.random.default_rng(0)
    for i in range(12):
        arch = space.sample(rng)
        collector.add_row(arch_id(arch), arch, {"score": space.score(arch)}, f"t{i}")
    collector.flush()
    collector.journal.close()
    if not journal:
        (directory / "results.journal.jsonl").unlink()
    else:  # what the collector journals as trials report
        lines = [json.dumps({"event": "result", "trial": r["trial_id"], "batch": [], "records": [r]})
                 for r in collector.latest.values()]
        (directory / "results.journal.jsonl").write_text("\n".join(lines) + "\n")
    write_search_meta(directory, {"name": "exp", "objectives": ["score:max"], "space": space.spec()})
    return directory


@FAST
@given(cut=st.floats(0.0, 0.99))
def test_truncated_results_table(tmp_path_factory, cut):
    for journal in (False, True):
        directory = _experiment(tmp_path_factory.mktemp("trunc"), journal)
        table = directory / "results.parquet"
        data = table.read_bytes()
        table.write_bytes(data[:int(len(data) * cut)])
        if journal:  # the journal holds every row: nothing is lost
            assert len(SearchResult.load(directory).df) == 12
        else:
            with pytest.raises(ConfigError, match="not a readable Parquet file|no results.parquet"):
                SearchResult.load(directory)


@FAST
@given(text=st.one_of(st.binary(max_size=40).map(lambda b: b.decode("latin-1")), json_values.map(json.dumps)))
def test_corrupt_search_meta(tmp_path_factory, text):
    directory = _experiment(tmp_path_factory.mktemp("meta"), journal=False)
    (directory / "search.json").write_text(text)
    try:
        SearchResult.load(directory)
    except RaynasError:
        pass


def _resumable_experiment(tmp_path: Path) -> Path:
    """A small search of the synthetic space through the CLI (its search.json records how to
    rebuild the evaluator), as ``raynas search`` leaves it."""
    import pandas as pd

    space = raynas.create_space("synthetic", num_layers=3, num_choices=3, seed=1)
    archs = list(space.enumerate())
    table = tmp_path / "t.csv"
    pd.DataFrame({"arch_str": [canonical_json(a) for a in archs], "acc": [space.score(a) for a in archs]}) \
        .to_csv(table, index=False)
    assert main(["search", "--space", "synthetic", "-o", "num_layers=3", "-o", "num_choices=3", "-o", "seed=1",
                 "--table", str(table), "--table-metric", "accuracy=acc", "-n", "9", "--batch-size", "3",
                 "--output", str(tmp_path), "--name", "exp"]) == 0
    return tmp_path / "exp"


def _garbage_line(directory: Path) -> None:
    path = directory / JOURNAL_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2] + ["no kill writes this\n"] + lines[2:]))


def _other_proposal(directory: Path) -> None:
    path = directory / JOURNAL_FILE
    events = [json.loads(line) for line in path.read_text().splitlines()]
    first = next(e for e in events if e["event"] == "suggest")
    first["arch_ids"] = first["arch_ids"][::-1]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def _forgotten_strategy(directory: Path) -> None:
    meta = json.loads((directory / "search.json").read_text())
    del meta["strategy"]
    (directory / "search.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, message", [
    (_garbage_line, "line 3 is not a journal event"),
    (_other_proposal, "event 1 .* does not replay: the strategy now proposes"),
    (_forgotten_strategy, "search.json lacks strategy"),
])
def test_a_damaged_experiment_is_refused_before_resuming(ray_session, tmp_path, damage, message, capsys):
    directory = _resumable_experiment(tmp_path)
    damage(directory)
    capsys.readouterr()
    assert main(["search", "--resume", str(directory)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("error:") == 1, err
    with pytest.raises(CheckpointError, match=message):
        raynas.resume_search(directory, lambda a: {"accuracy": 1.0})


def _evolution_after_three_trials(space):
    def fresh():
        return make_searcher("evolution", {"population_size": 4, "sample_size": 2}).setup(
            space, parse_objectives("score"), budget=20, batch_size=2, max_concurrent=2, seed=1)

    searcher = fresh()
    for i in range(3):
        config = searcher.suggest(f"t{i}")
        batch = [{"arch_id": k, "score": space.score(a)} for k, a in zip(config["arch_ids"], config["archs"])]
        searcher.on_trial_complete(f"t{i}", {"batch": batch})
    searcher.suggest("t3")        # one trial in flight
    return fresh, searcher.get_state()


@FAST
@given(key=st.sampled_from(["version", "rng", "proposed", "seen", "live", "num_observed", "exhausted", "waiting",
                            "strategy", "strategy_state"]),
       value=json_values)
def test_damaged_searcher_state_is_refused_or_restored_as_written(tmp_path_factory, key, value):
    """A state with one field replaced by any JSON value is refused with one raynas error, or it
    is a state like any other and restores to exactly what was written: never silently into
    something else (a string taken for the set of its characters, true for a count)."""
    space = raynas.create_space("synthetic", num_layers=4, num_choices=3)
    fresh, state = _evolution_after_three_trials(space)
    state[key] = value
    state = json.loads(json.dumps(state, allow_nan=True))     # what the file gives back
    path = tmp_path_factory.mktemp("state") / "searcher-state.pkl"
    path.write_text(json.dumps(state, allow_nan=True))
    restored = fresh()
    try:
        restored.restore(str(path))
    except (CheckpointError, ConfigError):
        return
    expected = dict(state)
    expected["seen"] = sorted(set(state["seen"]))              # kept as a set
    assert json.loads(json.dumps(restored.get_state(), allow_nan=True)) == expected
    try:
        restored.suggest("next")                               # and it goes on, or says why not
    except RaynasError:
        pass


@pytest.mark.parametrize("key, value", [("proposed", True), ("proposed", -1), ("num_observed", 2.5),
                                        ("seen", "abc"), ("exhausted", "no"), ("version", 2),
                                        ("live", {"t3": [["k", {"ops": [9, 9, 9, 9]}]]}), ("rng", [])])
def test_damage_a_lax_restore_would_accept_is_refused(tmp_path, key, value):
    """The damage the property above must catch, named: each restores without complaint if the
    fields are merely cast (int(True), set("abc"), bool("no"), an arch outside the space)."""
    space = raynas.create_space("synthetic", num_layers=4, num_choices=3)
    fresh, state = _evolution_after_three_trials(space)
    state[key] = value
    (tmp_path / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="damaged"):
        fresh().restore(str(tmp_path / "state.json"))


# ---------------------------------------------------------------------------- the CLI
def _damaged_inputs(root: Path):
    """Paths that look like inputs but are not: what the CLI must refuse with one message."""
    empty = root / "empty_dir"
    empty.mkdir(exist_ok=True)
    garbage = root / "garbage.json"
    garbage.write_bytes(b"\x00\xff{not json,,")
    fake_ckpt = root / "fake_ckpt"
    fake_ckpt.mkdir(exist_ok=True)
    (fake_ckpt / "meta.json").write_text('{"space": {"name": "synthetic"}, "num_classes": 3}')
    (fake_ckpt / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    return [str(empty), str(garbage), str(fake_ckpt), str(root / "missing"), "", "\x00bad"]


cli_text = st.text(alphabet=string.printable, max_size=16)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cli_refuses_hostile_arguments_with_one_message(tmp_path_factory, capsys, data):
    root = tmp_path_factory.mktemp("cli")
    bad = _damaged_inputs(root)
    command = data.draw(st.sampled_from(["search", "export", "train", "bogus"]))
    argv = [command]
    if command == "search":
        argv += data.draw(st.sampled_from([["--resume"], ["--checkpoint"]])) + [data.draw(st.sampled_from(bad))]
        for flag in data.draw(st.lists(st.sampled_from(["--num-samples", "--strategy", "--objective", "--seed",
                                                        "--constraint", "--batch-size", "--strategy-option"]),
                                       max_size=3)):
            argv += [flag, data.draw(cli_text)]
    elif command == "export":
        argv += ["--checkpoint", data.draw(st.sampled_from(bad)), "--arch",
                 data.draw(st.one_of(cli_text, json_values.map(json.dumps), st.sampled_from(bad))),
                 "--output", str(root / "out")]
    elif command == "train":
        argv += ["--config", bad[1]]
        for flag in data.draw(st.lists(st.sampled_from(["--space", "--data", "--epochs", "--lr", "--device"]),
                                       max_size=3)):
            argv += [flag, data.draw(cli_text)]
    else:
        argv += data.draw(st.lists(cli_text, max_size=3))
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("raynas") and "error:" in last, (argv, err)
