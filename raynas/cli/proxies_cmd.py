"""``raynas proxies``: list, score and validate zero-cost proxies; run the PreNAS selector.

    raynas proxies list
    raynas proxies score    --space nb201 --num-archs 100 --proxy synflow --proxy naswot \\
                            --data cifar10:../shared/data/cifar10 --table nb201.csv --truth c10_test_200ep
    raynas proxies validate --space nb201 --table nb201.csv --truth c10_test_200ep --num-archs 50
    raynas proxies select   --space autoformer_tiny --buckets 5M:11M:1M --per-bucket 1 --output candidates.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from raynas.io import json_safe as _json_safe
from raynas.cli.common import HelpFormatter, parse_kv_options
from raynas.cli.main import add_ray_options

DEFAULT_SCORE_PROXIES = ("synflow", "naswot", "snip", "params", "flops")


def register(sub) -> None:
    p = sub.add_parser("proxies", help="zero-cost proxies: list, score, validate, PreNAS select",
                       description="Zero-cost proxies score untrained networks from one minibatch. "
                                   "Run 'raynas proxies <action> --help' for each action's options.")
    actions = p.add_subparsers(dest="action", metavar="<action>")
    actions.required = True

    lst = actions.add_parser("list", help="the registered proxies and what they compute")
    lst.set_defaults(handler=run_list)

    score = actions.add_parser(
        "score", help="score archs of a space with proxies and write a CSV",
        description="Score sampled (or listed) archs with each proxy, in-process or on a pool of "
                    "Ray actors (--actors), and write one CSV row per arch. With --table/--truth the "
                    "CSV gets the true metric and the printed table each proxy's rank correlation.",
        formatter_class=HelpFormatter)
    _add_scoring_options(score)
    score.add_argument("--table", help="CSV/Parquet of true metrics (e.g. NAS-Bench-201)")
    score.add_argument("--truth", help="column of --table to correlate with, e.g. c10_test_200ep")
    score.add_argument("--key", default="arch_str", help="key column of --table")
    score.add_argument("--output", default="proxy_scores.csv", help="CSV written (atomically)")
    add_ray_options(score)
    score.set_defaults(handler=run_score)

    val = actions.add_parser(
        "validate", help="check proxies against known accuracies before trusting them",
        description="Score a small sample whose accuracy is known -- a table (--table/--truth) or "
                    "weight-inherited accuracy of a trained supernet (--checkpoint, on the pool) -- "
                    "and report each proxy's Spearman rho and Kendall tau, and its mean best rank "
                    "inside groups of equal --group-by (isomers). Proxies below --threshold are "
                    "flagged; if none passes, params or FLOPs is recommended instead.",
        formatter_class=HelpFormatter)
    _add_scoring_options(val, default_archs=50)
    val.add_argument("--table", help="CSV/Parquet holding the true metric")
    val.add_argument("--truth", help="column of --table (default with --checkpoint: accuracy)")
    val.add_argument("--key", default="arch_str", help="key column of --table")
    val.add_argument("--checkpoint", help="trained supernet: weight-inherited accuracy as the truth")
    val.add_argument("--eval-data", help="dataset of the checkpoint's validation split (default: its own)")
    val.add_argument("--threshold", type=float, default=0.3, help="minimum Spearman rho a proxy must reach")
    val.add_argument("--group-by", default="params",
                     help="cost metric defining equal-cost groups for the mean best rank ('' to skip)")
    val.add_argument("--output", help="JSON report written (atomically)")
    add_ray_options(val)
    val.set_defaults(handler=run_validate)

    sel = actions.add_parser(
        "select", help="PreNAS zero-cost selector: preferred archs per cost bucket",
        description="One data-free pass of the randomly initialised supernet (largest arch); per "
                    "isomer group the larger head / MLP choices go to the layers with the highest "
                    "layer-normalised SNIP; groups are bucketed by cost and the top N by plain SNIP "
                    "per bucket are written as the candidates JSON preferred training reads.",
        formatter_class=HelpFormatter)
    sel.add_argument("--space", required=True, help="a ViT space: autoformer_tiny | autoformer_small | "
                                                    "autoformer_base | vit_cifar | vit")
    sel.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE", help="space option")
    sel.add_argument("--buckets", help="start:stop:step (margin = step), e.g. 5M:11M:1M, or edges "
                                       "5M,6M,8M; default: multiples of --margin covering the space")
    sel.add_argument("--margin", default="1M", help="bucket width when --buckets is not given")
    sel.add_argument("--metric", default="params", help="cost metric of the buckets: params | flops | macs")
    sel.add_argument("--per-bucket", type=int, default=1, help="candidates kept per bucket (N)")
    sel.add_argument("--batch-size", type=int, default=64, help="data-free images in the supernet pass")
    sel.add_argument("--seed", type=int, default=0, help="seeds the supernet init and the batch")
    sel.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    sel.add_argument("--output", default="candidates.json", help="candidates JSON written (atomically)")
    sel.add_argument("--no-progress", action="store_true", help="no progress bar")
    sel.set_defaults(handler=run_select)


def _add_scoring_options(p: argparse.ArgumentParser, default_archs: int = 100) -> None:
    p.add_argument("--space", required=True, help="search space, e.g. nb201")
    p.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE", help="space option")
    p.add_argument("--proxy", action="append", metavar="NAME",
                   help=f"proxy (repeatable; default {','.join(DEFAULT_SCORE_PROXIES)}; see 'raynas proxies list')")
    p.add_argument("--num-archs", "-n", type=int, default=default_archs, help="distinct archs sampled (seeded)")
    p.add_argument("--arch-file", help="archs to score instead: one JSON arch or table key per line")
    p.add_argument("--data", help="minibatch source: digits | cifar10:<path> | imagefolder:<path>; "
                                  "default: PreNAS's data-free batch (sum-of-logits objective)")
    p.add_argument("--batch-size", type=int, default=64, help="images in the proxies' minibatch")
    p.add_argument("--seed", type=int, default=0, help="seeds the arch sample, the batch and the inits")
    p.add_argument("--device", default="auto", help="in-process device: auto | cpu | cuda")
    p.add_argument("--actors", type=int, help="score on a pool of this many Ray actors (one per GPU is "
                                              "typical); default: in-process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------- list
def run_list(args: argparse.Namespace) -> int:
    from raynas.proxies import list_proxies, proxy_spec

    print(f"{'proxy':<16}{'needs':<12}description")
    for name in list_proxies():
        spec = proxy_spec(name)
        needs = "nothing" if spec.data_free else ("labels" if spec.needs_labels else "inputs")
        print(f"{name:<16}{needs:<12}{spec.description}")
    print("\nneeds: nothing = data-free; labels = a labelled minibatch (or the data-free "
          "sum-of-logits objective); inputs = images only")
    return 0


# ---------------------------------------------------------------------- shared pieces
def _space(args: argparse.Namespace):
    from raynas.registry import create_space

    return create_space(args.space, **parse_kv_options(args.space_option, "space"))


def _archs(space, args: argparse.Namespace) -> List[Dict[str, Any]]:
    """``--arch-file`` archs, else ``--num-archs`` distinct archs sampled with ``--seed``."""
    from raynas.arch import arch_id
    from raynas.errors import ConfigError
    from raynas.rng import derive_rng

    if args.arch_file:
        return _read_arch_file(space, Path(args.arch_file))
    if args.num_archs < 1:
        raise ConfigError(f"--num-archs must be >= 1, got {args.num_archs}")
    rng = derive_rng(args.seed, "proxies-archs")
    seen: Dict[str, Dict[str, Any]] = {}
    attempts = 0
    while len(seen) < args.num_archs and attempts < 50 * args.num_archs:
        arch = space.sample(rng)
        seen.setdefault(arch_id(arch), arch)
        attempts += 1
    return list(seen.values())


def _read_arch_file(space, path: Path) -> List[Dict[str, Any]]:
    from raynas.errors import ConfigError, DataError

    if not path.is_file():
        raise DataError(f"arch file not found: {path}")
    from_key = getattr(space, "arch_from_key", None)
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                out.append(space.validate(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not a JSON arch ({exc})") from exc
        elif callable(from_key):
            out.append(space.validate(from_key(line)))
        else:
            raise ConfigError(f"{path}:{n}: space '{space.name}' has no table keys; write one JSON arch per line")
    if not out:
        raise DataError(f"{path} lists no archs")
    return out


def _proxy_evaluator(space, args: argparse.Namespace, proxies: Sequence[str]):
    """In-process ProxyEvaluator, or a pool of actors each holding one (``--actors``)."""
    from raynas.proxies import ProxyEvaluator
    from raynas.proxies.minibatch import dataset_minibatch

    options: Dict[str, Any] = {"seed": args.seed}
    if args.data:
        resolution = space.input_resolution(space.largest())
        batch, num_classes = dataset_minibatch(args.data, args.batch_size, seed=args.seed, resolution=resolution)
        options.update(batch=batch, num_classes=num_classes if num_classes != _space_classes(space) else None)
    else:
        options.update(data_free=True, batch_size=args.batch_size)
    if not args.actors and not args.address:
        return ProxyEvaluator(space, proxies, device=args.device, **options), None
    import raynas
    from raynas.proxies.pooled import proxy_factory

    raynas.ensure_ray(args.address, num_cpus=args.num_cpus)
    device = None if args.device == "auto" else args.device
    pool = raynas.SupernetPool(proxy_factory(space, proxies, device=device, **options),
                               num_actors=args.actors, metrics=tuple(proxies))
    return pool.evaluator(), pool


def _space_classes(space) -> Optional[int]:
    return getattr(space, "num_classes", None)


def _proxies(args: argparse.Namespace) -> List[str]:
    from raynas.proxies import proxy_spec

    names = list(dict.fromkeys(args.proxy or DEFAULT_SCORE_PROXIES))
    for n in names:
        proxy_spec(n)  # an unknown name fails now, listing the known ones
    return names


def _truth_table(space, args: argparse.Namespace):
    from raynas.errors import ConfigError
    from raynas.evaluators.tabular import TabularEvaluator

    if bool(args.table) != bool(args.truth):
        raise ConfigError("--table and --truth go together: the table file and the column to correlate with")
    if not args.table:
        return None
    return TabularEvaluator(args.table, space=space, key=args.key, metrics={args.truth: args.truth}).check()


def _write_csv(path: Path, rows: List[Dict[str, Any]]) -> None:
    import pandas as pd

    from raynas.io import atomic_path

    with atomic_path(path, suffix=".csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def _fmt(x: Optional[float], spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


# ---------------------------------------------------------------------- score
def run_score(args: argparse.Namespace) -> int:
    import numpy as np

    from raynas.arch import arch_id, canonical_json
    from raynas.evaluators.chunked import evaluate_in_chunks
    from raynas.proxies import rank_correlations

    space = _space(args)
    proxies = _proxies(args)
    truth = _truth_table(space, args)
    archs = _archs(space, args)
    evaluator, pool = _proxy_evaluator(space, args, proxies)
    start = time.perf_counter()
    try:
        scores = evaluate_in_chunks(evaluator, archs, chunk_size=4, progress=not args.no_progress,
                                    desc=f"{args.space} proxies")
    finally:
        if pool is not None:
            pool.shutdown()
    seconds = time.perf_counter() - start
    truths = truth.evaluate(archs) if truth is not None else None
    key_of = getattr(space, "table_key", None)
    rows = []
    for i, (arch, row) in enumerate(zip(archs, scores)):
        record: Dict[str, Any] = {"arch_id": arch_id(arch)}
        if callable(key_of):
            record[args.key] = key_of(arch)
        record["arch"] = canonical_json(arch)
        record.update({p: row.get(p, float("nan")) for p in proxies})
        if row.get("error"):
            record["error"] = row["error"]
        if truths is not None:
            record[args.truth] = truths[i][args.truth]
        rows.append(record)
    _write_csv(Path(args.output), rows)

    failed = sum(1 for r in rows if r.get("error"))
    print(f"\n{len(rows)} archs x {len(proxies)} proxies in {seconds:.1f} s "
          f"({len(rows) / max(seconds, 1e-9):.2f} archs/s){f', {failed} failed' if failed else ''}"
          f" -> {args.output}")
    header = f"{'proxy':<16}{'mean':>12}{'min':>12}{'max':>12}{'NaN':>6}"
    if truths is not None:
        header += f"{'spearman':>10}{'kendall':>9}"
    print(header)
    for p in proxies:
        values = np.asarray([r[p] for r in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        line = (f"{p:<16}{_fmt(finite.mean() if finite.size else None, '.4g'):>12}"
                f"{_fmt(finite.min() if finite.size else None, '.4g'):>12}"
                f"{_fmt(finite.max() if finite.size else None, '.4g'):>12}{int(np.isnan(values).sum()):>6}")
        if truths is not None:
            corr = rank_correlations(values, [r[args.truth] for r in rows])
            line += f"{_fmt(corr['spearman']):>10}{_fmt(corr['kendall']):>9}"
        print(line)
    return 0


# ---------------------------------------------------------------------- validate
class _Recording:
    """Wraps an evaluator: evaluates in chunks with a progress bar and keeps the rows."""

    def __init__(self, inner, desc: str, progress: bool) -> None:
        self.inner, self.desc, self.progress = inner, desc, progress
        self.metrics = tuple(getattr(inner, "metrics", ()))
        self.rows: List[Dict[str, float]] = []

    def evaluate(self, archs):
        from raynas.evaluators.chunked import evaluate_in_chunks

        self.rows = evaluate_in_chunks(self.inner, archs, chunk_size=4, progress=self.progress, desc=self.desc)
        return self.rows


def run_validate(args: argparse.Namespace) -> int:
    from raynas.errors import ConfigError
    from raynas.io import atomic_write_json
    from raynas.proxies import mean_best_rank, validate_proxies
    from raynas.proxies.validate import FALLBACK_PROXIES

    space = _space(args)
    proxies = _proxies(args)
    if bool(args.table) == bool(args.checkpoint):
        raise ConfigError("give exactly one source of true accuracy: --table FILE --truth COLUMN, "
                          "or --checkpoint DIR (weight-inherited accuracy of a trained supernet)")
    names = list(dict.fromkeys(proxies + list(FALLBACK_PROXIES)))
    archs = _archs(space, args)
    pools = []
    try:
        if args.table:
            truth_eval, truth_metric = _truth_table(space, args), args.truth
        else:
            import raynas

            raynas.ensure_ray(args.address, num_cpus=args.num_cpus)
            truth_pool = raynas.SupernetPool.from_checkpoint(args.checkpoint, data=args.eval_data,
                                                             num_actors=args.actors)
            pools.append(truth_pool)
            truth_eval, truth_metric = truth_pool.evaluator(), args.truth or "accuracy"
        proxy_eval, proxy_pool = _proxy_evaluator(space, args, names)
        if proxy_pool is not None:
            pools.append(proxy_pool)
        progress = not args.no_progress
        truth_rec = _Recording(truth_eval, f"truth ({truth_metric})", progress)
        proxy_rec = _Recording(proxy_eval, "proxies", progress)
        result = validate_proxies(space, truth_rec, archs, proxies, args.threshold,
                                  truth_metric=truth_metric, proxy_evaluator=proxy_rec, warn=False)
    finally:
        for pool in pools:
            pool.shutdown()

    truth = [r[truth_metric] for r in truth_rec.rows]
    mbr: Dict[str, float] = {}
    group_sizes: List[int] = []
    if args.group_by:
        groups = [float(space.cost(a)[args.group_by]) for a in archs]
        group_sizes = [n for n in _counts(groups) if n > 1]
        for n in names:
            mbr[n] = mean_best_rank([r[n] for r in proxy_rec.rows], truth, groups)
    print()
    print(result.summary())
    if args.group_by:
        print(f"\nmean best rank inside {len(group_sizes)} groups of equal {args.group_by} "
              f"({sum(group_sizes)} archs; 0 = always the best member, 1 = the worst):")
        for n in names:
            print(f"  {n:<16}{_fmt(mbr[n])}")
    for m in result.messages:
        print(f"warning: {m}", file=sys.stderr)
    if args.output:
        report = {**result.to_dict(), "space": space.spec(), "seed": args.seed,
                  "data": args.data or "data-free", "group_by": args.group_by or None,
                  "mean_best_rank": {k: (None if math.isnan(v) else v) for k, v in mbr.items()},
                  "archs": [{"arch": a, "truth": t, **{n: _json_float(r.get(n)) for n in names}}
                            for a, t, r in zip(archs, truth, proxy_rec.rows)]}
        atomic_write_json(args.output, _json_safe(report))
        print(f"report: {args.output}")
    return 0


def _counts(values: Sequence[float]) -> List[int]:
    out: Dict[float, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return list(out.values())


def _json_float(x: Any) -> Optional[float]:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)




# ---------------------------------------------------------------------- select
def run_select(args: argparse.Namespace) -> int:
    from raynas.selectors import PreNASSelector, ResourceBuckets, parse_amount

    space = _space(args)
    if args.buckets:
        buckets = ResourceBuckets.parse(args.buckets, args.metric)
    else:
        low = float(space.cost(space.smallest())[args.metric])
        high = float(space.cost(space.largest())[args.metric])
        buckets = ResourceBuckets.covering(low, high, parse_amount(args.margin), args.metric)
    start = time.perf_counter()
    selector = PreNASSelector(space, batch_size=args.batch_size, seed=args.seed, device=args.device)
    print(f"PreNAS selector on '{space.name}': one data-free pass of the supernet "
          f"({args.batch_size} images, {args.device}) ...", file=sys.stderr)
    selection = selector.select(buckets, args.per_bucket, progress=not args.no_progress)
    selection.write(args.output)
    wall = time.perf_counter() - start
    print(selection.table())
    s = selection.seconds
    print(f"\n{len(selection.candidates)} candidates from {len(selection.representatives)} isomer groups in "
          f"{wall:.1f} s (supernet pass {s.get('supernet_pass', 0):.1f} s, groups {s.get('groups', 0):.1f} s)"
          f" -> {args.output}")
    return 0
