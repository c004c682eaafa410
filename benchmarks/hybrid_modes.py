"""Hybrid conv-vs-attention supernet on CIFAR-10: convex combination vs uniform sampling vs the
founding work's weighted sampling, at an equal number of training steps (issue 4, item 5 i).

Each mode trains the same initial supernet (largest widths; the supernet draws the ops, seeded
by (seed, step)) with the shared trainer for the same number of steps; convex and weighted train
the α logits with their own Adam. We record per-layer α trajectories (plot), derive an
architecture (convex, weighted: F where α > 0.5; uniform, whose α never moves: the best of
``--candidates`` random op assignments by weight-inherited validation accuracy), and report its
weight-inherited accuracy (``WeightInheritedEvaluator``: BN recalibrated; validation split and
test set) and its stand-alone validation accuracy after training from scratch with the same
recipe (``train_standalone``, the three nets concurrently on the GPU).

    PYTHONPATH=. python benchmarks/hybrid_modes.py --device cuda --budget-s 95
    PYTHONPATH=. python benchmarks/hybrid_modes.py --smoke      # digits, CPU, seconds

Writes benchmarks/results/hybrid_modes.json and hybrid_modes_alpha.png (atomically).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import (CIFAR10_SPEC, RESULTS, Deadline, environment, epochs_for,  # noqa: E402
                               resolve_data_spec, seconds_per_step, setup_device, steps_per_epoch,
                               train_standalone_many, write_report)

MODES = ("convex", "uniform", "weighted")
SMOKE_SPACE = dict(img_size=16, channels=16, num_layers=3, expand_ratios=[2, 4],
                   num_heads=[1, 2], head_dim=8, mlp_ratios=[2.0, 4.0])


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

    from raynas.io import atomic_path

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.6), sharey=True)
    for ax, (mode, run) in zip(np.atleast_1d(axes), runs.items()):
        values = np.asarray(run["trajectory"])
        for layer in range(values.shape[1] - 1):
            ax.plot(values[:, 0], values[:, layer + 1], label=f"layer {layer}")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_title(mode)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
    np.atleast_1d(axes)[0].set_ylabel("α = P(convolution)")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def random_op_assignments(space, count: int, seed: int) -> List[Dict[str, Any]]:
    """Op per layer uniformly at random, each op at its largest widths."""
    from raynas.rng import derive_rng

    rng = derive_rng(seed, "uniform-candidates")
    conv = {"op": "conv", "expand_ratio": space.expand_ratios[-1]}
    attn = {"op": "attn", "num_heads": space.num_heads[-1], "mlp_ratio": space.mlp_ratios[-1]}
    return [space.validate({"layers": [dict(conv) if rng.random() < 0.5 else dict(attn)
                                       for _ in range(space.num_layers)]}) for _ in range(count)]


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", default=CIFAR10_SPEC)
    parser.add_argument("--space", default="hybrid_cifar")
    parser.add_argument("--space-options", default="{}", help="JSON overrides of space options")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--alpha-lr", type=float, default=5e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--eval-batch", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--supernet-share", type=float, default=0.55,
                        help="share of the budget for the three supernets (the rest: derivation "
                             "and stand-alone training)")
    parser.add_argument("--procs", type=int, default=3, help="stand-alone nets trained concurrently")
    parser.add_argument("--min-epochs", type=float, default=1.0)
    parser.add_argument("--budget-s", type=float, default=95.0, help="wall-time budget of the whole run")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="digits on CPU (seconds)")
    parser.add_argument("--out", default=str(RESULTS / "hybrid_modes.json"))
    args = parser.parse_args(argv)
    options = json.loads(args.space_options)
    data, data_options = resolve_data_spec(args.data), {}
    if args.smoke:
        args.device, args.batch_size, args.candidates, args.calib_batches = "cpu", 32, 2, 1
        args.eval_batch, args.log_every, args.procs, args.min_epochs = 128, 2, 0, 0.05
        args.threads, args.budget_s = args.threads or 1, min(args.budget_s, 15.0)
        data, data_options = "digits", {"image_size": 16}
        options = {**SMOKE_SPACE, **options}
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes takes a comma-separated subset of {MODES}")
    deadline = Deadline(args.budget_s)
    device = setup_device(args.device, args.threads)

    from raynas.data import load_dataset
    from raynas.evaluators.weight_inherited import WeightInheritedEvaluator
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import SupernetTrainer, arch_mode

    stages: Dict[str, float] = {}
    t = time.perf_counter()
    dataset = load_dataset(data, seed=args.seed, **data_options)
    stages["data_s"] = time.perf_counter() - t
    work = tempfile.mkdtemp(prefix="raynas-hybrid-")
    base = dict(space=args.space, space_options=options, data=data, data_options=data_options,
                output=work, batch_size=args.batch_size, optimizer="adamw", lr=args.lr,
                weight_decay=args.weight_decay, alpha_lr=args.alpha_lr, label_smoothing=0.0,
                grad_clip=None, device=str(device), bf16=device.type == "cuda", seed=args.seed,
                checkpoint_every=10 ** 6, log_every=10 ** 6, cpu_threads=args.threads)

    def mode_config(mode: str) -> Dict[str, Any]:
        return dict(base, sampler="fixed", sampler_options={"arch": "largest"},
                    supernet_options={"mode": mode, "seed": args.seed})

    # equal steps for every mode, sized so all of them fit the supernet share
    t = time.perf_counter()
    spe = steps_per_epoch(dataset, args.batch_size)
    probe = {m: seconds_per_step(dict(mode_config(m), epochs=1), dataset,
                                 steps=2 if args.smoke else 6, warmup=1 if args.smoke else 3)
             for m in modes}
    stages["probe_s"] = time.perf_counter() - t
    epochs = epochs_for(args.supernet_share * deadline.remaining(), sum(probe.values()), spe,
                        args.min_epochs)
    if args.smoke:
        epochs = 0.1
    print(f"ms/step {({m: round(v * 1000, 1) for m, v in probe.items()})} -> {epochs:.2f} epochs "
          "per mode", flush=True)

    runs: Dict[str, Dict[str, Any]] = {}
    for mode in modes:
        t = time.perf_counter()
        trainer = SupernetTrainer(SupernetTrainConfig.from_any(dict(mode_config(mode), epochs=epochs)),
                                  dataset)
        net = trainer.module
        trajectory = [[0] + net.alpha_values()]

        def record(tr: SupernetTrainer, trajectory=trajectory) -> None:
            if tr.step % args.log_every == 0 or tr.step == tr.stop_step:
                trajectory.append([tr.step] + tr.module.alpha_values())

        trainer.fit(callback=record)
        train_s = time.perf_counter() - t
        evaluate = dict(calib_images=min(len(dataset.split("calib")), args.calib_batches * args.eval_batch),
                        batch_size=args.eval_batch, device=device,
                        bf16=device.type == "cuda")
        on_val = WeightInheritedEvaluator.from_dataset(net, dataset, **evaluate)
        test_split = "test" if "test" in dataset.splits else "val"
        on_test = WeightInheritedEvaluator(net, dataset.split("calib"), dataset.split(test_split),
                                           mean=dataset.mean, std=dataset.std, **evaluate)
        with arch_mode(net):
            if mode == "uniform":  # α never moves: pick the best random op assignment instead
                candidates = random_op_assignments(trainer.space, args.candidates, args.seed)
                scored = [(on_val.evaluate([a])[0]["accuracy"], i) for i, a in enumerate(candidates)]
                arch = candidates[max(scored)[1]]
                candidate_acc = [s for s, _ in scored]
            else:
                arch, candidate_acc = net.derive_arch(), None
            inherited = {"val": on_val.evaluate([arch])[0]["accuracy"],
                         "test": on_test.evaluate([arch])[0]["accuracy"]}
        runs[mode] = {"trajectory": trajectory, "steps": trainer.step, "train_s": train_s,
                      "final_loss": trainer.history[-1]["train_loss"], "arch": arch,
                      "ops": [layer["op"] for layer in arch["layers"]], "inherited": inherited,
                      "candidates_val": candidate_acc, "alpha": alpha_summary(trajectory),
                      "cost": trainer.space.cost(arch, num_classes=dataset.num_classes)}
        print(f"[{mode}] ops {runs[mode]['ops']} inherited {inherited} alpha "
              f"{np.round(net.alpha_values(), 3).tolist()}", flush=True)
        del trainer, net, on_val, on_test
    stages["supernets_s"] = sum(r["train_s"] for r in runs.values())

    t = time.perf_counter()
    archs = [runs[m]["arch"] for m in modes]
    standalone = train_standalone_many(
        archs, [runs[m]["cost"]["macs"] for m in modes], dict(base, output=str(Path(work) / "alone")),
        budget_s=deadline.remaining() - (2.0 if args.smoke else 10.0), procs=args.procs,
        output=str(Path(work) / "alone"), min_epochs=args.min_epochs,
        max_epochs=0.05 if args.smoke else None, probe_steps=2 if args.smoke else 6)
    for mode, result in zip(modes, standalone["results"]):
        runs[mode]["standalone"] = {"val": result["accuracy"], "epochs": standalone["epochs"],
                                    "train_s": result["seconds"]}
    stages["standalone_s"] = time.perf_counter() - t

    plot = Path(args.out).with_name(Path(args.out).stem + "_alpha.png")
    plot_trajectories(runs, plot)
    report = {
        "benchmark": "hybrid_modes", "smoke": args.smoke, **environment(device),
        "amp": "bf16" if device.type == "cuda" else "fp32", "seed": args.seed,
        "space": {"name": args.space, "options": options},
        "data": args.data if not args.smoke else data,
        "settings": {"epochs_per_mode": epochs, "steps_per_epoch": spe, "batch_size": args.batch_size,
                     "lr": args.lr, "alpha_lr": args.alpha_lr, "candidates": args.candidates,
                     "budget_s": args.budget_s, "probe_ms_per_step": {m: v * 1000 for m, v in probe.items()}},
        "modes": runs, "alpha_plot": plot.name, "stages_s": stages, "wall_s": deadline.elapsed(),
    }
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
