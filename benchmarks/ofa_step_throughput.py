"""Training-step throughput of the OFA MobileNetV3 supernet vs its exported static model.

For each measured arch (largest, smallest, a few random), the supernet with that arch active
and its export run the same step (forward, cross-entropy, backward, SGD) on the same random
batch at the arch's resolution, timed in alternating rounds so drift hits both. ``ratio`` =
exported images/s / supernet images/s (the cost of weight slicing); the target for the largest
arch is ratio <= 1.15.

    PYTHONPATH=. python benchmarks/ofa_step_throughput.py --device cuda --budget-s 300
    PYTHONPATH=. python benchmarks/ofa_step_throughput.py --device cuda --memory-format channels_last
    PYTHONPATH=. python benchmarks/ofa_step_throughput.py --smoke        # seconds, on CPU

Writes benchmarks/results/ofa_step_throughput.json (atomically).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from raynas import arch_id, create_space
from raynas.io import atomic_write_json

TARGET_RATIO = 1.15
SMOKE_SPACE_OPTIONS = {"width_mult": 0.25, "stage_strides": [2, 2, 2, 1, 2], "resolutions": [16]}


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               labels: torch.Tensor, amp_dtype) -> None:
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(step: Callable[[], None], batch: int, steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def measure_arch(space, supernet, arch, args, device, amp_dtype, memory_format) -> Dict[str, object]:
    supernet.activate(arch)
    exported = supernet.export(arch).to(device=device, memory_format=memory_format)
    models = {"supernet": supernet, "static": exported}
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in models.items()}
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    size = space.input_resolution(arch)
    images = torch.randn(args.batch_size, 3, size, size, generator=gen).to(
        device=device, memory_format=memory_format)
    labels = torch.randint(0, supernet.num_classes, (args.batch_size,), generator=gen).to(device)
    steps = {k: (lambda m=m, o=optimizers[k]: train_step(m, o, images, labels, amp_dtype))
             for k, m in models.items()}
    for name, model in models.items():
        model.train()
        for _ in range(args.warmup):
            steps[name]()
    rounds: Dict[str, List[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in models:
            rounds[name].append(images_per_second(steps[name], args.batch_size, args.steps, device))
    best = {name: float(np.median(v)) for name, v in rounds.items()}
    cost = space.cost(arch)
    return {"arch": arch, "arch_id": arch_id(arch), "resolution": size, "params": cost["params"],
            "macs": cost["macs"], "supernet_images_per_s": best["supernet"],
            "static_images_per_s": best["static"], "ratio": best["static"] / best["supernet"],
            "rounds": rounds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ofa_mbv3_cifar")
    parser.add_argument("--space-options", default="{}", help="JSON options for create_space")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--random-archs", type=int, default=3)
    parser.add_argument("--memory-format", choices=["contiguous", "channels_last"], default="contiguous",
                        help="channels_last is several times faster for depthwise convs on CPU")
    parser.add_argument("--amp", choices=["bf16", "none"], default=None,
                        help="autocast dtype (default bf16 on CUDA, none on CPU)")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="stop measuring further archs after this many seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run (seconds)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ofa_step_throughput.json"))
    args = parser.parse_args(argv)
    options = json.loads(args.space_options)
    if args.smoke:
        args.device, args.batch_size, args.steps, args.rounds = "cpu", 4, 1, 2
        args.warmup, args.random_archs, args.threads = 1, min(args.random_archs, 1), 1
        options = {**SMOKE_SPACE_OPTIONS, **options}
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    amp_dtype = {"bf16": torch.bfloat16, "none": None}[amp]
    memory_format = {"contiguous": torch.contiguous_format,
                     "channels_last": torch.channels_last}[args.memory_format]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    space = create_space(args.space, **options)
    supernet = space.build_supernet(seed=args.seed).to(device=device, memory_format=memory_format)
    rng = np.random.default_rng(args.seed)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(args.random_archs)]
    start, results = time.perf_counter(), []
    for arch in archs:
        if results and time.perf_counter() - start > args.budget_s:
            break
        results.append(measure_arch(space, supernet, arch, args, device, amp_dtype, memory_format))
        r = results[-1]
        print(f"{r['arch_id']} res={r['resolution']} macs={r['macs'] / 1e6:.1f}M "
              f"supernet={r['supernet_images_per_s']:.1f} static={r['static_images_per_s']:.1f} "
              f"img/s ratio={r['ratio']:.3f}", flush=True)
    largest_ratio = results[0]["ratio"]
    report = {
        "benchmark": "ofa_step_throughput", "space": space.spec(), "smoke": args.smoke,
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine()),
        "torch": torch.__version__, "python": sys.version.split()[0], "amp": amp,
        "memory_format": args.memory_format, "threads": torch.get_num_threads(),
        "batch_size": args.batch_size, "steps_per_round": args.steps, "rounds": args.rounds,
        "archs": results, "largest_ratio": largest_ratio,
        "worst_ratio": max(r["ratio"] for r in results), "target_ratio": TARGET_RATIO,
        "passed": largest_ratio <= TARGET_RATIO, "wall_s": time.perf_counter() - start,
    }
    atomic_write_json(args.out, report)
    print(f"largest-arch ratio {largest_ratio:.3f} (target <= {TARGET_RATIO}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
