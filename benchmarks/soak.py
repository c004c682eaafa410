"""Soak test of the evaluation pool: >= 10,000 evaluations while actors are killed at random.

Distinct archs of a synthetic space go through :class:`raynas.SupernetPool` in concurrent
requests (as Tune trials send them), a tabular-like evaluator answers each in microseconds, and a
killer thread ends a random pool actor at random moments, alternating ``ray.kill`` (what a lost
node looks like to the dispatcher) and ``SIGKILL`` of the actor's process (the OOM killer). A
share of the archs is asked for again later: those must come from the cache, unchanged.

Reports wall time, evaluations lost (must be 0), duplicated results (must be 0), results that
differ from an uninterrupted run's (must be 0: every arch's metrics equal its evaluation in a
process nobody kills), re-evaluations
(work redone because its actor was killed mid-chunk: bounded by kills x chunk size), and memory:
resident size at start and end of the dispatcher (which holds the cache) and of a sentinel actor
that is never killed (so its growth over the whole run is measurable).

    python benchmarks/soak.py                      # 15,000 evaluations -> benchmarks/results/soak.json
    python benchmarks/soak.py --smoke              # seconds, -> benchmarks/results/soak_smoke.json

CPU only: the pool's fault tolerance does not depend on what the actors hold.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import raynas  # noqa: E402
from raynas.arch import arch_id  # noqa: E402
from raynas.evaluators.base import Evaluator  # noqa: E402
from raynas.io import atomic_write_json  # noqa: E402

SPACE = dict(num_layers=12, num_choices=4, seed=7)


class SoakEvaluator(Evaluator):
    """Tabular-like: the synthetic space's analytic score, logged per process for counting."""

    metrics = ("score",)

    def __init__(self, log_dir: str, delay_s: float) -> None:
        self.space = raynas.create_space("synthetic", **SPACE)
        self.log = open(Path(log_dir) / f"evals-{os.getpid()}.log", "a")
        self.delay_s = delay_s

    def evaluate(self, archs):
        out = []
        for arch in archs:
            time.sleep(self.delay_s)  # stands for a model's forward passes
            out.append({"score": self.space.score(arch)})
            self.log.write(arch_id(arch) + "\n")
        self.log.flush()
        return out


class SoakFactory:
    def __init__(self, log_dir: str, delay_s: float) -> None:
        self.log_dir, self.delay_s = log_dir, delay_s

    def __call__(self) -> Evaluator:
        return SoakEvaluator(self.log_dir, self.delay_s)


def evaluation_counts(log_dir: Path) -> Counter:
    counts: Counter = Counter()
    for path in log_dir.glob("evals-*.log"):
        counts.update(path.read_text().split())
    return counts


def distinct_archs(n: int, seed: int) -> List[dict]:
    space = raynas.create_space("synthetic", **SPACE)
    rng = np.random.default_rng(seed)
    found: Dict[str, dict] = {}
    while len(found) < n:
        arch = space.sample(rng)
        found.setdefault(arch_id(arch), arch)
    return list(found.values())


