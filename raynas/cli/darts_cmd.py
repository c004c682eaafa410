"""``raynas darts`` (differentiable search, one Tune trial per search) and ``raynas retrain``
(train an arch from scratch, e.g. a derived DARTS genotype)."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional

from raynas.cli.common import HelpFormatter, parse_kv_options, read_arch
from raynas.errors import ConfigError


def register(sub) -> None:
    from raynas.cli.main import add_ray_options

    p = sub.add_parser(
        "darts", help="differentiable search: DARTS (first/second order) and TD-DARTS",
        description="Run DARTS-style searches on Ray Tune, one trial per combination of the "
                    "comma-separated values of --order, --schedule and --seed. Each trial reports "
                    "every epoch (temperature, derived arch, skip connections, supernet accuracy). "
                    "TD-DARTS is --schedule linear (T from 10 to 0.1).",
        formatter_class=HelpFormatter)
    p.add_argument("--config", help="JSON file of DartsSearchConfig options (flags below override it)")
    p.add_argument("--space", help="nb201 | darts")
    p.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE", help="space option")
    p.add_argument("--supernet-option", "-s", action="append", metavar="KEY=VALUE",
                   help="search-network option (nb201: channels, cells_per_stage; darts: channels, layers)")
    p.add_argument("--data", help="dataset: digits | cifar10:<path> | imagefolder:<path>")
    p.add_argument("--order", default=None, help="1, 2 or both ('1,2')")
    p.add_argument("--schedule", default=None, help="constant | linear | exponential (comma-separated to sweep)")
    p.add_argument("--t0", type=float, default=None, help="initial temperature of decaying schedules (default 10)")
    p.add_argument("--t-end", type=float, default=None, help="final temperature of decaying schedules (default 0.1)")
    p.add_argument("--t", type=float, default=None, help="temperature of the constant schedule (default 1)")
    p.add_argument("--seed", default=None, help="seed or comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--half-size", type=int, help="images in each half of the training set (default: all)")
    p.add_argument("--table", help="benchmark table to look derived archs up in (e.g. nb201_cifar10.csv)")
    p.add_argument("--table-metric", action="append", metavar="NAME=COLUMN",
                   help="reported name and table column, e.g. test_accuracy=c10_test_200ep")
    p.add_argument("--latency-table", help="per-op latency table (JSON saved by OperatorLatencyTable.save) "
                                           "of the expected-latency loss, or 'measure' to time the supernet's ops")
    p.add_argument("--latency-lambda", default=None,
                   help="λ of the α loss CE + λ·E[latency ms]; comma-separated to sweep, e.g. 0,0.1,1")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPU share of each search (e.g. 0.25: four searches per GPU); default 1 if a "
                        "GPU is visible, else 0")
    p.add_argument("--asha", action="store_true", help="stop poor searches early (ASHA on val_accuracy)")
    p.add_argument("--output", default="raynas_results", help="results folder")
    p.add_argument("--name", help="experiment name (default: darts-<time>)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    add_ray_options(p)
    p.set_defaults(handler=run_search)

    r = sub.add_parser(
        "retrain", help="train an arch from scratch (DARTS' evaluation recipe by default)",
        description="Train an arch (e.g. a derived DARTS genotype) from scratch as one Tune trial per "
                    "seed, reporting test accuracy every epoch. Defaults: 20 cells, 36 channels, "
                    "auxiliary head 0.4, cutout 16, drop-path 0.2, 600 epochs.",
        formatter_class=HelpFormatter)
    r.add_argument("--config", help="JSON file of RetrainConfig options (flags below override it)")
    r.add_argument("--arch", help="the arch: JSON text or a .json file (an arch, or an object with 'arch')")
    r.add_argument("--space", help="search space of the arch (default darts)")
    r.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE",
                   help="space option (darts: channels, layers, auxiliary)")
    r.add_argument("--data", help="dataset: cifar10:<path> | imagefolder:<path>")
    r.add_argument("--epochs", type=int)
    r.add_argument("--batch-size", type=int)
    r.add_argument("--seed", default=None, help="seed or comma-separated seeds")
    r.add_argument("--cutout", type=int, help="cutout side (0: off)")
    r.add_argument("--drop-path", type=float, help="final drop-path probability")
    r.add_argument("--auxiliary-weight", type=float, help="weight of the auxiliary loss (0: off)")
    r.add_argument("--device", help="auto | cpu | cuda")
    r.add_argument("--export-dir", help="export each trained model here (model.safetensors + config.json)")
    r.add_argument("--gpus-per-trial", type=float, default=None, help="default 1 if a GPU is visible, else 0")
    r.add_argument("--output", default="raynas_results", help="results folder")
    r.add_argument("--name", help="experiment name (default: retrain-<time>)")
    r.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    add_ray_options(r)
    r.set_defaults(handler=run_retrain)


def _csv(text: Optional[str], cast) -> Optional[List[Any]]:
    if text is None:
        return None
    try:
        values = [cast(v.strip()) for v in str(text).split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"cannot parse {text!r}: {exc}") from exc
    if not values:
        raise ConfigError(f"no values in {text!r}")
    return values


def _schedules(names: List[str], args: argparse.Namespace) -> List[Dict[str, Any]]:
    out = []
    for name in names:
        if name == "constant":
            out.append({"name": "constant", **({"t": args.t} if args.t is not None else {})})
        else:
            out.append({"name": name, **({"t0": args.t0} if args.t0 is not None else {}),
                        **({"t_end": args.t_end} if args.t_end is not None else {})})
    return out


def _default_gpus(value: Optional[float]) -> float:
    if value is not None:
        return value
    import torch

    return 1.0 if torch.cuda.is_available() else 0.0


def _split_grid(overrides: Dict[str, Any], grid: Dict[str, List[Any]], key: str, values: Optional[List[Any]]) -> None:
    """One value: a plain override; several: a sweep."""
    if values is None:
        return
    if len(values) == 1:
        overrides[key] = values[0]
    else:
        grid[key] = values


def run_search(args: argparse.Namespace) -> int:
    from raynas.differentiable.sweep import darts_search

    overrides: Dict[str, Any] = dict(space=args.space, data=args.data, epochs=args.epochs,
                                     batch_size=args.batch_size, half_size=args.half_size,
                                     table=args.table, device=args.device, latency_table=args.latency_table)
    if args.space_option:
        overrides["space_options"] = parse_kv_options(args.space_option, "space")
    if args.supernet_option:
        overrides["supernet_options"] = parse_kv_options(args.supernet_option, "supernet")
    if args.table_metric:
        overrides["table_metrics"] = {k: str(v) for k, v in parse_kv_options(args.table_metric, "table").items()}
    grid: Dict[str, List[Any]] = {}
    _split_grid(overrides, grid, "order", _csv(args.order, int))
    _split_grid(overrides, grid, "seed", _csv(args.seed, int))
    _split_grid(overrides, grid, "latency_lambda", _csv(args.latency_lambda, float))
    names = _csv(args.schedule, str)
    if names is None and (args.t0 is not None or args.t_end is not None or args.t is not None):
        raise ConfigError("--t0/--t-end/--t need --schedule")
    _split_grid(overrides, grid, "schedule", _schedules(names, args) if names else None)
    scheduler = None
    if args.asha:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="training_iteration", grace_period=max(1, (args.epochs or 50) // 5))
    result = darts_search(args.config, grid=grid, scheduler=scheduler, gpus_per_trial=_default_gpus(args.gpus_per_trial),
                          name=args.name, storage_path=args.output, address=args.address,
                          num_cpus=args.num_cpus, progress=not args.quiet, **overrides)
    columns = [c for c in ["method", "seed", "latency_lambda", "epochs_run", "temperature", "val_accuracy",
                           "skip_connections", *(overrides.get("table_metrics") or {}), "expected_latency_ms",
                           "derived_latency_ms", "arch_str", "error"] if c in result.table]
    print(result.table[columns].to_string(index=False))
    print(f"results: {result.directory / 'darts_results.json'}")
    return 0 if all(not t["error"] for t in result.trials) else 1


def run_retrain(args: argparse.Namespace) -> int:
    from raynas.differentiable.sweep import retrain

    overrides: Dict[str, Any] = dict(space=args.space, data=args.data, epochs=args.epochs,
                                     batch_size=args.batch_size, cutout=args.cutout,
                                     drop_path_prob=args.drop_path, auxiliary_weight=args.auxiliary_weight,
                                     device=args.device, export_dir=args.export_dir)
    if args.arch:
        overrides["arch"] = read_arch(args.arch)
    if args.space_option:
        overrides["space_options"] = parse_kv_options(args.space_option, "space")
    grid: Dict[str, List[Any]] = {}
    _split_grid(overrides, grid, "seed", _csv(args.seed, int))
    result = retrain(args.config, grid=grid, gpus_per_trial=_default_gpus(args.gpus_per_trial), name=args.name,
                     storage_path=args.output, address=args.address, num_cpus=args.num_cpus,
                     progress=not args.quiet, **overrides)
    columns = [c for c in ["seed", "epochs_run", "params", "train_accuracy", "test_accuracy", "error"]
               if c in result.table]
    print(result.table[columns].to_string(index=False))
    best = [t for t in result.trials if t["history"]]
    if best:
        print(json.dumps({"arch": best[0]["config"].get("arch")}))
    print(f"results: {result.directory / 'darts_results.json'}")
    return 0 if all(not t["error"] for t in result.trials) else 1
