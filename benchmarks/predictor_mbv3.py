"""OFA-style accuracy predictor and per-device specialisation on the CIFAR-10 MobileNetV3 supernet.

1. Measure weight-inherited accuracy (BN recalibrated, held-out validation split) of
   --fit-samples + --holdout random archs of a trained ``ofa_mbv3_cifar`` supernet; fit the MLP
   predictor (and the boosted-trees baseline) on the first, report held-out Kendall τ, Spearman ρ
   and RMSE on the rest.
2. Build two latency lookup tables for the space by timing every operator on two devices of this
   machine (default: the GPU at batch 1 and the CPU with one thread), or read them (--lut).
3. For each table, specialise to two latency targets (the --target-quantiles of the table
   latency over random archs): evolution on the predictor under the table's latency, the best
   predicted archs verified with weight-inherited accuracy. Reports the wall time of each
   specialisation, the winners and each device's verified Pareto front.

    python benchmarks/predictor_mbv3.py --supernet CKPT --device cuda      # H100: ~2 min
    python benchmarks/predictor_mbv3.py --smoke                            # CPU, tiny supernet on digits

Writes benchmarks/results/predictor_mbv3.json (``--smoke``: predictor_mbv3_smoke.json).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raynas.io import atomic_write_json, json_safe  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SMOKE_SPACE = {"width_mult": 0.25, "stage_strides": [2, 2, 2, 1, 2], "resolutions": [16, 24]}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", help="ofa_mbv3_cifar supernet checkpoint folder (from 'raynas train')")
    p.add_argument("--data", help="dataset spec; default: the checkpoint's")
    p.add_argument("--device", default="cuda", help="device of the supernet evaluations (cuda or cpu)")
    p.add_argument("--fit-samples", type=int, default=500, help="weight-inherited evaluations to fit on")
    p.add_argument("--holdout", type=int, default=200, help="further evaluations to report tau on")
    p.add_argument("--val-images", type=int, default=2500,
                   help="validation images per evaluation (a seeded subset of the val split; 0 = all)")
    p.add_argument("--calib-batches", type=int, default=2, help="BN recalibration batches per arch")
    p.add_argument("--eval-batch", type=int, default=500, help="evaluation batch size")
    p.add_argument("--lut", action="append", default=None,
                   help="an existing lookup-table folder (repeat for two devices) instead of building them")
    p.add_argument("--lut-devices", nargs="+", default=None,
                   help="devices the two tables are built on (default: cuda and cpu, or cpu twice "
                        "with 1 and 2 threads without a GPU)")
    p.add_argument("--target-quantiles", type=float, nargs="+", default=[0.3, 0.7],
                   help="latency targets: quantiles of the table latency over random archs")
    p.add_argument("--search-samples", type=int, default=2000, help="predictor queries per target")
    p.add_argument("--verify-top", type=int, default=3, help="archs verified per target")
    p.add_argument("--budget-seconds", type=float, default=240.0,
                   help="wall-time budget; evaluations stop at 60%% of it (fewer archs are then reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="CPU: a tiny supernet trained on digits here")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.smoke:
        args.device = "cpu"
        args.fit_samples, args.holdout, args.val_images = 40, 20, 0
        args.calib_batches, args.eval_batch, args.search_samples, args.verify_top = 1, 64, 120, 2
        args.budget_seconds = min(args.budget_seconds, 300.0)
    elif not args.supernet:
        p.error("--supernet is required (or --smoke)")
    args.out = Path(args.out or RESULTS / ("predictor_mbv3_smoke.json" if args.smoke else "predictor_mbv3.json"))
    return args


def smoke_checkpoint(workdir: Path) -> Path:
    from trainables.supernet import train_supernet

    path, _ = train_supernet({"space": "ofa_mbv3_cifar", "space_options": SMOKE_SPACE, "data": "digits",
                              "output": str(workdir / "supernet"), "epochs": 1, "batch_size": 32, "max_steps": 6,
                              "eval_batch_size": 64, "cpu_threads": 1}, progress=False)
    return path


def make_evaluator(checkpoint: Path, args: argparse.Namespace):
    import torch

    from raynas.checkpoint import load_supernet_checkpoint
    from raynas.data import load_dataset
    from raynas.data.dataset import Split
    from raynas.evaluators.weight_inherited import WeightInheritedEvaluator

    supernet, meta = load_supernet_checkpoint(checkpoint)
    dataset = load_dataset(args.data or meta.get("dataset") or "digits", seed=0)  # as SupernetPool does
    val = dataset.split("val")
    if args.val_images and args.val_images < len(val):
        rows = np.sort(np.random.default_rng(args.seed).choice(len(val), args.val_images, replace=False))
        positions = torch.from_numpy(rows)
        val = Split(val.take(positions).contiguous(), val.labels.index_select(0, positions))
    calib = dataset.split("calib")
    batches = min(args.calib_batches, max(1, len(calib) // args.eval_batch))
    evaluator = WeightInheritedEvaluator(supernet, calib, val,
                                         calib_images=batches * min(args.eval_batch, len(calib)),
                                         batch_size=args.eval_batch,
                                         device=args.device, mean=dataset.mean, std=dataset.std,
                                         bf16=args.device.startswith("cuda"))
    return supernet.space, evaluator, {"dataset": dataset.spec, "val_images": len(val),
                                       "calib_images": batches * min(args.eval_batch, len(calib))}


def measure(space, evaluator, count: int, deadline: float, seed: int) -> Dict[str, Any]:
    """Weight-inherited accuracy of ``count`` distinct random archs (stops at ``deadline``)."""
    from raynas.arch import arch_id

    rng = np.random.default_rng([seed, 1])
    archs: Dict[str, Any] = {}
    while len(archs) < count:
        arch = space.sample(rng)
        archs.setdefault(arch_id(arch), arch)
    archs_list = list(archs.values())
    values: List[float] = []
    start = time.perf_counter()
    for i in range(0, len(archs_list), 25):
        if time.perf_counter() > deadline:
            break
        values += [m["accuracy"] for m in evaluator.evaluate(archs_list[i:i + 25])]
    seconds = time.perf_counter() - start
    return {"archs": archs_list[:len(values)], "accuracy": np.array(values), "seconds": seconds,
            "per_arch_ms": 1e3 * seconds / max(1, len(values)), "truncated": len(values) < count}


def build_tables(space, args: argparse.Namespace, workdir: Path) -> List[Dict[str, Any]]:
    from raynas.hardware import build_latency_tables

    if args.lut:
        return [{"name": Path(p).name, "path": Path(p), "built_seconds": None} for p in args.lut]
    import torch

    if args.lut_devices:
        specs = [(d, 1) for d in args.lut_devices]
    elif torch.cuda.is_available() and not args.smoke:
        specs = [("cuda", 1), ("cpu", 1)]
    else:
        specs = [("cpu", 1), ("cpu", 2)]
    tables = []
    for device, threads in specs:
        name = f"{device}_t{threads}" if device == "cpu" else device
        out = workdir / f"lut_{name}"
        start = time.perf_counter()
        build_latency_tables(space, out, device=device, threads=threads, seed=args.seed,
                             warmup=3 if args.smoke else 5, repeats=5 if args.smoke else 20)
        tables.append({"name": name, "path": out, "built_seconds": time.perf_counter() - start})
        print(f"  latency table {name}: {time.perf_counter() - start:.1f}s", flush=True)
    return tables




def main(argv: Sequence[str] | None = None) -> Dict[str, Any]:
    args = parse_args(argv)
    import torch

    from raynas.hardware import LatencyLUT
    from raynas.predictors import from_pairs, make_predictor
    from raynas.predictors.specialize import specialize

    started = time.perf_counter()
    deadline = started + 0.6 * args.budget_seconds
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory(prefix="predictor_mbv3_") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        checkpoint = smoke_checkpoint(workdir) if args.smoke else Path(args.supernet)
        train_s = time.perf_counter() - t0
        space, evaluator, data_info = make_evaluator(checkpoint, args)
        print(f"space {space.name} {space.options.get('width_mult')}, {data_info}", flush=True)
        measured = measure(space, evaluator, args.fit_samples + args.holdout, deadline, args.seed)
        n = len(measured["archs"])
        n_fit = min(args.fit_samples, n - max(2, min(args.holdout, n // 5)))
        print(f"measured {n} archs in {measured['seconds']:.1f}s ({measured['per_arch_ms']:.0f} ms/arch)", flush=True)
        train = from_pairs(space, measured["archs"][:n_fit], measured["accuracy"][:n_fit])
        test = from_pairs(space, measured["archs"][n_fit:], measured["accuracy"][n_fit:])
        quality, predictors = {}, {}
        for kind in ("mlp", "gbt"):
            t0 = time.perf_counter()
            predictors[kind] = make_predictor(kind, space, seed=args.seed).fit(train)
            quality[kind] = {**predictors[kind].score(test), "fit_seconds": time.perf_counter() - t0}
            print(f"  {kind}: held-out tau {quality[kind]['kendall_tau']:.3f} rho {quality[kind]['spearman_rho']:.3f} "
                  f"rmse {quality[kind]['rmse']:.2f} (fit on {len(train)}, {quality[kind]['fit_seconds']:.1f}s)", flush=True)
        tables = build_tables(space, args, workdir)
        devices = []
        rng = np.random.default_rng([args.seed, 2])
        probe = [space.sample(rng) for _ in range(500)]
        for table in tables:
            lut = LatencyLUT(table["path"], space)
            latencies = np.array([lut.latency(a) for a in probe])
            targets = [float(np.quantile(latencies, q)) for q in args.target_quantiles]
            t0 = time.perf_counter()
            result = specialize(space, predictors["mlp"], lut, targets, verify=evaluator, verify_top=args.verify_top,
                                search_samples=args.search_samples, device=table["name"], seed=args.seed)
            wall = time.perf_counter() - t0
            entry = {"device": table["name"], "table_built_seconds": table["built_seconds"],
                     "latency_range_ms": [float(latencies.min()), float(latencies.max())],
                     "specialize_wall_seconds": wall, **result.to_json()}
            devices.append(entry)
            for t in result.targets:
                w = t["winner"]
                print(f"  {table['name']} <= {t['target_ms']:.3f} ms: accuracy {w.get('real', float('nan')):.2f} "
                      f"(predicted {w['predicted']:.2f}) at {w['latency_ms']:.3f} ms, {t['seconds']:.1f}s", flush=True)
    result = {
        "benchmark": "predictor_mbv3", "smoke": bool(args.smoke), "space": space.spec(), "data": data_info,
        "supernet": "trained here (smoke)" if args.smoke else Path(args.supernet).name,
        "device": args.device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "evaluations": {"count": n, "fit": len(train), "holdout": len(test), "seconds": measured["seconds"],
                        "per_arch_ms": measured["per_arch_ms"], "truncated_by_budget": measured["truncated"],
                        "accuracy_range": [float(measured["accuracy"].min()), float(measured["accuracy"].max())]},
        "predictor_quality": quality, "devices": devices,
        "specialize_wall_seconds": {d["device"]: d["specialize_wall_seconds"] for d in devices},
        "seconds": {"smoke_training": train_s if args.smoke else 0.0, "total": time.perf_counter() - started},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, json_safe(result))
    print(f"wrote {args.out} ({result['seconds']['total']:.0f}s)")
    return result


if __name__ == "__main__":
    main()
