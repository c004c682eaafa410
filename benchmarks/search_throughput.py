"""How many archs per second does the search path move? ``raynas.search`` with the tabular NB201
evaluator (a lookup costs microseconds, so what is timed is the orchestration: searcher, Tune
trials, collector, journal), next to, measured in the same run so their ratios share the
machine's load:

- the ceiling: the in-process driver (:func:`raynas.searchers.inline.run_inline`), same
  configuration, same searcher and evaluator, no Tune; its table must equal the search's;
- plain Tune: a trivial function trainable, one trial per arch, random choices of NB201's edges;
- an Optuna ask/tell loop (random sampler) looking archs up in the same table (no dedup).

Each row records the 1-minute load average when it started (the machine may be shared).

    python benchmarks/search_throughput.py                        # 10,000 archs, random + evolution
    python benchmarks/search_throughput.py --batch-sizes default,8,256  # 'default': no batch size given
    python benchmarks/search_throughput.py --tensorboard on,off --batch-sizes default --rounds 3  # TensorBoard's cost
    python benchmarks/search_throughput.py --smoke                # 300 archs: seconds

Nothing here uses a GPU (the evaluator is a table); the same command measures a GPU machine's
head. Writes benchmarks/results/search_throughput.json (or --out) atomically and prints a table.
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from raynas.errors import ConfigError  # noqa: E402
from raynas.io import atomic_write_json  # noqa: E402

DEFAULT_TABLE = ROOT / ".." / "shared" / "data" / "nb201" / "nb201_cifar10.csv"
METRIC = {"accuracy": "c10valid_valid_12ep"}


def _load() -> Optional[float]:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _row(method: str, strategy: str, batch_size: Optional[int], archs: int, wall: float, **extra: Any):
    return {"method": method, "strategy": strategy, "batch_size": batch_size, "archs": int(archs),
            "wall_s": round(wall, 4), "archs_per_s": round(archs / wall, 1) if wall > 0 else None, **extra}


def measure_raynas(space, evaluator, strategy: str, archs: int, batch_size: Optional[int], storage: str,
                   seed: int, dedup: str = "arch", tensorboard: bool = True, round_: int = 0) -> List[Dict[str, Any]]:
    """raynas.search and the in-process driver on one configuration; their tables must agree.
    ``batch_size`` None: the search's default (sized from the evaluator's cost, see
    raynas.batching), which the in-process driver then uses too."""
    import raynas
    from raynas.search_config import SearchConfig
    from raynas.searchers.inline import run_inline

    config = SearchConfig.create(space, strategy=strategy, num_samples=archs, objectives="accuracy",
                                 batch_size=batch_size, seed=seed, strategy_options={"dedup": dedup})
    load_search = _load()
    start = time.perf_counter()
    name = f"{strategy}_b{batch_size or 'default'}_tb{int(tensorboard)}_r{round_}"
    tuned = raynas.search(config, evaluator, name=name, storage_path=storage, progress=False,
                          tensorboard=tensorboard)
    wall = time.perf_counter() - start
    chosen = int(tuned.meta["batch_size"])
    load = _load()
    start = time.perf_counter()
    inline = run_inline(config.with_batching(chosen, 1), evaluator)
    inline_wall = time.perf_counter() - start
    same = inline.df["arch_id"].tolist() == tuned.df["arch_id"].tolist()
    best = float(tuned.df["accuracy"].max())
    setting = "default" if batch_size is None else "given"
    return [_row("inline", strategy, chosen, len(inline.df), inline_wall, load_1m=load, best_accuracy=best,
                 batch_setting=setting),
            _row("raynas.search", strategy, chosen, len(tuned.df), wall, load_1m=load_search,
                 trials=-(-len(tuned.df) // chosen), same_archs_as_inline=bool(same),
                 ratio_to_inline=round(inline_wall / wall, 4), best_accuracy=best, batch_setting=setting,
                 batch_sizing=tuned.meta.get("batch_sizing"), tensorboard=tensorboard, round=round_)]


def medians(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Median archs/s of the raynas.search rows per (strategy, batch size, TensorBoard), over the
    rounds, and the median of the per-round rate with TensorBoard off / on where both ran."""
    tuned = [r for r in rows if r["method"] == "raynas.search"]
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for row in tuned:
        groups.setdefault((row["strategy"], row["batch_size"], row["tensorboard"]), []).append(row)
    out = []
    for (strategy, batch, tensorboard), group in groups.items():
        entry = {"strategy": strategy, "batch_size": batch, "tensorboard": tensorboard, "runs": len(group),
                 "median_archs_per_s": statistics.median(r["archs_per_s"] for r in group),
                 "median_ratio_to_inline": statistics.median(r["ratio_to_inline"] for r in group)}
        if not tensorboard:
            on = {r["round"]: r["archs_per_s"] for r in groups.get((strategy, batch, True), [])}
            ratios = [r["archs_per_s"] / on[r["round"]] for r in group if r["round"] in on]
            if ratios:
                entry["median_off_over_on"] = round(statistics.median(ratios), 3)
        out.append(entry)
    return out


