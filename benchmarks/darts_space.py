"""The DARTS CNN space end to end: search, derive a genotype, retrain it (issue 7, item 6 ii).

Three parts, each optional:
1. timing: seconds per step of first- and second-order search on DARTS' search network (8 cells,
   16 channels, batch 64) and the seconds a full search epoch takes (25k/25k halves: 390 steps);
2. search: a differentiable search as a Ray Tune trial (default: TD-DARTS, first order, a few
   short epochs), reporting the derived genotype every epoch;
3. retrain: the derived genotype trained from scratch as a Tune trial with DARTS' recipe
   (20 cells, 36 channels, auxiliary head, cutout, drop-path), here briefly, with the seconds a
   full epoch over the 50k training images takes.

The full protocol (50 search epochs, 600 retrain epochs) is one config file::

    PYTHONPATH=. python benchmarks/darts_space.py --config configs/darts_full.json --device cuda

    PYTHONPATH=. python benchmarks/darts_space.py --device cuda --budget-s 100   # short run
    PYTHONPATH=. python benchmarks/darts_space.py --smoke                         # CPU, seconds

A protocol file holds ``search`` (DartsSearchConfig options), ``retrain`` (RetrainConfig
options), optional ``timing`` (steps) and ``seeds``. Writes benchmarks/results/darts_space.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from raynas.io import atomic_write_json  # noqa: E402

RESULTS = PROJECT / "benchmarks" / "results"
DEFAULT_DATA = PROJECT.parent / "shared" / "data" / "cifar10" / "cifar10_jpg.tar.gz"
FULL_EPOCH_STEPS = 25000 // 64       # one search epoch of DARTS' protocol
FULL_TRAIN_IMAGES = 50000            # one retrain epoch of DARTS' protocol

SHORT: Dict[str, Any] = {
    "timing": {"steps": 10, "orders": [1, 2]},
    "seeds": [0],
    "search": {"space": "darts", "supernet_options": {"channels": 16, "layers": 8}, "order": 1,
               "schedule": {"name": "linear", "t0": 10.0, "t_end": 0.1}, "epochs": 3, "half_size": 3200,
               "batch_size": 64, "arch_lr": 3e-3},
    "retrain": {"space": "darts", "space_options": {"channels": 36, "layers": 20, "auxiliary": True},
                "epochs": 2, "train_size": 10000, "batch_size": 96, "cutout": 16, "drop_path_prob": 0.2,
                "auxiliary_weight": 0.4, "eval_every": 2},
}
SMOKE: Dict[str, Any] = {
    "timing": {"steps": 1, "orders": [1, 2]},
    "seeds": [0],
    "search": {"space": "darts", "supernet_options": {"channels": 2, "layers": 3}, "order": 1,
               "schedule": "linear", "epochs": 2, "half_size": 16, "batch_size": 8, "max_steps_per_epoch": 1},
    "retrain": {"space": "darts", "space_options": {"channels": 2, "layers": 3, "auxiliary": True},
                "epochs": 1, "batch_size": 8, "max_steps_per_epoch": 1, "eval_split": "val",
                "eval_batch_size": 16, "data_options": {"val_size": 16}},
}


def load_protocol(path: Optional[str]) -> Dict[str, Any]:
    if path is None:
        return json.loads(json.dumps(SHORT))
    protocol = json.loads(Path(path).read_text())
    unknown = sorted(set(protocol) - {"timing", "seeds", "search", "retrain", "description"})
    if unknown or "search" not in protocol or "retrain" not in protocol:
        raise SystemExit(f"{path}: a protocol holds 'search' and 'retrain' (and optional 'timing', "
                         f"'seeds'); unknown keys: {unknown}")
    return protocol


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def time_search_steps(search_options: Dict[str, Any], steps: int, orders: List[int]) -> Dict[str, Any]:
    """Seconds per search step of each order alone (after a warm-up epoch), in this process."""
    import torch

    from raynas.data import load_dataset
    from raynas.differentiable.config import DartsSearchConfig
    from raynas.differentiable.search import DartsSearch

    options = {k: v for k, v in search_options.items() if k not in ("table", "table_metrics")}
    data = load_dataset(options["data"], val_size=0, calib_size=0, **options.get("data_options", {}))
    out: Dict[str, Any] = {}
    for order in orders:
        cfg = DartsSearchConfig.from_any(options, order=order, epochs=2, max_steps_per_epoch=steps,
                                         half_size=max(steps * options.get("batch_size", 64), 64))
        search = DartsSearch(cfg, data)
        search.run_epoch()
        per_step = search.run_epoch()["epoch_seconds"] / steps
        out[f"order{order}"] = {"seconds_per_step": per_step,
                                "seconds_per_full_epoch": per_step * FULL_EPOCH_STEPS,
                                "batch_size": cfg.batch_size}
        del search
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available)")
    parser.add_argument("--config", default=None, help="protocol file (default: the short run); "
                                                       "configs/darts_full.json is DARTS' full protocol")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CIFAR-10 (JPG archive or batches folder)")
    parser.add_argument("--cache-dir", default=str(PROJECT / ".cache"))
    parser.add_argument("--budget-s", type=float, default=100.0,
                        help="wall-time budget (a guard: the search may use 45%% of what is left after "
                             "the timing, the retrain the rest; a part that overruns stops there)")
    parser.add_argument("--search-epochs", type=int, default=None, help="override the protocol's")
    parser.add_argument("--retrain-epochs", type=int, default=None, help="override the protocol's")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: timing,search,retrain")
    parser.add_argument("--smoke", action="store_true", help="digits on CPU, tiny networks (seconds)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import torch

    protocol = json.loads(json.dumps(SMOKE)) if args.smoke else load_protocol(args.config)
    device = "cpu" if args.smoke else (args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = "digits" if args.smoke else f"cifar10:{args.data}"
    data_options = {} if args.smoke else {"cache_dir": args.cache_dir}
    for part in ("search", "retrain"):
        protocol[part].setdefault("data", data)
        protocol[part].setdefault("data_options", data_options)
        protocol[part]["device"] = device
        protocol[part].setdefault("cpu_threads", 1 if device == "cpu" else None)
    if args.search_epochs:
        protocol["search"]["epochs"] = args.search_epochs
    if args.retrain_epochs:
        protocol["retrain"]["epochs"] = args.retrain_epochs
    skip = {s for s in args.skip.split(",") if s}
    gpus = 1.0 if device.startswith("cuda") else 0.0
    report: Dict[str, Any] = {"benchmark": "darts_space", "smoke": args.smoke, "device": device_name(device),
                              "torch": torch.__version__, "protocol": protocol}
    out = Path(args.out or RESULTS / ("darts_space_smoke.json" if args.smoke else "darts_space.json"))

    if "timing" not in skip and protocol.get("timing"):
        timing = protocol["timing"]
        report["timing"] = time_search_steps(protocol["search"], int(timing["steps"]), list(timing["orders"]))
        print(f"search timing: {report['timing']}", flush=True)

    from raynas.differentiable.sweep import darts_search, retrain

    storage = PROJECT / "raynas_results"
    tag = f"{'smoke-' if args.smoke else ''}{os.getpid()}"
    arch = protocol["retrain"].get("arch")
    def left() -> Optional[float]:
        return None if args.smoke or args.config else max(args.budget_s - (time.perf_counter() - start), 10.0)

    if "search" not in skip:
        found = darts_search(protocol["search"], grid={"seed": protocol.get("seeds", [0])}, gpus_per_trial=gpus,
                             storage_path=storage, name=f"darts_space_search-{tag}", progress=True,
                             time_budget_s=None if left() is None else 0.45 * left())
        trial = found.trials[0]
        if trial["error"] or not trial["history"]:
            raise SystemExit(f"the search failed: {trial['error']}")
        last = trial["history"][-1]
        arch = json.loads(last["arch"])
        report["search"] = {"arch": arch, "arch_str": last["arch_str"],
                            "skip_connections": last["skip_connections"],
                            "seconds_per_epoch": [r["epoch_seconds"] for r in trial["history"]],
                            "steps_per_epoch": last["steps"],
                            "history": [{k: r[k] for k in ("epoch", "temperature", "arch_str", "skip_connections",
                                                           "train_accuracy", "val_accuracy", "alpha_entropy")}
                                        for r in trial["history"]]}
    if "retrain" not in skip:
        if not arch:
            raise SystemExit("no arch to retrain: run the search or give 'arch' in the protocol's retrain part")
        protocol["retrain"]["arch"] = arch
        trained = retrain(protocol["retrain"], grid={"seed": protocol.get("seeds", [0])}, gpus_per_trial=gpus,
                          storage_path=storage, name=f"darts_space_retrain-{tag}", progress=True,
                          time_budget_s=None if left() is None else left() - 5)
        trial = trained.trials[0]
        if trial["error"] or not trial["history"]:
            raise SystemExit(f"the retraining failed: {trial['error']}")
        history = trial["history"]
        train_images = history[-1]["steps"] * protocol["retrain"]["batch_size"]
        per_image = sum(r["train_seconds"] for r in history) / (len(history) * train_images)
        report["retrain"] = {"params": history[-1]["params"], "test_accuracy": history[-1].get("test_accuracy"),
                             "epochs": len(history), "train_images_per_epoch": train_images,
                             "train_seconds_per_epoch": [r["train_seconds"] for r in history],
                             "seconds_per_full_epoch": per_image * FULL_TRAIN_IMAGES,
                             "history": history}
    report["wall_s"] = time.perf_counter() - start
    atomic_write_json(out, report)
    if "search" in report:
        print(f"derived genotype: {report['search']['arch_str']}")
    if "retrain" in report:
        r = report["retrain"]
        print(f"retrain: {r['params'] / 1e6:.2f}M params, test accuracy {r['test_accuracy']} after "
              f"{r['epochs']} epoch(s) of {r['train_images_per_epoch']} images; a full epoch ~"
              f"{r['seconds_per_full_epoch']:.1f}s")
    print(f"wrote {out} in {report['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
