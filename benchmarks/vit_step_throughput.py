"""Training-step throughput of the elastic ViT supernet vs the exported timm model (issue 4).

For each measured arch, the supernet with that arch active and its timm export each run the
same step (forward, cross-entropy, backward, AdamW) on the same random batch; the two are timed
in alternating rounds so drift hits both. ``ratio`` = exported images/s / supernet images/s
(the slowdown of weight slicing); the target is ratio <= 1.15.

    PYTHONPATH=. python benchmarks/vit_step_throughput.py --device cuda --budget-s 300
    PYTHONPATH=. python benchmarks/vit_step_throughput.py --smoke        # seconds, on CPU

Writes benchmarks/results/vit_step_throughput.json (atomically).
"""
from __future__ import annotations

import argparse
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


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               labels: torch.Tensor, amp_dtype) -> None:
    """One optimisation step; isolated so the shared training loop's step can replace it."""
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(step: Callable[[], None], batch: int, steps: int,
                      device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def measure_arch(space, supernet, arch, args, device, amp_dtype) -> Dict[str, object]:
    supernet.activate(arch)
    exported = supernet.export(arch).to(device)
    models = {"supernet": supernet, "timm": exported}
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    size = space.img_size
    images = torch.randn(args.batch_size, space.in_chans, size, size, generator=gen).to(device)
    labels = torch.randint(0, space.num_classes, (args.batch_size,), generator=gen).to(device)
    steps = {k: (lambda m=m, o=optimizers[k]: train_step(m, o, images, labels, amp_dtype))
             for k, m in models.items()}
    for name in models:
        models[name].train()
        for _ in range(args.warmup):
            steps[name]()
    rounds: Dict[str, List[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in models:
            rounds[name].append(images_per_second(steps[name], args.batch_size, args.steps, device))
    best = {name: float(np.median(v)) for name, v in rounds.items()}
    return {"arch": arch, "arch_id": arch_id(arch), "params": space.cost(arch)["params"],
            "supernet_images_per_s": best["supernet"], "timm_images_per_s": best["timm"],
            "ratio": best["timm"] / best["supernet"], "rounds": rounds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="vit_cifar")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--random-archs", type=int, default=3)
    parser.add_argument("--amp", choices=["bf16", "fp16", "none"], default=None,
                        help="autocast dtype (default bf16 on CUDA, none on CPU)")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="stop measuring further archs after this many seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run (seconds)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "vit_step_throughput.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.batch_size, args.steps, args.rounds = "cpu", 4, 2, 2
        args.warmup, args.random_archs, args.threads = 1, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]
    if amp_dtype is torch.float16:
        parser.error("fp16 needs a grad scaler this benchmark does not use; pick bf16 or none")

    torch.manual_seed(args.seed)
    space = create_space(args.space)
    supernet = space.build_supernet().to(device)
    rng = np.random.default_rng(args.seed)
    archs = [space.largest(), space.smallest()]
    archs += [space.sample(rng) for _ in range(args.random_archs)]
    start, results = time.perf_counter(), []
    for arch in archs:
        if results and time.perf_counter() - start > args.budget_s:
            break
        results.append(measure_arch(space, supernet, arch, args, device, amp_dtype))
        r = results[-1]
        print(f"{r['arch_id']} params={r['params']:.0f} supernet={r['supernet_images_per_s']:.1f} "
              f"timm={r['timm_images_per_s']:.1f} img/s ratio={r['ratio']:.3f}", flush=True)
    worst = max(r["ratio"] for r in results)
    report = {
        "benchmark": "vit_step_throughput", "space": space.spec(), "smoke": args.smoke,
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine()),
        "torch": torch.__version__, "python": sys.version.split()[0], "amp": amp,
        "batch_size": args.batch_size, "steps_per_round": args.steps, "rounds": args.rounds,
        "archs": results, "worst_ratio": worst, "target_ratio": TARGET_RATIO,
        "passed": worst <= TARGET_RATIO, "wall_s": time.perf_counter() - start,
    }
    atomic_write_json(args.out, report)
    print(f"worst ratio {worst:.3f} (target <= {TARGET_RATIO}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
