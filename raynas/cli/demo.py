"""``raynas demo``: the whole pipeline on the embedded default, in about five minutes on 2 CPUs.

Train a small OFA MobileNetV3 supernet on scikit-learn's digits (no download) on one core while
the other trains the supernet's largest network alone for the same wall time; search the
supernet with regularized evolution under a MACs limit (weight-inherited accuracy on a pool of
Ray actors); export the best subnet; and print the largest, smallest and best subnets next to
the network trained alone, so the table shows what weight sharing bought: many trained
networks for the price of one.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Mapping

from raynas.cli.main import add_ray_options

# digits are 8x8 images: upsampled to 16x16 they keep every pixel and cost a quarter of 32x32
DEMO_DATA_OPTIONS: Dict[str, Any] = {"image_size": 16}
# width 0.5, stride 2 in the first stage (16 -> 8, the digits' own resolution), input 12-16 px
DEMO_SPACE_OPTIONS: Dict[str, Any] = {"width_mult": 0.5, "resolutions": [12, 14, 16],
                                      "stage_strides": [2, 2, 2, 1, 2]}
DEMO_TRAIN: Dict[str, Any] = {"epochs": 24, "batch_size": 64, "lr": 0.1, "warmup_epochs": 1.0,
                              "label_smoothing": 0.1, "sampler": "sandwich",
                              # students on the labels for the first half, distilled after: early
                              # distillation from a near-chance teacher slows them (supernet_convergence)
                              "sampler_options": {"num_random": 1, "distill_warmup": 0.5}}
SEARCH_STRATEGY = {"population_size": 24, "sample_size": 6}


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline on the embedded default (digits, CPU)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="demo", help="experiment name (folder under --output)")
    p.add_argument("--output", default="raynas_results", help="folder of experiments")
    p.add_argument("--epochs", type=float, default=DEMO_TRAIN["epochs"], help="supernet training epochs")
    p.add_argument("--max-steps", type=int, help="stop training after this many steps (smoke runs, tests)")
    p.add_argument("--num-samples", "-n", type=int, default=120, help="archs the search evaluates")
    p.add_argument("--macs-fraction", type=float, default=0.6,
                   help="MACs limit as a fraction of the largest subnet's MACs")
    p.add_argument("--calib-images", type=int, default=None,
                   help="BN-calibration images per evaluated arch (default: the whole calibration "
                        "split, 250 digits); the supernet's report, the search and the export all use it")
    p.add_argument("--no-alone", dest="alone", action="store_false",
                   help="skip training the largest network alone (frees the second core)")
    p.add_argument("--actors", type=int, default=None, help="evaluation actors (default: 2 on CPU, 1 per GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads of each training process (the supernet and the network "
                        "trained alone run side by side)")
    add_ray_options(p)
    p.set_defaults(handler=run)


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad options before Ray starts (one line naming the option and the fix)."""
    from raynas.errors import ConfigError

    if not args.epochs > 0:
        raise ConfigError(f"--epochs must be > 0, got {args.epochs}")
    if args.num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {args.num_samples}")
    if not 0 < args.macs_fraction <= 1:
        raise ConfigError(f"--macs-fraction must be in (0, 1], got {args.macs_fraction}")
    for flag, value in (("--actors", args.actors), ("--threads", args.threads),
                        ("--calib-images", args.calib_images)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")


def demo_config(args: argparse.Namespace, output: Path):
    """The supernet's training config (the network trained alone shares it but the sampler)."""
    from raynas.training import SupernetTrainConfig

    return SupernetTrainConfig(space="ofa_mbv3_cifar", space_options=dict(DEMO_SPACE_OPTIONS), data="digits",
                               data_options=dict(DEMO_DATA_OPTIONS), output=str(output / "supernet"),
                               seed=args.seed, cpu_threads=args.threads, device="cpu", channels_last=True,
                               calib_images=args.calib_images, max_steps=args.max_steps,
                               **{**DEMO_TRAIN, "epochs": args.epochs})


def alone_config(config, output: Path, epochs: float):
    from raynas.training import SupernetTrainConfig

    return SupernetTrainConfig.from_any(config, output=str(output / "alone"), epochs=epochs,
                                        sampler="fixed", sampler_options={"arch": "largest"},
                                        standalone=True)


def train_alone(config: Mapping[str, Any]) -> Dict[str, Any]:
    """Runs in a Ray task: the largest arch trained from scratch as a static network."""
    from trainables.supernet import train_standalone

    start, cpu = time.perf_counter(), time.process_time()
    _, metrics = train_standalone("largest", config)
    return {**metrics, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}


def size_alone(config, dataset, out: Path, epochs: float) -> float:
    """Epochs of the network trained alone that take the supernet's training time: both step
    costs timed in alternating rounds (load drifts hit both alike)."""
    from trainables.timing import time_training_steps

    probe = time_training_steps({"supernet": config, "alone": alone_config(config, out, 1)}, dataset,
                                steps=2, rounds=3)["seconds_per_step"]
    steps_per_epoch = len(dataset.split("train")) // config.batch_size
    alone_epochs = max(1, round(epochs * steps_per_epoch * probe["supernet"] / probe["alone"])) / steps_per_epoch
    print(f"      {probe['supernet']:.2f} s per supernet step, {probe['alone']:.2f} s alone: the "
          f"network alone gets {alone_epochs:.1f} epochs for the supernet's {epochs:g}")
    return alone_epochs


def run(args: argparse.Namespace) -> int:
    import ray

    import raynas
    from raynas.data import load_dataset
    from raynas.io import atomic_write_json
    from raynas.registry import create_space
    from raynas.training import make_sampling_strategy
    from trainables.sessions import LocalSession
    from trainables.supernet import SupernetTrainer, run_training

    check_args(args)
    timings: Dict[str, float] = {}
    start = time.perf_counter()
    out = Path(args.output) / args.name
    if out.exists() and (out / "search.json").exists():
        shutil.rmtree(out)  # a previous demo run: start clean so every artifact is this run's
    config = demo_config(args, out)
    dataset = load_dataset(config.data, seed=config.seed, **config.data_options)
    alone_epochs = None
    if args.alone:  # timing builds both trainers, so it also checks every option before Ray starts
        print("[1/4] timing a few training steps of the supernet and of its largest network alone ...")
        t = time.perf_counter()
        alone_epochs = size_alone(config, dataset, out, args.epochs)
        timings["probe"] = time.perf_counter() - t
    else:
        SupernetTrainer(config, dataset)  # checks every option (and the calibration size) before Ray
    t = time.perf_counter()
    raynas.ensure_ray(args.address, num_cpus=args.num_cpus)
    timings["ray start"] = time.perf_counter() - t
    alone = None
    if alone_epochs is not None:
        alone = ray.remote(num_cpus=1)(train_alone).remote(alone_config(config, out, alone_epochs).to_dict())

    rule = make_sampling_strategy(config.sampler, **config.sampler_options).describe()
    print(f"[2/4] training the supernet ({rule}) on digits"
          + (" while the other core trains its largest network alone ..." if alone else " ..."))
    t, cpu = time.perf_counter(), time.process_time()
    _, train_metrics = run_training(config, LocalSession(Path(config.output) / "checkpoint"),
                                    dataset=dataset, progress=True)
    timings["train"] = time.perf_counter() - t
    train_metrics["cpu_seconds"] = time.process_time() - cpu
    alone_metrics = ray.get(alone) if alone is not None else None
    if alone_metrics is not None:
        timings["train alone (side by side)"] = alone_metrics["seconds"]
    print(f"      largest subnet {train_metrics['largest_accuracy']:.1f}%, smallest "
          f"{train_metrics['smallest_accuracy']:.1f}% (weight-inherited, BN recalibrated on "
          f"{train_metrics['calib_images']} images)")

    space = create_space("ofa_mbv3_cifar", **DEMO_SPACE_OPTIONS)
    checkpoint = Path(config.output) / "checkpoint"
    best = search_and_export(args, space, checkpoint, out, timings)
    timings["total"] = time.perf_counter() - start

    rows = summary_rows(space, train_metrics, best, alone_metrics, dataset.num_classes)
    print_summary(rows, train_metrics, alone_metrics, best["evaluation"], best["macs_limit"])
    # a shared machine slows every stage alike: the share of a core the supernet's process got
    # turns the wall time into what an idle machine would take
    share = min(1.0, train_metrics["cpu_seconds"] / max(timings["train"], 1e-9))
    idle = timings["total"] * share
    print(f"\n   exported: {best['export_dir']} (model.safetensors + config.json), "
          f"as a timm model: {best['timm_dir']}")
    print(f"       pool: {best['health']['workers']} actors, {best['health']['evaluated']} evaluations, "
          f"{best['health']['restarts']} restarts")
    print("    timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    if share < 0.9:
        print(f"             (the supernet's process got {share:.0%} of a core: other jobs share this "
              f"machine; an idle one would take about {idle:.0f}s)")
    atomic_write_json(out / "demo.json", {
        "rows": [{"network": k, **v} for k, v in rows.items()], "timings_s": timings,
        "core_share": share, "idle_estimate_s": idle, "evaluation": best["evaluation"],
        "supernet": {k: train_metrics[k] for k in ("steps", "train_seconds", "cpu_seconds")},
        "alone": alone_metrics, "macs_limit": best["macs_limit"], "config": config.to_dict()})
    return 0


def search_and_export(args: argparse.Namespace, space, checkpoint: Path, out: Path,
                      timings: Dict[str, float]) -> Dict[str, Any]:
    """Evolution under the MACs limit on a pool of actors, then the best subnet exported and
    reloaded from its files."""
    import raynas
    from raynas.export import export_subnet, verify_exported
    from raynas.export_formats import export_timm
    from raynas.outcome import check_outcome
    from raynas.reporting import write_search_artifacts

    limit = args.macs_fraction * space.cost(space.largest())["macs"]
    print(f"[3/4] evolution search of {args.num_samples} archs with macs <= {limit / 1e6:.2f}M ...")
    t = time.perf_counter()
    pool = raynas.SupernetPool.from_checkpoint(str(checkpoint), calib_images=args.calib_images,
                                               num_actors=args.actors)
    try:
        result = raynas.search(space, pool, strategy="evolution", num_samples=args.num_samples,
                               constraints=[f"macs<={limit:.0f}"], objectives=["accuracy:max", "macs:min"],
                               strategy_options=dict(SEARCH_STRATEGY), seed=args.seed, name=args.name,
                               storage_path=args.output)
        health = pool.health()
    finally:
        pool.shutdown()
    timings["search"] = time.perf_counter() - t
    write_search_artifacts(result, space)
    check_outcome(result, args.num_samples)  # failed evaluations exit non-zero, as 'raynas search' does

    print("[4/4] exporting the best subnet ...")
    t = time.perf_counter()
    export_dir, metrics = export_subnet(checkpoint, result.best_arch(), out / "best_subnet",
                                        calib_images=args.calib_images)
    reproduced = verify_exported(export_dir)
    timm_dir, _ = export_timm(export_dir)   # the same subnet as a timm model (loads with timm alone)
    timings["export"] = time.perf_counter() - t
    return {**metrics, "exported": reproduced, "export_dir": export_dir, "timm_dir": timm_dir, "health": health,
            "evaluation": pool.evaluation, "macs_limit": limit}


def summary_rows(space, train_metrics: Mapping[str, Any], best: Mapping[str, Any], alone_metrics,
                 num_classes: int) -> Dict[str, Dict[str, Any]]:
    def cost(arch) -> Dict[str, float]:
        c = space.cost(arch, num_classes=num_classes)
        return {"macs": c["macs"], "params": c["params"]}

    rows = {"largest subnet": {"accuracy": train_metrics["largest_accuracy"], **cost(space.largest())},
            "smallest subnet": {"accuracy": train_metrics["smallest_accuracy"], **cost(space.smallest())},
            "best searched subnet": {"accuracy": best["accuracy"], "exported": best["exported"],
                                     "macs": best["macs"], "params": best["params"]}}
    if alone_metrics is not None:
        rows["largest network alone"] = {"accuracy": alone_metrics["accuracy"], **cost(space.largest())}
    return rows


def print_summary(rows: Mapping[str, Mapping[str, Any]], train_metrics: Mapping[str, Any], alone_metrics,
                  evaluation: Mapping[str, Any], limit: float) -> None:
    print(f"\n{'network':28s} {'accuracy':>9s} {'MACs':>8s} {'params':>8s}  how it was trained")
    trained = {
        "largest subnet": (f"weight sharing: {train_metrics['steps']} steps, "
                           f"{train_metrics['train_seconds']:.0f} s for every subnet at once"),
        "smallest subnet": "the same supernet, no extra training",
        "best searched subnet": f"the same supernet; best under macs <= {limit / 1e6:.2f}M",
    }
    if alone_metrics is not None:
        trained["largest network alone"] = (f"from scratch: {alone_metrics['steps']} steps, "
                                            f"{alone_metrics['seconds']:.0f} s on the other core")
    for name, row in rows.items():
        print(f"{name:28s} {row['accuracy']:8.2f}% {row['macs'] / 1e6:7.2f}M {row['params'] / 1e6:7.3f}M  "
              f"{trained[name]}")
    print(f"(top-1 on the {evaluation.get('data')} validation split; subnets with BN recalibrated on "
          f"{evaluation.get('calib_images')} held-out training images; the exported best subnet "
          f"reproduces {rows['best searched subnet']['exported']:.2f}% from its files)")
