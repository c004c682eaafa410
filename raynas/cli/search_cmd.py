"""``raynas search``: run a search strategy through Ray Tune and write the results."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict

from raynas.cli.common import HelpFormatter, add_latency_options, latency_sources, parse_kv_options
from raynas.cli.main import add_ray_options


def register(sub) -> None:
    p = sub.add_parser(
        "search", help="search a space with a Tune strategy",
        description="Search a space for the best archs under constraints. Evaluate with a trained "
                    "supernet (--checkpoint: weight-inherited accuracy on a pool of Ray actors) or "
                    "a results table (--table). --latency-table adds latency_ms (a lookup table or "
                    "a table column) for constraints and objectives. Writes results.parquet, "
                    "best.json and, with two objectives, pareto.png under OUTPUT/NAME, and prints "
                    "the best archs.",
        formatter_class=HelpFormatter)
    what = p.add_argument_group("what to search")
    what.add_argument("--space", help="search space; default: the checkpoint's")
    what.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE", help="space option")
    what.add_argument("--checkpoint", help="supernet checkpoint folder (from 'raynas train')")
    what.add_argument("--data", help="dataset of the validation split; default: the checkpoint's")
    what.add_argument("--actors", type=int, help="pool actors (default: one per GPU, else 2 on CPU)")
    what.add_argument("--calib-images", type=int,
                      help="BN-calibration images per arch (default: the checkpoint's training setting, "
                           "else the whole calibration split)")
    what.add_argument("--table", help="CSV/Parquet of precomputed metrics (e.g. NAS-Bench-201)")
    what.add_argument("--table-metric", action="append", metavar="NAME=COLUMN",
                      help="report table COLUMN as metric NAME, e.g. accuracy=c10valid_valid_12ep")
    add_latency_options(p.add_argument_group("latency (hardware-aware search)"))
    how = p.add_argument_group("how to search")
    how.add_argument("--strategy", default="evolution",
                     help="evolution | mo_evolution | reinforce | local_search | grid | random | optuna | "
                          "optuna:tpe | optuna:nsga2 | optuna:cmaes | optuna:gp | optuna:random | optuna:qmc")
    how.add_argument("--strategy-option", action="append", metavar="KEY=VALUE",
                     help="strategy option, e.g. population_size=50")
    how.add_argument("--num-samples", "-n", type=int, default=100, help="archs to evaluate")
    how.add_argument("--objective", action="append", metavar="METRIC[:max|min]",
                     help="objective(s); the first is primary (default: accuracy)")
    how.add_argument("--constraint", action="append", metavar="EXPR",
                     help="e.g. 'macs<=5M', 'params<1.5e6', 'latency_ms<=20' with --latency-table "
                          "(checked before evaluation)")
    how.add_argument("--batch-size", type=int, help="archs per Tune trial (default: sized from the evaluator's "
                                                    "cost so a trial lasts ~1 s; recorded in search.json)")
    how.add_argument("--max-concurrent", type=int, help="Tune trials in flight")
    how.add_argument("--seed", type=int, default=0)
    how.add_argument("--max-failures", default="10%", metavar="FRACTION",
                     help="exit non-zero when more than this share of the archs failed (0.1 or 10%%); "
                          "every arch failing, or fewer archs than asked, always does")
    out = p.add_argument_group("output")
    out.add_argument("--name", help="experiment name, a plain folder name under --output "
                                    "(default: space-strategy-date-time)")
    out.add_argument("--output", default="raynas_results", help="folder of experiments")
    out.add_argument("--overwrite", action="store_true",
                     help="replace an existing experiment of the same name (its folder is removed first); "
                          "without it (or --resume) an existing experiment is an error")
    out.add_argument("--export", action="store_true", help="also export the best subnet (needs --checkpoint)")
    out.add_argument("--top", type=int, default=10, help="rows of the printed table")
    out.add_argument("--column", action="append", metavar="NAME",
                     help="also print this column (default: arch_id, objectives, table metrics, params, "
                          "MACs, latency, the arch)")
    out.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                     help="skip the per-arch Tune rows (each trial's result.json, read by "
                          "tune.ExperimentAnalysis) and the per-arch TensorBoard log (OUTPUT/NAME/tensorboard)")
    out.add_argument("--tensorboard", dest="tensorboard", action="store_true", help=argparse.SUPPRESS)  # the default
    out.add_argument("--tune-loggers", action="store_true",
                     help="also Tune's own per-trial TensorBoard and CSV loggers (one row per trial)")
    out.add_argument("--resume", metavar="EXPERIMENT_DIR",
                     help="continue the search in EXPERIMENT_DIR whose driver was killed, with its saved "
                          "configuration (--checkpoint/--table/--data/--actors override how to evaluate)")
    add_ray_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import raynas
    from raynas.errors import ConfigError
    from raynas.experiments import check_name, check_new
    from raynas.outcome import parse_fraction
    from raynas.tuner import check_search_inputs

    max_failures = parse_fraction(args.max_failures)
    if args.resume:
        return _resume(args, max_failures)
    if bool(args.checkpoint) == bool(args.table):
        raise ConfigError("give exactly one evaluator: --checkpoint DIR (a trained supernet) or --table FILE")
    if args.table and not args.space:
        raise ConfigError("--table needs --space (e.g. --space nb201)")
    if args.export and not args.checkpoint:
        raise ConfigError("--export needs --checkpoint (a table has no weights)")
    # everything is checked before Ray and a pool start (they take seconds)
    if args.name is not None:
        check_name(args.name)
        check_new(Path(args.output).expanduser().resolve() / args.name, args.overwrite)
    spec = _evaluator_spec(args, {})
    space = _space(args, spec)
    prepared = spec.prepare(space)
    costs = _latency_costs(args, space)
    objectives = args.objective or ["accuracy"]
    options = parse_kv_options(args.strategy_option, "strategy")
    check_search_inputs(space, strategy=args.strategy, strategy_options=options, num_samples=args.num_samples,
                        constraints=args.constraint, objectives=objectives, seed=args.seed,
                        metrics=prepared.metrics(), cost_functions=costs)
    raynas.ensure_ray(args.address, num_cpus=args.num_cpus)
    evaluator = prepared.build()
    try:
        return _search_and_finish(args, space, evaluator, spec, costs, objectives, options, max_failures)
    finally:   # a pool's actors hold CPUs/GPUs until shut down (main() may run in a longer process)
        _shutdown(evaluator)


def _search_and_finish(args, space, evaluator, spec, costs, objectives, options, max_failures) -> int:
    import raynas

    latency = {"latency_table": str(Path(args.latency_table).resolve()), "latency_column": args.latency_column,
               "latency_key": args.latency_key} if args.latency_table else {}
    result = raynas.search(space, evaluator, strategy=args.strategy, num_samples=args.num_samples,
                           constraints=args.constraint, objectives=objectives, strategy_options=options,
                           batch_size=args.batch_size, max_concurrent=args.max_concurrent, seed=args.seed,
                           name=args.name, storage_path=args.output, overwrite=args.overwrite,
                           tune_loggers=args.tune_loggers, tensorboard=args.tensorboard, cost_functions=costs,
                           extra_meta={"evaluator": spec.to_json(), **latency})
    return _finish(args, result, space, spec, max_failures)


def _latency_costs(args: argparse.Namespace, space):
    """The --latency-table cost function (checked now: coverage of the space, the column)."""
    if not args.latency_table:
        if args.latency_column:
            from raynas.errors import ConfigError
            raise ConfigError("--latency-column needs --latency-table FILE (the CSV/Parquet holding the column)")
        return []
    return [cost for _, cost in latency_sources(space, args.latency_table, args.latency_column, args.latency_key)]


def _resume(args: argparse.Namespace, max_failures: float) -> int:
    import raynas
    from raynas.registry import space_from_spec
    from raynas.tuner import check_resumable

    from raynas.results import read_search_meta

    saved = read_search_meta(args.resume)
    space = space_from_spec(saved.get("space"))
    # the latency table the search ran with (recorded in search.json) prices archs again
    costs = [cost for _, cost in latency_sources(space, saved["latency_table"], saved.get("latency_column"),
                                                 saved.get("latency_key") or "arch_str")] \
        if saved.get("latency_table") else []
    # the journal must replay (the searcher is rebuilt from it) before a pool starts for nothing
    meta, _ = check_resumable(args.resume, replay=True, cost_functions=costs)
    spec = _evaluator_spec(args, meta.get("evaluator") or {})
    prepared = spec.prepare(space)
    raynas.ensure_ray(args.address, num_cpus=args.num_cpus)
    evaluator = prepared.build()
    try:
        result = raynas.resume_search(args.resume, evaluator, cost_functions=costs)
        return _finish(args, result, space, spec, max_failures)
    finally:
        _shutdown(evaluator)


def _shutdown(evaluator) -> None:
    shutdown = getattr(evaluator, "shutdown", None)
    if callable(shutdown):
        shutdown()


def _evaluator_spec(args: argparse.Namespace, saved: Dict[str, Any]):
    """How to rebuild the evaluator (stored in search.json so ``--resume`` needs no flags):
    the flags' evaluator, or the saved one with the flags' overrides."""
    from raynas.errors import ConfigError
    from raynas.evaluators.spec import EvaluatorSpec

    if args.checkpoint:
        previous = saved if saved.get("checkpoint") else {}
        return EvaluatorSpec("checkpoint", checkpoint=str(Path(args.checkpoint).resolve()), data=args.data,
                             actors=args.actors if args.actors is not None else previous.get("actors"),
                             calib_images=args.calib_images if args.calib_images is not None
                             else previous.get("calib_images"))
    if args.table:
        return EvaluatorSpec("table", table=str(Path(args.table).resolve()),
                             table_metrics=parse_kv_options(args.table_metric, "table metric") or None)
    if not saved.get("checkpoint") and not saved.get("table"):
        raise ConfigError("this experiment does not record its evaluator (it was not started by 'raynas "
                          "search'): give --checkpoint DIR or --table FILE")
    spec = EvaluatorSpec.from_json(saved)
    changes = {k: v for k, v in (("data", args.data), ("actors", args.actors),
                                 ("calib_images", args.calib_images)) if v is not None}
    return spec.replace(**changes) if changes else spec


def _space(args: argparse.Namespace, spec):
    from raynas.checkpoint import read_checkpoint_meta
    from raynas.registry import create_space, space_from_spec

    space_options = parse_kv_options(args.space_option, "space")
    if args.space:
        return create_space(args.space, **space_options)
    return space_from_spec(read_checkpoint_meta(spec.checkpoint)["space"])


def _finish(args: argparse.Namespace, result, space, spec, max_failures: float) -> int:
    from raynas.outcome import check_outcome
    from raynas.reporting import write_search_artifacts

    columns = list((spec.table_metrics or {}).keys()) + list(args.column or [])
    write_search_artifacts(result, space, top=args.top, columns=columns)
    # a search that ran but is not what was asked for exits non-zero (its files stay written)
    check_outcome(result, int(result.meta.get("num_samples") or args.num_samples), max_failures,
                  where=str(result.path))
    if args.export:
        from raynas.errors import ConfigError
        from raynas.export import export_subnet

        if spec.kind != "checkpoint":
            raise ConfigError("--export needs --checkpoint (a table has no weights)")
        path, metrics = export_subnet(spec.checkpoint, result.best_arch(), Path(result.path) / "best_subnet",
                                      data=spec.data, seed=spec.seed,
                                      calib_images=spec.calib_images, batch_size=spec.batch_size)
        print(f"exported best subnet to {path} (accuracy {metrics['accuracy']:.2f}%)")
    return 0
