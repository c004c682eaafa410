"""One-shot NAS on NAS-Bench-201, checked against the table: supernet ranking and one-shot search.

1. **Train** the single-path NB201 supernet (``nb201`` space, ``build_supernet``) on CIFAR-10 with
   each sampling variant through the same loop as ``raynas train`` (``train_supernet``), all at
   an equal budget of forward/backward passes: ``--epochs`` is the number of passes over the
   training images per subnet; a variant that trains m subnets per step (``fair``: 5) runs
   ``epochs / m`` epochs. The skeleton is reduced for the CPU (``--channels``,
   ``--cells-per-stage``, ``--resolution``, ``--train-size``); every record states it.
2. **Rank**: ``--num-archs`` distinct NB201 isomorphism classes (``unique_str``), drawn uniformly
   with ``--seed``, each evaluated as its class representative with inherited weights and BN
   recalibration (``--calib-batches`` x ``--eval-batch`` held-out training images) on the
   5,000-image validation split, through a ``SupernetPool``. Kendall τ, Spearman ρ and top-10 %
   precision against ``c10_test_200ep`` (200-epoch test accuracy of the full network).
3. **Proxies** (``--proxies``) on the same archs, each on the full-size NB201 network, untrained,
   one CIFAR-10 minibatch; their rank ensemble (``--ensemble``) and the combination of ensemble
   and supernet (mean of normalised ranks).
4. **Search** (``--search-seeds``): ``raynas.search`` with each ``--strategies`` strategy over
   the supernet through the pool (``--search-budget`` evaluations, zero table queries); the
   returned arch's ``c10_test_200ep`` per seed, next to random search with 100 table queries.

    python benchmarks/oneshot_nb201.py --smoke                      # CPU, ~1 min: the pipeline
    # the recorded CPU run (results/oneshot_nb201_cpu.json, ~50 min of evaluation on a loaded
    # 2-core VM with the three supernets already trained; ~20 min of training each)
    OMP_NUM_THREADS=1 python benchmarks/oneshot_nb201.py --variants uniform,isomorphic,fair \\
        --num-archs 500 --workers 2 --val-size 2500 --calib-batches 2 --search-seeds 5 \\
        --search-budget 50 --strategies evolution,random --out oneshot_nb201_cpu.json
    # GPU (not run: no GPU was lent): the full skeleton, full resolution
    python benchmarks/oneshot_nb201.py --device cuda --channels 16 --cells-per-stage 5 \\
        --resolution 32 --epochs 100 --num-archs 1000 --workers 1

Checkpoints go to ``--work`` (default raynas_results/oneshot_nb201/<variant>/checkpoint) and are
reused when their recorded config equals the requested one; results to benchmarks/results/
(``--out``) with per-arch CSVs beside the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.common import CIFAR10_SPEC, RESULTS, environment, resolve_data_spec, setup_device  # noqa: E402
from raynas.io import atomic_path, atomic_write_json, json_safe  # noqa: E402

TRUTH = "c10_test_200ep"
TRAIN_RECORD = "train_record.json"  # wall and CPU seconds of a variant's training, beside its checkpoint
DEFAULT_TABLE = "../shared/data/nb201/nb201_cifar10.csv"  # relative to the project root
#: random search that picks the best of 100 table queries by c10valid_valid_12ep, reported by
#: c10_test_200ep (500 repetitions, ../shared/data/README.md; benchmarks/nb201_search.py: 93.69)
RANDOM_100_TABLE = (93.71, 0.38)
#: variant -> training options (sampler, its options, supernet build options)
VARIANTS: Dict[str, Dict[str, Any]] = {
    "uniform": {"sampler": "uniform"},
    "fair": {"sampler": "fair"},
    "isomorphic": {"sampler": "isomorphic", "supernet_options": {"iso_key": "unique_str"}},
    "few_shot": {"sampler": "few_shot", "sampler_options": {"split_at": 0.5},
                 "supernet_options": {"split_edge": 0}},
    "few_shot_isomorphic": {"sampler": "few_shot",
                            "sampler_options": {"split_at": 0.5, "base": "isomorphic"},
                            "supernet_options": {"split_edge": 0, "iso_key": "unique_str"}},
}
#: chosen before this benchmark ran, on the 150 archs of results/proxies_nb201_cpu150_scores.csv:
#: the cheapest proxies whose rank mean correlated best there (ρ 0.887); naswot, grasp, zen and
#: fisher cost seconds per arch on this CPU
DEFAULT_PROXIES = ("synflow", "params", "jacob_cov")
STRATEGY_OPTIONS = {"evolution": {"population_size": 30, "sample_size": 30}, "random": {}}
#: what the supernet ranks archs by: inherited accuracy, or minus the validation loss
SCORES = ("accuracy", "loss")


# ---------------------------------------------------------------------- archs and truth
def choose_archs(table, num_archs: int, seed: int) -> List[Dict[str, Any]]:
    """``num_archs`` distinct NB201 ``unique_str`` classes drawn uniformly (seeded); each as its
    representative (spaces.nb201.canonical_cell, key unique_str) with that row's truth."""
    from spaces.nb201 import canonical_cell, from_arch_str, to_arch_str

    classes = sorted(set(table["unique_str"]))
    if num_archs > len(classes):
        raise SystemExit(f"--num-archs {num_archs} exceeds the {len(classes)} isomorphism classes; lower it")
    rng = np.random.default_rng(seed)
    picked = [classes[i] for i in rng.choice(len(classes), size=num_archs, replace=False)]
    first = table.drop_duplicates("unique_str").set_index("unique_str")["arch_str"]
    row = table.set_index("arch_str")
    out = []
    for key in picked:
        rep = to_arch_str(canonical_cell(from_arch_str(first[key]), key="unique_str"))
        out.append({"arch_str": rep, "unique_str": key, TRUTH: float(row.at[rep, TRUTH]),
                    "index": int(row.at[rep, "index"])})
    return out


