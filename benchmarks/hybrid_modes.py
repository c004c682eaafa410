"""Hybrid conv-vs-attention supernet on CIFAR-10: convex combination vs uniform sampling vs the
founding work's weighted sampling, at an equal number of training steps (issue 4, item 5 i).

For each mode the same initial supernet is trained for ``--epochs``; convex and weighted train
the α logits (their own Adam group) on the same batches. We record the per-layer α trajectories
(plot), derive an architecture (convex, weighted: F where α > 0.5; uniform, whose α never moves:
the best of ``--candidates`` random op assignments by weight-inherited validation accuracy), and
report its weight-inherited accuracy (BN recalibrated, held-out validation split and test set)
and its stand-alone test accuracy after ``--standalone-epochs`` from scratch.

    PYTHONPATH=. python benchmarks/hybrid_modes.py --device cuda --budget-s 540
    PYTHONPATH=. python benchmarks/hybrid_modes.py --smoke      # synthetic data, CPU, seconds

Writes benchmarks/results/hybrid_modes.json and hybrid_modes_alpha.png (atomically).
The data loading, the training step and BN recalibration are isolated functions, to be swapped
for raynas's shared data module and supernet training loop once merged.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: siblings import
from cifar_bench import (DeviceData, accuracy, default_data_path, device_name,  # noqa: E402
                         load_cifar10_jpg, recalibrate_bn, synthetic_data, train_step,
                         weight_optimizer)

from raynas import create_space  # noqa: E402
from raynas.io import atomic_path, atomic_write_json  # noqa: E402
from raynas.rng import derive_rng  # noqa: E402

MODES = ("convex", "uniform", "weighted")
RESULTS = Path(__file__).parent / "results"
SMOKE_SPACE = dict(img_size=16, channels=16, num_layers=3, expand_ratios=[2, 4],
                   num_heads=[1, 2], head_dim=8, mlp_ratios=[2.0, 4.0])

def _recal_batches(data: DeviceData, args, seed: int):
    rng = derive_rng(args.seed, "bn-recal", seed)
    for i, batch in enumerate(data.train_batches(args.batch_size, rng)):
        if i >= args.recal_batches:
            break
        yield batch


def train_supernet(space, mode: str, data: Dict[str, DeviceData], args, device, amp_dtype,
                   deadline: float) -> Dict[str, Any]:
    torch.manual_seed(args.seed)  # the same initial weights in every mode
    net = space.build_supernet(mode=mode, seed=args.seed).to(device)
    steps_per_epoch = len(data["train"]) // args.batch_size
    total = args.epochs * steps_per_epoch
    opt, schedule = weight_optimizer(net.weight_parameters(), args.lr, total)
    optimizers = [opt]
    if mode in ("convex", "weighted"):
        optimizers.append(torch.optim.Adam(net.alpha_parameters(), lr=args.alpha_lr,
                                           betas=(0.5, 0.999)))
    trajectory = [[0] + net.alpha_values()]
    losses, step, start, stopped_early = [], 0, time.perf_counter(), False
    net.train()
    for epoch in range(args.epochs):
        epoch_rng = derive_rng(args.seed, "epoch", epoch)  # the same batches in every mode
        for images, labels in data["train"].train_batches(args.batch_size, epoch_rng):
            net.set_step(step)
            losses.append(train_step(net, optimizers, images, labels, amp_dtype))
            schedule.step()
            step += 1
            if step % args.log_every == 0:
                trajectory.append([step] + net.alpha_values())
        print(f"[{mode}] epoch {epoch + 1}/{args.epochs} loss "
              f"{float(torch.stack(losses[-steps_per_epoch:]).mean()):.3f} "
              f"alpha {np.round(net.alpha_values(), 3).tolist()}", flush=True)
        if time.perf_counter() > deadline:
            stopped_early = True
            break
    trajectory.append([step] + net.alpha_values())
    return {"net": net, "trajectory": trajectory, "steps": step, "stopped_early": stopped_early,
            "train_s": time.perf_counter() - start,
            "final_loss": float(torch.stack(losses[-max(1, steps_per_epoch):]).mean())}


def inherited_accuracy(net, arch, data, args, amp_dtype, key: int) -> Dict[str, float]:
    net.set_mode("arch")
    net.activate(arch)
    recalibrate_bn(net, _recal_batches(data["train"], args, key))
    return {"val": accuracy(net, data["val"], args.eval_batch, amp_dtype),
            "test": accuracy(net, data["test"], args.eval_batch, amp_dtype)}


def derive(mode: str, net, space, data, args, amp_dtype) -> Dict[str, Any]:
    if mode != "uniform":
        arch = net.derive_arch()
        return {"arch": arch, "inherited": inherited_accuracy(net, arch, data, args, amp_dtype, 0)}
    # uniform sampling leaves α at 0.5: pick the best random op assignment instead
    rng = derive_rng(args.seed, "uniform-candidates")
    candidates = []
    for k in range(args.candidates):
        layers = [{"op": "conv", "expand_ratio": space.expand_ratios[-1]} if rng.random() < 0.5
                  else {"op": "attn", "num_heads": space.num_heads[-1],
                        "mlp_ratio": space.mlp_ratios[-1]} for _ in range(space.num_layers)]
        arch = space.validate({"layers": layers})
        candidates.append({"arch": arch,
                           "inherited": inherited_accuracy(net, arch, data, args, amp_dtype, k)})
    best = max(candidates, key=lambda c: c["inherited"]["val"])
    return {**best, "candidates": candidates}


def train_standalone(space, arch, data, args, device, amp_dtype,
                     deadline: float) -> Dict[str, Any]:
    torch.manual_seed(args.seed)
    model = space.build_static(arch).to(device)
    total = args.standalone_epochs * (len(data["train"]) // args.batch_size)
    opt, schedule = weight_optimizer(model.parameters(), args.lr, total)
    start = time.perf_counter()
    model.train()
    epochs = 0
    for epoch in range(args.standalone_epochs):
        for images, labels in data["train"].train_batches(
                args.batch_size, derive_rng(args.seed, "standalone", epoch)):
            train_step(model, [opt], images, labels, amp_dtype)
            schedule.step()
        epochs += 1
        if time.perf_counter() > deadline:
            break
    return {"test": accuracy(model, data["test"], args.eval_batch, amp_dtype),
            "epochs": epochs, "train_s": time.perf_counter() - start}


def alpha_summary(trajectory: List[List[float]]) -> Dict[str, Any]:
    """Did α settle? Final distance from 1/2 and range over the last quarter, per layer."""
    values = np.asarray([row[1:] for row in trajectory])
    tail = values[len(values) * 3 // 4:]
    return {"final": values[-1].tolist(),
            "distance_from_half": np.abs(values[-1] - 0.5).tolist(),
            "last_quarter_range": (tail.max(0) - tail.min(0)).tolist()}


def plot_trajectories(runs: Dict[str, Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.6), sharey=True)
    for ax, (mode, run) in zip(np.atleast_1d(axes), runs.items()):
        values = np.asarray(run["trajectory"])
        for layer in range(values.shape[1] - 1):
            ax.plot(values[:, 0], values[:, layer + 1], label=f"layer {layer}")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{mode}")
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
    np.atleast_1d(axes)[0].set_ylabel("α = P(convolution)")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", default=str(default_data_path()),
                        help="CIFAR-10 JPG archive (default ../shared/data/cifar10/...)")
    parser.add_argument("--cache-dir", default=str(Path(__file__).resolve().parents[1] / ".cache"))
    parser.add_argument("--space", default="hybrid_cifar")
    parser.add_argument("--space-options", default="{}", help="JSON overrides of space options")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--standalone-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-batch", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--alpha-lr", type=float, default=5e-3)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--recal-batches", type=int, default=20)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--amp", choices=["bf16", "none"], default=None)
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="wall-time budget; supernet training of each mode gets an equal "
                             "share and stops at the end of the epoch that exceeds it")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="synthetic data on CPU (seconds)")
    parser.add_argument("--out", default=str(RESULTS / "hybrid_modes.json"))
    args = parser.parse_args(argv)
    options = json.loads(args.space_options)
    if args.smoke:
        args.device, args.epochs, args.standalone_epochs, args.batch_size = "cpu", 2, 1, 64
        args.val_size, args.candidates, args.recal_batches, args.log_every = 128, 2, 2, 2
        args.eval_batch, args.threads = 128, args.threads or 1
        options = {**SMOKE_SPACE, **options}
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    amp_dtype = torch.bfloat16 if amp == "bf16" else None
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes takes a comma-separated subset of {MODES}")
    start = time.perf_counter()

    space = create_space(args.space, **options)
    if args.smoke:
        arrays = synthetic_data(space.img_size, space.num_classes, args.seed)
    else:
        arrays = load_cifar10_jpg(Path(args.data), Path(args.cache_dir))
    x, y = arrays["train"]
    order = derive_rng(args.seed, "val-split").permutation(len(y))
    val, train = order[:args.val_size], order[args.val_size:]
    data = {"train": DeviceData(x[train], y[train], device),
            "val": DeviceData(x[val], y[val], device),  # never seen by supernet training
            "test": DeviceData(*arrays["test"], device)}
    print(f"data ready in {time.perf_counter() - start:.1f}s: "
          f"{ {k: len(v) for k, v in data.items()} }", flush=True)

    share = args.budget_s * 0.6 / len(modes)  # the rest: derivation and stand-alone training
    runs: Dict[str, Dict[str, Any]] = {}
    for mode in modes:
        run = train_supernet(space, mode, data, args, device, amp_dtype,
                             deadline=time.perf_counter() + share)
        net = run.pop("net")
        run.update(derive(mode, net, space, data, args, amp_dtype))
        run["alpha"] = alpha_summary(run["trajectory"])
        run["cost"] = space.cost(run["arch"])
        runs[mode] = run
        print(f"[{mode}] arch {[l['op'] for l in run['arch']['layers']]} inherited "
              f"{run['inherited']}", flush=True)
    for i, (mode, run) in enumerate(runs.items()):
        remaining = args.budget_s - (time.perf_counter() - start)
        deadline = time.perf_counter() + remaining / (len(runs) - i)
        run["standalone"] = train_standalone(space, run["arch"], data, args, device, amp_dtype,
                                             deadline)
        print(f"[{mode}] stand-alone test {run['standalone']['test']:.2f}%", flush=True)

    plot = Path(args.out).with_name(Path(args.out).stem + "_alpha.png")
    plot_trajectories(runs, plot)
    report = {
        "benchmark": "hybrid_modes", "smoke": args.smoke, "space": space.spec(),
        "device": device_name(device),
        "torch": torch.__version__, "amp": amp, "seed": args.seed,
        "settings": {k: getattr(args, k) for k in ("epochs", "standalone_epochs", "batch_size",
                                                    "lr", "alpha_lr", "val_size", "candidates",
                                                    "recal_batches", "budget_s")},
        "data": "synthetic" if args.smoke else "CIFAR-10 (JPG archive)",
        "modes": runs, "alpha_plot": plot.name, "wall_s": time.perf_counter() - start,
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
