"""Search strategies on NAS-Bench-201 (CIFAR-10) through the real Tune path, against random
search and the published numbers.

Every run is ``raynas.search`` on the ``nb201`` space with a TabularEvaluator reporting the
search signal (default ``c10valid_valid_12ep``) as ``accuracy``; the returned arch (best signal)
is scored by the final column (default ``c10_test_200ep``). Strategies x seeds x budgets; mean
and std over seeds are printed and recorded with the random-search references computed the same
way (``random``: distinct archs, as the NB201 protocol; ``random_iso``: also skipping isomorphic
cells). A multi-objective run (accuracy vs a latency column, e.g. ``lat_pixel3`` of
../shared/data/hw/nb201_latency.csv, used as a pre-evaluation cost metric) reports the
hypervolume of its front as a fraction of the true front's, computed from the full tables.

Budgets: by default each seed runs the largest budget once and smaller budgets are read off its
first archs (``--budget-mode prefix``): with one trial in flight and batches that divide the
budgets, a run of budget B proposes exactly the first B archs of a longer run (the strategies
do not look at the budget; ``--smoke`` checks this equality). ``--budget-mode separate`` runs
every budget on its own.

    python benchmarks/nb201_search.py --smoke            # 2 seeds, budget 24/48, ~1-2 min on CPU
    python benchmarks/nb201_search.py --jobs 3           # 100 seeds x budgets 100, 300 (about an hour)

Writes benchmarks/results/nb201_search.json (``--smoke``: nb201_search_smoke.json) atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from raynas.io import atomic_write_json  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "nb201" / "nb201_cifar10.csv"
DEFAULT_LATENCY_CSV = ROOT.parent / "shared" / "data" / "hw" / "nb201_latency.csv"
RESULTS = ROOT / "benchmarks" / "results"

#: name -> (raynas strategy, options). Settings chosen on the table with hand-driven searchers
#: (the same code without Tune) before this benchmark ran; see the module docstring of each.
STRATEGIES: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "random": ("random", {"dedup": "arch"}),
    "random_iso": ("random", {}),
    "evolution": ("evolution", {"population_size": 30, "sample_size": 30}),
    "local_search": ("local_search", {"num_init": 20, "first_improvement": True}),
    "reinforce": ("reinforce", {"learning_rate": 0.1}),
    "tpe": ("optuna", {"sampler": "tpe"}),
}
RANDOM_REFERENCES = ("random", "random_iso")
#: CIFAR-10 200-epoch test accuracy anchors
ANCHORS = {
    "optimum": 94.37,
    "random_by_12ep_valid_measured": {"100": [93.71, 0.38], "300": [93.94, 0.24]},
    "nb201_paper": {"REA": [93.92, 0.30], "REINFORCE": [93.85, 0.37], "random": [93.70, 0.36],
                    "BOHB": [93.61, 0.52]},
}
TARGETS = {"best_at_100": 94.15, "best_at_300": 94.25, "hypervolume_fraction_at_300": 0.95}


# ------------------------------------------------------------------------------ one run
class Table:
    """The benchmark's view of the CSVs: arch_str -> signal / final / latency."""

    def __init__(self, csv: str, signal: str, final: str, latency_csv: Optional[str] = None,
                 latency_column: Optional[str] = None) -> None:
        import pandas as pd

        df = pd.read_csv(csv)
        for col in (signal, final):
            if col not in df:
                raise SystemExit(f"{csv} has no column '{col}'")
        self.signal = dict(zip(df["arch_str"], df[signal].astype(float)))
        self.final = dict(zip(df["arch_str"], df[final].astype(float)))
        self.latency: Dict[str, float] = {}
        if latency_csv and latency_column:
            lat = pd.read_csv(latency_csv)
            if latency_column not in lat:
                raise SystemExit(f"{latency_csv} has no column '{latency_column}'")
            self.latency = dict(zip(lat["arch_str"], lat[latency_column].astype(float)))


def search_once(name: str, budget: int, seed: int, args, storage: str, objectives=None,
                cost_functions=()) -> Any:
    import raynas
    from raynas import TabularEvaluator, create_space

    strategy, options = (args.mo_strategy, dict(args.mo_options)) if objectives else STRATEGIES[name]
    options = dict(options)
    space = create_space("nb201")
    evaluator = TabularEvaluator(args.csv, space=space, metrics={"accuracy": args.signal})
    return raynas.search(space, evaluator, strategy=strategy, strategy_options=options, num_samples=budget,
                         objectives=objectives or "accuracy", batch_size=args.batch_size, max_concurrent=1,
                         seed=seed, storage_path=storage, name=f"{name}-{budget}-{seed}", progress=False,
                         cost_functions=cost_functions)


