"""The λ front of DARTS' expected-latency loss on NAS-Bench-201, CIFAR-10 (issue 9, item 5 iii).

1. A per-operator latency table is built by timing every candidate op of the NB201 supernet at
   NB201's evaluation size (16 channels, 5 cells per stage, batch 1) on this machine's CPU with one
   thread (``--table-device``), i.e. for the network whose latency ``nb201_latency.csv`` reports.
   Its sanity check: the rank correlation of its arch latencies with a measured column of that
   file over all 15,625 cells.
2. λ is put on the scale of the CE loss: ``λ_unit`` makes the α gradient of λ·E[latency] as large
   (L2 norm, at uniform α) as the mean α gradient of the validation CE at initialisation, and the
   grid is ``--lambda-multipliers`` × λ_unit (0 included: plain DARTS).
3. One first-order DARTS search per λ, all concurrently as Tune trials (``darts_search`` with
   ``grid={"latency_lambda": [...]}``), on a reduced proxy supernet (``--channels``,
   ``--cells-per-stage``) over halves of ``--half-size`` CIFAR-10 images; the α learning rate is
   scaled as in benchmarks/darts_nb201.py.
4. For each λ: the returned cell, its real latency (``--latency-column`` of nb201_latency.csv), its
   ``c10_test_200ep``, its table latency; whether latency is non-increasing in λ. A PNG of the front.

Reduced CPU run (2 cores, shared; recorded in benchmarks/results/darts_latency_front_cpu.json)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/darts_latency_front.py --device cpu --epochs 4 \\
        --half-size 2560 --channels 8 --cells-per-stage 1 --out benchmarks/results/darts_latency_front_cpu.json

GPU (the table is then timed on the GPU, --latency-column e.g. lat_2080ti_1)::

    PYTHONPATH=. python benchmarks/darts_latency_front.py --device cuda --table-device cuda \\
        --latency-column lat_2080ti_1 --epochs 20 --half-size 25000 --channels 16 --cells-per-stage 2

    PYTHONPATH=. python benchmarks/darts_latency_front.py --smoke     # digits, CPU, seconds
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from raynas.io import atomic_write_bytes, atomic_write_json  # noqa: E402

RESULTS = PROJECT / "benchmarks" / "results"
SHARED = PROJECT.parent / "shared" / "data"
DEFAULT_DATA = SHARED / "cifar10" / "cifar10_jpg.tar.gz"
DEFAULT_TABLE = SHARED / "nb201" / "nb201_cifar10.csv"
DEFAULT_LATENCY = SHARED / "hw" / "nb201_latency.csv"
PROTOCOL_ARCH_LR, PROTOCOL_STEPS, MAX_AUTO_ARCH_LR = 3e-4, 50 * 390, 0.01


def build_table(args: argparse.Namespace):
    """The op latency table of the NB201 network the benchmark files describe (timed here)."""
    import torch

    from raynas.differentiable.latency import build_supernet_latency_table
    from raynas.registry import create_space

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = create_space("nb201").build_search_network(10, channels=args.table_channels,
                                                         cells_per_stage=args.table_cells)
    start = time.perf_counter()
    table = build_supernet_latency_table(net, device=args.table_device, batch_size=1,
                                         warmup=args.timing_warmup, repeats=args.timing_repeats, threads=1)
    table.info.update({"channels": args.table_channels, "cells_per_stage": args.table_cells,
                       "build_seconds": time.perf_counter() - start})
    return table


def table_vs_measured(table, latency_csv: Path, column: str) -> Dict[str, Any]:
    """Rank correlation of the table's arch latencies with a measured column over every cell."""
    import pandas as pd
    from scipy.stats import kendalltau, spearmanr

    from spaces.nb201 import OP_NAMES, from_arch_str

    frame = pd.read_csv(latency_csv, usecols=["arch_str", column])
    lut = table.tables["cell"]
    index = {name: k for k, name in enumerate(OP_NAMES)}
    ours = np.array([sum(lut[e, index[op]] for e, op in enumerate(from_arch_str(s)["edges"]))
                     for s in frame["arch_str"]])
    measured = frame[column].to_numpy(dtype=float)
    return {"column": column, "archs": int(len(frame)),
            "spearman": float(spearmanr(ours, measured).statistic),
            "kendall": float(kendalltau(ours, measured).statistic)}


