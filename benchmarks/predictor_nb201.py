"""Accuracy predictors and predictor-guided search on NAS-Bench-201 / CIFAR-10 (CPU).

1. Predictor quality: fit each predictor on N random archs (N in --train-sizes) of the
   12-epoch validation signal (``c10valid_valid_12ep``, the protocol's search signal) and report
   Kendall τ, Spearman ρ and RMSE on every other arch of the table, over --splits random splits.
2. Search at equal real queries: plain regularized evolution, random search and
   predict-then-verify (a predictor refitted each round, an inner evolution on it, its top-k
   verified in the table) over --seeds seeds; for each budget in --queries, the best signal found
   and that arch's ``c10_test_200ep`` (the protocol's reported number), mean and std over seeds.

    python benchmarks/predictor_nb201.py                  # CPU, 1-2 hours on 2 busy shared cores
    python benchmarks/predictor_nb201.py --smoke          # CPU, seconds

Writes benchmarks/results/predictor_nb201.json (``--smoke``: predictor_nb201_smoke.json).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raynas.io import atomic_write_json, json_safe  # noqa: E402
from raynas.registry import create_space  # noqa: E402

DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_cifar10.csv"
RESULTS = ROOT / "benchmarks" / "results"
SIGNAL, REPORTED = "c10valid_valid_12ep", "c10_test_200ep"
#: (kind, target transform, options) of the predictors compared in part 1
PREDICTORS = {
    "mlp": ("mlp", "standard", {}),
    "mlp_quantile": ("mlp", "quantile", {}),
    "gbt": ("gbt", "standard", {}),
    "gbt_quantile": ("gbt", "quantile", {}),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default=str(DEFAULT_TABLE), help="NB201 CSV (index, arch_str, accuracies)")
    p.add_argument("--device", default="cpu", choices=["cpu"], help="this benchmark runs on the CPU")
    p.add_argument("--train-sizes", type=int, nargs="+", default=[50, 100, 200, 500])
    p.add_argument("--splits", type=int, default=3, help="random train/test splits per train size")
    p.add_argument("--predictors", nargs="+", default=list(PREDICTORS), choices=list(PREDICTORS))
    p.add_argument("--seeds", type=int, default=30, help="search repetitions per method")
    p.add_argument("--queries", type=int, nargs="+", default=[50, 100],
                   help="real-query budgets reported (the runs use the largest)")
    p.add_argument("--guided", nargs="+", default=["mlp", "gbt"], choices=list(PREDICTORS),
                   help="predictors driving predict-then-verify")
    p.add_argument("--num-initial", type=int, default=20, help="random archs measured first")
    p.add_argument("--top-k", type=int, default=10, help="archs verified per round")
    p.add_argument("--search-samples", type=int, default=500, help="surrogate evaluations per round")
    p.add_argument("--population", type=int, default=20, help="evolution population (plain and inner)")
    p.add_argument("--tournament", type=int, default=5, help="evolution tournament size")
    p.add_argument("--mlp-epochs", type=int, default=None, help="override the MLP's epochs")
    p.add_argument("--gbt-trees", type=int, default=None, help="override the boosted trees' count")
    p.add_argument("--budget-seconds", type=float, default=3600.0,
                   help="wall-time budget: search seeds stop (and are reported as done so far) past it")
    p.add_argument("--threads", type=int, default=1, help="BLAS / torch threads (1 is fastest for these sizes)")
    p.add_argument("--max-archs", type=int, default=None,
                   help="use a seeded random subset of the table for predictor quality (default: all)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, seconds on a CPU")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.smoke:
        args.train_sizes, args.splits, args.seeds, args.max_archs = [20, 40], 1, 2, 600
        args.queries, args.num_initial, args.top_k, args.search_samples = [20, 30], 10, 5, 60
        args.population, args.tournament = 8, 3
        args.mlp_epochs = args.mlp_epochs or 20
        args.gbt_trees = args.gbt_trees or 40
        args.budget_seconds = min(args.budget_seconds, 120.0)
    args.out = Path(args.out or RESULTS / ("predictor_nb201_smoke.json" if args.smoke else "predictor_nb201.json"))
    return args


def predictor_options(name: str, args: argparse.Namespace) -> Dict[str, Any]:
    kind, target, options = PREDICTORS[name]
    options = {"target": target, **options}
    if kind == "mlp" and args.mlp_epochs:
        options["epochs"] = args.mlp_epochs
    if kind == "gbt" and args.gbt_trees:
        options["n_estimators"] = args.gbt_trees
    return options


# ------------------------------------------------------------------------------- part 1
def predictor_quality(space, data, args: argparse.Namespace) -> Dict[str, Any]:
    from raynas.predictors import make_predictor

    runs: List[Dict[str, Any]] = []
    for n in args.train_sizes:
        for split in range(args.splits):
            train, test = data.split(n, np.random.default_rng([split, n]))
            for name in args.predictors:
                options = predictor_options(name, args)
                start = time.perf_counter()
                predictor = make_predictor(PREDICTORS[name][0], space, metric="accuracy", seed=split, **options)
                predictor.fit(train)
                fit_s = time.perf_counter() - start
                scores = predictor.score(test)
                runs.append({"train_size": n, "split": split, "predictor": name, **scores, "fit_seconds": fit_s})
                print(f"  N={n:4d} split {split} {name:13s} tau {scores['kendall_tau']:.3f} "
                      f"rho {scores['spearman_rho']:.3f} rmse {scores['rmse']:.2f} ({fit_s:.1f}s)", flush=True)
    summary = []
    for n in args.train_sizes:
        for name in args.predictors:
            rows = [r for r in runs if r["train_size"] == n and r["predictor"] == name]
            summary.append({"train_size": n, "predictor": name, "splits": len(rows),
                            **{f"{k}_mean": float(np.mean([r[k] for r in rows])) for k in ("kendall_tau", "spearman_rho", "rmse", "fit_seconds")},
                            **{f"{k}_std": float(np.std([r[k] for r in rows])) for k in ("kendall_tau", "spearman_rho", "rmse")}})
    return {"runs": runs, "summary": summary}


# ------------------------------------------------------------------------------- part 2
def best_at(values: np.ndarray, reported: np.ndarray, budgets: Sequence[int]) -> Dict[int, tuple]:
    """(best signal, reported value of that arch) among the first q evaluations, per budget q."""
    out = {}
    for q in budgets:
        v = values[:q]
        if len(v) < q:
            continue
        i = int(np.nanargmax(v))
        out[q] = (float(v[i]), float(reported[:q][i]))
    return out


def search_comparison(space, evaluator, args: argparse.Namespace) -> Dict[str, Any]:
    from raynas.predictors.guided import predict_then_verify
    from raynas.searchers.inline import run_inline

    budget = max(args.queries)
    evo = {"population_size": args.population, "sample_size": args.tournament}
    methods = ["random", "evolution"] + [f"guided_{g}" for g in args.guided]
    per_seed: Dict[str, List[Dict[int, tuple]]] = {m: [] for m in methods}
    seconds: Dict[str, float] = {m: 0.0 for m in methods}
    start_all = time.perf_counter()
    seeds_done = 0
    for seed in range(args.seeds):
        if time.perf_counter() - start_all > args.budget_seconds:
            print(f"  wall-time budget reached after {seeds_done} seeds", flush=True)
            break
        for method in methods:
            start = time.perf_counter()
            if method in ("random", "evolution"):
                result = run_inline(space, evaluator, method, budget, objectives="accuracy", seed=seed,
                                    strategy_options=evo if method == "evolution" else None)
                df = result.df
            else:
                name = method[len("guided_"):]
                result = predict_then_verify(
                    space, evaluator, budget, metric="accuracy", predictor=PREDICTORS[name][0],
                    predictor_options=predictor_options(name, args), num_initial=args.num_initial,
                    top_k=args.top_k, strategy="evolution", strategy_options=evo,
                    search_samples=args.search_samples, seed=seed)
                df = result.evaluated
            seconds[method] += time.perf_counter() - start
            values = df["accuracy"].to_numpy(dtype=np.float64)
            per_seed[method].append(best_at(values, df["test"].to_numpy(dtype=np.float64), args.queries))
        seeds_done += 1
        line = "  ".join(f"{m} {per_seed[m][-1][budget][0]:.2f}/{per_seed[m][-1][budget][1]:.2f}"
                         for m in methods if budget in per_seed[m][-1])
        print(f"  seed {seed:2d} @{budget}: {line}", flush=True)
    summary = []
    for q in args.queries:
        for m in methods:
            pairs = [s[q] for s in per_seed[m] if q in s]
            if not pairs:
                continue
            sig, rep = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
            summary.append({"queries": q, "method": m, "seeds": len(pairs),
                            "best_signal_mean": float(sig.mean()), "best_signal_std": float(sig.std()),
                            "reported_mean": float(rep.mean()), "reported_std": float(rep.std()),
                            "reported_sem": float(rep.std(ddof=1) / np.sqrt(len(rep))) if len(rep) > 1 else float("nan")})
    verdicts = {}
    for q in args.queries:
        plain = next((s for s in summary if s["queries"] == q and s["method"] == "evolution"), None)
        for g in args.guided:
            guided = next((s for s in summary if s["queries"] == q and s["method"] == f"guided_{g}"), None)
            if plain and guided:
                verdicts[f"guided_{g}_ge_evolution_at_{q}"] = {
                    "signal": guided["best_signal_mean"] >= plain["best_signal_mean"],
                    "reported": guided["reported_mean"] >= plain["reported_mean"],
                    "reported_difference": guided["reported_mean"] - plain["reported_mean"]}
    return {"seeds_done": seeds_done, "summary": summary, "verdicts": verdicts,
            "seconds_per_seed": {m: seconds[m] / max(1, seeds_done) for m in methods},
            "per_seed": {m: [{str(q): list(v) for q, v in s.items()} for s in per_seed[m]] for m in methods}}




def main(argv: Sequence[str] | None = None) -> Dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from threadpoolctl import threadpool_limits
    import torch

    from raynas.evaluators.tabular import TabularEvaluator
    from raynas.predictors import load_training_data

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    space = create_space("nb201")
    table = Path(args.table)
    if not table.is_file():
        raise SystemExit(f"NB201 table not found: {table} (pass --table PATH)")
    with threadpool_limits(args.threads):
        t0 = time.perf_counter()
        import pandas as pd
        frame = pd.read_csv(table)
        if args.max_archs and args.max_archs < len(frame):
            rows = np.sort(np.random.default_rng(0).choice(len(frame), args.max_archs, replace=False))
            frame = frame.iloc[rows]
        data = load_training_data(space, frame, metric="accuracy", key="arch_str", column=SIGNAL)
        load_s = time.perf_counter() - t0
        print(f"loaded {len(data)} archs in {load_s:.1f}s; part 1: predictor quality", flush=True)
        quality = predictor_quality(space, data, args)
        print("part 2: search at equal real queries", flush=True)
        evaluator = TabularEvaluator(table, space, metrics={"accuracy": SIGNAL, "test": REPORTED}).check()
        search = search_comparison(space, evaluator, args)
    result = {
        "benchmark": "predictor_nb201", "smoke": bool(args.smoke), "table": table.name,
        "signal": SIGNAL, "reported": REPORTED, "num_archs": len(data),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("out", "table")},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                    "processor": platform.processor() or platform.machine()},
        "predictor_quality": quality, "search": search,
        "seconds": {"load": load_s, "total": time.perf_counter() - started},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, json_safe(result))
    print(f"wrote {args.out}")
    for row in quality["summary"]:
        print(f"N={row['train_size']:4d} {row['predictor']:13s} tau {row['kendall_tau_mean']:.3f}±{row['kendall_tau_std']:.3f} "
              f"rho {row['spearman_rho_mean']:.3f} rmse {row['rmse_mean']:.2f}")
    for row in search["summary"]:
        print(f"q={row['queries']:4d} {row['method']:12s} signal {row['best_signal_mean']:.2f}±{row['best_signal_std']:.2f} "
              f"test {row['reported_mean']:.2f}±{row['reported_std']:.2f} ({row['seeds']} seeds)")
    return result


if __name__ == "__main__":
    main()
