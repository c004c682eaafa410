"""Zero-cost proxies on NAS-Bench-201 / CIFAR-10, checked against published rank correlations.

Samples K archs of the NB201 table (seeded) or reads arch_strs from a file, builds each network
untrained (seeded init), scores every proxy on one fixed CIFAR-10 training minibatch, and
reports Spearman rho / Kendall tau against ``c10_test_200ep`` next to the published values,
a rank-aggregated ensemble, and archs/s per proxy.

    python benchmarks/proxies_nb201.py --device cuda --num-archs 1000 --workers 6 --threads 1
    python benchmarks/proxies_nb201.py --smoke                                  # CPU, seconds

Writes benchmarks/results/proxies_nb201.json (and _scores.csv); ``--smoke`` writes *_smoke.*.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raynas.io import json_safe as _json_safe  # noqa: E402
from raynas.io import atomic_path, atomic_write_json  # noqa: E402
from raynas.proxies import ProxyEvaluator, list_proxies, rank_correlations, rank_ensemble  # noqa: E402
from spaces.nb201 import from_arch_str  # noqa: E402

DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_cifar10.csv"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10_jpg.tar.gz"
RESULTS = ROOT / "benchmarks" / "results"
TRUTH = "c10_test_200ep"
#: Spearman rho over all NB201 archs on CIFAR-10: Abdelfattah et al. (ICLR 2021) Table for the
#: first six; NASWOT, params, FLOPs and Zen as measured on NB201 by later benchmarks
#: (e.g. Krishnakumar et al., NAS-Bench-Suite-Zero, 2022). (low, high) where a range is quoted.
PUBLISHED: Dict[str, Optional[Tuple[float, float]]] = {
    "grad_norm": (0.58, 0.58), "snip": (0.58, 0.58), "grasp": (0.48, 0.48), "fisher": (0.36, 0.36),
    "synflow": (0.74, 0.74), "jacob_cov": (0.73, 0.73), "naswot": (0.74, 0.80),
    "params": (0.75, 0.75), "flops": (0.75, 0.75), "zen": (0.35, 0.40),
    "snip_layernorm": None, "gradsign": None,
}
TOLERANCE = 0.05
#: fixed before measuring the 1,000-arch run: the proxies with the highest published rho that
#: read different signals (path flow of |weights|, activation-pattern diversity, input Jacobians)
DEFAULT_ENSEMBLE = ("synflow", "naswot", "jacob_cov")
def load_minibatch(data: Path, batch_size: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One fixed, normalised CIFAR-10 training minibatch (a seeded choice of training images)."""
    from raynas.data import load_dataset, to_float

    dataset = load_dataset(f"cifar10:{data}", seed=seed)
    train = dataset.split("train")
    positions = torch.from_numpy(np.random.default_rng(seed).choice(len(train), size=batch_size, replace=False))
    return to_float(train.take(positions), dataset.mean, dataset.std).contiguous(), train.labels[positions]


# ---------------------------------------------------------------------- archs
def choose_rows(table, num_archs: int, seed: int, arch_file: Optional[Path]) -> List[int]:
    """Row indices of the archs to score: a seeded sample, or those listed in ``arch_file``."""
    if arch_file is not None:
        wanted = [line.strip() for line in Path(arch_file).read_text().splitlines() if line.strip()]
        row_of = {s: i for i, s in enumerate(table["arch_str"])}
        missing = [s for s in wanted if s not in row_of]
        if missing:
            raise SystemExit(f"{len(missing)} arch_strs of {arch_file} are not in the table, e.g. {missing[0]}")
        return [row_of[s] for s in wanted]
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.choice(len(table), size=min(num_archs, len(table)), replace=False)]


