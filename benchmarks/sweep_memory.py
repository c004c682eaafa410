"""Is the search driver's memory flat in the sweep size? Random search under a constraint on a
tabular evaluator at 10,000 / 30,000 / 100,000 archs, each size in a process of its own (so
each peak is that run's; a 64-arch sweep first loads the libraries), with the default settings
(no batch size given), recording wall time
and the resident memory (RSS) of the driver and of the Tune trial processes (Ray workers), sampled
every 0.1 s by a thread (psutil).

NB201 has 15,625 cells, too few: the table here is generated (seconds, in a temporary folder, no
download) for the ``synthetic`` space with 9 layers x 4 ops (262,144 archs): one row per arch,
keyed by its canonical JSON, with the space's analytic score. The constraint ``params <= q``
(the synthetic cost) keeps the cheapest 60% of the archs (q: that quantile of the table), so
100,000 distinct feasible archs exist and the searcher rejects ~40% of its proposals.

    python benchmarks/sweep_memory.py                       # 10k, 30k, 100k archs
    python benchmarks/sweep_memory.py --sizes 10000,100000
    python benchmarks/sweep_memory.py --smoke               # 300 / 600 archs on a 4,096-arch space: seconds

Nothing here uses a GPU (the evaluator is a table); the same command measures a GPU machine's
head. Writes benchmarks/results/sweep_memory.json (or --out) atomically with one row per run
(and its RSS samples), and prints a table.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from raynas.io import atomic_write_json  # noqa: E402

FEASIBLE_SHARE = 0.6
MiB = 1024 * 1024


def make_table(folder: Path, num_layers: int, num_choices: int, seed: int) -> Dict[str, Any]:
    """Every arch of the synthetic space with its score and cost, as Parquet; returns the space
    options, the table's path and the constraint bound keeping ``FEASIBLE_SHARE`` of it."""
    import numpy as np
    import pandas as pd

    import raynas
    from raynas.arch import canonical_json

    options = dict(num_layers=num_layers, num_choices=num_choices, seed=seed)
    space = raynas.create_space("synthetic", **options)
    ops = np.array(list(itertools.product(range(num_choices), repeat=num_layers)), dtype=np.int64)
    layers = np.arange(num_layers)
    score = space._unary[layers, ops].sum(axis=1) + space._pair[layers[:-1], ops[:, :-1], ops[:, 1:]].sum(axis=1)
    params = space._cost[layers, ops].sum(axis=1)
    keys = [canonical_json({"ops": row}) for row in ops.tolist()]
    path = folder / f"synthetic_{num_layers}x{num_choices}.parquet"
    pd.DataFrame({"arch": keys, "score": score, "params": params}).to_parquet(path, index=False)
    bound = float(np.quantile(params, FEASIBLE_SHARE))
    return {"space": options, "table": str(path), "rows": int(len(keys)), "constraint": f"params<={bound:.6f}",
            "feasible": int((params <= float(f"{bound:.6f}")).sum())}