def profile_search(space, evaluator, archs: int, storage: str, seed: int, top: int = 15) -> Dict[str, Any]:
    """cProfile of the driver during a default random raynas.search: the top entries by own
    time and by cumulative time (the driver's main thread runs Tune's loop and every callback)."""
    import cProfile
    import pstats

    import raynas

    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    raynas.search(space, evaluator, strategy="random", num_samples=archs, objectives="accuracy", seed=seed,
                  strategy_options={"dedup": "arch"}, name="profiled", storage_path=storage, progress=False)
    profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler)

    def entries(key: int) -> List[Dict[str, Any]]:
        ranked = sorted(stats.stats.items(), key=lambda item: item[1][key], reverse=True)[:top]
        return [{"function": f"{Path(file).name}:{line}({name})", "calls": calls, "own_s": round(own, 3),
                 "cumulative_s": round(cumulative, 3)}
                for (file, line, name), (_, calls, own, cumulative, _) in ranked]

    return {"archs": archs, "wall_s": round(wall, 2), "load_1m": _load(), "by_own_time": entries(2),
            "by_cumulative_time": entries(3)}


def _trivial_trial(config: Dict[str, Any]) -> None:
    from ray import tune

    tune.report({"score": float(len(set(config.values())))})


def measure_plain_tune(trials: int, storage: str, seed: int) -> Dict[str, Any]:
    """Plain Tune at its best (actors reused), one trivial trial per arch: its per-trial cost."""
    from ray import tune

    from raynas.runtime import tune_environment
    from spaces.nb201 import EDGES, OP_NAMES

    space = {f"edge{k}": tune.choice(list(OP_NAMES)) for k in range(len(EDGES))}
    load = _load()
    start = time.perf_counter()
    with tune_environment():
        grid = tune.Tuner(_trivial_trial, param_space=space,
                          tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=2, reuse_actors=True),
                          run_config=tune.RunConfig(name="plain_tune", storage_path=storage, verbose=0,
                                                    log_to_file=False)).fit()
    wall = time.perf_counter() - start
    return _row("plain tune", "random", None, len(grid), wall, load_1m=load, trials=len(grid), seed=seed)


