"""``raynas search``: run a search strategy through Ray Tune and write the results."""
from __future__ import annotations

import argparse
from pathlib import Path

from raynas.cli.common import parse_kv_options
from raynas.cli.main import add_ray_options


def register(sub) -> None:
    p = sub.add_parser(
        "search", help="search a space with a Tune strategy",
        description="Search a space for the best archs under constraints. Evaluate with a trained "
                    "supernet (--checkpoint: weight-inherited accuracy on a pool of Ray actors) or "
                    "a results table (--table). Writes results.parquet, best.json and, with two "
                    "objectives, pareto.png under OUTPUT/NAME, and prints the best archs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    what = p.add_argument_group("what to search")
    what.add_argument("--space", help="search space; default: the checkpoint's")
    what.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE", help="space option")
    what.add_argument("--checkpoint", help="supernet checkpoint folder (from 'raynas train')")
    what.add_argument("--data", help="dataset of the validation split; default: the checkpoint's")
    what.add_argument("--actors", type=int, help="pool actors (default: one per GPU, else 2 on CPU)")
    what.add_argument("--table", help="CSV/Parquet of precomputed metrics (e.g. NAS-Bench-201)")
    what.add_argument("--table-metric", action="append", metavar="NAME=COLUMN",
                      help="report table COLUMN as metric NAME, e.g. accuracy=c10valid_valid_12ep")
    how = p.add_argument_group("how to search")
    how.add_argument("--strategy", default="evolution",
                     help="evolution | mo_evolution | reinforce | local_search | grid | random | optuna | "
                          "optuna:tpe | optuna:nsga2 | optuna:cmaes | optuna:gp ...")
    how.add_argument("--strategy-option", action="append", metavar="KEY=VALUE",
                     help="strategy option, e.g. population_size=50")
    how.add_argument("--num-samples", "-n", type=int, default=100, help="archs to evaluate")
    how.add_argument("--objective", action="append", metavar="METRIC[:max|min]",
                     help="objective(s); the first is primary (default: accuracy)")
    how.add_argument("--constraint", action="append", metavar="EXPR",
                     help="e.g. 'macs<=5M', 'params<1.5e6' (checked before evaluation)")
    how.add_argument("--batch-size", type=int, help="archs per Tune trial")
    how.add_argument("--max-concurrent", type=int, help="Tune trials in flight")
    how.add_argument("--seed", type=int, default=0)
    out = p.add_argument_group("output")
    out.add_argument("--name", help="experiment name (default: space-strategy-time)")
    out.add_argument("--output", default="raynas_results", help="folder of experiments")
    out.add_argument("--export", action="store_true", help="also export the best subnet (needs --checkpoint)")
    out.add_argument("--top", type=int, default=10, help="rows of the printed table")
    out.add_argument("--tensorboard", action="store_true", help="keep Tune's TensorBoard/CSV/JSON loggers")
    add_ray_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import raynas
    from raynas.checkpoint import read_checkpoint_meta
    from raynas.errors import ConfigError
    from raynas.registry import create_space, space_from_spec
    from raynas.reporting import write_search_artifacts

    if bool(args.checkpoint) == bool(args.table):
        raise ConfigError("give exactly one evaluator: --checkpoint DIR (a trained supernet) or --table FILE")
    raynas.ensure_ray(args.address, num_cpus=args.num_cpus)
    space_options = parse_kv_options(args.space_option, "space")
    if args.checkpoint:
        meta = read_checkpoint_meta(args.checkpoint)
        space = create_space(args.space, **space_options) if args.space else space_from_spec(meta["space"])
        evaluator = raynas.SupernetPool.from_checkpoint(args.checkpoint, data=args.data or meta.get("dataset"),
                                                        num_actors=args.actors)
    else:
        if not args.space:
            raise ConfigError("--table needs --space (e.g. --space nb201)")
        space = create_space(args.space, **space_options)
        from raynas.evaluators.tabular import TabularEvaluator
        metrics = parse_kv_options(args.table_metric, "table metric") or None
        evaluator = TabularEvaluator(args.table, space=space, metrics=metrics)
    objectives = args.objective or ["accuracy"]
    result = raynas.search(space, evaluator, strategy=args.strategy, num_samples=args.num_samples,
                           constraints=args.constraint, objectives=objectives,
                           strategy_options=parse_kv_options(args.strategy_option, "strategy"),
                           batch_size=args.batch_size, max_concurrent=args.max_concurrent, seed=args.seed,
                           name=args.name, storage_path=args.output, tune_loggers=args.tensorboard)
    write_search_artifacts(result, space, top=args.top)
    if args.export:
        if not args.checkpoint:
            raise ConfigError("--export needs --checkpoint (a table has no weights)")
        from raynas.export import export_subnet
        path, metrics = export_subnet(args.checkpoint, result.best_arch(), Path(result.path) / "best_subnet",
                                      data=args.data)
        print(f"exported best subnet to {path} (accuracy {metrics['accuracy']:.2f}%)")
    return 0
