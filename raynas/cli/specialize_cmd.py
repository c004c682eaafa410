"""``raynas specialize``: specialise a trained supernet to devices in seconds to minutes, OFA-style
(evolution on an accuracy predictor under a latency lookup table, winners verified for real)."""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from raynas.cli.common import HelpFormatter, add_latency_options, float_list, latency_sources, parse_kv_options
from raynas.cli.main import add_ray_options


def register(sub) -> None:
    p = sub.add_parser(
        "specialize", help="specialise a supernet to devices (predictor + latency table)",
        description="For each device (--latency-table, or --latency-column of a per-arch table) and "
                    "each --latency target, search the space on an accuracy predictor under "
                    "'latency_ms <= target', then verify the best predicted archs with real "
                    "weight-inherited evaluations. The predictor is fitted once (--fit-samples + "
                    "--holdout random archs measured on the supernet) or loaded (--predictor) and "
                    "reused for every device. Every table is checked to price the whole space "
                    "before anything runs. When the predictor's held-out Kendall tau is below "
                    "--min-tau it is not trusted: a warning says so and winners are chosen by "
                    "measured accuracy alone. A looser target never gets a worse winner. Writes "
                    "specialize.json, the predictor, and one Pareto plot per device under OUTPUT/NAME.",
        formatter_class=HelpFormatter)
    what = p.add_argument_group("what to specialise")
    what.add_argument("--checkpoint", help="supernet checkpoint folder (from 'raynas train')")
    what.add_argument("--supernet", dest="checkpoint", help=argparse.SUPPRESS)  # the old name
    what.add_argument("--data", help="dataset of the verification split; default: the checkpoint's")
    what.add_argument("--actors", type=int, help="pool actors (default: one per GPU, else 2 on CPU)")
    what.add_argument("--table", help="instead of a supernet: CSV/Parquet of real metrics (e.g. NAS-Bench-201)")
    what.add_argument("--table-metric", action="append", metavar="NAME=COLUMN",
                      help="with --table: report COLUMN as NAME, e.g. accuracy=c10valid_valid_12ep")
    what.add_argument("--space", help="search space; default: the checkpoint's (needed with --table)")
    what.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE", help="space option")
    dev = p.add_argument_group("devices")
    add_latency_options(dev, several=True)
    dev.add_argument("--latency", action="extend", type=float_list, required=True, metavar="MS[,MS...]",
                     help="latency target(s) in ms: --latency 15,20 or --latency 15 --latency 20 "
                          "(each device gets every target)")
    dev.add_argument("--device", dest="old_device", action="append", help=argparse.SUPPRESS)
    pred = p.add_argument_group("accuracy predictor")
    pred.add_argument("--predictor", help="a saved predictor folder to reuse (skips fitting)")
    pred.add_argument("--predictor-kind", default="mlp", help="mlp | gbt")
    pred.add_argument("--predictor-option", action="append", metavar="KEY=VALUE",
                      help="predictor option, e.g. epochs=200 or target=quantile")
    pred.add_argument("--fit-samples", type=int, default=500, help="random archs measured to fit the predictor")
    pred.add_argument("--holdout", type=int, default=100,
                      help="further random archs measured to report the predictor's held-out tau "
                           "(fit-samples + holdout archs are measured in all)")
    pred.add_argument("--min-tau", type=float, default=0.3,
                      help="held-out Kendall tau below which the predictor is not trusted: winners "
                           "then come from measured accuracy only")
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
    out.add_argument("--overwrite", action="store_true", help="replace an existing experiment of the same name")
    add_ray_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import raynas
    from raynas.errors import ConfigError
    from raynas.experiments import check_name, check_new
    from raynas.io import atomic_write_json
    from raynas.predictors import load_predictor
    from raynas.predictors.specialize import fit_from_evaluations, specialize
    from raynas.registry import create_space, space_from_spec

    # every input is checked before Ray, a pool or any measurement starts
    if args.old_device:
        raise ConfigError("--device names a torch device in raynas; give each device's latency with "
                          "--latency-table PATH (a lookup table) or --latency-table CSV --latency-column COLUMN")
    if bool(args.checkpoint) == bool(args.table):
        raise ConfigError("give exactly one real evaluator: --checkpoint DIR (a trained supernet) or --table FILE")
    if not args.latency_table:
        raise ConfigError("give each device's latency with --latency-table PATH (an OFA-format lookup table "
                          "file or folder, e.g. from 'raynas lut build', or a CSV/Parquet with --latency-column)")
    if any(t <= 0 for t in args.latency):
        raise ConfigError(f"latency targets must be positive milliseconds, got {args.latency}")
    if args.fit_samples < 2 or args.holdout < 0 or args.verify_top < 1 or args.search_samples < 1:
        raise ConfigError("need --fit-samples >= 2, --holdout >= 0, --verify-top >= 1 and --search-samples >= 1")
    name = args.name or f"specialize-{time.strftime('%Y%m%d-%H%M%S')}"
    check_name(name)
    directory = Path(args.output).expanduser().resolve() / name
    check_new(directory, args.overwrite)
    space_options = parse_kv_options(args.space_option, "space")
    meta: Dict[str, Any] = {}
    if args.checkpoint:
        from raynas.checkpoint import read_checkpoint_meta
        from raynas.pool import check_checkpoint

        check_checkpoint(args.checkpoint)
        meta = read_checkpoint_meta(args.checkpoint)
        space = create_space(args.space, **space_options) if args.space else space_from_spec(meta["space"])
    else:
        if not args.space:
            raise ConfigError("--table needs --space (e.g. --space nb201)")
        space = create_space(args.space, **space_options)
    devices = latency_sources(space, args.latency_table, args.latency_column, args.latency_key)
    predictor = None
    if args.predictor:
        predictor = load_predictor(args.predictor, space)
        if predictor.metric != args.metric:
            raise ConfigError(f"the predictor at {args.predictor} predicts '{predictor.metric}', "
                              f"not --metric {args.metric}")
    pool = None
    if args.checkpoint:
        raynas.ensure_ray(args.address, num_cpus=args.num_cpus)  # the pool's actors; a table needs no Ray
        pool = raynas.SupernetPool.from_checkpoint(args.checkpoint, data=args.data or meta.get("dataset"),
                                                   num_actors=args.actors)
        evaluator: Any = pool
    else:
        from raynas.evaluators.tabular import TabularEvaluator
        evaluator = TabularEvaluator(args.table, space=space,
                                     metrics=parse_kv_options(args.table_metric, "table metric") or None).check()
    if directory.exists() and args.overwrite:
        import shutil
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record: Dict[str, Any] = {"name": name, "space": space.spec(), "metric": args.metric,
                              "targets_ms": sorted(set(args.latency)), "seed": args.seed, "min_tau": args.min_tau}
    try:
        start = time.perf_counter()
        measured = None
        if predictor is not None:
            record["predictor"] = {"path": str(args.predictor), "loaded": True, "fit": predictor.fit_info}
            trusted = True
        else:
            print(f"measuring {args.fit_samples + args.holdout} random archs ({args.fit_samples} to fit the "
                  f"{args.predictor_kind} predictor, {args.holdout} held out to test it) ...")
            predictor, scores, table = fit_from_evaluations(
                space, evaluator, args.fit_samples, kind=args.predictor_kind, metric=args.metric,
                predictor_options=parse_kv_options(args.predictor_option, "predictor"), seed=args.seed,
                holdout=args.holdout)
            predictor.save(directory / "predictor")
            _write_parquet(table, directory / "evaluations.parquet")
            measured = table
            record["predictor"] = {"path": "predictor", "loaded": False, "holdout": scores, "fit": predictor.fit_info}
            trusted = _report_predictor(scores, args.min_tau)
        record["predictor"]["trusted"] = trusted
        record["predictor_seconds"] = time.perf_counter() - start
        record["devices"] = []
        for device_name, latency in devices:
            result = specialize(space, predictor, latency, sorted(set(args.latency)), verify=evaluator,
                                verify_top=args.verify_top, strategy=args.strategy,
                                strategy_options=parse_kv_options(args.strategy_option, "strategy"),
                                search_samples=args.search_samples, device=device_name, metric=args.metric,
                                seed=args.seed, measured=measured, trust_predictor=trusted)
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