def drive_without_tune(name: str, budget: int, seed: int, args, table: Table) -> List[str]:
    """``--no-tune``: the searcher driven in-process through the Tune Searcher protocol (suggest,
    evaluate, on_trial_complete; one trial at a time), as Tune drives it with max_concurrent=1 --
    the same proposals, without Tune's seconds per trial. For tuning strategies, not for the record."""
    from raynas import arch_id, create_space
    from raynas.objectives import parse_objectives
    from raynas.searchers import make_searcher
    from raynas.searchers.base import ArchSearcher
    from spaces.nb201 import to_arch_str

    strategy, options = STRATEGIES[name]
    space = create_space("nb201")
    if strategy == "optuna" and "sampler" in options:
        strategy = f"optuna:{options['sampler']}"
        options = {k: v for k, v in options.items() if k != "sampler"}
    searcher = make_searcher(strategy, dict(options)).setup(space, parse_objectives("accuracy"), budget=budget,
                                                            batch_size=args.batch_size, max_concurrent=1, seed=seed)
    ordered: List[str] = []
    for t in range(100 * budget):
        config = searcher.suggest(f"t{t}")
        if config is None or config == ArchSearcher.FINISHED:
            break
        keys = [to_arch_str(a) for a in config["archs"]]
        ordered.extend(keys)
        rows = [{"arch_id": arch_id(a), "accuracy": table.signal[k]} for a, k in zip(config["archs"], keys)]
        searcher.on_trial_complete(f"t{t}", {"batch": rows})
    return ordered


def single_objective_run(name: str, seed: int, budgets: Sequence[int], args, table: Table) -> List[Dict[str, Any]]:
    """One seed of one strategy: the returned arch's final accuracy at each budget."""
    from spaces.nb201 import to_arch_str

    runs = [max(budgets)] if args.budget_mode == "prefix" else sorted(budgets)
    out = []
    with tempfile.TemporaryDirectory(prefix="raynas-nb201-") as storage:
        for run_budget in runs:
            start = time.perf_counter()
            if args.no_tune:
                ordered = drive_without_tune(name, run_budget, seed, args, table)
                wall = time.perf_counter() - start
            else:
                result = search_once(name, run_budget, seed, args, storage)
                wall = time.perf_counter() - start
                df = result.df.sort_values("order")
                keys = [to_arch_str(a) for a in result.archs()]
                keyed = dict(zip(result.df["arch_id"], keys))
                ordered = [keyed[k] for k in df["arch_id"]]
            for budget in (budgets if args.budget_mode == "prefix" else [run_budget]):
                first = ordered[:budget]
                best = max(first, key=lambda k: table.signal[k])
                out.append({"strategy": name, "seed": seed, "budget": budget, "evaluated": len(first),
                            "best_signal": table.signal[best], "final": table.final[best], "arch_str": best,
                            "run_budget": run_budget, "run_wall_s": round(wall, 3)})
            shutil.rmtree(Path(storage) / f"{name}-{run_budget}-{seed}", ignore_errors=True)
    return out


def multi_objective_run(seed: int, budget: int, args, table: Table) -> Dict[str, Any]:
    from raynas import TabularCost, create_space
    from spaces.nb201 import to_arch_str

    space = create_space("nb201")
    cost = TabularCost(args.latency_csv, metrics={"latency_ms": args.latency_column}, space=space)
    with tempfile.TemporaryDirectory(prefix="raynas-nb201-mo-") as storage:
        start = time.perf_counter()
        result = search_once("mo", budget, seed, args, storage, objectives=["accuracy:max", "latency_ms:min"],
                             cost_functions=[cost])
        wall = time.perf_counter() - start
    found = [to_arch_str(a) for a in result.archs()]
    return {"seed": seed, "budget": budget, "archs": found, "run_wall_s": round(wall, 3),
            "front_size": int(len(result.pareto()))}


# ------------------------------------------------------------------------------ summaries
def true_front_hypervolume(table: Table, points_keys: Sequence[str]) -> Dict[str, float]:
    """Hypervolume of ``points_keys`` (accuracy = signal, latency) as a fraction of the whole
    table's front, under two reference points: the table's worst point (worst accuracy and
    latency of any arch) and the nadir of the true front (the stricter one)."""
    from raynas.pareto import hypervolume, pareto_mask

    keys = [k for k in table.signal if k in table.latency]
    all_pts = np.array([[table.signal[k], -table.latency[k]] for k in keys])
    front = all_pts[pareto_mask(all_pts)]
    pts = np.array([[table.signal[k], -table.latency[k]] for k in points_keys])
    out = {}
    for rule, ref in (("table_worst", all_pts.min(axis=0)), ("front_nadir", front.min(axis=0))):
        # move the reference just outside so the nadir points still add volume
        ref = ref - 1e-9
        out[rule] = hypervolume(pts, ref) / hypervolume(front, ref)
    return out


