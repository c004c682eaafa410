"""Hybrid conv-vs-attention supernet: the founding work's weighted sampling vs the convex
combination vs uniform sampling, at an equal number of training steps, over seeds (issues 4, 20).

Each (mode, seed) trains the same kind of supernet (largest widths; ops drawn per step from
(seed, step)) with the shared trainer for ``--steps`` steps; convex and weighted also train the
per-layer α (probability of the convolution) with their own Adam on the same batches. We record
every layer's α every ``--log-every`` steps (plot), whether it settles and where, derive an arch
(convex, weighted: F where α > 0.5; uniform, whose α never moves: the best of ``--candidates``
random op assignments by weight-inherited validation accuracy), and report its weight-inherited
accuracy (BN recalibrated; held-out validation split and test set) and, with
``--standalone-steps``, its accuracy after training from scratch with the same recipe (each
distinct derived arch once, seed 0).

The claim (founding slides, ETRI/TANGO 2023): weighted sampling's α converges where the convex
mix's fails to, and the derived network is better.

    # CPU protocol (not run yet; it would write benchmarks/results/hybrid_modes_cpu16.json): CIFAR-10 at 16x16
    OMP_NUM_THREADS=1 python benchmarks/hybrid_modes.py --device cpu --threads 1 --image-size 16 \
        --space-options '{"img_size": 16, "channels": 32, "num_layers": 4, "expand_ratios": [2, 4],
        "num_heads": [1, 2], "head_dim": 16, "mlp_ratios": [2.0, 4.0]}' --steps 1500 --batch-size 128 \
        --seeds 0,1,2 --standalone-steps 1500 --out benchmarks/results/hybrid_modes_cpu16.json
    # GPU: the default hybrid_cifar space at 32x32
    python benchmarks/hybrid_modes.py --device cuda --steps 6000 --batch-size 256 --standalone-steps 6000
    python benchmarks/hybrid_modes.py --smoke      # digits, CPU, seconds

Runs one (mode, seed) after another in this process and saves after each (``--resume``
continues an interrupted run). Writes the JSON, ``<out>_alpha.png`` (α per layer per step,
a row per seed) and ``<out>_alpha.csv`` (every logged α), atomically.
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

from benchmarks.common import (CIFAR10_SPEC, RESULTS, environment, resolve_data_spec,  # noqa: E402
                               setup_device, steps_per_epoch, write_report)

MODES = ("convex", "uniform", "weighted")
SMOKE_SPACE = dict(img_size=16, channels=16, num_layers=3, expand_ratios=[2, 4],
                   num_heads=[1, 2], head_dim=8, mlp_ratios=[2.0, 4.0])
#: α within this distance of 0 or 1 has decided for one op
DECIDED = 0.1
#: α whose range over the last quarter of training is below this has settled
SETTLED = 0.05


def alpha_summary(trajectory: List[List[float]]) -> Dict[str, Any]:
    """Per layer: the final α, its distance from 1/2, its range over the last quarter of the
    logged steps, whether it has decided (within ``DECIDED`` of 0 or 1) and settled (that range
    below ``SETTLED``), and the first logged step from which it stayed decided on the final side."""
    steps = np.asarray([row[0] for row in trajectory])
    values = np.asarray([row[1:] for row in trajectory])
    tail = values[len(values) * 3 // 4:]
    final = values[-1]
    spread = tail.max(0) - tail.min(0)
    decided = np.minimum(final, 1 - final) <= DECIDED
    decided_at: List[Optional[int]] = []
    for layer in range(values.shape[1]):
        if not decided[layer]:
            decided_at.append(None)
            continue
        inside = values[:, layer] >= 1 - DECIDED if final[layer] > 0.5 else values[:, layer] <= DECIDED
        outside = np.flatnonzero(~inside)
        decided_at.append(int(steps[outside[-1] + 1]) if outside.size else int(steps[0]))
    return {"final": final.tolist(), "distance_from_half": np.abs(final - 0.5).tolist(),
            "last_quarter_range": spread.tolist(), "decided": decided.tolist(),
            "settled": (spread < SETTLED).tolist(), "decided_at_step": decided_at,
            "converged_layers": int(np.sum(decided & (spread < SETTLED))), "layers": int(values.shape[1])}


def plot_trajectories(runs: List[Dict[str, Any]], modes: List[str], seeds: List[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raynas.io import atomic_path

    fig, axes = plt.subplots(len(seeds), len(modes), figsize=(4.6 * len(modes), 2.9 * len(seeds)),
                             sharey=True, squeeze=False)
    for run in runs:
        ax = axes[seeds.index(run["seed"])][modes.index(run["mode"])]
        values = np.asarray(run["trajectory"])
        for layer in range(values.shape[1] - 1):
            ax.plot(values[:, 0], values[:, layer + 1], lw=1.2, label=f"layer {layer}")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{run['mode']}, seed {run['seed']}: {' '.join(run['ops'])}", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    for row in axes:
        row[0].set_ylabel("α = P(convolution)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_alpha_csv(path: Path, runs: List[Dict[str, Any]]) -> None:
    from raynas.io import atomic_write_text

    lines = ["mode,seed,step,layer,alpha"]
    for run in runs:
        for row in run["trajectory"]:
            lines += [f"{run['mode']},{run['seed']},{row[0]},{layer},{a:.6f}" for layer, a in enumerate(row[1:])]
    atomic_write_text(path, "\n".join(lines) + "\n")


def random_op_assignments(space, count: int, seed: int) -> List[Dict[str, Any]]:
    """Op per layer uniformly at random, each op at its largest widths."""
    from raynas.rng import derive_rng

    rng = derive_rng(seed, "uniform-candidates")
    conv = {"op": "conv", "expand_ratio": space.expand_ratios[-1]}
    attn = {"op": "attn", "num_heads": space.num_heads[-1], "mlp_ratio": space.mlp_ratios[-1]}
    return [space.validate({"layers": [dict(conv) if rng.random() < 0.5 else dict(attn)
                                       for _ in range(space.num_layers)]}) for _ in range(count)]


def test_split(dataset) -> str:
    """The official test set, or the validation split for sources without one (digits)."""
    return "test" if "test" in dataset.splits else "val"


def train_mode(mode: str, seed: int, base: Dict[str, Any], dataset, args: argparse.Namespace,
               device: torch.device) -> Dict[str, Any]:
    """Train one supernet in ``mode``; its α trajectory, derived arch and inherited accuracy."""
    from raynas.evaluators.weight_inherited import WeightInheritedEvaluator
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import SupernetTrainer

    config = dict(base, seed=seed, sampler="fixed", sampler_options={"arch": "largest"},
                  supernet_options={"mode": mode, "seed": seed}, epochs=args.epochs)
    trainer = SupernetTrainer(SupernetTrainConfig.from_any(config), dataset)
    net = trainer.module
    trajectory = [[0] + net.alpha_values()]

    def record(tr: SupernetTrainer) -> None:
        if tr.step % args.log_every == 0 or tr.step == tr.stop_step:
            trajectory.append([tr.step] + tr.module.alpha_values())
        if args.progress_every and tr.step % args.progress_every == 0:
            print(f"  [{mode} seed {seed}] step {tr.step}/{tr.stop_step} α {np.round(tr.module.alpha_values(), 3).tolist()}",
                  flush=True)

    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(callback=record)
    train_s, train_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    evaluate = dict(calib_images=min(len(dataset.split("calib")), args.calib_batches * args.eval_batch),
                    batch_size=args.eval_batch, device=device,
                    bf16=device.type == "cuda")
    on_val = WeightInheritedEvaluator.from_dataset(net, dataset, **evaluate)
    on_test = WeightInheritedEvaluator(net, dataset.split("calib"), dataset.split(test_split(dataset)),
                                       mean=dataset.mean, std=dataset.std, **evaluate)
    with net.arch_mode():
        if mode == "uniform":  # α never moves: pick the best random op assignment instead
            candidates = random_op_assignments(trainer.space, args.candidates, seed)
            scored = [(on_val.evaluate([a])[0]["accuracy"], -i) for i, a in enumerate(candidates)]
            arch = candidates[-max(scored)[1]]
            candidate_acc: Optional[List[float]] = [s for s, _ in scored]
        else:
            arch, candidate_acc = net.derive_arch(), None
        inherited = {"val": on_val.evaluate([arch])[0]["accuracy"],
                     "test": on_test.evaluate([arch])[0]["accuracy"]}
    return {"mode": mode, "seed": seed, "trajectory": trajectory, "steps": trainer.step,
            "train_s": train_s, "train_cpu_s": train_cpu_s,
            "loss_per_epoch": [{"epoch": h["epoch"], "step": h["step"], "train_loss": h["train_loss"]}
                               for h in trainer.history],
            "arch": arch, "ops": [layer["op"] for layer in arch["layers"]], "inherited": inherited,
            "candidates_val": candidate_acc, "alpha": alpha_summary(trajectory),
            "cost": trainer.space.cost(arch, num_classes=dataset.num_classes)}


def train_alone(arch: Dict[str, Any], base: Dict[str, Any], dataset, args: argparse.Namespace,
                device: torch.device) -> Dict[str, Any]:
    """Train ``arch`` from scratch (same recipe, seed 0, ``--standalone-steps`` steps)."""
    from raynas.arch import arch_id
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import SupernetTrainer, evaluate_accuracy

    spe = steps_per_epoch(dataset, args.batch_size)
    config = dict(base, seed=0, sampler="fixed", sampler_options={"arch": arch}, standalone=True,
                  epochs=args.standalone_steps / spe)
    trainer = SupernetTrainer(SupernetTrainConfig.from_any(config), dataset)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit()
    model = trainer.module
    return {"arch_id": arch_id(arch), "arch": arch, "steps": trainer.step,
            "val": evaluate_accuracy(model, dataset, "val", device, None, args.eval_batch, bf16=False),
            "test": evaluate_accuracy(model, dataset, test_split(dataset), device, None, args.eval_batch, bf16=False),
            "train_s": time.perf_counter() - wall, "train_cpu_s": time.process_time() - cpu}


def summarise(runs: List[Dict[str, Any]], standalone: Dict[str, Dict[str, Any]], modes: List[str]) -> Dict[str, Any]:
    from raynas.arch import arch_id

    out = {}
    for mode in modes:
        rows = [r for r in runs if r["mode"] == mode]
        if not rows:
            continue
        alone = [standalone[arch_id(r["arch"])]["test"] for r in rows if arch_id(r["arch"]) in standalone]
        layers = sum(r["alpha"]["layers"] for r in rows)
        out[mode] = {
            "seeds": [r["seed"] for r in rows],
            "ops": [" ".join(r["ops"]) for r in rows],
            "inherited_val": [r["inherited"]["val"] for r in rows],
            "inherited_test": [r["inherited"]["test"] for r in rows],
            "inherited_test_mean": float(np.mean([r["inherited"]["test"] for r in rows])),
            "standalone_test": alone,
            "standalone_test_mean": float(np.mean(alone)) if alone else None,
            "converged_layers": f"{sum(r['alpha']['converged_layers'] for r in rows)}/{layers}",
            "converged_fraction": sum(r["alpha"]["converged_layers"] for r in rows) / layers,
            "mean_distance_from_half": float(np.mean([d for r in rows for d in r["alpha"]["distance_from_half"]])),
            "mean_last_quarter_range": float(np.mean([d for r in rows for d in r["alpha"]["last_quarter_range"]])),
            "decided_at_step": [r["alpha"]["decided_at_step"] for r in rows],
            "final_alpha": [r["alpha"]["final"] for r in rows],
            "train_cpu_s_mean": float(np.mean([r["train_cpu_s"] for r in rows])),
        }
    return out


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", default=CIFAR10_SPEC)
    parser.add_argument("--image-size", type=int, default=None,
                        help="images resized once to this side (e.g. 16 on a CPU); match img_size in --space-options")
    parser.add_argument("--space", default="hybrid_cifar")
    parser.add_argument("--space-options", default="{}", help="JSON overrides of space options")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of every (mode, seed)")
    parser.add_argument("--standalone-steps", type=int, default=0,
                        help="train each distinct derived arch from scratch this long (0: skip)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--alpha-lr", type=float, default=5e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--candidates", type=int, default=8, help="uniform: random op assignments scored")
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--eval-batch", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=10, help="steps between logged α")
    parser.add_argument("--progress-every", type=int, default=250, help="steps between progress lines (0: none)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="digits on CPU (seconds)")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --out, run the rest")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--out", default=str(RESULTS / "hybrid_modes.json"))
    args = parser.parse_args(argv)
    options = json.loads(args.space_options)
    data, data_options = resolve_data_spec(args.data), {}
    if args.image_size:
        data_options["image_size"] = args.image_size
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.smoke:
        args.device, args.batch_size, args.candidates, args.calib_batches = "cpu", 32, 2, 1
        args.eval_batch, args.log_every, args.progress_every = 128, 2, 0
        args.steps, args.standalone_steps = 6, min(args.standalone_steps, 4)
        args.threads, seeds = args.threads or 1, seeds[:2]
        data, data_options = "digits", {"image_size": 16}
        options = {**SMOKE_SPACE, **options}
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes) or not seeds:
        parser.error(f"--modes takes a comma-separated subset of {MODES}; --seeds at least one")
    if args.steps < 1 or args.standalone_steps < 0:
        parser.error("--steps must be >= 1 and --standalone-steps >= 0")
    out = Path(args.out)
    previous: Dict[str, Any] = {}
    if out.exists() and args.resume:
        previous = json.loads(out.read_text())
    elif out.exists() and not args.overwrite:
        parser.error(f"{out} exists; pass --overwrite to replace it, --resume to continue it, or another --out")
    start = time.perf_counter()
    device = setup_device(args.device, args.threads)

    from raynas.arch import arch_id
    from raynas.data import load_dataset

    dataset = load_dataset(data, seed=0, **data_options)
    spe = steps_per_epoch(dataset, args.batch_size)
    args.epochs = args.steps / spe
    work = tempfile.mkdtemp(prefix="raynas-hybrid-")
    base = dict(space=args.space, space_options=options, data=data, data_options=data_options,
                output=work, batch_size=args.batch_size, optimizer="adamw", lr=args.lr,
                weight_decay=args.weight_decay, alpha_lr=args.alpha_lr, label_smoothing=0.0,
                grad_clip=None, device=str(device), bf16=device.type == "cuda",
                checkpoint_every=10 ** 6, log_every=10 ** 6, cpu_threads=args.threads)
    runs: List[Dict[str, Any]] = list(previous.get("runs", []))
    standalone: Dict[str, Dict[str, Any]] = dict(previous.get("standalone", {}))

    def report(complete: bool) -> Dict[str, Any]:
        return {
            "benchmark": "hybrid_modes", "smoke": args.smoke, "complete": complete, **environment(device),
            "machine": "shared CPU" if device.type == "cpu" else None,
            "command": "python benchmarks/hybrid_modes.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "amp": "bf16" if device.type == "cuda" else "fp32",
            "space": {"name": args.space, "options": options},
            "data": data if args.smoke else args.data, "image_size": dataset.image_size,
            "settings": {"steps": args.steps, "epochs": args.epochs, "steps_per_epoch": spe,
                         "batch_size": args.batch_size, "lr": args.lr, "alpha_lr": args.alpha_lr,
                         "weight_decay": args.weight_decay, "candidates": args.candidates,
                         "standalone_steps": args.standalone_steps, "seeds": seeds, "modes": modes,
                         "decided_within": DECIDED, "settled_below": SETTLED},
            "summary": summarise(runs, standalone, modes), "runs": runs, "standalone": standalone,
            "alpha_plot": out.stem + "_alpha.png", "wall_s": time.perf_counter() - start,
        }

    done = {(r["mode"], r["seed"]) for r in runs}
    for seed in seeds:
        for mode in modes:
            if (mode, seed) in done:
                continue
            run = train_mode(mode, seed, base, dataset, args, device)
            runs.append(run)
            print(f"[{mode} seed {seed}] ops {run['ops']} inherited {run['inherited']} α "
                  f"{np.round(run['alpha']['final'], 3).tolist()} ({run['train_cpu_s']:.0f} CPU s)", flush=True)
            write_report(str(out), report(complete=False))
    if args.standalone_steps:
        for run in runs:
            key = arch_id(run["arch"])
            if key not in standalone:
                standalone[key] = train_alone(run["arch"], base, dataset, args, device)
                print(f"[alone] {' '.join(run['ops'])}: test {standalone[key]['test']:.2f}", flush=True)
                write_report(str(out), report(complete=False))
    runs.sort(key=lambda r: (modes.index(r["mode"]) if r["mode"] in modes else len(modes), r["seed"]))
    final = report(complete=True)
    plot_trajectories([r for r in runs if r["mode"] in modes and r["seed"] in seeds], modes, seeds,
                      out.with_name(out.stem + "_alpha.png"))
    write_alpha_csv(out.with_name(out.stem + "_alpha.csv"), runs)
    write_report(str(out), final)
    print(f"\n{'mode':<9} {'converged':>9} {'|α-½|':>6} {'inherited test':>15} {'stand-alone test':>17}  ops per seed")
    for mode, s in final["summary"].items():
        alone = "-" if s["standalone_test_mean"] is None else f"{s['standalone_test_mean']:.2f}"
        print(f"{mode:<9} {s['converged_layers']:>9} {s['mean_distance_from_half']:6.3f} "
              f"{s['inherited_test_mean']:15.2f} {alone:>17}  {s['ops']}")
    return final


if __name__ == "__main__":
    main()
