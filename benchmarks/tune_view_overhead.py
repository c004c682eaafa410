"""What do the per-arch Tune rows and TensorBoard log cost a cheap search?

A search of M archs of the ``synthetic`` space with a near-free function evaluator (no model),
random strategy, large batches: the regime where orchestration, not evaluation, sets the speed.
Each configuration runs ``--repeats`` times, alternating, with and without
``tensorboard`` (raynas.tune_view: one result.json row per arch and a TensorBoard log), and
reports archs/s of the whole raynas.search call (Tune start included) and of the logging
alone (the callback's own time, measured by wrapping it).

    python benchmarks/tune_view_overhead.py --smoke       # seconds
    python benchmarks/tune_view_overhead.py               # M = 2,000 archs, batch 200, 3 repeats

CPU only (no model); the same command applies on a GPU machine. Writes
benchmarks/results/tune_view_overhead.json (or --out) atomically, with every run's numbers.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from raynas.io import atomic_write_json  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, default=2000, help="archs per search (M)")
    p.add_argument("--batch-size", type=int, default=200, help="archs per Tune trial")
    p.add_argument("--repeats", type=int, default=3, help="searches per setting (alternating on/off)")
    p.add_argument("--smoke", action="store_true", help="M=200, batch 50, 1 repeat")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tune_view_overhead.json"))
    args = p.parse_args(argv)
    if args.smoke:
        args.archs, args.batch_size, args.repeats = 200, 50, 1
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray
    import torch

    import raynas
    from raynas import tune_view

    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    space = raynas.create_space("synthetic")
    seconds_in_logger = [0.0]
    original = tune_view.ArchRowLogger.log_trial_result

    def timed(self, iteration, trial, result):
        start = time.perf_counter()
        try:
            return original(self, iteration, trial, result)
        finally:
            seconds_in_logger[0] += time.perf_counter() - start

    tune_view.ArchRowLogger.log_trial_result = timed
    runs: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="raynas-tune-view-") as tmp:
        for repeat in range(args.repeats):
            for tensorboard in (True, False) if repeat % 2 == 0 else (False, True):
                seconds_in_logger[0] = 0.0
                start = time.perf_counter()
                result = raynas.search(space, lambda a: {"score": float(space.score(a))}, strategy="random",
                                       num_samples=args.archs, objectives="score", batch_size=args.batch_size,
                                       storage_path=tmp, progress=False, tensorboard=tensorboard)
                wall = time.perf_counter() - start
                runs.append({"repeat": repeat, "tensorboard": tensorboard, "archs": len(result.df),
                             "wall_s": wall, "archs_per_s": len(result.df) / wall,
                             "logger_s": seconds_in_logger[0] if tensorboard else 0.0,
                             "logger_us_per_arch": 1e6 * seconds_in_logger[0] / len(result.df) if tensorboard else 0.0})
                print(f"repeat {repeat} tensorboard={tensorboard}: {len(result.df)} archs in {wall:.1f}s "
                      f"({runs[-1]['archs_per_s']:.0f} archs/s), logger {runs[-1]['logger_us_per_arch']:.0f} us/arch",
                      flush=True)
    ray.shutdown()

    def mean(key, on):
        values = [r[key] for r in runs if r["tensorboard"] == on]
        return sum(values) / len(values)

    report = {"benchmark": "tune_view_overhead", "machine": "2-core CPU VM, shared with other engineers' jobs",
              "python": platform.python_version(), "ray": ray.__version__,
              "command": "python benchmarks/tune_view_overhead.py" + (" --smoke" if args.smoke else ""),
              "archs": args.archs, "batch_size": args.batch_size, "repeats": args.repeats,
              "archs_per_s_with": mean("archs_per_s", True), "archs_per_s_without": mean("archs_per_s", False),
              "logger_us_per_arch": mean("logger_us_per_arch", True), "runs": runs}
    atomic_write_json(args.out, report)
    print(f"with per-arch rows + TensorBoard {report['archs_per_s_with']:.0f} archs/s, without "
          f"{report['archs_per_s_without']:.0f} archs/s; logger {report['logger_us_per_arch']:.0f} us/arch "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
