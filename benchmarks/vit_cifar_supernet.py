"""Train the CIFAR ViT supernet briefly and report the largest / smallest (and a few random)
subnets' weight-inherited accuracy (issue 4, item 5 ii; the step-throughput half is
``vit_step_throughput.py``).

Sampling per step (seeded by the step, as every rank would): ``uniform`` (AutoFormer: one random
subnet) or ``sandwich`` (largest, smallest and one random subnet, losses summed). Accuracy is
measured on a held-out validation split of the training set and on the test set; the largest
subnet is also exported to timm and re-evaluated (must match).

    PYTHONPATH=. python benchmarks/vit_cifar_supernet.py --device cuda --budget-s 480
    PYTHONPATH=. python benchmarks/vit_cifar_supernet.py --smoke     # synthetic data, CPU

Writes benchmarks/results/vit_cifar_supernet.json (atomically).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: siblings import
from cifar_bench import (DeviceData, accuracy, default_data_path, device_name,  # noqa: E402
                         load_cifar10_jpg, synthetic_data, weight_optimizer)

from raynas import arch_id, create_space  # noqa: E402
from raynas.io import atomic_write_json  # noqa: E402
from raynas.rng import derive_rng  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SMOKE_SPACE = dict(img_size=16, embed_dims=[32, 64], depths=[2, 3], num_heads=[1, 2],
                   mlp_ratios=[2.0, 4.0], supernet_embed_dim=64, supernet_depth=3,
                   supernet_num_heads=2, supernet_mlp_ratio=4.0, head_dim=16)


def step_archs(space, sampling: str, seed: int, step: int) -> List[Dict[str, Any]]:
    rng = derive_rng(seed, "arch", step)
    if sampling == "sandwich":
        return [space.largest(), space.smallest(), space.sample(rng)]
    return [space.sample(rng)]


def supernet_step(net, optimizer, archs, images, labels, amp_dtype) -> torch.Tensor:
    """One optimisation step over the given subnets (gradients summed); isolated so the shared
    training loop's step can replace it."""
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=images.device)
    for arch in archs:
        net.activate(arch)
        with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(net(images), labels)
        loss.backward()
        total += loss.detach()
    optimizer.step()
    return total / len(archs)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", default=str(default_data_path()))
    parser.add_argument("--cache-dir", default=str(Path(__file__).resolve().parents[1] / ".cache"))
    parser.add_argument("--space", default="vit_cifar")
    parser.add_argument("--space-options", default="{}", help="JSON overrides of space options")
    parser.add_argument("--sampling", choices=["uniform", "sandwich"], default="sandwich")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-batch", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--random-subnets", type=int, default=6)
    parser.add_argument("--amp", choices=["bf16", "none"], default=None)
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="training stops at the end of the epoch that exceeds this")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="synthetic data on CPU (seconds)")
    parser.add_argument("--out", default=str(RESULTS / "vit_cifar_supernet.json"))
    args = parser.parse_args(argv)
    options = json.loads(args.space_options)
    if args.smoke:
        args.device, args.epochs, args.batch_size, args.val_size = "cpu", 2, 64, 128
        args.random_subnets, args.eval_batch, args.threads = 2, 128, args.threads or 1
        options = {**SMOKE_SPACE, **options}
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    amp_dtype = torch.bfloat16 if amp == "bf16" else None
    start = time.perf_counter()

    space = create_space(args.space, **options)
    arrays = (synthetic_data(space.img_size, space.num_classes, args.seed) if args.smoke
              else load_cifar10_jpg(Path(args.data), Path(args.cache_dir)))
    x, y = arrays["train"]
    order = derive_rng(args.seed, "val-split").permutation(len(y))
    val, train = order[:args.val_size], order[args.val_size:]
    data = {"train": DeviceData(x[train], y[train], device),
            "val": DeviceData(x[val], y[val], device),
            "test": DeviceData(*arrays["test"], device)}

    torch.manual_seed(args.seed)
    net = space.build_supernet().to(device)
    steps_per_epoch = len(data["train"]) // args.batch_size
    optimizer, schedule = weight_optimizer(net.parameters(), args.lr, args.epochs * steps_per_epoch)
    step, epoch_times, train_start = 0, [], time.perf_counter()
    net.train()
    for epoch in range(args.epochs):
        epoch_start, losses = time.perf_counter(), []
        for images, labels in data["train"].train_batches(args.batch_size,
                                                          derive_rng(args.seed, "epoch", epoch)):
            archs = step_archs(space, args.sampling, args.seed, step)
            losses.append(supernet_step(net, optimizer, archs, images, labels, amp_dtype))
            schedule.step()
            step += 1
        loss = float(torch.stack(losses).mean())
        epoch_times.append(time.perf_counter() - epoch_start)
        print(f"epoch {epoch + 1}/{args.epochs} loss {loss:.3f} ({epoch_times[-1]:.1f}s)",
              flush=True)
        if time.perf_counter() - start > args.budget_s:
            break

    rng = derive_rng(args.seed, "eval-subnets")
    named = {"largest": space.largest(), "smallest": space.smallest()}
    named.update({f"random{i}": space.sample(rng) for i in range(args.random_subnets)})
    subnets = {}
    net.eval()
    for name, arch in named.items():
        net.activate(arch)
        subnets[name] = {"arch": arch, "arch_id": arch_id(arch),
                         "params": space.cost(arch)["params"], "flops": space.cost(arch)["flops"],
                         "val": accuracy(net, data["val"], args.eval_batch, amp_dtype),
                         "test": accuracy(net, data["test"], args.eval_batch, amp_dtype)}
        print(f"{name}: params {subnets[name]['params']:.0f} val {subnets[name]['val']:.2f} "
              f"test {subnets[name]['test']:.2f}", flush=True)
    exported = net.export(space.largest()).eval()
    exported_test = accuracy(exported, data["test"], args.eval_batch, amp_dtype)

    ordered = sorted(subnets.values(), key=lambda s: s["params"])
    rank = float(np.corrcoef([s["params"] for s in ordered], [s["val"] for s in ordered])[0, 1])
    report = {
        "benchmark": "vit_cifar_supernet", "smoke": args.smoke, "space": space.spec(),
        "device": device_name(device), "torch": torch.__version__, "amp": amp,
        "settings": {k: getattr(args, k) for k in ("sampling", "epochs", "batch_size", "lr",
                                                    "val_size", "budget_s", "seed")},
        "data": "synthetic" if args.smoke else "CIFAR-10 (JPG archive)",
        "epochs_run": len(epoch_times), "steps": step,
        "train_s": time.perf_counter() - train_start,
        "supernet_images_per_s": (len(data["train"]) // args.batch_size * args.batch_size
                                  / float(np.median(epoch_times))),
        "subnets_per_step": len(step_archs(space, args.sampling, args.seed, 0)),
        "subnets": subnets, "largest_exported_test": exported_test,
        "params_vs_val_accuracy_pearson": rank, "wall_s": time.perf_counter() - start,
    }
    atomic_write_json(args.out, report)
    print(f"largest {subnets['largest']['test']:.2f}% (exported {exported_test:.2f}%), "
          f"smallest {subnets['smallest']['test']:.2f}%; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
