"""Check the whole pipeline on a GPU machine in about a minute: a few supernet training steps on
CIFAR-10 (bf16), a GPU pool actor serving weight-inherited accuracy to a Tune search, and an
export that reproduces the accuracy. Prints timings; writes benchmarks/results/gpu_check.json.

    python benchmarks/gpu_check.py --data cifar10:../shared/data/cifar10/cifar10_jpg.tar.gz
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import raynas
from raynas.export import export_subnet, verify_exported
from raynas.io import atomic_write_json
from trainables.supernet import train_supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="cifar10:../shared/data/cifar10/cifar10_jpg.tar.gz")
    parser.add_argument("--space", default="ofa_mbv3_cifar")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--output", default="raynas_results/gpu_check")
    parser.add_argument("--out", default="benchmarks/results/gpu_check.json")
    args = parser.parse_args()

    timings, info = {}, {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                         "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor()}
    t = time.perf_counter()
    raynas.ensure_ray()
    timings["ray_start_s"] = time.perf_counter() - t
    t = time.perf_counter()
    checkpoint, metrics = train_supernet({"space": args.space, "data": args.data, "output": args.output,
                                          "epochs": 1, "batch_size": 256, "max_steps": args.steps,
                                          "channels_last": True}, progress=False)
    timings["train_s"] = time.perf_counter() - t
    info["train_metrics"] = metrics
    space = raynas.create_space(args.space)
    t = time.perf_counter()
    with raynas.SupernetPool.from_checkpoint(str(checkpoint), batch_size=500) as pool:
        result = raynas.search(space, pool, strategy="evolution", num_samples=args.num_samples,
                               objectives=["accuracy:max", "macs:min"], storage_path=Path(args.output).parent,
                               name="gpu_check_search", progress=False,
                               overwrite=True)  # this script's own scratch search, rerun each time
        info["pool_health"] = {k: v for k, v in pool.health().items() if k != "worker_info"}
    timings["search_s"] = time.perf_counter() - t
    t = time.perf_counter()
    path, exported = export_subnet(checkpoint, result.best_arch(), Path(args.output) / "best", batch_size=500)
    reproduced = verify_exported(path)
    timings["export_s"] = time.perf_counter() - t
    info.update(timings=timings, archs=len(result.df), failed=int(len(result.df) - len(result.ok)),
                best_accuracy=float(result.best()["accuracy"]), exported_accuracy=exported["accuracy"],
                reproduced_accuracy=reproduced)
    atomic_write_json(args.out, info)
    print(json.dumps(info, indent=2, default=str))


if __name__ == "__main__":
    main()
