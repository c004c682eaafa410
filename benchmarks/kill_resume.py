"""Exact resume under SIGKILL: a 300-arch NB201 tabular search per strategy, run once
uninterrupted and once with its driver SIGKILLed at seeded random points and resumed after each
kill (``raynas.resume_search``: the journal replayed into a fresh strategy). The resumed table
must equal the uninterrupted one row for row (order, arch, metrics).

Each driver is a child process forked from this one after the imports (a kill must end a whole
driver process; forking spares each one the seconds of importing raynas and Ray), joining the
Ray cluster at ``--address`` (without one, this script starts an embedded local Ray and runs
itself against it). A driver dies of SIGKILL sent by a Tune callback at its k-th trial event
(trial start, result, completion): kills land between a proposal being journaled and its
trial starting, between a result and its observation, and after an observation. The kill
points are drawn from the whole search, seeded.

    python benchmarks/kill_resume.py                   # 6 strategies x 5 kills -> results/kill_resume.json
    python benchmarks/kill_resume.py --smoke           # evolution and optuna:tpe -> kill_resume_smoke.json

The output holds, per strategy, the kill points, how each driver ended, and both tables
(order, arch_id, accuracy), so the equality can be recomputed. CPU only (tabular evaluation);
the same command runs unchanged on a GPU machine, where it measures the same thing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from ray.tune import Callback  # noqa: E402

import raynas  # noqa: E402
from raynas.evaluators.tabular import TabularEvaluator  # noqa: E402
from raynas.io import atomic_write_json  # noqa: E402
from raynas.ledger import read_journal  # noqa: E402

DEFAULT_TABLE = "../shared/data/nb201/nb201_cifar10.csv"   # relative to the project root
SIGNAL = "c10valid_valid_12ep"
STRATEGIES = "evolution,local_search,reinforce,random,optuna:tpe,optuna:nsga2"
SMOKE_STRATEGIES = "evolution,optuna:tpe"
COMPARED = ("order", "arch_id", "arch", "accuracy", "error")


class KillSwitch(Callback):
    """SIGKILL this process at its ``after``-th trial event (0: never)."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    def _tick(self) -> None:
        self.seen += 1
        if self.after and self.seen >= self.after:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._tick()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._tick()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._tick()


def _driver(args, strategy: str, name: str, resume: bool, kill_after: int) -> None:
    """A forked child: one driver's life (ends by SIGKILL, or exits 0 when the search is done)."""
    import ray

    ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
    space = raynas.create_space("nb201")
    evaluator = TabularEvaluator(args.table, space=space, metrics={"accuracy": SIGNAL})
    switch = KillSwitch(kill_after)
    if resume:
        raynas.resume_search(Path(args.storage) / name, evaluator, progress=False, callbacks=[switch])
    else:
        raynas.search(space, evaluator, strategy=strategy, num_samples=args.num_samples, objectives="accuracy",
                      batch_size=args.batch_size, max_concurrent=1, seed=args.seed, name=name,
                      storage_path=args.storage, progress=False, callbacks=[switch])


