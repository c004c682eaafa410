"""raynas.pareto against another checkout's (e.g. the numpy code moocore replaced, issue 17):
the same masks, fronts and hypervolumes on random fronts, and the seconds each takes.

    python benchmarks/pareto_check.py --other OLD_CHECKOUT     # CPU, about a minute

Writes benchmarks/results/pareto_check_cpu.json (per-case times and agreement).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raynas import pareto  # noqa: E402
from raynas.io import atomic_write_json  # noqa: E402

CASES = ((2, 200), (3, 200), (4, 100), (5, 60))  # (objectives, points)


def _load_other(checkout: Path):
    path = checkout / "raynas" / "pareto.py"
    if not path.is_file():
        raise SystemExit(f"{path} not found: --other must be a raynas checkout")
    spec = importlib.util.spec_from_file_location("other_pareto", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its own imports resolve to this checkout's raynas
    return module


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--other", required=True, help="another raynas checkout to compare with")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pareto_check_cpu.json"))
    args = p.parse_args(argv)
    other = _load_other(Path(args.other))
    rng = np.random.default_rng(0)
    rows = []
    for k, n in CASES:
        pts = rng.random((n, k))
        pts[:, -1] = 1 - pts[:, :-1].sum(1) / (k - 1) + 0.05 * rng.random(n)  # a front-like cloud
        ref = pareto.default_reference(pts)
        hv_new, hv_old = pareto.hypervolume(pts, ref), other.hypervolume(pts, ref)
        same_fronts = all(np.array_equal(a, b) for a, b in
                          zip(pareto.non_dominated_sort(pts), other.non_dominated_sort(pts)))
        rows.append({"objectives": k, "points": n, "hypervolume_relative_difference": abs(hv_new - hv_old) / hv_old,
                     "same_mask": bool(np.array_equal(pareto.pareto_mask(pts), other.pareto_mask(pts))),
                     "same_fronts": same_fronts,
                     "hypervolume_seconds": {"this": _seconds(pareto.hypervolume, pts, ref),
                                             "other": _seconds(other.hypervolume, pts, ref)},
                     "sort_seconds": {"this": _seconds(pareto.non_dominated_sort, pts),
                                      "other": _seconds(other.non_dominated_sort, pts)}})
        print(rows[-1], flush=True)
    report = {"benchmark": "pareto_check", "other": str(args.other), "rows": rows}
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