def ranking(scores: Sequence[float], truth: Sequence[float]) -> Dict[str, float]:
    """Kendall τ, Spearman ρ and top-10 % precision of ``scores`` against ``truth``."""
    from raynas.proxies import rank_correlations, top_precision

    corr = rank_correlations(scores, truth)
    return {"kendall_tau": corr["kendall"], "spearman_rho": corr["spearman"],
            "top10_precision": top_precision(scores, truth, 0.1), "n": corr["n"]}


def write_csv(path: Path, rows: List[Dict[str, Any]]) -> None:
    import pandas as pd

    with atomic_path(path, suffix=".csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    print(f"wrote {path}", flush=True)


# ---------------------------------------------------------------------- training
def training_config(variant: str, args, output: Path) -> Dict[str, Any]:
    """The ``raynas train`` config of one variant (equal passes: epochs / subnets per step)."""
    spec = VARIANTS[variant]
    from raynas.registry import create_space
    from raynas.training import make_sampling_strategy

    space_options = {"channels": args.channels, "cells_per_stage": args.cells_per_stage,
                     "resolution": args.resolution}
    strategy = make_sampling_strategy(spec["sampler"], **spec.get("sampler_options", {}))
    strategy.bind(create_space("nb201", **space_options))
    per_step = len(strategy.plan(create_space("nb201", **space_options), 0, args.seed))
    data_options = {"train_size": args.train_size} if args.train_size else {}
    return dict(space="nb201", space_options=space_options,
                supernet_options=dict(spec.get("supernet_options", {})),
                data=args.data, data_options=data_options, output=str(output),
                epochs=args.epochs / per_step, batch_size=args.batch_size, lr=args.lr,
                optimizer="sgd", momentum=0.9, weight_decay=args.weight_decay,
                warmup_epochs=0.0, label_smoothing=0.0, grad_clip=5.0,
                sampler=spec["sampler"], sampler_options=dict(spec.get("sampler_options", {})),
                augment=True, seed=args.seed, device=args.device, bf16=True,
                cpu_threads=args.threads, checkpoint_every=1, log_every=50,
                eval_calib_batches=args.calib_batches, eval_batch_size=args.eval_batch,
                max_steps=args.max_steps)


def train_variant(variant: str, args, work: Path) -> Dict[str, Any]:
    """Train one variant, or reuse its finished checkpoint trained with the same config."""
    from raynas.checkpoint import read_checkpoint_meta
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import train_supernet

    output = work / variant
    config = SupernetTrainConfig.from_any(training_config(variant, args, output))
    checkpoint = output / "checkpoint"
    if (checkpoint / "meta.json").exists():
        meta = read_checkpoint_meta(checkpoint)
        saved = SupernetTrainConfig.from_any(meta.get("config") or {})
        same = not config.training_differences(saved) and saved.max_steps == config.max_steps
        finished = meta.get("step") == meta.get("total_steps") or (
            config.max_steps is not None and meta.get("step") == config.max_steps)
        if same and finished:
            print(f"[{variant}] reusing {checkpoint} (same config, {meta['step']} steps)", flush=True)
            record = output / TRAIN_RECORD
            timing = json.loads(record.read_text()) if record.exists() else {}
            return {"checkpoint": str(checkpoint), "reused": True, "steps": meta["step"],
                    "train_seconds": (meta.get("metrics") or {}).get("train_seconds"),
                    "history": meta.get("history"), "config": meta.get("config"),
                    "metrics": meta.get("metrics"), **timing}
        if not args.overwrite:
            raise SystemExit(f"{checkpoint} holds another or an unfinished training; pass --overwrite "
                             f"to retrain it or --work to use another folder")
    print(f"[{variant}] training: {config.epochs:g} epochs of batch {config.batch_size}, "
          f"sampler {config.sampler}", flush=True)
    start, cpu = time.perf_counter(), time.process_time()
    load = os.getloadavg()[0]
    path, metrics = train_supernet(config, progress=args.progress)
    meta = read_checkpoint_meta(path)
    # CPU seconds of this single-threaded process do not depend on how busy the machine was;
    # the wall seconds do (the load averages say how much)
    timing = {"train_seconds": time.perf_counter() - start, "train_cpu_seconds": time.process_time() - cpu,
              "load_average": [load, os.getloadavg()[0]]}
    atomic_write_json(output / TRAIN_RECORD, timing)
    return {"checkpoint": str(path), "reused": False, "steps": meta["step"], **timing,
            "history": meta.get("history"), "config": meta.get("config"), "metrics": metrics}


# ---------------------------------------------------------------------- evaluation
def make_pool(checkpoint: str, args):
    from raynas.pool import SupernetPool

    return SupernetPool.from_checkpoint(checkpoint, args.data, seed=args.seed,
                                        calib_batches=args.calib_batches, batch_size=args.eval_batch,
                                        device=args.device, num_actors=args.workers, val_size=args.val_size,
                                        cpus_per_actor=1.0 if args.device == "cpu" else None)


def inherited_metrics(pool, archs: List[Dict[str, Any]], chunk: int = 25) -> List[Dict[str, float]]:
    """Weight-inherited accuracy and validation loss of each arch through the pool."""
    from spaces.nb201 import from_arch_str

    out: List[Dict[str, float]] = []
    start = time.perf_counter()
    for i in range(0, len(archs), chunk):
        part = [from_arch_str(a["arch_str"]) for a in archs[i:i + chunk]]
        results = pool.evaluate(part)
        bad = [r for r in results if "error" in r]
        if bad:
            raise SystemExit(f"the pool failed to evaluate {len(bad)} archs: {bad[0]['error']}")
        out += [{"accuracy": float(r["accuracy"]), "loss": float(r["loss"])} for r in results]
        done = len(out)
        print(f"  inherited accuracy: {done}/{len(archs)} archs, "
              f"{(time.perf_counter() - start) / done:.2f} s/arch", flush=True)
    return out


def score_of(metrics: Mapping[str, float], score: str) -> float:
    """The supernet's estimate of an arch: its accuracy, or minus its validation loss."""
    return metrics["accuracy"] if score == "accuracy" else -metrics["loss"]


def score_proxies(archs: List[Dict[str, Any]], proxies: Sequence[str], args) -> Dict[str, List[float]]:
    """Zero-cost proxies of each arch on the full-size NB201 network (what the table trained)."""
    from benchmarks.proxies_nb201 import load_minibatch
    from raynas.proxies import ProxyEvaluator
    from spaces.nb201 import from_arch_str

    data_path = Path(args.data.partition(":")[2])
    inputs, targets = load_minibatch(data_path, args.proxy_batch, args.seed)
    evaluator = ProxyEvaluator("nb201", list(proxies), batch=(inputs, targets), seed=args.seed,
                               device=args.device)
    columns: Dict[str, List[float]] = {p: [] for p in proxies}
    start = time.perf_counter()
    for k, a in enumerate(archs):
        scores = evaluator.score(from_arch_str(a["arch_str"]))
        for p in proxies:
            columns[p].append(float(scores[p]))
        if (k + 1) % 50 == 0 or k + 1 == len(archs):
            print(f"  proxies: {k + 1}/{len(archs)} archs, {(time.perf_counter() - start) / (k + 1):.2f} s/arch",
                  flush=True)
    columns["_seconds"] = [time.perf_counter() - start]
    return columns


def run_searches(pool, args, table, work: Path) -> Dict[str, Any]:
    """Each strategy x seed through ``raynas.search`` over the supernet (no table queries); the
    returned arch is looked up in the table afterwards."""
    import raynas
    from spaces.nb201 import to_arch_str

    truth_of = table.set_index("arch_str")[TRUTH]
    space = raynas.create_space("nb201", channels=args.channels, cells_per_stage=args.cells_per_stage,
                                resolution=args.resolution)
    storage = work / "searches" / time.strftime("%Y%m%d-%H%M%S")
    out: Dict[str, Any] = {}
    for strategy in [s for s in args.strategies.split(",") if s]:
        runs = []
        for seed in range(args.search_seeds):
            start = time.perf_counter()
            result = raynas.search(space, pool, strategy=strategy, num_samples=args.search_budget,
                                   objectives="accuracy" if args.score == "accuracy" else "loss:min",
                                   seed=seed, name=f"{strategy}-s{seed}",
                                   storage_path=storage, progress=False,
                                   strategy_options=STRATEGY_OPTIONS.get(strategy, {}))
            best = result.best()
            arch_str = to_arch_str(json.loads(best["arch"]))
            runs.append({"seed": seed, "arch_str": arch_str, "inherited_accuracy": float(best["accuracy"]),
                         "inherited_loss": float(best["loss"]),
                         TRUTH: float(truth_of[arch_str]), "evaluated": int(len(result.ok)),
                         "seconds": time.perf_counter() - start})
            print(f"  search {strategy} seed {seed}: {arch_str} -> {TRUTH} {runs[-1][TRUTH]:.2f} "
                  f"({runs[-1]['evaluated']} archs, {runs[-1]['seconds']:.0f} s)", flush=True)
        values = [r[TRUTH] for r in runs]
        out[strategy] = {"runs": runs, "mean": float(np.mean(values)), "std": float(np.std(values)),
                         "table_queries": 0, "budget": args.search_budget}
    return out


# ---------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--variants", default="uniform", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--epochs", type=float, default=10.0,
                   help="passes over the training images per subnet (equal for every variant)")
    p.add_argument("--channels", type=int, default=16, help="stem width C (NB201: 16)")
    p.add_argument("--cells-per-stage", type=int, default=1, help="cells per stage N (NB201: 5)")
    p.add_argument("--resolution", type=int, default=16, help="input side (NB201: 32)")
    p.add_argument("--train-size", type=int, default=None, help="training images (default: all 43,000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--num-archs", type=int, default=500, help="isomorphism classes ranked")
    p.add_argument("--arch-seed", type=int, default=1,
                   help="seeds the ranked classes (keep it apart from the set a choice was made on)")
    p.add_argument("--score", choices=SCORES, default="accuracy",
                   help="what the supernet ranks and searches by (both are recorded)")
    p.add_argument("--calib-batches", type=int, default=4, help="BN recalibration batches per arch")
    p.add_argument("--eval-batch", type=int, default=250)
    p.add_argument("--val-size", type=int, default=None,
                   help="validation images per arch (a seeded subset of the 5,000; default all)")
    p.add_argument("--workers", type=int, default=1, help="pool actors")
    p.add_argument("--proxies", default=",".join(DEFAULT_PROXIES), help="'' skips the proxies")
    p.add_argument("--ensemble", default=",".join(DEFAULT_PROXIES), help="proxies whose ranks are averaged")
    p.add_argument("--proxy-batch", type=int, default=64)
    p.add_argument("--search-seeds", type=int, default=5, help="0 skips the searches")
    p.add_argument("--search-budget", type=int, default=100, help="supernet evaluations per search")
    p.add_argument("--strategies", default="evolution,random")
    p.add_argument("--data", default=CIFAR10_SPEC, help="CIFAR-10 spec (cifar10:<JPG archive or batches folder>)")
    p.add_argument("--table", default=DEFAULT_TABLE, help="NB201 CIFAR-10 table (CSV)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="stop training early (smoke runs)")
    p.add_argument("--work", default="raynas_results/oneshot_nb201", help="checkpoints and searches")
    p.add_argument("--overwrite", action="store_true", help="retrain a variant whose checkpoint differs")
    p.add_argument("--progress", action="store_true", help="training progress bar")
    p.add_argument("--note", default="", help="free text stored in the results (e.g. machine load)")
    p.add_argument("--smoke", action="store_true", help="tiny run of every stage (~1 min on CPU)")
    p.add_argument("--out", default=None, help="results JSON name or path (default oneshot_nb201.json)")
    args = p.parse_args(argv)
    if args.smoke:
        args.channels, args.cells_per_stage, args.resolution = 4, 1, 8
        args.train_size, args.epochs, args.max_steps = 256, 1.0, 4
        args.num_archs, args.calib_batches, args.eval_batch = 6, 1, 250
        args.proxies = args.ensemble = "synflow,params"
        args.proxy_batch, args.search_seeds, args.search_budget = 8, 1, 6
        args.work = str(Path(args.work).with_name(Path(args.work).name + "_smoke"))
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown or not args.variants:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    import pandas as pd

    args = parse_args(argv)
    args.data = resolve_data_spec(args.data)
    table_path = Path(args.table) if Path(args.table).is_absolute() else ROOT / args.table
    if not table_path.exists():
        raise SystemExit(f"NB201 table {table_path} not found; pass --table PATH (nb201_cifar10.csv)")
    if not Path(args.data.partition(":")[2]).exists():
        raise SystemExit(f"CIFAR-10 data {args.data} not found; pass --data cifar10:PATH")
    device = setup_device(args.device, args.threads)
    out = Path(args.out or ("oneshot_nb201_smoke.json" if args.smoke else "oneshot_nb201.json"))
    out = out if out.parent != Path(".") else RESULTS / out
    work = Path(args.work)
    variants = args.variants.split(",")
    proxies = [p for p in args.proxies.split(",") if p]
    ensemble = [p for p in args.ensemble.split(",") if p]
    if set(ensemble) - set(proxies) and proxies:
        raise SystemExit(f"--ensemble {ensemble} uses proxies not in --proxies {proxies}")

    table = pd.read_csv(table_path)
    archs = choose_archs(table, args.num_archs, args.arch_seed)
    truth = [a[TRUTH] for a in archs]
    report: Dict[str, Any] = {
        "benchmark": "oneshot_nb201", "smoke": bool(args.smoke), "truth": TRUTH,
        "command": "python benchmarks/oneshot_nb201.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": "2-core CPU VM, shared" if device.type == "cpu" else None,
        "environment": environment(device), "note": args.note,
        "skeleton": {"channels": args.channels, "cells_per_stage": args.cells_per_stage,
                     "resolution": args.resolution, "train_size": args.train_size or "all (43,000)",
                     "truth_network": "C=16, N=5, 32x32 (NB201)"},
        "budget": {"passes_per_subnet_epochs": args.epochs, "batch_size": args.batch_size},
        "evaluation": {"calib_images": args.calib_batches * args.eval_batch,
                       "val_images": args.val_size or "all (5,000)"},
        "num_archs": len(archs), "arch_seed": args.arch_seed, "score": args.score, "variants": {},
    }
    rows = [{"index": a["index"], "arch_str": a["arch_str"], "unique_str": a["unique_str"], TRUTH: a[TRUTH]}
            for a in archs]

    import ray

    from raynas.runtime import ensure_ray

    started_ray = not ray.is_initialized()  # a caller's Ray session (tests) stays up
    for variant in variants:
        trained = train_variant(variant, args, work)
        ensure_ray(num_cpus=max(2, args.workers + 1))
        start = time.perf_counter()
        pool = make_pool(trained["checkpoint"], args)
        try:
            measured = inherited_metrics(pool, archs)
            eval_seconds = time.perf_counter() - start
            load = os.getloadavg()[0]
            # where this run kept its files is no part of the record (machine paths stay out)
            config = {k: v for k, v in (trained["config"] or {}).items() if k not in ("output", "storage_path")}
            entry = {"training": {k: trained.get(k) for k in ("reused", "steps", "train_seconds",
                                                              "train_cpu_seconds", "load_average")},
                     "history": trained["history"], "config": config,
                     "eval_seconds": eval_seconds, "eval_load_average": load,
                     "score": args.score,
                     "ranking": ranking([score_of(m, args.score) for m in measured], truth),
                     "ranking_by": {s: ranking([score_of(m, s) for m in measured], truth) for s in SCORES}}
            for row, m in zip(rows, measured):
                row[f"inherited_{variant}"] = m["accuracy"]
                row[f"loss_{variant}"] = m["loss"]
            if variant == variants[0] and args.search_seeds > 0:
                entry["search"] = run_searches(pool, args, table, work / variant)
        finally:
            pool.shutdown()
        report["variants"][variant] = entry
        r = entry["ranking"]
        print(f"[{variant}] by {args.score}: τ {r['kendall_tau']:.3f}  ρ {r['spearman_rho']:.3f}  top-10% "
              f"{r['top10_precision']:.2f}  ({entry['training']['steps']} steps, eval {eval_seconds:.0f} s)",
              flush=True)
    if started_ray and ray.is_initialized():
        ray.shutdown()

    if proxies:
        columns = score_proxies(archs, proxies, args)
        seconds = columns.pop("_seconds")[0]
        for row, k in zip(rows, range(len(rows))):
            for p in proxies:
                row[p] = columns[p][k]
        from raynas.proxies import rank_ensemble

        proxy_report: Dict[str, Any] = {p: ranking(columns[p], truth) for p in proxies}
        combined = rank_ensemble({p: columns[p] for p in ensemble})
        proxy_report["ensemble"] = {"members": ensemble, **ranking(combined, truth)}
        proxy_report["seconds"] = seconds
        for row, value in zip(rows, combined):
            row["proxy_ensemble"] = float(value)
        first = variants[0]
        supernet = [score_of({"accuracy": r[f"inherited_{first}"], "loss": r[f"loss_{first}"]}, args.score)
                    for r in rows]
        both = rank_ensemble({"supernet": supernet, "proxies": combined})
        for row, value in zip(rows, both):
            row["supernet_plus_proxies"] = float(value)
        proxy_report["supernet_plus_ensemble"] = {"supernet_variant": first, **ranking(both, truth)}
        report["proxies"] = proxy_report

    report["random_search_100_table_queries"] = {"mean": RANDOM_100_TABLE[0], "std": RANDOM_100_TABLE[1],
                                                 "source": "../shared/data/README.md (500 repetitions)"}
    csv_path = out.with_name(out.stem + "_archs.csv")
    write_csv(csv_path, rows)
    report["per_arch_csv"] = csv_path.name
    from benchmarks.common import write_report

    write_report(str(out), json_safe(report))
    print_summary(report)
    return report


def print_summary(report: Mapping[str, Any]) -> None:
    print(f"\n{'estimator':<34}{'Kendall τ':>10}{'Spearman ρ':>12}{'top-10%':>9}")
    for name, entry in report["variants"].items():
        for score, r in entry["ranking_by"].items():
            label = f"supernet {name} ({score})" + (" *" if score == entry["score"] else "")
            print(f"{label:<34}{r['kendall_tau']:>10.3f}{r['spearman_rho']:>12.3f}{r['top10_precision']:>9.2f}")
    for name, r in (report.get("proxies") or {}).items():
        if isinstance(r, dict):
            print(f"{name:<34}{r['kendall_tau']:>10.3f}{r['spearman_rho']:>12.3f}{r['top10_precision']:>9.2f}")
    for name, entry in report["variants"].items():
        for strategy, s in (entry.get("search") or {}).items():
            print(f"one-shot {strategy} ({name}, {s['budget']} supernet evals, {len(s['runs'])} seeds): "
                  f"{TRUTH} {s['mean']:.2f} ± {s['std']:.2f}")
    ref = report["random_search_100_table_queries"]
    print(f"random search, 100 table queries: {ref['mean']:.2f} ± {ref['std']:.2f}")


if __name__ == "__main__":
    main()