def _run(args, strategy: str, name: str, resume: bool, kill_after: int) -> int:
    """Fork a driver; returns how it ended (-9: killed, 0: finished, 3: failed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _driver(args, strategy, name, resume, kill_after)
        except BaseException:  # noqa: BLE001 - report it; never return into the parent's code
            traceback.print_exc()
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _table(directory: Path):
    df = raynas.SearchResult.load(directory).df
    return df, [[int(r["order"]), r["arch_id"], float(r.get("accuracy", float("nan")))] for _, r in df.iterrows()]


def check(args, strategy: str) -> dict:
    """The uninterrupted search, then the killed-and-resumed one; their tables compared."""
    slug = strategy.replace(":", "_")
    start = time.perf_counter()
    full = _run(args, strategy, f"{slug}-full", False, 0)
    if full != 0:
        return {"strategy": strategy, "error": f"the uninterrupted search ended with {full}", "identical": False}
    events = read_journal(Path(args.storage) / f"{slug}-full")
    trials = sum(e["event"] == "complete" for e in events)
    total = 3 * trials   # each trial starts, reports once and completes
    rng = np.random.default_rng([args.seed, sum(map(ord, strategy))])
    points = sorted(int(p) for p in rng.choice(np.arange(1, total), size=args.kills, replace=False))
    endings, done = [], 0
    for i, point in enumerate(points):
        # each driver counts its own events (a resumed one starts with the trials it re-issues)
        endings.append(_run(args, strategy, f"{slug}-killed", i > 0, max(1, point - done)))
        done = point
    endings.append(_run(args, strategy, f"{slug}-killed", True, 0))
    a, rows_a = _table(Path(args.storage) / f"{slug}-full")
    b, rows_b = _table(Path(args.storage) / f"{slug}-killed")
    if "accuracy" not in a or a["error"].notna().any():
        return {"strategy": strategy, "identical": False,
                "error": f"the uninterrupted search's evaluations failed: {a['error'].dropna().iloc[0]}"}
    identical = len(a) == len(b) and all(a[c].tolist() == b[c].tolist() for c in COMPARED if c in a and c in b)
    differing = sum(x != y for x, y in zip(a["arch_id"], b["arch_id"])) + abs(len(a) - len(b))
    best = [df.loc[df["accuracy"].idxmax(), "arch_id"] for df in (a, b)]
    return {"strategy": strategy, "identical": bool(identical), "rows": [len(a), len(b)],
            "differing_archs": int(differing), "best_arch": best, "trials_uninterrupted": trials,
            "kill_points": points, "endings": endings, "kills": sum(e == -signal.SIGKILL for e in endings),
            "seconds": round(time.perf_counter() - start, 1), "uninterrupted": rows_a, "resumed": rows_b}


def _resolve_table(path: str) -> str:
    """A relative default is read from the project root; a user's path is taken as given."""
    if not Path(path).is_absolute() and not Path(path).exists() and (ROOT / path).exists():
        return str(ROOT / path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--table", default=DEFAULT_TABLE, help="NB201 table (nb201_cifar10.csv)")
    parser.add_argument("--strategies", default=None, help=f"comma-separated (default {STRATEGIES})")
    parser.add_argument("--num-samples", type=int, default=300, help="archs per search")
    parser.add_argument("--batch-size", type=int, default=8, help="archs per Tune trial")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs per strategy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the searches and of the kill points")
    parser.add_argument("--address", help="Ray cluster the drivers join (default: an embedded local Ray)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the embedded local Ray")
    parser.add_argument("--storage", help="folder of the experiments (default: a temporary one, removed)")
    parser.add_argument("--out", help="result JSON (default benchmarks/results/kill_resume[_smoke].json)")
    parser.add_argument("--smoke", action="store_true", help=f"only {SMOKE_STRATEGIES}")
    args = parser.parse_args(argv)
    args.strategies = args.strategies or (SMOKE_STRATEGIES if args.smoke else STRATEGIES)
    args.table = str(Path(_resolve_table(args.table)).absolute())
    if not Path(args.table).is_file():
        parser.error(f"NB201 table {args.table} not found: pass --table PATH (see ../shared/data/README.md)")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"kill_resume{'_smoke' if args.smoke else ''}.json")
    if args.address is None:
        return _with_embedded_ray(args, argv)
    scratch = None
    if args.storage is None:
        scratch = args.storage = tempfile.mkdtemp(prefix="raynas-kill-resume-")
    start, load_start = time.perf_counter(), os.getloadavg()
    summaries = []
    try:
        for strategy in args.strategies.split(","):
            summary = check(args, strategy)
            summaries.append(summary)
            print(json.dumps({k: v for k, v in summary.items() if k not in ("uninterrupted", "resumed")}),
                  flush=True)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    ok = all(s["identical"] and s.get("kills") == args.kills for s in summaries)
    table = args.table if args.table != str(Path(_resolve_table(DEFAULT_TABLE)).absolute()) else DEFAULT_TABLE
    atomic_write_json(out, {
        "benchmark": "kill_resume", "all_identical": ok, "strategies": summaries,
        "config": {"table": table, "signal": SIGNAL, "num_samples": args.num_samples, "batch_size": args.batch_size,
                   "max_concurrent": 1, "kills": args.kills, "seed": args.seed, "smoke": args.smoke},
        "command": "python benchmarks/kill_resume.py" + (" --smoke" if args.smoke else ""),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_start": [round(x, 1) for x in load_start],
                    "load_average_end": [round(x, 1) for x in os.getloadavg()]}})
    print(f"{sum(s['identical'] for s in summaries)}/{len(summaries)} strategies identical after "
          f"{args.kills} kills each -> {out}")
    return 0 if ok else 1


def _with_embedded_ray(args, argv) -> int:
    """Start a local Ray here and run this script against it in a child process (drivers are
    forked from a process that has not joined Ray)."""
    import ray

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        return subprocess.call([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                                "--address", address])
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
