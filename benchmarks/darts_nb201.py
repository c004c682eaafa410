"""DARTS (first and second order) vs TD-DARTS on NAS-Bench-201, CIFAR-10 (issue 7, item 6 i).

Every search is one Ray Tune trial; all of them (3 methods x seeds) run at once, sharing the GPU
(fractional GPUs): one NB201 supernet leaves an H100 mostly idle. The derived cell of every epoch
is looked up in ``nb201_cifar10.csv`` (``c10_test_200ep``: CIFAR-10 test accuracy of that cell
trained for 200 epochs), so the table shows both the returned cells and how they evolve, e.g. a
collapse to skip connections.

Budget. NB201's protocol (5 cells per stage, 25k/25k halves, batch 64, 50 epochs) needs hours
per search; here all searches share a few minutes of one GPU. Same for every method: a proxy
supernet with ``--cells-per-stage`` cells per stage (the derived cell is looked up for NB201's
5-cell network, as DARTS itself searches shallower than it evaluates), ``--epochs`` epochs over
halves of ``--half-size`` images. With ``--half-size auto`` a short timing run picks the largest
half that fits ``--budget-s``. The α learning rate is scaled so that α can move as far over the
search as in the 50-epoch protocol (3e-4 x 19,500 steps / our steps), otherwise a short search
leaves every mixture near uniform and DARTS never reaches its characteristic collapse.

    PYTHONPATH=. python benchmarks/darts_nb201.py --device cuda --budget-s 200
    PYTHONPATH=. python benchmarks/darts_nb201.py --smoke      # digits, CPU, tiny, seconds

A reduced CPU run (2 cores, ~20 min; recorded in benchmarks/results/darts_nb201_cpu.json)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/darts_nb201.py --device cpu --methods darts1,td-darts1 \
        --seeds 0,1,2 --epochs 5 --half-size 2560 --channels 8 --cells-per-stage 1 --budget-s 1800 \
        --out benchmarks/results/darts_nb201_cpu.json

Writes benchmarks/results/darts_nb201.json (atomically).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from raynas.io import atomic_write_json  # noqa: E402

RESULTS = PROJECT / "benchmarks" / "results"
DEFAULT_DATA = PROJECT.parent / "shared" / "data" / "cifar10" / "cifar10_jpg.tar.gz"
DEFAULT_TABLE = PROJECT.parent / "shared" / "data" / "nb201" / "nb201_cifar10.csv"
#: the methods, as partial search configs
_TD = {"name": "linear", "t0": 10.0, "t_end": 0.1}
METHODS: Dict[str, Dict[str, Any]] = {
    "darts1": {"order": 1, "relaxation": "softmax", "schedule": {"name": "constant", "t": 1.0}},
    "darts2": {"order": 2, "relaxation": "softmax", "schedule": {"name": "constant", "t": 1.0}},
    # the founding slides' TD-DARTS: softmax(α/T), T linear per epoch from 10 to 0.1
    "td-darts1": {"order": 1, "relaxation": "softmax", "schedule": _TD},
    "td-darts2": {"order": 2, "relaxation": "softmax", "schedule": _TD},
    # a variant, not the founding method: the same decay, but T never drops below 1
    "td-darts1-floor1": {"order": 1, "relaxation": "softmax", "schedule": {**_TD, "t_floor": 1.0}},
    # GDAS (Dong & Yang 2019): one Gumbel-sampled op per edge, τ linear from 10 to 0.1
    "gdas1": {"order": 1, "relaxation": "gumbel", "schedule": _TD},
}
#: NB201's published CIFAR-10 test accuracies (Dong & Yang 2020, Table 5) and the table optimum
PUBLISHED = {"DARTS-V1": 54.30, "DARTS-V2": 54.30, "GDAS": 93.61, "optimum": 94.37}
#: how a search's cell is read out, from search-side signals only (never the table): its last
#: epoch's; the epoch whose supernet scored best on the α half (what the founding slides report:
#: their epoch-44 cell, the best search-phase validation accuracy of epochs 40-49, not the
#: epoch-50 one); the epoch whose derived cell, run inside the supernet, scored best there
SELECTIONS = ("final", "best_search_val", "best_derived_val")
#: NB201's DARTS protocol: 50 epochs x 390 steps of batch 64 at α lr 3e-4
PROTOCOL_ARCH_LR, PROTOCOL_STEPS = 3e-4, 50 * 390
MAX_AUTO_ARCH_LR = 0.01


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def machine_description(device: str) -> str:
    """Where the numbers come from, in words (timings on a shared CPU are not GPU timings)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"1x {torch.cuda.get_device_name(0)}"
    gpu = "no GPU" if not torch.cuda.is_available() else "GPU unused"
    return f"{os.cpu_count()}-core CPU, {gpu}"