def lambda_unit(args: argparse.Namespace, table, data) -> Dict[str, Any]:
    """λ that makes ‖∇α λ·E[latency]‖ equal the mean ‖∇α CE‖ over a few validation batches at
    initialisation (both at uniform-ish α), and the value ratio λ·E[latency] / CE there."""
    import torch

    from raynas.differentiable.config import DartsSearchConfig
    from raynas.differentiable.search import DartsSearch
    from raynas.rng import derive_rng

    cfg = DartsSearchConfig.from_any(base_config(args, table_path=None, arch_lr=1e-3), epochs=1)
    search = DartsSearch(cfg, data)
    model, alphas = search.model, search.model.arch_parameters()
    norms, losses = [], []
    model.train()
    batches = search.val.epoch(cfg.batch_size, derive_rng(0, "lambda-unit"), steps=args.calibration_batches,
                               augment=False)
    for x, y in batches:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, alphas)
        norms.append(float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))))
        losses.append(float(loss.detach()))
    lat = table.expected(model.mixing_weights())
    lat_grads = torch.autograd.grad(lat, alphas)
    lat_norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in lat_grads)))
    unit = float(np.mean(norms)) / lat_norm
    return {"lambda_unit_per_ms": unit, "ce_grad_norm": float(np.mean(norms)), "latency_grad_norm": lat_norm,
            "ce_at_init": float(np.mean(losses)), "expected_latency_ms_at_init": float(lat.detach()),
            "value_ratio_at_unit": unit * float(lat.detach()) / float(np.mean(losses)),
            "batches": len(norms)}


