"""Does the search keep a pool busy? Pool utilisation and archs/s of raynas.search on a local
multi-node Ray cluster, for pools of N actors whose evaluation sleeps d ms per arch (no model).

For each (N, d): start a SupernetPool of N actors (spread over the cluster's worker nodes),
search M archs of the ``synthetic`` space through raynas.search (random strategy, the pool's
default batch size and concurrency unless overridden), and report
- ``utilisation``: busy time / (N x wall), busy time as ``pool.health()`` counts it (a worker is
  busy from the moment the dispatcher hands it a chunk until the chunk's results are back);
- ``useful_utilisation``: M x d / (N x wall), the evaluations' own time only;
- ``archs_per_s``: M / wall, with wall the whole raynas.search call (Tune start-up included).
M is sized so that a fully busy pool would need about ``--pool-seconds`` seconds.

    python benchmarks/orchestration.py --smoke                 # seconds: N=2, d=10/100, tiny M
    python benchmarks/orchestration.py                         # N 2,8,32 x d 10,100,1000 ms
    python benchmarks/orchestration.py --compare-legacy        # also the pre-tuning defaults

Writes benchmarks/results/orchestration.json (or --out) atomically.
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from raynas.io import atomic_write_json  # noqa: E402

# the defaults before this benchmark tuned them: 4 archs per trial, 2 trials per worker
LEGACY = {"batch_size": 4, "max_concurrent_per_worker": 2}


def sleep_factory(delay_s: float):
    """Picklable pool factory: each worker builds a SleepEvaluator."""
    from raynas.evaluators.synthetic import SleepEvaluator
    return SleepEvaluator(delay_s)


def start_cluster(nodes: int, cpus_per_node: int, head_cpus: int):
    """A local multi-node Ray: a head (driver, dispatcher, Tune trials) and worker nodes."""
    import ray
    from ray.cluster_utils import Cluster

    # the nodes' worker processes inherit the environment: they import this checkout
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    # Each raylet would otherwise start one idle Python worker per logical CPU when the driver
    # connects: dozens of processes on a 2-core machine before the pool even exists.
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    os.environ.setdefault("RAY_enable_worker_prestart", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, "include_dashboard": False})
    for _ in range(nodes):
        cluster.add_node(num_cpus=cpus_per_node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    return cluster


def archs_for(num_actors: int, delay_s: float, pool_seconds: float, max_archs: int, max_trials: int,
              batch_size: Optional[int]) -> int:
    """M: about ``pool_seconds`` of work for a fully busy pool, at most ``max_trials`` Tune trials."""
    from raynas.pool import DEFAULT_MAX_CHUNK

    batch = batch_size or num_actors * DEFAULT_MAX_CHUNK
    m = max(4 * num_actors, round(num_actors * pool_seconds / delay_s))
    return int(min(max_archs, max_trials * batch, m))


def run_config(num_actors: int, delay_ms: float, archs: int, storage: str, *, batch_size: Optional[int] = None,
               max_concurrent: Optional[int] = None, seed: int = 0) -> Dict[str, Any]:
    import raynas
    from raynas import create_space

    space = create_space("synthetic", num_layers=10, num_choices=4, seed=0)   # 4^10 archs: no exhaustion
    delay = delay_ms / 1000.0
    pool = raynas.SupernetPool(functools.partial(sleep_factory, delay), num_actors=num_actors,
                               cpus_per_actor=1.0, spread=True)
    try:
        pool.evaluate([space.sample(np.random.default_rng(10_000 + i)) for i in range(num_actors)])
        pool.reset_stats()    # actors started and warm; count only the search
        evaluator = pool.evaluator()
        start = time.perf_counter()
        result = raynas.search(space, evaluator, strategy="random", num_samples=archs, objectives="score",
                               batch_size=batch_size, max_concurrent=max_concurrent, seed=seed,
                               storage_path=storage, progress=False)
        wall = time.perf_counter() - start
        health = pool.health()
        nodes = {w["node_id"] for w in health["worker_info"]}
    finally:
        pool.shutdown()
    busy = float(sum(health["busy_seconds"]))
    evaluated = int(len(result.ok))
    return {"actors": num_actors, "delay_ms": delay_ms, "archs": archs, "evaluated": evaluated,
            "batch_size": int(result.meta["batch_size"]), "max_concurrent": int(result.meta["max_concurrent"]),
            "wall_s": round(wall, 3), "archs_per_s": round(evaluated / wall, 2),
            "ideal_archs_per_s": round(num_actors / delay, 2),
            "utilisation": round(busy / (num_actors * wall), 4),
            "useful_utilisation": round(evaluated * delay / (num_actors * wall), 4),
            "busy_seconds": round(busy, 3), "worker_nodes": len(nodes)}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", default="2,8,32", help="pool sizes N (comma-separated)")
    parser.add_argument("--delays-ms", default="10,100,1000", help="evaluation times d in ms")
    parser.add_argument("--pool-seconds", type=float, default=30.0,
                        help="size M so a fully busy pool needs about this long")
    parser.add_argument("--max-archs", type=int, default=6000, help="cap on M")
    parser.add_argument("--max-trials", type=int, default=40, help="cap on M / batch size (Tune trials per config)")
    parser.add_argument("--nodes", type=int, default=4, help="worker nodes of the local cluster")
    parser.add_argument("--cpus-per-node", type=int, default=9, help="logical CPUs per worker node")
    parser.add_argument("--head-cpus", type=int, default=4, help="logical CPUs of the head node")
    parser.add_argument("--batch-size", type=int, help="override the pool's archs per Tune trial")
    parser.add_argument("--max-concurrent", type=int, help="override the pool's trials in flight")
    parser.add_argument("--compare-legacy", action="store_true",
                        help="also run the pre-tuning defaults (4 archs per trial, 2 trials per worker) at d=100ms")
    parser.add_argument("--smoke", action="store_true", help="N=2, d=10,100 ms, ~1 s pools, 2 nodes")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "orchestration.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.actors, args.delays_ms, args.pool_seconds, args.nodes, args.cpus_per_node = "2", "10,100", 1.0, 2, 2
        args.head_cpus = 2
        if args.out == parser.get_default("out"):
            args.out = str(ROOT / "benchmarks" / "results" / "orchestration_smoke.json")
    actors = [int(x) for x in args.actors.split(",")]
    delays = [float(x) for x in args.delays_ms.split(",")]
    if max(actors) > args.nodes * args.cpus_per_node:
        parser.error(f"{max(actors)} actors need {max(actors)} CPUs; the worker nodes have "
                     f"{args.nodes * args.cpus_per_node}")

    import ray

    cluster = start_cluster(args.nodes, args.cpus_per_node, args.head_cpus)
    rows, legacy = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="raynas-orch-") as storage:
            for n in actors:
                for d in delays:
                    m = archs_for(n, d / 1000.0, args.pool_seconds, args.max_archs, args.max_trials, args.batch_size)
                    row = run_config(n, d, m, storage, batch_size=args.batch_size, max_concurrent=args.max_concurrent)
                    rows.append(row)
                    print(f"N={n:3d} d={d:6.0f}ms M={m:5d}  batch={row['batch_size']:4d} conc={row['max_concurrent']:3d}  "
                          f"util={row['utilisation']:.3f} useful={row['useful_utilisation']:.3f}  "
                          f"{row['archs_per_s']:8.1f} archs/s (ideal {row['ideal_archs_per_s']:.0f})  "
                          f"wall {row['wall_s']:.1f}s  nodes {row['worker_nodes']}", flush=True)
                    if args.compare_legacy and d == 100 and n >= 8:
                        old = run_config(n, d, m, storage, batch_size=LEGACY["batch_size"],
                                         max_concurrent=LEGACY["max_concurrent_per_worker"] * n)
                        legacy.append(old)
                        print(f"   legacy defaults: batch={old['batch_size']} conc={old['max_concurrent']}  "
                              f"util={old['utilisation']:.3f} useful={old['useful_utilisation']:.3f}  "
                              f"{old['archs_per_s']:.1f} archs/s", flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = {"benchmark": "orchestration", "smoke": bool(args.smoke), "rows": rows, "legacy_defaults": legacy,
           "cluster": {"worker_nodes": args.nodes, "cpus_per_node": args.cpus_per_node, "head_cpus": args.head_cpus},
           "machine": {"platform": platform.platform(), "physical_cpus": os.cpu_count(),
                       "load_average_at_end": list(load) if load else None},
           "pool_seconds": args.pool_seconds, "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
