"""``raynas specialize``: specialise a trained supernet to devices in seconds to minutes, OFA-style
(evolution on an accuracy predictor under a latency lookup table, winners verified for real)."""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from raynas.cli.common import parse_kv_options
from raynas.cli.main import add_ray_options


def register(sub) -> None:
    p = sub.add_parser(
        "specialize", help="specialise a supernet to devices (predictor + latency table)",
        description="For each --device and each --latency target, search the space on an accuracy "
                    "predictor under 'latency_ms <= target' (latency from the device's lookup table "
                    "or a table column), then verify the best predicted archs with real "
                    "weight-inherited evaluations. The predictor is fitted once (--fit-samples random "
                    "archs measured on the supernet) or loaded (--predictor) and reused for every "
                    "device. Writes specialize.json, the predictor, and one Pareto plot per device "
                    "under OUTPUT/NAME.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    what = p.add_argument_group("what to specialise")
    what.add_argument("--supernet", help="supernet checkpoint folder (from 'raynas train')")
    what.add_argument("--data", help="dataset of the verification split; default: the checkpoint's")
    what.add_argument("--actors", type=int, help="pool actors (default: one per GPU, else 2 on CPU)")
    what.add_argument("--table", help="instead of a supernet: CSV/Parquet of real metrics (e.g. NAS-Bench-201)")
    what.add_argument("--table-metric", action="append", metavar="NAME=COLUMN",
                      help="with --table: report COLUMN as NAME, e.g. accuracy=c10valid_valid_12ep")
    what.add_argument("--space", help="search space; default: the checkpoint's (needed with --table)")
    what.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE", help="space option")
    dev = p.add_argument_group("devices")
    dev.add_argument("--device", action="append", required=True, metavar="LUT|COLUMN",
                     help="a latency lookup table (OFA YAML file, or a folder of <res>_lookup_table.yaml) "
                          "or a column of --latency-table; repeat for several devices")
    dev.add_argument("--latency", action="append", type=float, required=True, metavar="MS",
                     help="latency target in ms; repeat for several targets (each device gets every target)")
    dev.add_argument("--latency-table", help="CSV/Parquet whose columns --device may name (e.g. nb201_latency.csv)")
    dev.add_argument("--latency-key", default="arch_str",
                     help="key column of --latency-table (the space's table_key; else canonical arch JSON)")
    pred = p.add_argument_group("accuracy predictor")
    pred.add_argument("--predictor", help="a saved predictor folder to reuse (skips fitting)")
    pred.add_argument("--predictor-kind", default="mlp", help="mlp | gbt")
    pred.add_argument("--predictor-option", action="append", metavar="KEY=VALUE",
                      help="predictor option, e.g. epochs=200 or target=quantile")
    pred.add_argument("--fit-samples", type=int, default=500, help="random archs measured to fit the predictor")
    pred.add_argument("--holdout", type=int, default=100, help="of those measured, held out to report tau")
    pred.add_argument("--metric", default="accuracy", help="metric the predictor learns and the search maximises")
    how = p.add_argument_group("search")
    how.add_argument("--strategy", default="evolution", help="strategy on the predictor (evolution, random, optuna...)")
    how.add_argument("--strategy-option", action="append", metavar="KEY=VALUE",
                     help="e.g. population_size=100 sample_size=25")
    how.add_argument("--search-samples", type=int, default=2000, help="predictor queries per target")
    how.add_argument("--verify-top", type=int, default=3, help="best predicted archs verified per target")
    how.add_argument("--seed", type=int, default=0)
    out = p.add_argument_group("output")
    out.add_argument("--name", help="experiment name (default: specialize-time)")
    out.add_argument("--output", default="raynas_results", help="folder of experiments")
    add_ray_options(p)
    p.set_defaults(handler=run)


def device_latency(space, device: str, latency_table: Optional[str], key: str):
    """(name, cost function) of one --device: a lookup-table path, or a column of ``latency_table``."""
    from raynas.errors import ConfigError

    path = Path(device).expanduser()
    if path.exists():
        from raynas.hardware import LatencyLUT
        return path.stem if path.is_file() else path.name, LatencyLUT(path, space)
    if latency_table is None:
        raise ConfigError(f"--device {device!r} is neither a lookup-table file or folder nor usable as a "
                          "column: pass --latency-table FILE whose column it names, or the path of a table")
    from raynas.evaluators.tabular import TabularCost
    cost = TabularCost(latency_table, metrics={"latency_ms": device}, space=space, key=key)
    cost.check()
    return device, cost


def run(args: argparse.Namespace) -> int:
    import raynas
    from raynas.errors import ConfigError
    from raynas.io import atomic_write_json
    from raynas.predictors import load_predictor
    from raynas.predictors.specialize import fit_from_evaluations, specialize
    from raynas.registry import create_space, space_from_spec

    if bool(args.supernet) == bool(args.table):
        raise ConfigError("give exactly one real evaluator: --supernet DIR (a trained supernet) or --table FILE")
    if any(t <= 0 for t in args.latency):
        raise ConfigError(f"latency targets must be positive milliseconds, got {args.latency}")
    space_options = parse_kv_options(args.space_option, "space")
    pool = None
    if args.supernet:
        from raynas.checkpoint import read_checkpoint_meta
        meta = read_checkpoint_meta(args.supernet)
        raynas.ensure_ray(args.address, num_cpus=args.num_cpus)  # the pool's actors; a table needs no Ray
        space = create_space(args.space, **space_options) if args.space else space_from_spec(meta["space"])
        pool = raynas.SupernetPool.from_checkpoint(args.supernet, data=args.data or meta.get("dataset"),
                                                   num_actors=args.actors)
        evaluator: Any = pool
    else:
        if not args.space:
            raise ConfigError("--table needs --space (e.g. --space nb201)")
        space = create_space(args.space, **space_options)
        from raynas.evaluators.tabular import TabularEvaluator
        evaluator = TabularEvaluator(args.table, space=space,
                                     metrics=parse_kv_options(args.table_metric, "table metric") or None)
    devices = [device_latency(space, d, args.latency_table, args.latency_key) for d in args.device]
    name = args.name or f"specialize-{time.strftime('%Y%m%d-%H%M%S')}"
    directory = Path(args.output).expanduser() / name
    directory.mkdir(parents=True, exist_ok=True)
    record: Dict[str, Any] = {"name": name, "space": space.spec(), "metric": args.metric,
                              "targets_ms": list(args.latency), "seed": args.seed}
    try:
        start = time.perf_counter()
        if args.predictor:
            predictor = load_predictor(args.predictor, space)
            record["predictor"] = {"path": str(args.predictor), "loaded": True, "fit": predictor.fit_info}
            if predictor.metric != args.metric:
                raise ConfigError(f"the predictor at {args.predictor} predicts '{predictor.metric}', "
                                  f"not --metric {args.metric}")
        else:
            print(f"measuring {args.fit_samples + args.holdout} random archs to fit the {args.predictor_kind} predictor ...")
            predictor, scores, table = fit_from_evaluations(
                space, evaluator, args.fit_samples, kind=args.predictor_kind, metric=args.metric,
                predictor_options=parse_kv_options(args.predictor_option, "predictor"), seed=args.seed,
                holdout=args.holdout)
            predictor.save(directory / "predictor")
            _write_parquet(table, directory / "evaluations.parquet")
            record["predictor"] = {"path": "predictor", "loaded": False, "holdout": scores, "fit": predictor.fit_info}
            if scores:
                print(f"predictor: held-out Kendall tau {scores['kendall_tau']:.3f}, Spearman rho "
                      f"{scores['spearman_rho']:.3f}, RMSE {scores['rmse']:.3f} on {scores['n']} archs")
        record["predictor_seconds"] = time.perf_counter() - start
        record["devices"] = []
        for device_name, latency in devices:
            result = specialize(space, predictor, latency, args.latency, verify=evaluator,
                                verify_top=args.verify_top, strategy=args.strategy,
                                strategy_options=parse_kv_options(args.strategy_option, "strategy"),
                                search_samples=args.search_samples, device=device_name, metric=args.metric,
                                seed=args.seed)
            entry = result.to_json()
            entry["plot"] = _plot(result, directory / f"pareto_{_slug(device_name)}.png", args.metric)
            record["devices"].append(entry)
            _print_device(result, args.metric, space)
    finally:
        if pool is not None:
            pool.shutdown()
    atomic_write_json(directory / "specialize.json", record)
    print(f"wrote {directory / 'specialize.json'}")
    return 0


def _print_device(result, metric: str, space) -> None:
    print(f"\ndevice {result.device}: search {result.seconds['search']:.1f}s, verification "
          f"{result.seconds['verify']:.1f}s")
    for t in result.targets:
        w = t["winner"]
        if w is None:
            print(f"  <= {t['target_ms']:g} ms: no feasible arch found")
            continue
        real = w.get("real")
        real_text = f"{real:.2f}" if isinstance(real, float) else "n/a"
        print(f"  <= {t['target_ms']:g} ms: {metric} {real_text} (predicted {w['predicted']:.2f}), "
              f"{w['latency_ms']:.2f} ms  {space.describe(w['arch'])[:70]}  [{t['seconds']:.1f}s]")
    print(f"  Pareto front: {len(result.front)} of {len(result.verified)} verified archs")


def _plot(result, path: Path, metric: str) -> Optional[str]:
    import pandas as pd

    from raynas.results import SearchResult

    rows = [{"arch_id": r["arch_id"], "arch": "{}", metric: r["metrics"].get(metric), "latency_ms": r["latency_ms"]}
            for r in result.verified if r["metrics"].get(metric) is not None]
    if not rows:
        return None
    table = SearchResult(pd.DataFrame(rows).assign(error=None), [], None, {})
    table.plot_pareto(path, objectives=[f"{metric}:max", "latency_ms:min"],
                      title=f"{result.device}: verified archs")
    return path.name


def _write_parquet(df, path: Path) -> None:
    from raynas.io import atomic_path

    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "device"