class RssSampler:
    """Peak and samples of the RSS of this process and of its descendants that are Ray
    workers (``ray::`` in the name: the Tune trial actors), every ``interval`` seconds."""

    def __init__(self, interval: float = 0.1) -> None:
        import ray  # noqa: F401 - puts its vendored psutil (ray/thirdparty_files) on sys.path
        import psutil

        self.me = psutil.Process()
        self.interval = interval
        self.samples: List[List[float]] = []   # [seconds, driver MiB, workers MiB (largest)]
        self.start = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _workers_mib(self) -> float:
        import psutil

        largest = 0.0
        for child in self.me.children(recursive=True):
            try:
                if child.name().startswith("ray::") or "ImplicitFunc" in " ".join(child.cmdline()[:1]):
                    largest = max(largest, child.memory_info().rss / MiB)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return largest

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        self.samples.append([round(time.perf_counter() - self.start, 2), round(self.me.memory_info().rss / MiB, 1),
                             round(self._workers_mib(), 1)])

    def __enter__(self) -> "RssSampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def run_one(size: int, table: Dict[str, Any], seed: int, storage: str) -> Dict[str, Any]:
    """One sweep of ``size`` archs in this process (Ray started here): its row."""
    import ray

    import raynas
    from raynas.evaluators.tabular import TabularEvaluator

    space = raynas.create_space("synthetic", **table["space"])
    evaluator = TabularEvaluator(table["table"], space=space, key="arch", metrics={"score": "score"}).check()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    options = dict(strategy="random", objectives="score", constraints=table["constraint"], seed=seed,
                   storage_path=storage, progress=False, strategy_options={"dedup": "arch"})
    try:
        # a small sweep first: the baseline then holds Tune, pandas and pyarrow loaded
        raynas.search(space, evaluator, num_samples=64, name=f"warmup_{size}", **options)
        with RssSampler() as rss:
            before = rss.samples[0][1]
            load = round(os.getloadavg()[0], 2)
            start = time.perf_counter()
            result = raynas.search(space, evaluator, num_samples=size, name=f"sweep_{size}", **options)
            wall = time.perf_counter() - start
            rows, best = len(result), float(result.best()["score"])
            bound = float(table["constraint"].split("<=")[1])
            feasible = bool((result.columns(["params"])["params"] <= bound).all())
    finally:
        ray.shutdown()
    samples = rss.samples
    return {"archs": rows, "requested": size, "wall_s": round(wall, 2), "archs_per_s": round(rows / wall, 1),
            "batch_size": result.meta.get("batch_size"), "batch_sizing": result.meta.get("batch_sizing"),
            "best_score": best, "all_satisfy_constraint": feasible, "load_1m": load,
            "driver_rss_mib_before": before, "driver_rss_mib_peak": max(s[1] for s in samples),
            "driver_rss_mib_end": samples[-1][1], "worker_rss_mib_peak": max(s[2] for s in samples),
            "rss_samples": samples[:: max(1, len(samples) // 400)]}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="comma-separated archs per sweep")
    parser.add_argument("--layers", type=int, default=9, help="synthetic space layers (4 ops each): 4^layers archs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="300 and 600 archs on a 6-layer space: seconds")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep_memory.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)   # internal: one run, JSON spec of it
    args = parser.parse_args(argv)
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(run_one(spec["size"], spec["table"], spec["seed"], spec["storage"])))
        return {}
    if args.smoke:
        args.sizes, args.layers = "300,600", 6
        if args.out == parser.get_default("out"):
            args.out = str(ROOT / "benchmarks" / "results" / "sweep_memory_smoke.json")
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes takes comma-separated integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 1 or not 2 <= args.layers <= 10:
        parser.error("--sizes must be positive and --layers between 2 and 10")
    runs: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="raynas-sweep-memory-") as scratch:
        table = make_table(Path(scratch), args.layers, 4, args.seed)
        if max(sizes) > table["feasible"]:
            parser.exit(2, f"error: {max(sizes)} archs asked, but only {table['feasible']} satisfy "
                           f"{table['constraint']}; pass a larger --layers or smaller --sizes\n")
        print(f"table: {table['rows']} archs, {table['feasible']} with {table['constraint']}", flush=True)
        for size in sizes:
            spec = json.dumps({"size": size, "table": table, "seed": args.seed, "storage": scratch})
            done = subprocess.run([sys.executable, __file__, "--one", spec], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode != 0:
                parser.exit(1, f"error: the {size}-arch sweep failed: {done.stderr.strip().splitlines()[-1:]}\n")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            runs.append(row)
            print(f"{row['archs']:7d} archs {row['wall_s']:8.1f} s {row['archs_per_s']:8.1f} archs/s  batch "
                  f"{row['batch_size']}  driver RSS {row['driver_rss_mib_before']:.0f} -> peak "
                  f"{row['driver_rss_mib_peak']:.0f} MiB  trial process peak {row['worker_rss_mib_peak']:.0f} MiB"
                  f"  load {row['load_1m']}", flush=True)
    out = {"benchmark": "sweep_memory", "smoke": bool(args.smoke), "runs": runs,
           "table": {k: v for k, v in table.items() if k != "table"},
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "load_1m_at_end": round(os.getloadavg()[0], 2)},
           "command": " ".join(["python", "benchmarks/sweep_memory.py", *(argv if argv is not None
                                                                          else sys.argv[1:])]),
           "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    if len(runs) >= 2:
        first, last = runs[0], runs[-1]
        growth = (last["driver_rss_mib_peak"] - first["driver_rss_mib_peak"]) / max(1, last["archs"] - first["archs"])
        out["driver_kib_per_extra_arch"] = round(growth * 1024, 3)
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