def base_config(args: argparse.Namespace, half_size: int) -> Dict[str, Any]:
    steps = args.epochs * min(half_size // args.batch_size, args.max_steps_per_epoch or 10 ** 9)
    # capped: a handful of steps (smoke runs) must not turn into an absurd rate
    arch_lr = args.arch_lr or min(PROTOCOL_ARCH_LR * PROTOCOL_STEPS / max(steps, 1), MAX_AUTO_ARCH_LR)
    return {
        "space": "nb201", "supernet_options": {"channels": args.channels, "cells_per_stage": args.cells_per_stage,
                                               **({"resolution": args.image_size} if args.image_size else {})},
        "data": args.data_spec, "data_options": {"cache_dir": args.cache_dir} if args.cache_dir else {},
        "image_size": args.image_size, "eval_images": args.eval_images,
        "half_size": half_size, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "arch_lr": arch_lr, "device": args.device, "cpu_threads": 1,
        "max_steps_per_epoch": args.max_steps_per_epoch,
        "table": str(args.table), "table_metrics": {"test_accuracy": "c10_test_200ep"}}


def calibrate(args: argparse.Namespace, methods: List[str], budget_s: float) -> Dict[str, Any]:
    """Time steps of each order alone on this device and pick the largest half size whose sweep
    fits ``budget_s``, assuming the device is the bottleneck (all searches share it)."""
    import torch

    from raynas.data import load_dataset
    from raynas.differentiable.config import DartsSearchConfig
    from raynas.differentiable.search import DartsSearch

    data = load_dataset(args.data_spec, val_size=0, calib_size=0,
                        **({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    steps = args.calibration_steps
    seconds: Dict[int, float] = {}
    for order in sorted({METHODS[m]["order"] for m in methods}):
        cfg = DartsSearchConfig.from_any(base_config(args, steps * args.batch_size), order=order, epochs=2,
                                         max_steps_per_epoch=steps, table=None, table_metrics={})
        search = DartsSearch(cfg, data)
        search.run_epoch()  # warm-up: cuDNN autotuning, allocator
        seconds[order] = search.run_epoch()["epoch_seconds"] / steps
        del search
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    per_image = sum(len(args.seeds) * seconds[METHODS[m]["order"]] for m in methods) / args.batch_size
    # the whole sweep: epochs x half x (every trial's seconds per image) / concurrency gain
    fit = budget_s * args.concurrency_gain / (args.epochs * per_image)
    half = int(min(args.max_half_size, len(data.split("train")) // 2, fit) // args.batch_size * args.batch_size)
    return {"seconds_per_step_alone": {f"order{k}": v for k, v in seconds.items()},
            "projected_sweep_s": args.epochs * per_image * half / args.concurrency_gain,
            "budget_s": budget_s, "half_size": max(half, args.batch_size),
            "fits": half >= args.min_half_size}


def selected_epoch(history: List[Dict[str, Any]], selection: str) -> Optional[Dict[str, Any]]:
    """The epoch record a selection rule reads the cell from (None if the history lacks the
    signal): ``final`` the last; ``best_search_val`` / ``best_derived_val`` the highest supernet /
    derived-cell accuracy on the α half (ties: the later epoch, the further searched)."""
    if not history:
        return None
    if selection == "final":
        return history[-1]
    key = {"best_search_val": "search_val_accuracy", "best_derived_val": "derived_val_accuracy"}[selection]
    if any(key not in r for r in history):
        return None
    return max(reversed(history), key=lambda r: r[key])


def summarise(trials: List[Dict[str, Any]], methods: List[str], epochs: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for method in methods:
        runs = [t for t in trials if t["method"] == method]
        finals = [r["history"][-1] for r in runs if r["history"]]
        acc = [f["test_accuracy"] for f in finals]
        curve = []
        for e in range(epochs):
            rows = [r["history"][e] for r in runs if len(r["history"]) > e]
            if rows:
                point = {"epoch": e + 1, "temperature": rows[0]["temperature"],
                         "test_accuracy_mean": float(np.mean([x["test_accuracy"] for x in rows])),
                         "skip_connections_mean": float(np.mean([x["skip_connections"] for x in rows])),
                         "val_accuracy_mean": float(np.mean([x["val_accuracy"] for x in rows])),
                         "alpha_entropy_mean": float(np.mean([x["alpha_entropy"] for x in rows]))}
                for key in ("search_val_accuracy", "derived_val_accuracy"):
                    if all(key in x for x in rows):
                        point[f"{key}_mean"] = float(np.mean([x[key] for x in rows]))
                if e > 0 and all("alphas" in r["history"][e] for r in runs if len(r["history"]) > e):
                    # how far α moved in this epoch (mean |Δα| over edges and ops): a late
                    # rewrite of the cell shows up as a jump here
                    point["alpha_change_mean"] = float(np.mean([
                        np.abs(np.asarray(r["history"][e]["alphas"]["cell"])
                               - np.asarray(r["history"][e - 1]["alphas"]["cell"])).mean()
                        for r in runs if len(r["history"]) > e]))
                curve.append(point)
        selections = {}
        for rule in SELECTIONS:
            picked = [selected_epoch(r["history"], rule) for r in runs if r["history"]]
            if picked and all(p is not None for p in picked):
                values = [p["test_accuracy"] for p in picked]
                selections[rule] = {"epochs": [p["epoch"] for p in picked], "cells": [p["arch_str"] for p in picked],
                                    "test_accuracy": values, "test_accuracy_mean": float(np.mean(values)),
                                    "test_accuracy_std": float(np.std(values))}
        out[method] = {
            "seeds": [r["seed"] for r in runs], "completed": len(finals),
            "test_accuracy": acc,
            "test_accuracy_mean": float(np.mean(acc)) if acc else None,
            "test_accuracy_std": float(np.std(acc)) if acc else None,
            "cells": [f["arch_str"] for f in finals],
            "skip_connections": [f["skip_connections"] for f in finals],
            "best_epoch_accuracy": [max(x["test_accuracy"] for x in r["history"]) for r in runs if r["history"]],
            "seconds_per_epoch_shared": float(np.mean([x["epoch_seconds"] for r in runs for x in r["history"]]))
            if finals else None,
            "supernet_train_accuracy": [f["train_accuracy"] for f in finals],
            "supernet_val_accuracy": [f["val_accuracy"] for f in finals],
            "errors": [r["error"] for r in runs if r["error"]],
            "selections": selections,
            "curve": curve}
    return out


EPOCH_COLUMNS = ("method", "seed", "epoch", "temperature", "arch_str", "test_accuracy", "skip_connections",
                 "alpha_entropy", "search_val_accuracy", "derived_val_accuracy", "train_accuracy",
                 "val_accuracy", "epoch_seconds")


def write_epoch_csv(path: Path, trials: List[Dict[str, Any]]) -> None:
    """One row per (method, seed, epoch): the derived cell, its table accuracy and the search's
    signals (α themselves are in the JSON's per-seed histories)."""
    import csv
    import io

    from raynas.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EPOCH_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for t in sorted(trials, key=lambda t: (t["method"], t["seed"])):
        for record in t["history"]:
            writer.writerow({"method": t["method"], "seed": t["seed"], **record})
    atomic_write_text(path, buffer.getvalue())


def plot_curves(path: Path, summary: Dict[str, Any]) -> None:
    """Mean table accuracy of each epoch's cell, and the mixtures' entropy, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raynas.io import atomic_path

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for method, s in summary.items():
        epochs = [c["epoch"] for c in s["curve"]]
        left.plot(epochs, [c["test_accuracy_mean"] for c in s["curve"]], marker="o", ms=3, label=method)
        right.plot(epochs, [c["alpha_entropy_mean"] for c in s["curve"]], marker="o", ms=3, label=method)
    left.axhline(PUBLISHED["optimum"], color="grey", lw=0.8, ls="--")
    left.set(xlabel="search epoch", ylabel="NB201 c10_test_200ep of the epoch's cell (mean over seeds)")
    right.set(xlabel="search epoch", ylabel="mean normalised entropy of softmax(α/T)", ylim=(0, 1.02))
    left.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_alphas(path: Path, trials: List[Dict[str, Any]], seed: int) -> None:
    """One seed's mixing weights per epoch: a row per method, a column per NB201 edge, a line per
    op. Softmax relaxations show softmax(α/T) at each epoch's T (what the forward pass mixed);
    GDAS shows softmax(α), the probabilities its Gumbel-max draws sample ops with."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raynas.io import atomic_path
    from spaces.nb201 import EDGES, OP_NAMES

    runs = [t for t in trials if t["seed"] == seed and t["history"]]
    if not runs:
        return
    fig, axes = plt.subplots(len(runs), len(EDGES), figsize=(2.6 * len(EDGES), 2.2 * len(runs)),
                             sharex=True, sharey=True, squeeze=False)
    for row, trial in zip(axes, runs):
        gumbel = METHODS.get(trial["method"], {}).get("relaxation") == "gumbel"
        epochs = [r["epoch"] for r in trial["history"]]
        alphas = np.asarray([r["alphas"]["cell"] for r in trial["history"]])          # [E, 6, 5]
        temps = np.asarray([1.0 if gumbel else r["temperature"] for r in trial["history"]])
        logits = alphas / temps[:, None, None]
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        for e, ax in enumerate(row):
            for k, op in enumerate(OP_NAMES):
                ax.plot(epochs, weights[:, e, k], lw=1.2, label=op)
            j, i = EDGES[e]
            ax.set_title(f"{trial['method']}: edge {j}<-{i}", fontsize=8)
            ax.set_ylim(-0.02, 1.02)
        row[0].set_ylabel("softmax(α)" if gumbel else "softmax(α/T)")
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.suptitle(f"NB201 mixing weights per epoch, seed {seed}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run_inline(args: argparse.Namespace, methods: List[str], base: Dict[str, Any],
               previous: List[Dict[str, Any]], save: Any) -> List[Dict[str, Any]]:
    """Every (seed, method) search one after the other in this process (one CPU core, nothing
    concurrent); ``previous`` trials (from ``--resume``) are kept and not rerun; ``save(trials)``
    runs after every search, so an interrupted run loses at most the search in progress."""
    from raynas.data import load_dataset
    from raynas.differentiable.config import DartsSearchConfig
    from raynas.differentiable.search import DartsSearch

    data = load_dataset(base["data"], val_size=0, calib_size=0, **base["data_options"])
    if args.image_size:
        data = data.resized(args.image_size)  # once, not in every search
    trials = list(previous)
    done = {(t["method"], t["seed"]) for t in trials}
    todo = [(seed, m) for seed in args.seeds for m in methods if (m, seed) not in done]
    for k, (seed, method) in enumerate(todo):
        cfg = DartsSearchConfig.from_any(base, **METHODS[method], seed=seed)
        search = DartsSearch(cfg, data)
        start = time.perf_counter()

        def progress(r: Dict[str, Any], method=method, seed=seed, k=k) -> None:
            extra = "".join(f" {key.split('_')[0]}-val {r[key]:.1f}" for key in
                            ("search_val_accuracy", "derived_val_accuracy") if key in r)
            print(f"[{k + 1}/{len(todo)} {method} seed {seed}] epoch {r['epoch']}/{cfg.epochs} T {r['temperature']:.2f} "
                  f"{r['arch_str']} -> {r.get('test_accuracy', float('nan')):.2f}{extra} ({r['epoch_seconds']:.0f}s)",
                  flush=True)

        error = None
        try:
            search.fit(progress)
        except Exception as exc:  # recorded; the other searches still run
            error = f"{type(exc).__name__}: {exc}"
        trials.append({"method": method, "seed": seed, "history": search.history, "error": error,
                       "search_seconds": time.perf_counter() - start})
        save(trials)
    return trials


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Runners: 'tune' runs every search at once as Ray Tune trials (a GPU "
                                            "shared by fractions); 'inline' runs them one after the other in this "
                                            "process (one CPU core), saving after each so --resume continues.")
    parser.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CIFAR-10 (JPG archive or batches folder)")
    parser.add_argument("--table", default=str(DEFAULT_TABLE), help="NAS-Bench-201 CIFAR-10 table (CSV)")
    parser.add_argument("--cache-dir", default=str(PROJECT / ".cache"), help="decoded-data cache")
    parser.add_argument("--budget-s", type=float, default=200.0,
                        help="wall-time budget of the whole run; --half-size auto fits the sweep in it")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="darts1,darts2,td-darts1", help=f"subset of {sorted(METHODS)}")
    parser.add_argument("--half-size", default="auto", help="images per half, or 'auto' (fit the budget)")
    parser.add_argument("--max-half-size", type=int, default=25000)
    parser.add_argument("--min-half-size", type=int, default=1024, help="auto: refuse to run with less")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells-per-stage", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=None,
                        help="search on images resized to this side (e.g. 16 on a CPU); default: 32")
    parser.add_argument("--eval-images", type=int, default=0,
                        help="per epoch, evaluate the supernet (as searched and as its derived cell) on this "
                             "many images of the α half; needed by the best_search_val selection")
    parser.add_argument("--lr", type=float, default=0.025)
    parser.add_argument("--arch-lr", type=float, default=None,
                        help="α learning rate (default: 3e-4 scaled to the protocol's 19,500 steps)")
    parser.add_argument("--max-steps-per-epoch", type=int, default=None)
    parser.add_argument("--runner", choices=("tune", "inline"), default="tune")
    parser.add_argument("--resume", action="store_true",
                        help="inline: keep the searches already in --out and run only the missing ones")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: recompute --out's summary, per-epoch CSV and plots from the "
                             "searches it holds (e.g. a partial run's); pass the run's own settings")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--gpus", type=float, default=1.0, help="GPUs the searches share")
    parser.add_argument("--concurrency-gain", type=float, default=1.3,
                        help="auto half size: sweep throughput over one search's throughput alone")
    parser.add_argument("--calibration-steps", type=int, default=12)
    parser.add_argument("--startup-s", type=float, default=45.0,
                        help="auto half size: budget kept for Ray and trial start-up and wrap-up")
    parser.add_argument("--smoke", action="store_true", help="digits on CPU, tiny supernet (seconds)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    methods = [m for m in args.methods.split(",") if m]
    if not methods or any(m not in METHODS for m in methods) or not args.seeds:
        parser.error(f"--methods takes a comma-separated subset of {sorted(METHODS)}; --seeds at least one")
    if args.smoke:
        args.device, args.epochs, args.batch_size, args.channels, args.cells_per_stage = "cpu", 2, 32, 2, 1
        args.max_steps_per_epoch, args.half_size, args.data_spec = 1, "64", "digits"
        args.gpus, args.cache_dir, args.seeds = 0.0, None, args.seeds[:1]
    else:
        args.data_spec = f"cifar10:{args.data}"
    out = Path(args.out or RESULTS / ("darts_nb201_smoke.json" if args.smoke else "darts_nb201.json"))
    if not Path(args.table).is_file():
        parser.error(f"NB201 table not found: {args.table} (pass --table)")
    if args.resume and args.runner != "inline":
        parser.error("--resume needs --runner inline (Tune runs every search at once)")
    if args.report_only and not out.is_file():
        parser.error(f"--report-only reads an existing --out; {out} not found")
    previous: List[Dict[str, Any]] = []
    stored: Dict[str, Any] = {}
    if out.exists() and (args.resume or args.report_only):
        stored = json.loads(out.read_text())
        previous = [t for t in stored.get("trials", []) if not t["error"]]
    elif out.exists() and not args.overwrite:
        parser.error(f"{out} exists; pass --overwrite to replace it, --resume (inline) to continue it, "
                     "or another --out")

    calibration = None
    if args.report_only:  # the stored run's half and calibration: nothing is measured again
        calibration = stored.get("calibration")
        half_size = int(stored.get("settings", {}).get("half_size", 0) or args.half_size)
    elif args.half_size == "auto":
        budget = args.budget_s - args.startup_s - (time.perf_counter() - start)
        calibration = calibrate(args, methods, budget)
        print(f"calibration: {calibration}", flush=True)
        if not calibration["fits"]:
            print(f"the sweep does not fit {args.budget_s:.0f}s with a half of at least "
                  f"{args.min_half_size} images; raise --budget-s or lower --epochs", file=sys.stderr)
            return 2
        half_size = calibration["half_size"]
    else:
        half_size = int(args.half_size)
    base = base_config(args, half_size)
    n_trials = len(methods) * len(args.seeds)
    gpus_per_trial = (math.floor(args.gpus / n_trials * 1e4) / 1e4
                      if args.device.startswith("cuda") and args.runner == "tune" else 0.0)
    steps_per_epoch = min(half_size // args.batch_size, args.max_steps_per_epoch or 10 ** 9)

    def report(trials: List[Dict[str, Any]], complete: bool) -> Dict[str, Any]:
        summary = summarise(trials, methods, args.epochs)
        seconds_alone = ({k: v * steps_per_epoch for k, v in calibration["seconds_per_step_alone"].items()}
                         if calibration else None)
        td = summary.get("td-darts1", {})
        checks = {}
        if td.get("test_accuracy_mean") is not None:
            checks["td_darts_mean_at_least_93"] = td["test_accuracy_mean"] >= 93.0
            for other in ("darts1", "darts2"):
                if summary.get(other, {}).get("test_accuracy_mean") is not None:
                    checks[f"td_darts_above_{other}"] = td["test_accuracy_mean"] > summary[other]["test_accuracy_mean"]
        per_seed = [{"method": t["method"], "seed": t["seed"], "epochs_run": len(t["history"]),
                     "arch_str": t["history"][-1]["arch_str"] if t["history"] else None,
                     "c10_test_200ep": t["history"][-1]["test_accuracy"] if t["history"] else None,
                     "skip_connections": t["history"][-1]["skip_connections"] if t["history"] else None,
                     "seconds_per_search_epoch": [round(r["epoch_seconds"], 2) for r in t["history"]],
                     "error": t["error"]} for t in sorted(trials, key=lambda t: (t["method"], t["seed"]))]
        return {
            "benchmark": "darts_nb201", "smoke": args.smoke, "complete": complete,
            "device": device_name(args.device), "machine": machine_description(args.device),
            "command": " ".join(["python", *sys.argv]) if argv is None else "darts_nb201.main(" + repr(argv) + ")",
            "runner": args.runner, "trials_concurrent": n_trials if args.runner == "tune" else 1,
            "cpu_threads_per_trial": 1, "per_seed": per_seed,
            "torch": torch.__version__, "data": args.data_spec if args.smoke else "CIFAR-10 (JPG archive)",
            "settings": {"epochs": args.epochs, "seeds": args.seeds, "methods": {m: METHODS[m] for m in methods},
                         "half_size": half_size, "steps_per_epoch": steps_per_epoch, "batch_size": args.batch_size,
                         "image_size": args.image_size or 32, "eval_images": args.eval_images,
                         "supernet": base["supernet_options"], "lr": args.lr, "arch_lr": base["arch_lr"],
                         "gpus_per_trial": gpus_per_trial, "budget_s": args.budget_s},
            "calibration": calibration, "seconds_per_search_epoch_alone": seconds_alone,
            "published": PUBLISHED, "selections": list(SELECTIONS), "methods": summary, "checks": checks,
            "table_lookup": "c10_test_200ep of the selected epoch's derived cell (NB201, 5 cells per stage)",
            # every epoch of every search: cell, table accuracy, temperature, α, search signals
            "trials": sorted(trials, key=lambda t: (t["method"], t["seed"])),
            "wall_s": time.perf_counter() - start,
        }

    if args.report_only:
        trials = previous
    elif args.runner == "inline":
        def save(trials: List[Dict[str, Any]]) -> None:
            atomic_write_json(out, report(trials, complete=False))

        trials = run_inline(args, methods, base, previous, save)
    else:
        from raynas.differentiable.sweep import darts_search

        sweep = darts_search(
            base, variants=[{**METHODS[m]} for m in methods], grid={"seed": args.seeds},
            gpus_per_trial=gpus_per_trial, cpus_per_trial=1.0, max_concurrent=n_trials,
            storage_path=PROJECT / "raynas_results",
            name=f"darts_nb201{'_smoke' if args.smoke else ''}-{os.getpid()}",
            num_cpus=max(os.cpu_count() or 1, n_trials), progress=True,
            # a guard, not the plan: trials still running then stop (their epochs so far are kept)
            time_budget_s=None if args.smoke else max(args.budget_s - (time.perf_counter() - start) - 10, 10))
        trials = []
        for t in sweep.trials:
            method = next(m for m in methods if all(t["config"].get(k) == v for k, v in METHODS[m].items()))
            trials.append({"method": method, "seed": t["config"]["seed"], "history": t["history"],
                           "error": t["error"]})
    searched = {(t["method"], t["seed"]) for t in trials if len(t["history"]) == args.epochs}
    missing = [(m, seed) for seed in args.seeds for m in methods if (m, seed) not in searched]
    final = report(trials, complete=not missing)
    if args.report_only:  # the run's own command and wall time, not this re-summary's
        final.update(command=stored.get("command", final["command"]), wall_s=stored.get("wall_s", final["wall_s"]),
                     report_command=" ".join(["python", *sys.argv]) if argv is None else repr(argv))
    atomic_write_json(out, final)
    write_epoch_csv(out.with_name(out.stem + "_epochs.csv"), trials)
    plot_curves(out.with_name(out.stem + "_curves.png"), final["methods"])
    if all("alphas" in r for t in trials for r in t["history"]):
        plot_alphas(out.with_name(out.stem + f"_alphas_seed{args.seeds[0]}.png"), trials, args.seeds[0])
    print(f"\n{'method':<10} {'selection':<16} {'mean':>7} {'std':>6}  per-seed c10_test_200ep   (published: "
          f"DARTS-V1/V2 {PUBLISHED['DARTS-V1']}, GDAS {PUBLISHED['GDAS']}, optimum {PUBLISHED['optimum']})")
    for m, s in final["methods"].items():
        for rule, sel in s["selections"].items():
            print(f"{m:<10} {rule:<16} {sel['test_accuracy_mean']:7.2f} {sel['test_accuracy_std']:6.2f}  "
                  f"{[round(a, 2) for a in sel['test_accuracy']]}  epochs {sel['epochs']}")
    print(f"checks: {final['checks']}\nwrote {out} in {final['wall_s']:.0f}s")
    if missing:
        print(f"partial: {len(missing)} of {len(methods) * len(args.seeds)} searches missing "
              f"({', '.join(f'{m} seed {s}' for m, s in missing)}); rerun with --runner inline --resume to add them")
    return 0 if not any(s["errors"] for s in final["methods"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
