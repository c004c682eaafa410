"""How an Optuna searcher's state can be restored, measured: the ask/tell history replayed into a
fresh seeded sampler (what raynas does) against the study rebuilt from its finished trials with
Optuna's ``create_trial``/``add_trial``, for every sampler raynas offers.

For each sampler and history length a searcher proposes and learns N archs of the synthetic space
(one at a time), its state is saved as JSON and restored both ways, and the next 10 proposals of
each are compared with the uninterrupted searcher's. Also timed: the run, the restore (a replay
re-asks the sampler N times, so it costs the sampler's own time of the run, without evaluations)
and the size of the saved state.

    python benchmarks/optuna_state_restore.py                    # CPU, a few minutes (GP dominates)
    python benchmarks/optuna_state_restore.py --lengths 60 --samplers tpe,nsga2

Writes benchmarks/results/optuna_state_restore_cpu.json (every case's proposals and times). No
GPU is involved: the same command on a GPU machine measures the same thing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from raynas import arch_id, create_space  # noqa: E402
from raynas.io import atomic_write_json  # noqa: E402
from raynas.objectives import parse_objectives  # noqa: E402
from raynas.searchers import make_searcher  # noqa: E402
from raynas.searchers.optuna_search import SAMPLERS  # noqa: E402

SPACE = dict(num_layers=8, num_choices=4, seed=3)
NEXT = 10                                   # proposals compared after the restore
OPTIONS = {"nsga2": {"population_size": 10}, "cmaes": {"n_startup_trials": 10},
           "gp": {"n_startup_trials": 10}}
MAX_GP_LENGTH = 100                         # GP refits per ask: longer histories take many minutes


def _fresh(sampler: str, space, budget: int):
    multi = sampler == "nsga2"
    objectives = parse_objectives(["score:max", "params:min"] if multi else "score")
    return make_searcher(f"optuna:{sampler}", {"sampler_options": OPTIONS.get(sampler, {})}).setup(
        space, objectives, budget=budget, batch_size=1, max_concurrent=1, seed=7)


def _step(searcher, space, trial: str) -> List[str]:
    config = searcher.suggest(trial)
    rows = [{"arch_id": arch_id(a), "score": space.score(a), "params": space.cost(a)["params"]}
            for a in config["archs"]]
    searcher.on_trial_complete(trial, {"batch": rows})
    return [r["arch_id"] for r in rows]


def _next(searcher, space) -> List[str]:
    return [k for i in range(NEXT) for k in _step(searcher, space, f"next{i}")]


def _rebuilt_from_trials(sampler: str, space, budget: int, state: Dict[str, Any]):
    """The alternative: base state restored, the Optuna study rebuilt from its finished trials
    (no ask replayed, so the sampler's random state is a fresh one)."""
    import optuna

    searcher = _fresh(sampler, space, budget)
    searcher.set_state(state)
    inner = searcher._new_inner()
    calls = state["strategy_state"]["history"]["calls"]
    asked = {c["trial"]: c["params"] for c in calls if c["op"] == "ask"}
    for call in calls:
        if call["op"] == "tell" and not call.get("failed"):
            params, values = asked[call["trial"]], call["values"]
        elif call["op"] == "add":
            params, values = call["params"], call["values"]
        else:
            continue
        value = {"values": values} if len(values) > 1 else {"value": values[0]}
        inner._ot_study.add_trial(optuna.trial.create_trial(params=params, distributions=inner._space, **value))
    searcher.inner = inner
    return searcher


def _first_difference(a: Sequence[str], b: Sequence[str]):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def run_case(sampler: str, length: int) -> Dict[str, Any]:
    space = create_space("synthetic", **SPACE)
    budget = length + NEXT
    original = _fresh(sampler, space, budget)
    start = time.perf_counter()
    for i in range(length):
        _step(original, space, f"t{i}")
    run_s = time.perf_counter() - start
    state = json.loads(json.dumps(original.get_state()))     # what the JSON file gives back
    start = time.perf_counter()
    replayed = _fresh(sampler, space, budget)
    replayed.set_state(state)
    restore_s = time.perf_counter() - start
    rebuilt = _rebuilt_from_trials(sampler, space, budget, state)
    truth, by_replay, by_trials = _next(original, space), _next(replayed, space), _next(rebuilt, space)
    return {"sampler": sampler, "history_length": length, "run_s": run_s, "restore_s": restore_s,
            "history_calls": len(state["strategy_state"]["history"]["calls"]),
            "state_bytes": len(json.dumps(state)),
            "replay_equal": by_replay == truth, "replay_first_difference": _first_difference(by_replay, truth),
            "add_trial_equal": by_trials == truth, "add_trial_first_difference": _first_difference(by_trials, truth),
            "next_uninterrupted": truth, "next_replayed": by_replay, "next_add_trial": by_trials}


def main(argv: Sequence[str] | None = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated subset of " + ", ".join(SAMPLERS))
    p.add_argument("--lengths", default="60,200", help="history lengths (archs before the save)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "optuna_state_restore_cpu.json"))
    args = p.parse_args(argv)
    samplers = [s for s in args.samplers.split(",") if s]
    unknown = sorted(set(samplers) - set(SAMPLERS))
    if unknown:
        p.error(f"unknown samplers {unknown}; choose from {', '.join(SAMPLERS)}")
    try:
        lengths = [int(n) for n in args.lengths.split(",") if n]
    except ValueError:
        p.error(f"--lengths takes comma-separated integers, got {args.lengths!r}")
    if not lengths or min(lengths) < 1:
        p.error("--lengths needs positive history lengths")
    torch.set_num_threads(1)                 # the GP sampler fits with torch
    import optuna

    cases = []
    for sampler in samplers:
        for length in lengths:
            if sampler == "gp" and length > MAX_GP_LENGTH:
                continue
            case = run_case(sampler, length)
            cases.append(case)
            print(f"{sampler:6s} n={length:4d}: replay equal {case['replay_equal']}, add_trial equal "
                  f"{case['add_trial_equal']} (first difference at {case['add_trial_first_difference']}); "
                  f"run {case['run_s']:.2f}s, restore {case['restore_s']:.2f}s, state {case['state_bytes']:,} B",
                  flush=True)
    report = {"benchmark": "optuna_state_restore", "optuna": optuna.__version__, "torch": torch.__version__,
              "python": sys.version.split()[0], "threads": torch.get_num_threads(), "space": SPACE,
              "next_compared": NEXT, "sampler_options": OPTIONS,
              "replay_exact_everywhere": all(c["replay_equal"] for c in cases),
              "add_trial_exact_anywhere": any(c["add_trial_equal"] for c in cases), "cases": cases}
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}", flush=True)
    return report


if __name__ == "__main__":
    main()
