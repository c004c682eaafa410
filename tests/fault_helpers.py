"""Evaluators that misbehave on purpose (slow, hanging, crashing) for the fault-tolerance tests,
importable by Ray workers (like ``tiny_supernet``). Each evaluation appends the arch's id to a
per-process log, so tests can count how often every arch was really evaluated."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from raynas.arch import Arch, arch_id
from raynas.evaluators.base import Evaluator


def _ship_by_value() -> None:
    """Ray workers do not have tests/ on their path: send this module's code with its objects."""
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


class SyntheticEvaluator(Evaluator):
    """``score`` of the synthetic space, after ``delay_s`` per arch.

    ``hang_once``: the first evaluation of the whole run (whichever process gets it) never
    returns. ``crash_on``: archs whose evaluation kills the worker process.
    ``nan_on``: archs whose score is NaN. ``start_s``: the constructor sleeps this long first (a
    worker loading torch and a supernet on a busy machine).
    """

    metrics = ("score",)

    def __init__(self, space_options: Mapping, log_dir: str, delay_s: float = 0.0, hang_once: bool = False,
                 crash_on: Sequence[str] = (), nan_on: Sequence[str] = (), start_s: float = 0.0) -> None:
        from raynas import create_space

        time.sleep(start_s)
        self.space = create_space("synthetic", **dict(space_options))
        self.log_dir = Path(log_dir)
        self.delay_s = delay_s
        self.hang_once = hang_once
        self.crash_on = set(crash_on)
        self.nan_on = set(nan_on)

    def evaluate(self, archs: Sequence[Arch]) -> List[Dict[str, float]]:
        out = []
        for arch in archs:
            key = arch_id(arch)
            if self.hang_once and _first_claim(self.log_dir / "hang.marker"):
                time.sleep(3600)
            if key in self.crash_on:
                os._exit(3)  # what a segfault or the OOM killer looks like to Ray
            time.sleep(self.delay_s)
            score = float("nan") if key in self.nan_on else self.space.score(arch)
            with open(self.log_dir / f"evals-{os.getpid()}.log", "a") as f:
                f.write(key + "\n")
            out.append({"score": score})
        return out


def _first_claim(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


class SyntheticFactory:
    """Picklable ``() -> Evaluator`` for :class:`raynas.SupernetPool`."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def __call__(self) -> Evaluator:
        return SyntheticEvaluator(**self.kwargs)


def evaluation_counts(log_dir: str) -> Dict[str, int]:
    """arch_id -> how many times a worker evaluated it (from the per-process logs)."""
    counts: Dict[str, int] = {}
    for path in Path(log_dir).glob("evals-*.log"):
        for line in path.read_text().split():
            counts[line] = counts.get(line, 0) + 1
    return counts


def wait_for(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


def distinct_archs(space, n: int, seed: int = 0) -> List[Arch]:
    import numpy as np

    rng = np.random.default_rng(seed)
    seen: Dict[str, Arch] = {}
    while len(seen) < n:
        arch = space.sample(rng)
        seen.setdefault(arch_id(arch), arch)
    return list(seen.values())


def maybe(value: Optional[float], default: float) -> float:
    return default if value is None else value


_ship_by_value()