# ---------------------------------------------------------------------- report
def summarise(scores: Dict[str, List[float]], truth: Sequence[float], timings: Dict[str, float],
              n: int, ensemble: Sequence[str]) -> Dict[str, Dict]:
    report: Dict[str, Dict] = {}
    for name, values in scores.items():
        corr = rank_correlations(values, truth)
        pub = PUBLISHED.get(name)
        row = {"spearman": corr["spearman"], "kendall": corr["kendall"], "n": corr["n"],
               "published_spearman": None if pub is None else (pub[0] if pub[0] == pub[1] else list(pub)),
               "seconds": timings.get(name, 0.0),
               "archs_per_s": n / timings[name] if timings.get(name) else None}
        if pub is not None and not math.isnan(corr["spearman"]):
            row["within_tolerance"] = bool(corr["spearman"] >= pub[0] - TOLERANCE)
        report[name] = row
    members = [p for p in ensemble if p in scores]
    if members:
        combined = rank_ensemble({p: scores[p] for p in members})
        corr = rank_correlations(combined, truth)
        best = max((r["spearman"] for k, r in report.items() if not math.isnan(r["spearman"])), default=float("nan"))
        report["ensemble"] = {"members": members, "spearman": corr["spearman"], "kendall": corr["kendall"],
                              "n": corr["n"], "best_single_spearman": best,
                              "beats_best_single": bool(corr["spearman"] > best)}
    return report


def print_report(report: Dict[str, Dict]) -> None:
    print(f"\n{'proxy':<16}{'spearman':>9}{'kendall':>9}{'published':>12}{'ok':>5}{'archs/s':>10}")
    for name, r in report.items():
        if name == "ensemble":
            continue
        pub = r["published_spearman"]
        pub_s = "-" if pub is None else (f"{pub:.2f}" if isinstance(pub, float) else f"{pub[0]:.2f}-{pub[1]:.2f}")
        ok = {True: "yes", False: "NO"}.get(r.get("within_tolerance"), "-")
        rate = f"{r['archs_per_s']:.1f}" if r["archs_per_s"] else "-"
        print(f"{name:<16}{r['spearman']:>9.3f}{r['kendall']:>9.3f}{pub_s:>12}{ok:>5}{rate:>10}")
    if "ensemble" in report:
        e = report["ensemble"]
        print(f"{'ensemble':<16}{e['spearman']:>9.3f}{e['kendall']:>9.3f}   rank mean of {'+'.join(e['members'])}"
              f" (best single {e['best_single_spearman']:.3f})")




