"""Does the search keep a pool busy? Pool utilisation and archs/s of raynas.search on a simulated
multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head and worker nodes of logical CPUs, all
on this machine), for pools of N actors whose evaluation sleeps about d ms per arch (no model).

For each (N, d): start a SupernetPool of N actors spread over the worker nodes, warm it up (one
arch per actor: the pool measures the evaluation time and sizes its chunks), search M archs of the
``synthetic`` space through raynas.search (random strategy; the pool's default batch size and
concurrency unless overridden), and report from the dispatcher's per-chunk timeline:
- ``utilisation``: busy time / (N x wall), busy as the dispatcher counts it (a worker is busy from
  the moment it is handed a chunk until the chunk's results are back); wall is the whole
  raynas.search call (Tune start-up and the writing of results included);
- ``useful_utilisation``: the workers' own evaluation seconds / (N x wall);
- ``steady_utilisation``: busy time / (N x span), span from the first chunk's start to the last
  chunk's end (start-up and end excluded);
- ``startup_s`` (search call to first chunk), ``tail_s`` (last moment every worker had a chunk to
  the last chunk's end), ``finish_s`` (last chunk's end to the search's return);
- ``pool_start_s``: from creating the pool to every actor ready (they start in parallel);
- ``archs_per_s``: M / wall; head CPU: ``driver_cpu`` and ``dispatcher_cpu``, CPU seconds per wall
  second of the driver (searcher, Tune's loop, collector, journal) and of the dispatcher;
  ``machine_cpu``: the whole machine's (all simulated nodes share it);
- ``idle_machine_cpu``: the machine's CPU while the warmed-up pool waits with no work for
  ``--idle-seconds`` before the run (what the simulated cluster itself costs: its actor processes,
  raylets and GCS), and ``cpu_ms_per_arch``: the run's machine CPU above that, per evaluated arch
  (with sleeping evaluators: what orchestration costs per arch, driver, trials, dispatcher and
  actors together; a host needs cores for ``archs/s x cpu_ms_per_arch / 1000`` of it).
Evaluations jitter (each arch sleeps d x (1 +- ``--jitter``), fixed per arch) and one worker node
is a straggler (its actors sleep STRAGGLER_SLOWDOWN = 2 times longer; ``--no-straggler``). M is sized so a fully
busy pool needs about ``--pool-seconds`` (start-up and tail then are a small part of a long run).

    python benchmarks/orchestration.py --smoke            # seconds: 2 nodes, N=4, d=10/100 ms, both paths
    python benchmarks/orchestration.py                    # 8 nodes x 8 CPUs: N=64 x d=100,10,1000 ms
    python benchmarks/orchestration.py --paths search,pool # also the pool driven without the search
    python benchmarks/orchestration.py --actors 2,8,32 --nodes 4 --cpus-per-node 9

Writes benchmarks/results/orchestration.json (or --out) atomically, with each run's per-worker
busy/evaluation seconds and a per-second count of busy workers (the data behind the numbers).
On a real cluster (GPU command, when one is lent): run it on the head with ``--address auto`` and
``--no-straggler``: no simulated nodes, the actors go wherever Ray places them, the same report.
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from raynas.io import atomic_write_json  # noqa: E402

#: keeps the pool's actors on the simulated worker nodes (emptied for a real cluster: --address)
POOL_RESOURCES: Dict[str, float] = {"pool_node": 1.0}
#: a straggler node's actors sleep this many times longer (a slower device)
STRAGGLER_SLOWDOWN = 2.0


def sleep_factory(delay_s: float, jitter: float = 0.0, straggler_node: Optional[str] = None,
                  slowdown: float = STRAGGLER_SLOWDOWN):
    """Picklable pool factory: each worker builds a SleepEvaluator, slower on the straggler node."""
    import ray

    from raynas.evaluators.synthetic import SleepEvaluator

    slow = straggler_node is not None and ray.get_runtime_context().get_node_id() == straggler_node
    return SleepEvaluator(delay_s, jitter=jitter, slowdown=slowdown if slow else 1.0)


def start_cluster(nodes: int, cpus_per_node: int, head_cpus: int):
    """A local multi-node Ray: a head (driver, dispatcher, Tune trials) and worker nodes; returns
    the cluster and the node ids of its worker nodes."""
    import ray
    from ray.cluster_utils import Cluster

    # the nodes' worker processes inherit the environment: they import this checkout
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    # Each raylet would otherwise start one idle Python worker per logical CPU when the driver
    # connects: dozens of processes on a 2-core machine before the pool even exists.
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    os.environ.setdefault("RAY_enable_worker_prestart", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, "include_dashboard": False})
    # a custom resource per worker node keeps actors off the head, which runs driver, dispatcher and trials
    workers = [cluster.add_node(num_cpus=cpus_per_node, resources={"pool_node": cpus_per_node})
               for _ in range(nodes)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    return cluster, [w.node_id for w in workers]


def archs_for(num_actors: int, delay_s: float, pool_seconds: float, max_archs: int) -> int:
    """M: about ``pool_seconds`` of work for a fully busy pool (at least 4 archs per actor)."""
    return int(min(max_archs, max(4 * num_actors, round(num_actors * pool_seconds / delay_s))))


def timeline_stats(chunks: Sequence[Tuple[int, float, float, int]], num_actors: int, t0: float, t1: float,
                   ) -> Dict[str, Any]:
    """Start-up, tail and steady utilisation from the dispatcher's per-chunk timeline, and the
    number of busy workers in each second of the run (the data behind them)."""
    if not chunks:
        return {"startup_s": None, "tail_s": None, "finish_s": None, "steady_utilisation": None, "busy_per_s": []}
    starts = np.array([c[1] for c in chunks])
    ends = np.array([c[2] for c in chunks])
    first, last = float(starts.min()), float(ends.max())
    # busy workers over time: +1 at a chunk's start, -1 at its end
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones(len(starts)), -np.ones(len(ends))])
    order = np.lexsort((steps, times))            # at equal times, ends before starts
    times, busy = times[order], np.cumsum(steps[order])
    # the tail starts when the pool stops being full: the event after the last one that left
    # every worker with a chunk
    full = np.flatnonzero(busy >= num_actors)
    tail_from = float(times[min(full[-1] + 1, len(times) - 1)]) if len(full) else first
    span = max(last - first, 1e-9)
    busy_seconds = float((ends - starts).sum())
    seconds = np.arange(np.floor(t0), np.ceil(t1) + 1)
    per_second = [round(float(np.clip(np.minimum(ends, s + 1) - np.maximum(starts, s), 0, None).sum()), 2)
                  for s in seconds[:-1]]
    return {"startup_s": round(first - t0, 3), "tail_s": round(last - tail_from, 3), "finish_s": round(t1 - last, 3),
            "steady_utilisation": round(busy_seconds / (num_actors * span), 4), "chunks": len(chunks),
            "busy_per_s": per_second}


class CpuMeter:
    """CPU seconds of some processes (by pid) and of the whole machine, between start and stop."""

    def __init__(self, pids: Dict[str, int]) -> None:
        import psutil  # a Ray dependency

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.begin = {name: self._cpu(p) for name, p in self.procs.items()}
        self.machine = psutil.cpu_times()
        self.t = time.perf_counter()

    @staticmethod
    def _cpu(proc) -> float:
        try:
            t = proc.cpu_times()
            return t.user + t.system
        except Exception:  # noqa: BLE001 - the process ended
            return float("nan")

    def stop(self) -> Dict[str, Any]:
        import psutil

        wall = time.perf_counter() - self.t
        m = psutil.cpu_times()
        idle = (m.idle + getattr(m, "iowait", 0.0)) - (self.machine.idle + getattr(self.machine, "iowait", 0.0))
        total = sum(m) - sum(self.machine)
        out = {f"{name}_cpu": round((self._cpu(p) - self.begin[name]) / wall, 3) for name, p in self.procs.items()}
        out["machine_cpu"] = round((total - idle) / max(total, 1e-9) * (os.cpu_count() or 1), 3)
        return out


def _measure(num_actors: int, delay_ms: float, jitter: float, straggler_node: Optional[str],
             drive: Callable[[Any, Any], Tuple[int, int, int]], idle_s: float = 0.0) -> Dict[str, Any]:
    """Start and warm up a pool of sleeping actors, time ``drive(pool, space) -> (evaluated,
    batch size, trials in flight)`` and return the row every path reports."""
    import raynas
    from raynas import create_space

    space = create_space("synthetic", num_layers=12, num_choices=4, seed=0)   # 4^12 archs: no exhaustion
    factory = functools.partial(sleep_factory, delay_ms / 1000.0, jitter, straggler_node)
    started = time.perf_counter()
    pool = raynas.SupernetPool(factory, num_actors=num_actors, cpus_per_actor=1.0, spread=True,
                               resources=POOL_RESOURCES)
    try:
        pool.wait_ready(progress=False)
        pool_start_s = time.perf_counter() - started     # the actors start in parallel
        # warm-up: one arch per actor; the pool measures the evaluation time and sizes its chunks
        pool.evaluate([space.sample(np.random.default_rng(10_000_000 + i)) for i in range(num_actors)])
        pool.reset_stats()
        idle_cpu = None
        if idle_s > 0:
            idle_meter = CpuMeter({})
            time.sleep(idle_s)
            idle_cpu = idle_meter.stop()["machine_cpu"]
        meter = CpuMeter({"driver": os.getpid(), "dispatcher": pool.health()["dispatcher"]["pid"]})
        t0 = time.time()
        evaluated, batch, in_flight = drive(pool, space)
        t1 = time.time()
        cpu = meter.stop()
        health = pool.health()
        chunks = pool.timeline()
    finally:
        pool.shutdown()
    wall = t1 - t0
    per_arch = (None if idle_cpu is None or not evaluated
                else round((cpu["machine_cpu"] - idle_cpu) * wall / evaluated * 1000.0, 4))
    busy, eval_s = float(sum(health["busy_seconds"])), float(sum(health["eval_seconds"]))
    return {"actors": num_actors, "delay_ms": delay_ms, "jitter": jitter, "evaluated": int(evaluated),
            "straggler_node": straggler_node is not None, "batch_size": int(batch), "max_concurrent": int(in_flight),
            "chunk_size": int(health["chunk_size"]), "pool_start_s": round(pool_start_s, 2),
            "wall_s": round(wall, 3), "archs_per_s": round(evaluated / wall, 2),
            "ideal_archs_per_s": round(num_actors / (delay_ms / 1000.0), 2),
            "utilisation": round(busy / (num_actors * wall), 4),
            "useful_utilisation": round(eval_s / (num_actors * wall), 4),
            "busy_seconds": round(busy, 3), "eval_seconds": round(eval_s, 3),
            "worker_nodes": len({w["node_id"] for w in health["worker_info"]}),
            **cpu, "idle_machine_cpu": idle_cpu, "cpu_ms_per_arch": per_arch,
            **timeline_stats(chunks, num_actors, t0, t1),
            "per_worker": [{"busy_s": round(b, 3), "eval_s": round(e, 3)}
                           for b, e in zip(health["busy_seconds"], health["eval_seconds"])]}


def run_config(num_actors: int, delay_ms: float, archs: int, storage: str, *, jitter: float,
               straggler_node: Optional[str], batch_size: Optional[int] = None,
               max_concurrent: Optional[int] = None, seed: int = 0, idle_s: float = 0.0,
               tensorboard: bool = True) -> Dict[str, Any]:
    """M archs searched through raynas.search (random strategy) on the pool; ``tensorboard``
    False: without the per-arch Tune rows and TensorBoard log (the README's large-sweep setting)."""
    import raynas

    def drive(pool, space):
        result = raynas.search(space, pool.evaluator(), strategy="random", num_samples=archs, objectives="score",
                               batch_size=batch_size, max_concurrent=max_concurrent, seed=seed,
                               storage_path=storage, progress=False, tensorboard=tensorboard)
        return len(result.ok), result.meta["batch_size"], result.meta["max_concurrent"]

    return {"path": "raynas.search", "archs": archs, "tensorboard": tensorboard,
            **_measure(num_actors, delay_ms, jitter, straggler_node, drive, idle_s)}


def run_pool_only(num_actors: int, delay_ms: float, archs: int, *, jitter: float, straggler_node: Optional[str],
                  in_flight: int = 3, seed: int = 0, idle_s: float = 0.0) -> Dict[str, Any]:
    """The pool without the search: the driver hands it batches of the pool's preferred size,
    ``in_flight`` at a time (as Tune's trials do), with no searcher, Tune, collector or journal.
    What the pool and its dispatcher can sustain on this head; the search's row minus this one
    is what the search path costs. (The archs are sampled while the clock runs, a batch at a
    time as a slot frees: microseconds each, as the random searcher's are.)"""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    def drive(pool, space):
        batch = pool.evaluator().preferred_batch_size
        rng = np.random.default_rng(seed)
        starts = iter(range(0, archs, batch))
        done, running = 0, set()
        with ThreadPoolExecutor(in_flight) as workers:
            while True:
                # each batch is sampled when a slot frees (as a searcher proposes a trial), so the
                # first chunks start after one batch's sampling, not the whole run's
                for start in starts:
                    running.add(workers.submit(pool.evaluate, [space.sample(rng)
                                                               for _ in range(min(batch, archs - start))]))
                    if len(running) >= in_flight:
                        break
                if not running:
                    return done, batch, in_flight
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                done += sum(sum("error" not in r for r in f.result()) for f in finished)

    return {"path": "pool only", "archs": archs,
            **_measure(num_actors, delay_ms, jitter, straggler_node, drive, idle_s)}


def _print_row(row: Dict[str, Any]) -> None:
    print(f"{row['path']:13s} N={row['actors']:3d} d={row['delay_ms']:6.0f}ms M={row['archs']:7d} batch={row['batch_size']:6d} "
          f"chunk={row['chunk_size']:4d} util={row['utilisation']:.3f} useful={row['useful_utilisation']:.3f} "
          f"steady={row['steady_utilisation'] or 0:.3f} {row['archs_per_s']:8.1f} archs/s "
          f"(ideal {row['ideal_archs_per_s']:.0f}) wall {row['wall_s']:.1f}s start {row['startup_s']}s "
          f"tail {row['tail_s']}s finish {row['finish_s']}s head cpu {row['driver_cpu']}+{row['dispatcher_cpu']} "
          f"machine {row['machine_cpu']} (idle {row['idle_machine_cpu']}, {row['cpu_ms_per_arch']} ms CPU/arch)",
          flush=True)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--actors", default="64", help="pool sizes N (comma-separated)")
    parser.add_argument("--delays-ms", default="100,10,1000", help="evaluation times d in ms")
    parser.add_argument("--jitter", type=float, default=0.3, help="each arch sleeps d x (1 +- jitter)")
    parser.add_argument("--no-straggler", action="store_true", help="no slower node")
    parser.add_argument("--pool-seconds", type=float, default=60.0,
                        help="size M so a fully busy pool needs about this long")
    parser.add_argument("--max-archs", type=int, default=500_000, help="cap on M")
    parser.add_argument("--nodes", type=int, default=8, help="worker nodes of the simulated cluster")
    parser.add_argument("--cpus-per-node", type=int, default=8, help="logical CPUs per worker node")
    parser.add_argument("--head-cpus", type=int, default=4, help="logical CPUs of the head node")
    parser.add_argument("--batch-size", type=int, help="override the pool's archs per Tune trial")
    parser.add_argument("--max-concurrent", type=int, help="override the pool's trials in flight")
    parser.add_argument("--paths", default="search",
                        help="what drives the pool: 'search' (raynas.search), 'pool' (batches handed to the pool "
                             "directly: what the pool alone sustains), or both: search,pool")
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="before each run, measure the machine's CPU while the warmed-up pool idles this "
                             "long (0: skip)")
    parser.add_argument("--tensorboard", choices=("on", "off"), default="on",
                        help="the search path's per-arch Tune rows and TensorBoard log (off: the README's "
                             "setting for large sweeps)")
    parser.add_argument("--address", help="an existing Ray cluster (e.g. auto) instead of the simulated one")
    parser.add_argument("--smoke", action="store_true", help="2 nodes x 2 CPUs, N=4, d=10,100 ms, ~2 s pools")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "orchestration.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.actors, args.delays_ms, args.pool_seconds, args.nodes, args.cpus_per_node = "4", "10,100", 2.0, 2, 2
        args.head_cpus, args.paths, args.idle_seconds = 2, "search,pool", 1.0
        if args.out == parser.get_default("out"):
            args.out = str(ROOT / "benchmarks" / "results" / "orchestration_smoke.json")
    try:
        actors = [int(x) for x in args.actors.split(",")]
        delays = [float(x) for x in args.delays_ms.split(",")]
    except ValueError:
        parser.error("--actors and --delays-ms take comma-separated numbers, e.g. --actors 8,64 --delays-ms 10,100")
    if min(actors) < 1 or min(delays) <= 0:
        parser.error("--actors must be >= 1 and --delays-ms > 0")
    if args.address is None and max(actors) > args.nodes * args.cpus_per_node:
        parser.error(f"{max(actors)} actors need {max(actors)} CPUs; the worker nodes have "
                     f"{args.nodes * args.cpus_per_node}: raise --nodes or --cpus-per-node")
    if args.idle_seconds < 0:
        parser.error("--idle-seconds must be >= 0")
    if not 0.0 <= args.jitter <= 1.0:
        parser.error("--jitter must be in [0, 1]")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or set(paths) - {"search", "pool"}:
        parser.error(f"--paths takes 'search', 'pool' or both (comma-separated), got {args.paths!r}")

    import ray

    if args.address is not None:
        ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
        cluster, straggler = None, None
        POOL_RESOURCES.clear()
    else:
        cluster, node_ids = start_cluster(args.nodes, args.cpus_per_node, args.head_cpus)
        straggler = None if args.no_straggler else node_ids[-1]
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="raynas-orch-") as storage:
            for n in actors:
                for d in delays:
                    m = archs_for(n, d / 1000.0, args.pool_seconds, args.max_archs)
                    for path in paths:
                        load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
                        if path == "search":
                            row = run_config(n, d, m, storage, jitter=args.jitter, straggler_node=straggler,
                                             batch_size=args.batch_size, max_concurrent=args.max_concurrent,
                                             idle_s=args.idle_seconds, tensorboard=args.tensorboard == "on")
                        else:
                            row = run_pool_only(n, d, m, jitter=args.jitter, straggler_node=straggler,
                                                idle_s=args.idle_seconds)
                        row["load_1m_at_start"] = load
                        rows.append(row)
                        _print_row(row)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = {"benchmark": "orchestration", "smoke": bool(args.smoke), "rows": rows,
           "command": "python benchmarks/orchestration.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "cluster": {"address": args.address, "worker_nodes": args.nodes, "cpus_per_node": args.cpus_per_node, "head_cpus": args.head_cpus,
                       "straggler_nodes": 0 if straggler is None else 1, "straggler_slowdown": STRAGGLER_SLOWDOWN},
           "machine": {"platform": platform.platform(), "physical_cpus": os.cpu_count(),
                       "load_average_at_end": list(load) if load else None},
           "pool_seconds": args.pool_seconds, "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
