"""``raynas demo``: the whole pipeline on the embedded default, in about five minutes on 2 CPUs.

Train a small CIFAR-sized OFA MobileNetV3 supernet on scikit-learn's digits (no download), search
it with regularized evolution under a MACs limit (weight-inherited accuracy on a pool of Ray
actors), then write the results table, the Pareto plot, best.json and the exported best subnet.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from raynas.cli.main import add_ray_options

# Small enough to train for a minute on 2 cores, large enough for subnets to differ.
# Stride 2 in the first stage: digits are 8x8 images upsampled to 32x32, so little is lost.
DEMO_SPACE_OPTIONS = {"width_mult": 0.5, "stage_strides": [2, 2, 2, 1, 2]}
DEMO_TRAIN = {"epochs": 6, "batch_size": 64, "lr": 0.1, "warmup_epochs": 0.5, "label_smoothing": 0.1}


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline on the embedded default (digits, CPU)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="demo", help="experiment name (folder under --output)")
    p.add_argument("--output", default="raynas_results", help="folder of experiments")
    p.add_argument("--epochs", type=int, default=DEMO_TRAIN["epochs"], help="supernet training epochs")
    p.add_argument("--max-steps", type=int, help="stop training after this many steps (smoke runs, tests)")
    p.add_argument("--num-samples", "-n", type=int, default=120, help="archs the search evaluates")
    p.add_argument("--macs-fraction", type=float, default=0.6,
                   help="MACs limit as a fraction of the largest subnet's MACs")
    p.add_argument("--actors", type=int, default=None, help="evaluation actors (default: 2 on CPU, 1 per GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for training (default: torch's; use 1 on a busy machine)")
    add_ray_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import raynas
    from raynas.export import export_subnet, verify_exported
    from raynas.export_formats import export_timm
    from raynas.outcome import check_outcome
    from raynas.registry import create_space
    from raynas.reporting import write_search_artifacts
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import train_supernet

    timings = {}
    start = time.perf_counter()
    out = Path(args.output) / args.name
    if out.exists() and (out / "search.json").exists():
        shutil.rmtree(out)  # a previous demo run: start clean so every artifact is this run's
    raynas.ensure_ray(args.address, num_cpus=args.num_cpus)
    timings["ray start"] = time.perf_counter() - start

    print("[1/3] training the supernet (sandwich rule + in-place distillation) on digits ...")
    t = time.perf_counter()
    config = SupernetTrainConfig(space="ofa_mbv3_cifar", space_options=dict(DEMO_SPACE_OPTIONS), data="digits",
                                 output=str(out / "supernet"), seed=args.seed, cpu_threads=args.threads,
                                 max_steps=args.max_steps,
                                 **{**DEMO_TRAIN, "epochs": args.epochs})
    checkpoint, train_metrics = train_supernet(config)
    timings["train"] = time.perf_counter() - t
    print(f"      largest subnet {train_metrics['largest_accuracy']:.1f}%, smallest "
          f"{train_metrics['smallest_accuracy']:.1f}% (weight-inherited, BN recalibrated)")

    space = create_space("ofa_mbv3_cifar", **DEMO_SPACE_OPTIONS)
    limit = args.macs_fraction * space.cost(space.largest())["macs"]
    print(f"[2/3] evolution search of {args.num_samples} archs with macs <= {limit / 1e6:.2f}M ...")
    t = time.perf_counter()
    pool = raynas.SupernetPool.from_checkpoint(str(checkpoint), data="digits", seed=args.seed,
                                               num_actors=args.actors)
    result = raynas.search(space, pool, strategy="evolution", num_samples=args.num_samples,
                           constraints=[f"macs<={limit:.0f}"], objectives=["accuracy:max", "macs:min"],
                           strategy_options={"population_size": 24, "sample_size": 6},
                           seed=args.seed, name=args.name, storage_path=args.output)
    timings["search"] = time.perf_counter() - t
    health = pool.health()
    pool.shutdown()
    paths = write_search_artifacts(result, space)
    check_outcome(result, args.num_samples)  # failed evaluations exit non-zero, as 'raynas search' does

    print("[3/3] exporting the best subnet ...")
    t = time.perf_counter()
    best = result.best_arch()
    export_dir, metrics = export_subnet(checkpoint, best, out / "best_subnet", data="digits", seed=args.seed)
    reproduced = verify_exported(export_dir)
    timm_dir, _ = export_timm(export_dir)   # the same subnet as a timm model (loads with timm alone)
    timings["export"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - start

    print(f"\nbest subnet: accuracy {metrics['accuracy']:.2f}% in the search, {reproduced:.2f}% from the "
          f"exported files; {metrics['macs'] / 1e6:.2f}M MACs, {metrics['params'] / 1e6:.3f}M params")
    print(f"   exported: {export_dir} (model.safetensors + config.json), as a timm model: {timm_dir}")
    print(f"       pool: {health['workers']} actors, {health['evaluated']} evaluations, "
          f"{health['restarts']} restarts")
    print("    timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return 0
