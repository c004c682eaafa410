"""The MLP accuracy predictor on NAS-Bench-201 at fixed splits: Kendall τ, Spearman ρ, RMSE and
fit CPU time, per split and training size, so two implementations can be compared row by row.

Used when the MLP's fitting moved from hand-written numpy backprop + Adam to torch (issue 17):
run it in both checkouts (``git worktree add OLD <commit>``) and compare the rows.

    python benchmarks/mlp_predictor_check.py                      # CPU, ~20 s of fitting
    python benchmarks/mlp_predictor_check.py --label numpy --out benchmarks/results/x.json

Writes benchmarks/results/mlp_predictor_check_cpu.json (``--label`` goes into the record).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raynas.io import atomic_write_json  # noqa: E402

DEFAULT_TABLE = "../shared/data/nb201/nb201_cifar10.csv"  # relative to the project root
SIGNAL = "c10valid_valid_12ep"


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default=DEFAULT_TABLE, help="NB201 CSV (arch_str and accuracy columns)")
    p.add_argument("--train-sizes", type=int, nargs="+", default=[100, 500])
    p.add_argument("--splits", type=int, default=3, help="random splits (seeds 0..splits-1)")
    p.add_argument("--test-size", type=int, default=3000, help="held-out archs per split")
    p.add_argument("--label", default="torch", help="name of the implementation measured")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mlp_predictor_check_cpu.json"))
    args = p.parse_args(argv)
    table = Path(args.table) if Path(args.table).is_absolute() else ROOT / args.table
    if not table.is_file():
        raise SystemExit(f"NB201 table not found: {table}; pass --table PATH (see ../shared/data/README.md)")

    import pandas as pd
    import torch

    from raynas.predictors import make_predictor
    from raynas.registry import create_space
    from spaces.nb201 import from_arch_str

    torch.set_num_threads(1)
    space = create_space("nb201")
    df = pd.read_csv(table)
    rows = []
    for split in range(args.splits):
        order = np.random.default_rng(split).permutation(len(df))
        for n in args.train_sizes:
            train, test = order[:n], order[n:n + args.test_size]
            archs = [from_arch_str(s) for s in df.arch_str.values[train]]
            held_out = [from_arch_str(s) for s in df.arch_str.values[test]]
            start = time.process_time()
            predictor = make_predictor("mlp", space, seed=split).fit(archs, df[SIGNAL].values[train])
            fit_cpu = time.process_time() - start
            metrics = predictor.score(held_out, df[SIGNAL].values[test])
            rows.append({"split": split, "train_size": n, "test_size": int(metrics["n"]),
                         "fit_cpu_seconds": fit_cpu, "kendall_tau": metrics["kendall_tau"],
                         "spearman_rho": metrics["spearman_rho"], "rmse": metrics["rmse"]})
            print(rows[-1], flush=True)
    report = {"benchmark": "mlp_predictor_check", "label": args.label, "signal": SIGNAL,
              "predictor": "mlp (hidden 400x3, 100 epochs, defaults)", "device": "cpu, 1 thread",
              "rows": rows}
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
