"""Kill-and-resume check for the resume tests: one NB201 tabular search per strategy, run once
uninterrupted and once with its driver SIGKILLed at seeded random points and resumed after each
kill; prints one JSON line per strategy comparing the two tables row for row.

Each run is a child process forked from this one after the imports (a kill must end a whole
driver process; forking spares each child the seconds of importing raynas and Ray). Children
join the Ray cluster at ``--address``; a child dies of SIGKILL sent by a Tune callback once the
search has seen a given number of trial events (starts, results, completions), i.e. at any of
the points between a proposal being journaled and its results being observed.

    python tests/kill_resume_helper.py --address ADDR --table nb201.csv --storage DIR \\
        --strategies evolution,optuna:tpe --kills 5 --seed 0
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from ray.tune import Callback  # noqa: E402

import raynas  # noqa: E402
from raynas.evaluators.tabular import TabularEvaluator  # noqa: E402
from raynas.ledger import read_journal  # noqa: E402

SIGNAL = "c10valid_valid_12ep"
COMPARED = ["order", "arch_id", "arch", "accuracy", "error"]


class KillSwitch(Callback):
    """SIGKILL this process at the ``after``-th trial event (0: never)."""

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


def _child(args, strategy: str, name: str, resume: bool, kill_after: int) -> None:
    """Runs in a forked child: one driver's life (it ends by SIGKILL, or exits 0 when done)."""
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
    os._exit(0)


def _run(args, strategy: str, name: str, resume: bool, kill_after: int) -> int:
    """Fork a driver; return how it ended (-9: killed, 0: finished)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            _child(args, strategy, name, resume, kill_after)
        except BaseException as exc:  # noqa: BLE001 - report and end the child, never return into the parent's code
            print(f"driver {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def check(args, strategy: str) -> dict:
    slug = strategy.replace(":", "_")
    start = time.perf_counter()
    full = _run(args, strategy, f"{slug}-full", False, 0)
    assert full == 0, f"the uninterrupted {strategy} search ended with {full}"
    events = sum(e["event"] in ("result", "complete") for e in read_journal(Path(args.storage) / f"{slug}-full"))
    # trial starts are not journaled: ~3 trial events per (result, complete) pair
    total = int(events * 1.5)
    rng = np.random.default_rng(args.seed)
    points = sorted(int(p) for p in rng.choice(np.arange(1, total), size=args.kills, replace=False))
    endings, done = [], 0
    for i, point in enumerate(points):
        # each resumed driver counts its own events; the kill points are spread over the search
        after = max(1, point - done)
        endings.append(_run(args, strategy, f"{slug}-killed", i > 0, after))
        done = point
    endings.append(_run(args, strategy, f"{slug}-killed", True, 0))
    a = raynas.SearchResult.load(Path(args.storage) / f"{slug}-full").df
    b = raynas.SearchResult.load(Path(args.storage) / f"{slug}-killed").df
    same = len(a) == len(b) and all(a[c].tolist() == b[c].tolist() for c in COMPARED if c in a or c in b)
    differing = sum(x != y for x, y in zip(a["arch_id"], b["arch_id"])) + abs(len(a) - len(b))
    return {"strategy": strategy, "rows": [len(a), len(b)], "identical": bool(same), "differing_archs": differing,
            "kill_points": points, "endings": endings, "kills": sum(e == -signal.SIGKILL for e in endings),
            "best": [a.loc[a["accuracy"].idxmax(), "arch_id"], b.loc[b["accuracy"].idxmax(), "arch_id"]],
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True, help="Ray cluster the drivers join")
    parser.add_argument("--table", required=True, help="NB201 table (nb201_cifar10.csv)")
    parser.add_argument("--storage", required=True, help="folder of the experiments")
    parser.add_argument("--strategies", default="evolution,local_search,reinforce,random,optuna:tpe,optuna:nsga2")
    parser.add_argument("--num-samples", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ok = True
    for strategy in args.strategies.split(","):
        summary = check(args, strategy)
        print(json.dumps(summary), flush=True)
        ok = ok and summary["identical"] and summary["kills"] == args.kills
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