def write_scores_csv(path: Path, rows: List[Dict]) -> None:
    import pandas as pd

    with atomic_path(path, suffix=".csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


# ---------------------------------------------------------------------- scoring
Item = Tuple[int, str, float]  # (NB201 index, arch_str, truth)


def score_shard(evaluator: ProxyEvaluator, items: Sequence[Item], deadline: Optional[float],
                threads: Optional[int], progress: Optional[Path] = None) -> Tuple[List[Dict], Dict[str, float]]:
    """Score ``items`` in order until ``deadline`` (wall clock); returns records and timings."""
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    records: List[Dict] = []
    for k, (index, arch_str, truth) in enumerate(items):
        if deadline is not None and time.time() > deadline:
            break
        scores = evaluator.score(from_arch_str(arch_str))
        records.append({"index": index, "arch_str": arch_str, TRUTH: truth, **scores})
        if progress is not None and ((k + 1) % 25 == 0 or k + 1 == len(items)):
            print(f"  {k + 1}/{len(items)} archs, {(k + 1) / (time.perf_counter() - start):.2f} archs/s", flush=True)
            write_scores_csv(progress, records)  # partial results survive an interrupted run
    return records, dict(evaluator.timings)


def score_in_workers(evaluator: ProxyEvaluator, items: Sequence[Item], deadline: Optional[float],
                     threads: Optional[int], workers: int) -> Tuple[List[Dict], Dict[str, float]]:
    """Score interleaved shards in ``workers`` processes sharing the device: NB201 nets are
    small, so one process leaves a GPU idle between its many small kernels."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    shards = [list(items[w::workers]) for w in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        results = list(pool.map(score_shard, [evaluator] * workers, shards, [deadline] * workers,
                                [threads] * workers))
    by_index = {r["index"]: r for recs, _ in results for r in recs}
    records = [by_index[i] for i, _, _ in items if i in by_index]
    timings: Dict[str, float] = {}
    for _, t in results:  # proxy-seconds summed over workers
        for k, v in t.items():
            timings[k] = timings.get(k, 0.0) + v
    return records, timings


# ---------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--num-archs", type=int, default=1000)
    p.add_argument("--arch-file", type=Path, default=None, help="text file with one NB201 arch_str per line")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="seeds the arch sample, the minibatch and the inits")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10: the JPG archive or a cifar-10-batches-py folder")
    p.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="NB201 CIFAR-10 table (CSV)")
    p.add_argument("--proxies", default=",".join(list_proxies()), help="comma-separated proxy names")
    p.add_argument("--ensemble", default=",".join(DEFAULT_ENSEMBLE), help="proxies whose ranks are averaged")
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop scoring new archs after this many seconds (report what was scored)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes scoring shards on the same device (4-8 keep an H100 busy)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 avoids oversubscription on a shared CPU)")
    p.add_argument("--smoke", action="store_true", help="3 archs, batch 8: checks the pipeline in seconds")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/...)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    import pandas as pd

    args = parse_args(argv)
    if args.smoke:
        args.num_archs, args.batch_size = min(args.num_archs, 3), min(args.batch_size, 8)
        args.threads = args.threads or 1
    name = "proxies_nb201_smoke" if args.smoke else "proxies_nb201"
    out_json = args.out or RESULTS / f"{name}.json"
    out_csv = out_json.with_name(out_json.stem + "_scores.csv")
    proxies = [p for p in args.proxies.split(",") if p]
    ensemble = [p for p in args.ensemble.split(",") if p]

    table = pd.read_csv(args.table)
    rows = choose_rows(table, args.num_archs, args.seed, args.arch_file)
    inputs, targets = load_minibatch(args.data, args.batch_size, args.seed)
    evaluator = ProxyEvaluator("nb201", proxies, batch=(inputs, targets), seed=args.seed, device=args.device)
    device = evaluator.device
    print(f"scoring {len(rows)} NB201 archs x {len(proxies)} proxies on {device}, batch {args.batch_size}")

    start = time.perf_counter()
    items = [(int(table["index"].iloc[r]), table["arch_str"].iloc[r], float(table[TRUTH].iloc[r])) for r in rows]
    deadline = None if args.time_budget is None else time.time() + args.time_budget
    if args.workers <= 1:
        records, timings = score_shard(evaluator, items, deadline, args.threads, progress=out_csv)
    else:
        records, timings = score_in_workers(evaluator, items, deadline, args.threads, args.workers)
    if len(records) < len(items):
        print(f"time budget of {args.time_budget:.0f} s reached after {len(records)} of {len(items)} archs")
    wall = time.perf_counter() - start
    if len(records) < 3:
        raise SystemExit("fewer than 3 archs scored: nothing to correlate")

    truth = [r[TRUTH] for r in records]
    report = summarise({p: [r[p] for r in records] for p in proxies}, truth, timings, len(records), ensemble)
    print_report(report)
    result = {
        "benchmark": "proxies_nb201", "smoke": bool(args.smoke), "truth": TRUTH,
        "num_archs": len(records), "batch_size": args.batch_size, "seed": args.seed,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
        "workers": args.workers, "wall_seconds": wall, "archs_per_s_all_proxies": len(records) / wall,
        "build_seconds": timings.get("build", 0.0),
        "params_flops": "analytic space.cost (equal to FlopCounterMode counts, tested)",
        "tolerance": TOLERANCE, "proxies": report,
    }
    write_scores_csv(out_csv, records)
    atomic_write_json(out_json, _json_safe(result))
    print(f"\n{len(records)} archs in {wall:.1f} s ({len(records) / wall:.2f} archs/s, all proxies); "
          f"wrote {out_json.relative_to(ROOT) if out_json.is_relative_to(ROOT) else out_json}")
    return result


if __name__ == "__main__":
    main()