def measure_optuna(evaluator, archs: int, seed: int) -> Dict[str, Any]:
    """An Optuna ask/tell loop with the random sampler, each trial a table lookup."""
    import optuna

    from spaces.nb201 import EDGES, OP_NAMES

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    load = _load()
    start = time.perf_counter()
    for _ in range(archs):
        trial = study.ask()
        edges = [trial.suggest_categorical(f"edge{k}", list(OP_NAMES)) for k in range(len(EDGES))]
        study.tell(trial, evaluator.lookup({"edges": edges})["accuracy"])
    wall = time.perf_counter() - start
    return _row("optuna ask/tell", "random", None, archs, wall, load_1m=load, best_accuracy=study.best_value)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(DEFAULT_TABLE), help="NB201 table (nb201_cifar10.csv)")
    parser.add_argument("--archs", type=int, default=10_000, help="archs per search")
    parser.add_argument("--strategies", default="random,evolution", help="comma-separated strategies")
    parser.add_argument("--batch-sizes", default="default,8",
                        help="archs per Tune trial to measure: numbers, or 'default' (none given: sized from "
                             "the evaluator's cost, see raynas.batching; 8 was the default before)")
    parser.add_argument("--tensorboard", default="on",
                        help="comma-separated on/off: each raynas.search row runs with each setting, in turn "
                             "(its per-arch TensorBoard events and Tune rows; on is the default of raynas.search)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the raynas.search rows this many times, in turn (medians under a drifting load)")
    parser.add_argument("--plain-tune-trials", type=int, default=500, help="trials of the plain Tune run")
    parser.add_argument("--optuna-archs", type=int, default=10_000, help="trials of the Optuna loop")
    parser.add_argument("--dedup", choices=("arch", "equivalence"), default="arch",
                        help="which archs count as seen: 'arch' (each of the table's 15,625 cells; "
                             "'equivalence' leaves ~6,500 distinct NB201 cells, fewer than 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="300 archs, 20 plain Tune trials: seconds")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the driver (cProfile) in a default random search of --archs archs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search_throughput.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.archs, args.plain_tune_trials, args.optuna_archs = 300, 20, 300
        if args.out == parser.get_default("out"):
            args.out = str(ROOT / "benchmarks" / "results" / "search_throughput_smoke.json")
    if not Path(args.table).is_file():
        parser.exit(2, f"error: NB201 table {args.table} not found; pass --table PATH (nb201_cifar10.csv of "
                       "../shared/data/nb201)\n")
    strategies = [s for s in args.strategies.split(",") if s]
    try:
        batch_sizes = [None if b == "default" else int(b) for b in args.batch_sizes.split(",") if b]
    except ValueError:
        parser.error(f"--batch-sizes takes comma-separated integers or 'default', got {args.batch_sizes!r}")
    settings = {"on": True, "off": False}
    tensorboards = [settings.get(t) for t in args.tensorboard.split(",") if t]
    if not tensorboards or None in tensorboards:
        parser.error(f"--tensorboard takes comma-separated 'on' and 'off', got {args.tensorboard!r}")
    if not strategies or not batch_sizes or min(b or 1 for b in batch_sizes) < 1 or \
            min(args.archs, args.plain_tune_trials, args.optuna_archs, args.rounds) < 1:
        parser.error("--strategies, --batch-sizes, --archs and the trial counts must be non-empty and positive")

    import ray

    import raynas
    from raynas.evaluators.tabular import TabularEvaluator

    space = raynas.create_space("nb201")
    evaluator = TabularEvaluator(args.table, space=space, metrics=METRIC).check()
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    rows: List[Dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="raynas-throughput-") as storage:
            for round_, strategy, batch, tensorboard in itertools.product(
                    range(args.rounds), strategies, batch_sizes, tensorboards):
                try:
                    rows += measure_raynas(space, evaluator, strategy, args.archs, batch, storage,
                                           args.seed, args.dedup, tensorboard, round_)
                except ConfigError as exc:
                    parser.exit(2, f"error: {exc}\n")
                print(_line(rows[-1]), _line(rows[-2]), sep="\n", flush=True)
            rows.append(measure_plain_tune(args.plain_tune_trials, storage, args.seed))
            print(_line(rows[-1]), flush=True)
            rows.append(measure_optuna(evaluator, args.optuna_archs, args.seed))
            print(_line(rows[-1]), flush=True)
            profile = profile_search(space, evaluator, args.archs, storage, args.seed) if args.profile else None
    finally:
        if started_ray:
            ray.shutdown()
    out = {"benchmark": "search_throughput", "smoke": bool(args.smoke), "rows": rows, "dedup": args.dedup,
           "medians": medians(rows),
           **({"profile": profile} if profile else {}),
           "evaluator": {"table": Path(args.table).name, "metrics": METRIC},
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_1m_at_end": _load()},
           "command": " ".join(["python", "benchmarks/search_throughput.py", *(argv if argv is not None
                                                                               else sys.argv[1:])]),
           "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return out


def _line(row: Dict[str, Any]) -> str:
    batch = f"b{row['batch_size']}" if row.get("batch_size") else "-"
    batch += "*" if row.get("batch_setting") == "default" else ""
    extra = f"  x{row['ratio_to_inline']:.2f} of inline" if "ratio_to_inline" in row else ""
    same = "" if "same_archs_as_inline" not in row else f"  same archs: {row['same_archs_as_inline']}"
    same += "" if "tensorboard" not in row else f"  tensorboard {'on' if row['tensorboard'] else 'off'}"
    return (f"{row['method']:16s} {row['strategy']:10s} {batch:>5s} {row['archs']:6d} archs "
            f"{row['wall_s']:8.2f} s {row['archs_per_s']:9.1f} archs/s  load {row['load_1m']}{extra}{same}")


if __name__ == "__main__":
    main()