def summarise(rows: List[Dict[str, Any]], budgets: Sequence[int]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name in dict.fromkeys(r["strategy"] for r in rows):
        out[name] = {}
        for b in budgets:
            vals = [r["final"] for r in rows if r["strategy"] == name and r["budget"] == b]
            if vals:
                out[name][str(b)] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "seeds": len(vals),
                                     "signal_mean": float(np.mean([r["best_signal"] for r in rows
                                                                  if r["strategy"] == name and r["budget"] == b]))}
    return out


def checks(summary: Mapping[str, Any], mo: Optional[Mapping[str, Any]], budgets: Sequence[int]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"beats_random": {}}
    for name, per_budget in summary.items():
        if name in RANDOM_REFERENCES:
            continue
        for b, stats in per_budget.items():
            refs = {r: summary[r][b]["mean"] for r in RANDOM_REFERENCES if r in summary and b in summary[r]}
            out["beats_random"][f"{name}@{b}"] = all(stats["mean"] > v for v in refs.values())
    for b, key in ((100, "best_at_100"), (300, "best_at_300")):
        means = {n: s[str(b)]["mean"] for n, s in summary.items() if str(b) in s and n not in RANDOM_REFERENCES}
        if means:
            best = max(means, key=means.get)
            out[key] = {"strategy": best, "mean": means[best], "target": TARGETS[key], "met": means[best] >= TARGETS[key]}
    if mo:
        out["hypervolume_fraction"] = {"mean": mo["fraction_mean"], "target": TARGETS["hypervolume_fraction_at_300"],
                                       "met": mo["fraction_mean"] >= TARGETS["hypervolume_fraction_at_300"]}
    return out


# ------------------------------------------------------------------------------ driver
def run_tasks(tasks: List[Tuple[str, int]], args, table: Table, deadline: float, log) -> Dict[str, Any]:
    budgets = [int(b) for b in args.budgets.split(",")]
    rows: List[Dict[str, Any]] = []
    mo_runs: List[Dict[str, Any]] = []
    for kind, seed in tasks:
        if time.monotonic() > deadline:
            log(f"wall budget reached: {len(rows)} rows done, stopping")
            break
        if kind == "mo":
            run = multi_objective_run(seed, args.mo_budget, args, table)
            run["hypervolume_fraction"] = true_front_hypervolume(table, run["archs"])
            mo_runs.append(run)
            _log_rows(args, [{"mo_run": {k: v for k, v in run.items() if k != "archs"}}])
            log(f"mo seed {seed}: hv fraction {run['hypervolume_fraction']} ({run['run_wall_s']:.1f}s)")
        else:
            new = single_objective_run(kind, seed, budgets, args, table)
            rows.extend(new)
            _log_rows(args, new)
            log(f"{kind} seed {seed}: " + ", ".join(f"{r['budget']}: {r['final']:.2f}" for r in new)
                + f" ({new[-1]['run_wall_s']:.1f}s)")
    return {"rows": rows, "mo_runs": mo_runs}