def run(args) -> dict:
    import ray

    log_dir = Path(args.work_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("evals-*.log"):
        old.unlink()
    raynas.ensure_ray(args.address, num_cpus=None if args.address else args.num_cpus)
    archs = distinct_archs(args.evaluations, args.seed)
    rng = random.Random(args.seed)
    repeats = rng.sample(range(len(archs)), int(args.repeat_fraction * len(archs)))
    requests: List[List[dict]] = [archs[i:i + args.request_size] for i in range(0, len(archs), args.request_size)]
    # cache hits: archs asked for again once the first half has been sent
    half = len(requests) // 2
    extra = [[archs[i] for i in repeats[j:j + args.request_size]] for j in range(0, len(repeats), args.request_size)]
    requests = requests[:half] + [r for pair in zip(requests[half:], extra) for r in pair] \
        + requests[half + len(extra):] + extra[len(requests) - half:]

    pool = raynas.SupernetPool(SoakFactory(str(log_dir), args.delay_ms / 1000.0), num_actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                               max_chunk=args.chunk, max_retries=args.max_retries).wait_ready()
    sentinel = 0  # never killed: its memory over the whole run is the leak check
    pool.evaluate(distinct_archs(200, args.seed + 1))  # warm-up (imports, first allocations)
    start_health = pool.health()
    t0 = time.perf_counter()
    load_start = os.getloadavg()

    kills: List[dict] = []
    stop = threading.Event()

    def killer() -> None:
        krng = random.Random(args.seed + 2)
        while not stop.wait(krng.expovariate(1.0 / args.kill_interval_s)):
            if len(kills) >= args.max_kills:
                return
            try:
                # a running actor other than the sentinel (a replacement still starting is spared)
                info = {w["index"]: w for w in pool.health(probe_timeout_s=5)["worker_info"] if w["index"] != sentinel}
                if not info:
                    continue
                index = krng.choice(sorted(info))
                if len(kills) % 2 == 0:
                    ray.kill(pool.worker_handles()[index])
                    how = "ray.kill"
                else:
                    os.kill(info[index]["pid"], signal.SIGKILL)
                    how = "SIGKILL"
            except Exception as exc:  # noqa: BLE001 - a race with a replacement: try later
                print(f"kill skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            kills.append({"t": round(time.perf_counter() - t0, 2), "actor": index, "how": how})

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()

    results: Dict[str, List[dict]] = {}
    pending = {}
    done_requests = 0
    next_report = time.perf_counter() + 10
    todo = list(requests)
    while todo or pending:
        while todo and len(pending) < args.concurrency:
            batch = todo.pop(0)
            pending[pool.dispatcher.evaluate.remote(batch)] = batch
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            batch = pending.pop(ref)
            for arch, metrics in zip(batch, ray.get(ref)):
                results.setdefault(arch_id(arch), []).append(metrics)
            done_requests += 1
        if time.perf_counter() > next_report:
            next_report += 10
            print(f"{done_requests}/{len(requests)} requests, {len(kills)} kills", file=sys.stderr)
        if args.budget_s and time.perf_counter() - t0 > args.budget_s:
            print("wall-time budget reached", file=sys.stderr)
            break
    wall = time.perf_counter() - t0
    stop.set()
    thread.join(timeout=10)
    end_health = pool.wait_ready().health()
    pool.shutdown()

    ids = [arch_id(a) for a in archs]
    counts = evaluation_counts(log_dir)
    counts = Counter({k: v for k, v in counts.items() if k in set(ids)})  # not the warm-up archs
    lost = [k for k in ids if not any("error" not in m for m in results.get(k, []))]
    inconsistent = [k for k, ms in results.items() if len({tuple(sorted(m.items())) for m in ms}) > 1]
    # an uninterrupted run: the same evaluator in this process, where nothing is ever killed
    reference_dir = log_dir / "reference"   # its log is not counted with the workers'
    reference_dir.mkdir(exist_ok=True)
    for old in reference_dir.glob("evals-*.log"):
        old.unlink()
    expected = {arch_id(a): m for a, m in zip(archs, SoakEvaluator(str(reference_dir), 0.0).evaluate(archs))}
    differing = [k for k, ms in results.items() if k in expected and any(m != expected[k] for m in ms)]
    expected_answers = Counter(ids) + Counter(ids[i] for i in repeats)
    duplicated = [k for k, ms in results.items() if len(ms) != expected_answers[k]]
    re_evaluations = sum(counts.values()) - len(counts)
    sentinel_start = next(w for w in start_health["worker_info"] if w["index"] == sentinel)
    sentinel_end = next(w for w in end_health["worker_info"] if w["index"] == sentinel)
    return {
        "evaluations": len(set(ids) & set(results)),
        "requested_archs": len(ids),
        "cache_requests": len(repeats),
        "wall_seconds": round(wall, 2),
        "evaluations_per_second": round(len(ids) / wall, 1),
        "lost": len(lost),
        "duplicated_results": len(duplicated) + len(inconsistent),
        "differ_from_uninterrupted": len(differing),
        "compared_with_uninterrupted": len(set(expected) & set(results)),
        "re_evaluations": re_evaluations,
        "re_evaluation_bound": len(kills) * args.chunk,
        "evaluated_by_workers_once_or_more": len(counts),
        "kills": len(kills),
        "kill_log": kills,
        "pool": {k: end_health[k] for k in ("workers", "alive", "restarts", "retries", "timeouts", "failures",
                                            "evaluated", "cache_hits", "cached")},
        "memory_mb": {
            "dispatcher_rss_start": round(start_health["dispatcher"]["rss_mb"], 1),
            "dispatcher_rss_end": round(end_health["dispatcher"]["rss_mb"], 1),
            "sentinel_actor_pid_unchanged": sentinel_start["pid"] == sentinel_end["pid"],
            "sentinel_actor_rss_start": round(sentinel_start["rss_mb"], 1),
            "sentinel_actor_rss_end": round(sentinel_end["rss_mb"], 1),
            "sentinel_actor_max_rss_end": round(sentinel_end["max_rss_mb"], 1),
        },
        "config": {k: v for k, v in vars(args).items() if k not in ("output", "work_dir")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_start": [round(x, 1) for x in load_start],
                    "load_average_end": [round(x, 1) for x in os.getloadavg()]},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--evaluations", type=int, default=15_000, help="distinct archs to evaluate")
    p.add_argument("--delay-ms", type=float, default=3.0, help="evaluation time per arch")
    p.add_argument("--actors", type=int, default=3, help="pool actors (actor 0 is never killed)")
    p.add_argument("--cpus-per-actor", type=float, default=0.5)
    p.add_argument("--chunk", type=int, default=16, help="most archs per actor call")
    p.add_argument("--request-size", type=int, default=48, help="archs per request (a Tune trial's batch)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument("--repeat-fraction", type=float, default=0.05, help="archs asked for a second time")
    p.add_argument("--kill-interval-s", type=float, default=1.0, help="mean time between kills")
    p.add_argument("--max-kills", type=int, default=1000)
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=1800, help="stop sending requests after this long")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-cpus", type=int, default=4, help="CPUs of the embedded local Ray")
    p.add_argument("--address", help="Ray cluster to join instead")
    p.add_argument("--work-dir", default=str(ROOT / "raynas_results" / "soak"), help="evaluation logs")
    p.add_argument("--output", help="result JSON (default benchmarks/results/soak.json)")
    p.add_argument("--smoke", action="store_true", help="400 evaluations, up to 2 kills: seconds, for tests")
    args = p.parse_args(argv)
    if args.smoke:
        args.evaluations, args.kill_interval_s, args.max_kills, args.budget_s = 400, 0.15, 2, 120
    if args.actors < 2:
        p.error("--actors must be >= 2 (actor 0 is the never-killed sentinel)")
    output = Path(args.output or ROOT / "benchmarks" / "results" / ("soak_smoke.json" if args.smoke else "soak.json"))
    result = run(args)
    atomic_write_json(output, result)
    summary = {k: result[k] for k in ("evaluations", "wall_seconds", "lost", "duplicated_results",
                                      "differ_from_uninterrupted", "re_evaluations", "re_evaluation_bound", "kills")}
    print(f"{summary} memory {result['memory_mb']} -> {output}")
    ok = result["lost"] == 0 and result["duplicated_results"] == 0 and result["differ_from_uninterrupted"] == 0 \
        and result["re_evaluations"] <= result["re_evaluation_bound"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
