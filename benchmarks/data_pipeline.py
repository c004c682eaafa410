"""Benchmark of the data path and weight-inherited evaluation on one device.

Measures (1) dataset load time (from the decode cache), (2) training-batch throughput of
iterate_batches -> device -> augment -> to_float, and, with ``--space``, (3) seconds per arch of
WeightInheritedEvaluator (BN recalibration + full val split) on a randomly initialised supernet of
that registered space. Writes benchmarks/results/data_pipeline.json atomically.

    python benchmarks/data_pipeline.py --smoke                       # seconds, CPU, digits
    python benchmarks/data_pipeline.py --device cuda --dataset cifar10:../shared/data/cifar10 \
        --space ofa_mbv3_cifar --archs 20 --budget-s 300
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from raynas.data import augment, iterate_batches, load_dataset, to_float  # noqa: E402
from raynas.io import atomic_write_json  # noqa: E402
from raynas.rng import derive_rng  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_pipeline(ds, device: torch.device, batch_size: int, budget_s: float,
                   max_batches: int, on_device: bool) -> Dict[str, Any]:
    """Images/s of one pass over (part of) the train split, as the trainer would consume it."""
    train = ds.split("train")
    if on_device:
        train = train.to(device)
    rng = derive_rng(0, "bench-pipeline")
    n_images, n_batches = 0, 0
    _sync(device)
    start = time.perf_counter()
    for x, y in iterate_batches(train, None, batch_size, rng=rng, shuffle=True, drop_last=True,
                                device=device):
        x = to_float(augment(x, rng, pad=4, flip=True), ds.mean, ds.std)
        n_images += len(y)
        n_batches += 1
        if n_batches >= max_batches or time.perf_counter() - start > budget_s:
            break
    _sync(device)
    elapsed = time.perf_counter() - start
    return {"batches": n_batches, "images": n_images, "seconds": round(elapsed, 4),
            "images_per_s": round(n_images / max(elapsed, 1e-9), 1), "train_on_device": on_device}


def bench_evaluator(ds, space_name: str, device: torch.device, batch_size: int, archs: int,
                    calib_images: Optional[int], bf16: bool, budget_s: float) -> Dict[str, Any]:
    from raynas import create_space
    from raynas.evaluators.weight_inherited import WeightInheritedEvaluator

    space = create_space(space_name)
    torch.manual_seed(0)  # benchmark only: weights are random, the timing is what matters
    supernet = space.build_supernet(ds.num_classes)
    small = ds.eval_splits()
    t0 = time.perf_counter()
    evaluator = WeightInheritedEvaluator.from_dataset(supernet, small, calib_images=calib_images,
                                                      batch_size=batch_size, device=device, bf16=bf16)
    _sync(device)
    setup_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    candidates = [space.sample(rng) for _ in range(archs)]
    evaluator.evaluate(candidates[:1])  # warm-up (cudnn autotuning, allocator)
    times = []
    start = time.perf_counter()
    for arch in candidates:
        t = time.perf_counter()
        evaluator.evaluate([arch])
        _sync(device)
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    return {"space": space_name, "archs": len(times), "setup_s": round(setup_s, 4),
            "calib_batches": len(evaluator._calib), "calib_images": evaluator.calib_images,
            "val_images": evaluator.num_val,
            "batch_size": batch_size, "bf16": evaluator.bf16,
            "s_per_arch_mean": round(float(np.mean(times)), 4),
            "s_per_arch_median": round(float(np.median(times)), 4),
            "archs_per_s": round(len(times) / max(sum(times), 1e-9), 3)}


def main(argv=None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", help="dataset spec (digits, cifar10:<path>, ...)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--budget-s", type=float, default=120.0, help="wall-time budget in seconds")
    parser.add_argument("--max-batches", type=int, default=10_000)
    parser.add_argument("--space", default=None, help="registered space with a supernet (optional)")
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--calib-images", type=int, default=None,
                        help="BN-calibration images (default: the calib split)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="seconds-long CPU run on digits")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data_pipeline.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.budget_s, args.max_batches = "cpu", min(args.budget_s, 10.0), 5
        args.archs = min(args.archs, 2)
        if args.dataset != "digits":
            args.dataset = "digits"
    device = torch.device(args.device)
    started = time.perf_counter()
    t = time.perf_counter()
    ds = load_dataset(args.dataset, seed=0)
    load_s = time.perf_counter() - t
    result: Dict[str, Any] = {
        "benchmark": "data_pipeline", "smoke": args.smoke, "dataset": args.dataset,
        "sizes": ds.sizes, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "load_s": round(load_s, 4),
    }
    share = args.budget_s / (3 if args.space else 2)
    result["pipeline_host"] = bench_pipeline(ds, device, args.batch_size, share / 2, args.max_batches, False)
    result["pipeline_on_device"] = bench_pipeline(ds, device, args.batch_size, share / 2, args.max_batches, True)
    if args.space:
        result["evaluator"] = bench_evaluator(ds, args.space, device, args.batch_size, args.archs,
                                              args.calib_images, args.bf16, share)
    result["wall_s"] = round(time.perf_counter() - started, 3)
    atomic_write_json(args.out, result)
    print(result)
    return result


if __name__ == "__main__":
    main()