def _log_rows(args, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append finished runs to --rows-log (one JSON line each), so a run cut short keeps them."""
    if not args.rows_log:
        return
    with open(args.rows_log, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(DEFAULT_CSV), help="NB201 table (CSV with arch_str)")
    parser.add_argument("--signal", default="c10valid_valid_12ep", help="column the search sees")
    parser.add_argument("--final", default="c10_test_200ep", help="column reported for the returned arch")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help=f"from {', '.join(STRATEGIES)}")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--budgets", default="100,300")
    parser.add_argument("--budget-mode", choices=("prefix", "separate"), default="prefix")
    parser.add_argument("--batch-size", type=int, default=10, help="archs per Tune trial")
    parser.add_argument("--latency-csv", default=str(DEFAULT_LATENCY_CSV))
    parser.add_argument("--latency-column", default="lat_pixel3")
    parser.add_argument("--mo-strategy", default="mo_evolution")
    parser.add_argument("--mo-options", default='{"population_size": 60, "sample_size": 10}', type=json.loads)
    parser.add_argument("--mo-seeds", type=int, default=10, help="seeds of the multi-objective run (0: none)")
    parser.add_argument("--mo-budget", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=1, help="driver processes sharing one local Ray")
    parser.add_argument("--wall-probes", type=int, default=3,
                        help="separate 100-query runs (first strategy after the random ones) timed on their own")
    parser.add_argument("--budget-s", type=float, default=4 * 3600, help="wall-time budget of the whole run")
    parser.add_argument("--smoke", action="store_true", help="2 seeds, budgets 24,48, 2 strategies + random")
    parser.add_argument("--out", default=None)
    parser.add_argument("--no-tune", action="store_true",
                        help="drive the searchers in-process (Tune's Searcher protocol without Tune): same "
                             "proposals, seconds faster per run; for tuning strategies, labelled in the record")
    parser.add_argument("--rows-log", help="append each finished run to this JSONL file as it ends")
    parser.add_argument("--from-rows", help="only summarise the runs of a --rows-log file (a run cut short)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)   # internal: run a task list, print JSON
    if "--smoke" in (argv if argv is not None else sys.argv[1:]):
        # smoke defaults; options given explicitly still win
        parser.set_defaults(seeds=2, budgets="24,48", batch_size=8, strategies="random,evolution,local_search",
                            mo_seeds=1, mo_budget=48, wall_probes=1)
    args = parser.parse_args(argv)
    out_path = Path(args.out) if args.out else RESULTS / ("nb201_search_smoke.json" if args.smoke else "nb201_search.json")
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    budgets = [int(b) for b in args.budgets.split(",")]
    if args.budget_mode == "prefix" and any(b % args.batch_size for b in budgets):
        parser.error(f"prefix mode needs budgets divisible by --batch-size {args.batch_size}")
    table = Table(args.csv, args.signal, args.final, args.latency_csv if args.mo_seeds else None, args.latency_column)
    deadline = time.monotonic() + args.budget_s
    log = (lambda msg: print(msg, file=sys.stderr, flush=True))

    import raynas

    if args.worker:
        raynas.ensure_ray(os.environ.get("RAY_ADDRESS"))
        tasks = [tuple(t) for t in json.loads(Path(args.worker).read_text())]
        print(json.dumps(run_tasks(tasks, args, table, deadline, log)))
        return {}

    # seeds outermost (the multi-objective seeds interleaved) so that a run cut short by the
    # wall budget still covers every strategy with the same seeds
    tasks: List[Tuple[str, int]] = []
    for s in range(max(args.seeds, args.mo_seeds)):
        tasks += [(n, s) for n in names if s < args.seeds] + ([("mo", s)] if s < args.mo_seeds else [])
    started = time.time()
    import ray

    probe = None
    if args.from_rows:
        logged = [json.loads(line) for line in Path(args.from_rows).read_text().splitlines() if line.strip()]
        parts = [{"rows": [r for r in logged if "mo_run" not in r], "mo_runs": [r["mo_run"] for r in logged if "mo_run" in r]}]
        names = [n for n in names if any(r["strategy"] == n for r in parts[0]["rows"])]
    else:
        owns_ray = not ray.is_initialized()
        # logical CPUs for one trial per job (a trial asks for one CPU) plus the Tune machinery
        raynas.ensure_ray(None, num_cpus=max(4, args.jobs + 2))
        if args.jobs <= 1:
            parts = [run_tasks(tasks, args, table, deadline, log)]
        else:
            parts = _run_parallel(tasks, args, argv if argv is not None else sys.argv[1:], log)
        probe = _wall_probe(args, names, log)
        if owns_ray:
            ray.shutdown()
    rows = [r for p in parts for r in p["rows"]]
    mo_runs = sorted((r for p in parts for r in p["mo_runs"]), key=lambda r: r["seed"])
    summary = summarise(rows, budgets)
    mo = None
    if mo_runs:
        fractions = [r["hypervolume_fraction"]["front_nadir"] for r in mo_runs]
        lenient = [r["hypervolume_fraction"]["table_worst"] for r in mo_runs]
        mo = {"strategy": args.mo_strategy, "options": args.mo_options, "budget": args.mo_budget,
              "latency_column": args.latency_column, "seeds": len(mo_runs),
              "fraction_mean": float(np.mean(fractions)), "fraction_std": float(np.std(fractions)),
              "fraction_table_worst_reference_mean": float(np.mean(lenient)),
              "reference_rule": "nadir of the true front (worst accuracy and latency among its members)",
              "runs": [{k: v for k, v in r.items() if k != "archs"} for r in mo_runs]}
    walls = {}
    for name in names:
        w = [r["run_wall_s"] for r in rows if r["strategy"] == name and r["budget"] == r["run_budget"]]
        if w:
            walls[name] = {"run_budget": max(budgets) if args.budget_mode == "prefix" else None,
                           "mean_s": float(np.mean(w)), "runs": len(w)}
    result = {"benchmark": "nb201_search", "smoke": bool(args.smoke), "through_tune": not args.no_tune,
              "signal": args.signal, "final": args.final,
              "csv": _display_path(args.csv), "budgets": budgets, "budget_mode": args.budget_mode,
              "batch_size": args.batch_size, "max_concurrent": 1, "seeds": args.seeds,
              "strategies": {n: {"strategy": STRATEGIES[n][0], "options": STRATEGIES[n][1]} for n in names},
              "summary": summary, "multi_objective": mo, "checks": checks(summary, mo, budgets),
              "anchors": ANCHORS, "wall_per_run": walls, "wall_100_query_run": probe, "jobs": args.jobs,
              "total_wall_s": round(time.time() - started, 1),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
              "rows": rows}
    atomic_write_json(out_path, result)
    _print_summary(result)
    print(f"wrote {out_path}")
    return result


def _wall_probe(args, names: Sequence[str], log) -> Optional[Dict[str, Any]]:
    """Wall time of a 100-query run through Tune (Tuner start-up to results), nothing else running."""
    if args.wall_probes <= 0:
        return None
    name = next((n for n in names if n not in RANDOM_REFERENCES), names[0])
    walls = []
    with tempfile.TemporaryDirectory(prefix="raynas-nb201-probe-") as storage:
        for seed in range(args.wall_probes):
            start = time.perf_counter()
            search_once(name, 100, 10_000 + seed, args, storage)
            walls.append(time.perf_counter() - start)
    log(f"100-query {name} runs through Tune: {', '.join(f'{w:.1f}' for w in walls)} s")
    return {"strategy": name, "batch_size": args.batch_size, "walls_s": [round(w, 2) for w in walls],
            "mean_s": float(np.mean(walls))}


def _display_path(path: str) -> str:
    """Shared data named relative to the project, never by this machine's absolute path."""
    try:
        return os.path.relpath(path, ROOT)
    except ValueError:
        return path


def _run_parallel(tasks, args, argv: Sequence[str], log) -> List[Dict[str, Any]]:
    """Split the tasks round-robin over ``--jobs`` driver processes on this Ray instance."""
    import ray

    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "RAY_ADDRESS": address,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    procs, files = [], []
    with tempfile.TemporaryDirectory(prefix="raynas-nb201-jobs-") as folder:
        for j in range(args.jobs):
            part = tasks[j::args.jobs]
            path = Path(folder) / f"tasks{j}.json"
            path.write_text(json.dumps(part))
            out = open(Path(folder) / f"out{j}.json", "w+")
            files.append(out)
            # the last occurrence of an option wins: the workers run their tasks alone
            cmd = [sys.executable, __file__, *argv, "--jobs", "1", "--worker", str(path)]
            procs.append(subprocess.Popen(cmd, stdout=out, env=env))
        for p in procs:
            p.wait()
        parts = []
        for j, (p, f) in enumerate(zip(procs, files)):
            f.seek(0)
            text = f.read().strip().splitlines()
            if p.returncode != 0 or not text:
                raise SystemExit(f"job {j} failed (exit {p.returncode})")
            parts.append(json.loads(text[-1]))
            f.close()
    return parts


def _print_summary(result: Mapping[str, Any]) -> None:
    print(f"\nNAS-Bench-201 CIFAR-10: search on {result['signal']}, report {result['final']} "
          f"({result['seeds']} seeds, batch {result['batch_size']}, budgets {result['budgets']})")
    for name, per_budget in result["summary"].items():
        cells = "  ".join(f"{b}: {s['mean']:.2f} ± {s['std']:.2f}" for b, s in per_budget.items())
        print(f"  {name:14s} {cells}")
    mo = result.get("multi_objective")
    if mo:
        print(f"  multi-objective ({mo['strategy']}, accuracy vs {mo['latency_column']}, {mo['budget']} queries): "
              f"hypervolume {mo['fraction_mean']:.3f} ± {mo['fraction_std']:.3f} of the true front's")
    print("  checks:", json.dumps(result["checks"]))
    how = "through Tune" if result.get("through_tune", True) else "in-process (--no-tune)"
    for name, w in result["wall_per_run"].items():
        print(f"  wall per {w['run_budget'] or ''}-query run {how}, {name}: {w['mean_s']:.1f} s")
    probe = result.get("wall_100_query_run")
    if probe:
        print(f"  wall of one 100-query run through Tune ({probe['strategy']}, alone): {probe['mean_s']:.1f} s")


if __name__ == "__main__":
    main()