def base_config(args: argparse.Namespace, table_path: Optional[str], arch_lr: Optional[float] = None) -> Dict[str, Any]:
    steps = args.epochs * min(args.half_size // args.batch_size, args.max_steps_per_epoch or 10 ** 9)
    arch_lr = arch_lr or args.arch_lr or min(PROTOCOL_ARCH_LR * PROTOCOL_STEPS / max(steps, 1), MAX_AUTO_ARCH_LR)
    out = {"space": "nb201", "supernet_options": {"channels": args.channels, "cells_per_stage": args.cells_per_stage},
           "data": args.data_spec, "data_options": {"cache_dir": args.cache_dir} if args.cache_dir else {},
           "half_size": args.half_size, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
           "arch_lr": arch_lr, "device": args.device, "cpu_threads": 1, "order": 1,
           "schedule": {"name": "constant", "t": 1.0}, "seed": args.seed,
           "max_steps_per_epoch": args.max_steps_per_epoch,
           "table": str(args.table), "table_metrics": {"test_accuracy": "c10_test_200ep"}}
    if table_path:
        out["latency_table"] = table_path
    return out


def non_increasing(values: List[Optional[float]]) -> Optional[bool]:
    if any(v is None for v in values):
        return None
    return all(b <= a + 1e-12 for a, b in zip(values, values[1:]))


def plot(rows: List[Dict[str, Any]], column: str, machine: str, path: Path) -> None:
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["arch_str"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot([r["real_latency_ms"] for r in done], [r["c10_test_200ep"] for r in done], "o-")
    for r in done:
        left.annotate(f"λ={r['latency_lambda']:.3g}", (r["real_latency_ms"], r["c10_test_200ep"]),
                      fontsize=7, xytext=(3, 3), textcoords="offset points")
    left.set_xlabel(f"{column} of the returned cell (ms)")
    left.set_ylabel("c10_test_200ep (%)")
    left.set_title("front over λ", fontsize=9)
    xs = np.arange(len(done))
    right.plot(xs, [r["table_latency_ms"] for r in done], "s-", label="table (this CPU)")
    right.set_ylabel("table latency (ms)")
    twin = right.twinx()
    twin.plot(xs, [r["real_latency_ms"] for r in done], "o--", color="C1", label=column)
    twin.set_ylabel(f"{column} (ms)")
    right.set_xticks(xs, [f"{r['latency_lambda']:.3g}" for r in done])
    right.set_xlabel("λ (per ms)")
    right.set_title("latency vs λ", fontsize=9)
    fig.suptitle(f"DARTS + λ·E[latency], NB201 CIFAR-10 ({machine})", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="device of the searches: cpu | cuda")
    parser.add_argument("--table-device", default="cpu", help="device the op latency table is timed on")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CIFAR-10 (JPG archive or batches folder)")
    parser.add_argument("--table", default=str(DEFAULT_TABLE), help="NAS-Bench-201 CIFAR-10 table (CSV)")
    parser.add_argument("--latency-csv", default=str(DEFAULT_LATENCY), help="nb201_latency.csv")
    parser.add_argument("--latency-column", default="lat_gold_6226",
                        help="measured latency column matching the table's device (CPU: lat_gold_6226)")
    parser.add_argument("--cache-dir", default=str(PROJECT / ".cache"), help="decoded-data cache")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--half-size", type=int, default=2560)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells-per-stage", type=int, default=1)
    parser.add_argument("--table-channels", type=int, default=16, help="network the table is timed for")
    parser.add_argument("--table-cells", type=int, default=5)
    parser.add_argument("--timing-warmup", type=int, default=10)
    parser.add_argument("--timing-repeats", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.025)
    parser.add_argument("--arch-lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lambda-multipliers", default="0,0.3,1,3",
                        help="λ grid in units of λ_unit (gradient-norm match at initialisation)")
    parser.add_argument("--lambdas", default=None, help="absolute λ grid (per ms); overrides the multipliers")
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument("--max-steps-per-epoch", type=int, default=None)
    parser.add_argument("--gpus", type=float, default=1.0, help="GPUs the searches share (cuda)")
    parser.add_argument("--budget-s", type=float, default=1500.0, help="guard: trials stop after this")
    parser.add_argument("--machine", default=None, help="machine description for the report")
    parser.add_argument("--note", default=None, help="free text stored in the report (e.g. a pilot's outcome)")
    parser.add_argument("--smoke", action="store_true", help="digits on CPU, tiny supernet (seconds)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import torch

    torch.set_num_threads(1)
    if args.smoke:
        args.device, args.table_device, args.epochs, args.batch_size = "cpu", "cpu", 2, 32
        args.channels, args.cells_per_stage, args.table_channels, args.table_cells = 2, 1, 2, 1
        args.max_steps_per_epoch, args.half_size, args.data_spec, args.cache_dir = 1, 64, "digits", None
        args.timing_warmup, args.timing_repeats, args.calibration_batches = 1, 3, 2
    else:
        args.data_spec = f"cifar10:{args.data}"
    out = Path(args.out or RESULTS / ("darts_latency_front_smoke.json" if args.smoke else "darts_latency_front.json"))
    for name in ("table", "latency_csv"):
        if not Path(getattr(args, name)).is_file():
            parser.error(f"{getattr(args, name)} not found (pass --{name.replace('_', '-')})")
    machine = args.machine or (f"{os.cpu_count()}-core CPU, shared" if args.device == "cpu"
                               else f"1x {torch.cuda.get_device_name(0)}")

    from raynas.data import load_dataset

    data = load_dataset(args.data_spec, val_size=0, calib_size=0,
                        **({"cache_dir": args.cache_dir} if args.cache_dir else {}))  # fills the cache
    table = build_table(args)
    table_path = out.with_name(out.stem + "_op_table.json")
    table.save(table_path)
    agreement = table_vs_measured(table, Path(args.latency_csv), args.latency_column)
    print(f"table: {table} ; vs {args.latency_column}: {agreement}", flush=True)
    scale = lambda_unit(args, table, data)
    if args.lambdas:
        lambdas = [float(v) for v in args.lambdas.split(",")]
        multipliers = [v / scale["lambda_unit_per_ms"] for v in lambdas]
    else:
        multipliers = [float(v) for v in args.lambda_multipliers.split(",")]
        lambdas = [m * scale["lambda_unit_per_ms"] for m in multipliers]
    print(f"λ scale: {scale}; λ grid {lambdas}", flush=True)
    del data

    from raynas.differentiable.sweep import darts_search

    n = len(lambdas)
    gpus_per_trial = math.floor(args.gpus / n * 1e4) / 1e4 if args.device.startswith("cuda") else 0.0
    base = base_config(args, str(table_path))
    search_start = time.perf_counter()
    sweep = darts_search(base, grid={"latency_lambda": lambdas}, gpus_per_trial=gpus_per_trial, cpus_per_trial=1.0,
                         max_concurrent=n, storage_path=PROJECT / "raynas_results",
                         name=f"darts_latency_front{'_smoke' if args.smoke else ''}-{os.getpid()}",
                         num_cpus=max(os.cpu_count() or 1, n), progress=True,
                         time_budget_s=None if args.smoke else max(args.budget_s - (time.perf_counter() - start), 10))
    search_s = time.perf_counter() - search_start

    import pandas as pd

    measured = pd.read_csv(args.latency_csv, usecols=["arch_str", args.latency_column]).set_index("arch_str")
    rows = []
    for t in sorted(sweep.trials, key=lambda t: t["config"]["latency_lambda"]):
        last = t["history"][-1] if t["history"] else {}
        arch_str = last.get("arch_str")
        lam = float(t["config"]["latency_lambda"])
        rows.append({
            "latency_lambda": lam, "lambda_multiplier": lam / scale["lambda_unit_per_ms"],
            "epochs_run": len(t["history"]), "arch_str": arch_str,
            "real_latency_ms": float(measured.loc[arch_str, args.latency_column]) if arch_str else None,
            "c10_test_200ep": last.get("test_accuracy"),
            "table_latency_ms": last.get("derived_latency_ms"),
            "expected_latency_ms": last.get("expected_latency_ms"),
            "skip_connections": last.get("skip_connections"),
            "supernet_val_accuracy": last.get("val_accuracy"),
            "curve": [{k: r.get(k) for k in ("epoch", "arch_str", "test_accuracy", "expected_latency_ms",
                                              "derived_latency_ms", "val_accuracy", "epoch_seconds")}
                      for r in t["history"]],
            "error": t["error"]})
    monotone = {"real_latency_non_increasing": non_increasing([r["real_latency_ms"] for r in rows]),
                "table_latency_non_increasing": non_increasing([r["table_latency_ms"] for r in rows]),
                "expected_latency_non_increasing": non_increasing([r["expected_latency_ms"] for r in rows])}
    png = out.with_suffix(".png")
    if any(r["arch_str"] for r in rows):
        plot(rows, args.latency_column, machine, png)
    report = {
        "benchmark": "darts_latency_front", "smoke": args.smoke, "machine": machine,
        "command": " ".join(["python", *sys.argv]), "torch": torch.__version__,
        "data": args.data_spec if args.smoke else "CIFAR-10 (JPG archive), halves of --half-size images",
        "method": "first-order DARTS (constant T = 1), α loss CE + λ·E[latency]",
        "config": {k: v for k, v in base.items() if k not in ("data", "data_options", "table", "latency_table")},
        "latency_table": {"file": table_path.name, "device": f"{args.table_device} of this machine, 1 thread, batch 1",
                          "network": f"NB201 C={args.table_channels}, {args.table_cells} cells per stage (mixed edges only)",
                          "ms": table.tables["cell"].tolist(), "ops": list(table.op_names["cell"]),
                          "agreement_with_measured": agreement},
        "latency_column": args.latency_column, "lambda_scale": scale, "lambdas": lambdas,
        "rows": rows, "monotonicity": monotone, "trials_concurrent": n, "cpu_threads_per_trial": 1,
        "search_wall_s": search_s, "wall_s": time.perf_counter() - start,
        "plot": png.name if png.exists() else None, "note": args.note,
    }
    atomic_write_json(out, report)
    print(f"\n{'λ':>9} {'x unit':>7} {args.latency_column:>14} {'table ms':>9} {'c10 200ep':>9}  cell")
    for r in rows:
        print(f"{r['latency_lambda']:9.4g} {r['lambda_multiplier']:7.3g} {r['real_latency_ms'] or float('nan'):14.3f} "
              f"{r['table_latency_ms'] or float('nan'):9.3f} {r['c10_test_200ep'] or float('nan'):9.2f}  {r['arch_str']}")
    print(f"monotonicity: {monotone}\nwrote {out} in {report['wall_s']:.0f}s")
    return 0 if all(not r["error"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