def _report_predictor(scores: Optional[Dict[str, Any]], min_tau: float) -> bool:
    """Print the held-out scores; False (with a loud warning) when tau is below ``min_tau``."""
    if not scores:
        print("predictor: no held-out archs (--holdout 0): its ranking is untested", file=sys.stderr)
        return True
    tau = float(scores["kendall_tau"])
    print(f"predictor: held-out Kendall tau {tau:.3f}, Spearman rho {scores['spearman_rho']:.3f}, "
          f"RMSE {scores['rmse']:.3f} on {scores['n']} archs")
    if not tau >= min_tau:
        print(f"WARNING: the predictor's held-out Kendall tau {tau:.3f} is below --min-tau {min_tau:g}: its "
              "ranking is not trusted. Winners are chosen by measured accuracy only (the archs measured to fit "
              "it plus the verified candidates); measure more archs (--fit-samples), or train the supernet "
              "longer, for predictor-guided winners.", file=sys.stderr)
        return False
    return True


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
        source = {"measured": ", one of the archs measured to fit the predictor"}.get(w.get("source"), "")
        print(f"  <= {t['target_ms']:g} ms: {metric} {real_text} (predicted {w['predicted']:.2f}{source}), "
              f"{w['latency_ms']:.2f} ms  {space.describe(w['arch'])}  [{t['seconds']:.1f}s]")
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
