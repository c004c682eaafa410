"""Ranking quality of a one-shot supernet: weight-inherited vs stand-alone accuracy (issue 3).

1. Train the ``ofa_mbv3_cifar`` supernet on CIFAR-10 (the library's sandwich default: labels for
   the first half, in-place distillation after; records made before that default distilled from
   step 0), bf16, channels_last, the uint8 training set on the GPU, augmentation on the GPU; by default
   with a stride-2 first stage, see ``DEFAULT_SPACE_OPTIONS``).
2. Pick ``--subnets`` (>= 12) archs spread evenly over the MACs range (smallest and largest
   included).
3. Weight-inherited accuracy of each: BN recalibrated on the 2,000 held-out calibration images,
   top-1 on the 5,000-image validation split that training never saw (one image = 0.02 points;
   ``WeightInheritedEvaluator``, the pool's evaluation).
4. Train each arch stand-alone from scratch with the same recipe (optimizer, lr schedule,
   batch, augmentation) and the same number of epochs, ``--procs`` processes sharing the GPU
   (0: one after another in this process); top-1 on the same validation split after every epoch.
5. Kendall tau and Spearman rho between the two accuracies (target tau >= 0.6) with bootstrap
   confidence intervals (subnets resampled with replacement), the largest and smallest subnets'
   accuracies, and the wall time of every stage.

Epochs are sized to the wall-time budget from a short probe of the step time, so the script fits
``--budget-s`` on any device; ``--supernet-epochs`` and ``--standalone-epochs`` fix them instead
(the CPU protocol: a shared CPU's speed drifts, a step count does not).

    PYTHONPATH=. python benchmarks/supernet_ranking.py --device cuda --budget-s 400
    # CPU (about 90 minutes of two cores): the demo's space (width 0.5, input 12-16 px) on CIFAR-10
    # at 16x16, 20,000 training images, 5,000 validation images (one image = 0.02 points)
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/supernet_ranking.py --device cpu --threads 1 \
        --procs 2 --image-size 16 --space-options \
        '{"width_mult": 0.5, "resolutions": [12, 14, 16], "stage_strides": [2, 2, 2, 1, 2]}' \
        --train-size 20000 --batch-size 128 --lr 0.1 --supernet-epochs 15 --standalone-epochs 15 \
        --out benchmarks/results/supernet_ranking_cifar16_cpu.json
    PYTHONPATH=. python benchmarks/supernet_ranking.py --smoke       # CPU, digits, seconds
    # a longer stand-alone column for the same supernet column (the CPU supernet is deterministic:
    # same data, space, recipe and seed give the same weights, so it is read, not retrained):
    # the command above with --standalone-epochs 25 (about 2 hours of two cores) and
    ... --inherited-from benchmarks/results/supernet_ranking_cifar16_cpu.json \
        --out benchmarks/results/supernet_ranking_cifar16_cpu_25ep.json

Short stand-alone schedules mislead in this space: the deepest nets (depth 4 in every stage)
learn slowest from scratch, so the stand-alone order of the large nets still changes between 15
and 25 epochs (``results/supernet_ranking_cifar16_cpu*.json``); compare columns trained to a
plateau, not to a budget.

Writes benchmarks/results/supernet_ranking.json (atomically).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import (CIFAR10_SPEC, RESULTS, SMOKE_DATA, SMOKE_OFA, Deadline,  # noqa: E402
                               EpochRecorder, environment, epochs_for, load_average,
                               resolve_data_spec, seconds_per_step, setup_device, steps_per_epoch,
                               train_standalone_many, write_report)

TARGET_TAU = 0.6
# A stride-2 first stage (the demo's choice) cuts the preset's MACs 3.6x (largest 50M, smallest
# 7.6M): on one H100 the supernet then gets ~20 epochs and 13 stand-alone nets ~15 each inside
# the 7-minute budget, enough for accuracies that separate the subnets. '{}' runs the preset.
DEFAULT_SPACE_OPTIONS = {"stage_strides": [2, 2, 2, 1, 2]}


def tilted_sample(space, rng: np.random.Generator, level: float) -> Dict[str, Any]:
    """A random arch whose every decision leans towards ``level`` of its cost range: the choice
    index is Binomial(n - 1, level), so level 0 gives the smallest arch, 1 the largest, and
    0.5 a uniform-looking draw. Uniform samples alone bunch in the middle of the MACs range
    (a sum of many independent choices), which left the top third of the range without picks."""
    values = {d.name: d.choices[int(rng.binomial(len(d.choices) - 1, level))] for d in space.decisions()}
    return space.from_decisions(values)


def pick_subnets(space, count: int, seed: int, pool: int = 2000) -> List[Dict[str, Any]]:
    """``count`` distinct archs whose MACs are spread evenly from the smallest to the largest.

    The candidate pool mixes uniform samples with samples tilted across the cost range, so
    every MACs target has candidates near it."""
    from raynas.arch import arch_id
    from raynas.rng import derive_rng

    rng = derive_rng(seed, "ranking-subnets")
    candidates = [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(pool // 2)]
    candidates += [tilted_sample(space, rng, level) for level in rng.uniform(0.0, 1.0, pool - pool // 2)]
    macs = np.array([space.cost(a)["macs"] for a in candidates])
    targets = np.linspace(macs[0], macs[1], count)
    chosen, seen = [], set()
    for target in targets:
        for i in np.argsort(np.abs(macs - target), kind="stable"):
            key = arch_id(candidates[i])
            if key not in seen:
                seen.add(key)
                chosen.append(candidates[i])
                break
    return sorted(chosen, key=lambda a: space.cost(a)["macs"])


def _finite(value: float) -> Optional[float]:
    value = float(value)
    return value if np.isfinite(value) else None


def rank_agreement(inherited: List[float], alone: List[float], resamples: int, seed: int) -> Dict[str, Any]:
    """Kendall tau and Spearman rho with percentile bootstrap 95% intervals (the subnets
    resampled with replacement; resamples where a side ties everywhere are skipped)."""
    from scipy.stats import kendalltau, spearmanr

    a, b = np.asarray(inherited, dtype=float), np.asarray(alone, dtype=float)
    # undefined (None) when one side ties everywhere, as barely trained smoke nets can
    out: Dict[str, Any] = {"kendall_tau": _finite(kendalltau(a, b).statistic),
                           "spearman_rho": _finite(spearmanr(a, b).statistic), "bootstrap": resamples}
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(resamples):
        idx = rng.integers(0, len(a), len(a))
        if np.ptp(a[idx]) == 0 or np.ptp(b[idx]) == 0:
            continue
        taus.append(kendalltau(a[idx], b[idx]).statistic)
        rhos.append(spearmanr(a[idx], b[idx]).statistic)
    for name, values in (("kendall_tau_ci95", taus), ("spearman_rho_ci95", rhos)):
        values = [v for v in values if np.isfinite(v)]
        out[name] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else None
    out["bootstrap_used"] = len(taus)
    return out


# what must match for an earlier record's supernet column to be this run's: the weights depend on
# nothing else (epochs fixed, CPU kernels deterministic), the inherited accuracies also on the
# calibration and evaluation settings
_RECIPE_KEYS = ("batch_size", "lr", "optimizer", "weight_decay", "warmup_epochs", "label_smoothing",
                "bf16", "channels_last")


def _record_seed(record: Dict[str, Any]) -> int:
    """The seed of a record (older records name it only in their command; absent: the default 0)."""
    if "seed" in record:
        return int(record["seed"])
    found = re.search(r"--seed[ =](\d+)", record.get("command", ""))
    return int(found.group(1)) if found else 0


def inherited_column(path: str, raw: bytes, record: Dict[str, Any], expected: Dict[str, Any]) -> Dict[str, Any]:
    """The supernet column (subnets, inherited accuracies, supernet summary) of an earlier record
    of this benchmark (``record``, parsed from ``raw``, the bytes of ``path``), after checking that
    every setting in ``expected`` equals the record's.

    Raises ValueError naming the first setting that differs (KeyError: not such a record)."""
    if not isinstance(record, dict) or record.get("benchmark") != "supernet_ranking":
        raise ValueError(f"--inherited-from {path}: not a supernet_ranking record")
    found = {"smoke": record["smoke"], "space": record["space"], "data": record["data"],
             "data_options": record["data_options"],
             "recipe": {k: record["recipe"][k] for k in _RECIPE_KEYS}, "sampler": record["sampler"],
             "supernet_epochs": record["supernet"]["epochs"], "subnets": len(record["subnets"]),
             "calib_images": record["evaluation"]["calib_images"],
             "eval_batch": record["evaluation"]["batch_size"], "seed": _record_seed(record)}
    for key, value in expected.items():
        if found[key] != value:
            raise ValueError(f"--inherited-from {path}: its {key} is {found[key]!r}, this run's is {value!r}; "
                             f"run with the same settings or drop --inherited-from")
    return {"archs": [s["arch"] for s in record["subnets"]],
            "inherited": [s["inherited_accuracy"] for s in record["subnets"]],
            "supernet": record["supernet"], "stages_s": record["stages_s"], "torch": record.get("torch"),
            "source": {"path": str(path), "sha256": hashlib.sha256(raw).hexdigest()}}


def supernet_column(args, dataset, supernet_config: Dict[str, Any], space, calib_images: int,
                    device: torch.device, deadline: Deadline, stages: Dict[str, float]):
    """Steps 1-3: train the supernet, pick the subnets, measure their weight-inherited accuracy.
    Returns (archs, inherited accuracies, supernet summary); stage times go into ``stages``."""
    from raynas.evaluators.weight_inherited import WeightInheritedEvaluator
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import SupernetTrainer

    # ---- 1. supernet, epochs fixed or sized from a probe of the step time
    spe = steps_per_epoch(dataset, args.batch_size)
    step_s = None
    if args.supernet_epochs is not None:
        epochs = args.supernet_epochs
    else:
        t = time.perf_counter()
        step_s = seconds_per_step(dict(supernet_config, epochs=1), dataset, steps=args.probe_steps,
                                  warmup=min(3, args.probe_steps))
        stages["probe_s"] = time.perf_counter() - t
        epochs = epochs_for(args.supernet_share * deadline.remaining(), step_s, spe, args.min_epochs)
        print(f"supernet: {step_s * 1000:.1f} ms/step, {spe} steps/epoch -> {epochs:.2f} epochs", flush=True)
    trainer = SupernetTrainer(SupernetTrainConfig.from_any(dict(supernet_config, epochs=epochs)), dataset)
    recorder = EpochRecorder(quiet=args.smoke)
    trainer.fit(callback=recorder)
    stages["supernet_train_s"] = recorder.records[-1]["train_seconds"]

    # ---- 2-3. subnets over the MACs range, weight-inherited accuracy
    t = time.perf_counter()
    archs = pick_subnets(space, args.subnets, args.seed, pool=200 if args.smoke else 2000)
    stages["select_s"] = time.perf_counter() - t
    t = time.perf_counter()
    evaluator = WeightInheritedEvaluator.from_dataset(
        trainer.module, dataset, calib_images=calib_images, batch_size=args.eval_batch,
        device=device, bf16=device.type == "cuda")
    inherited = [m["accuracy"] for m in evaluator.evaluate(archs)]
    stages["inherited_eval_s"] = time.perf_counter() - t
    summary = {"epochs": epochs, "steps": trainer.step, "steps_per_epoch": spe,
               "probe_ms_per_step": None if step_s is None else step_s * 1000,
               "images_per_s": trainer.step * args.batch_size / max(stages["supernet_train_s"], 1e-9),
               "final_train_loss": trainer.history[-1]["train_loss"] if trainer.history else None,
               "per_epoch": recorder.records}
    del evaluator, trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return archs, inherited, summary


def recipe(args, device: torch.device, data: str, data_options: Dict[str, Any],
           space_options: Dict[str, Any], output: str) -> Dict[str, Any]:
    """The training recipe shared by the supernet and every stand-alone net."""
    cuda = device.type == "cuda"
    return dict(space="ofa_mbv3_cifar", space_options=space_options, data=data,
                data_options=data_options, output=output, batch_size=args.batch_size, lr=args.lr,
                optimizer="sgd", momentum=0.9, weight_decay=args.weight_decay,
                warmup_epochs=args.warmup_epochs, label_smoothing=0.1, grad_clip=5.0,
                device=str(device), bf16=cuda, channels_last=True, seed=args.seed,
                checkpoint_every=10 ** 6, log_every=10 ** 6, eval_batch_size=args.eval_batch,
                calib_images=args.calib_images, cpu_threads=args.threads)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", default=CIFAR10_SPEC, help="dataset spec (default: CIFAR-10 JPGs)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="training images (default: all that the val and calib splits leave)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="images resized once to this side (default: the dataset's own, 32 on CIFAR-10)")
    parser.add_argument("--space-options", default=json.dumps(DEFAULT_SPACE_OPTIONS),
                        help="JSON overrides of ofa_mbv3_cifar options ('{}': the preset as is)")
    parser.add_argument("--sampler", default="sandwich")
    parser.add_argument("--sampler-options", default=None,
                        help="JSON options of the sampling strategy (default: the strategy's defaults)")
    parser.add_argument("--budget-s", type=float, default=400.0, help="wall-time budget of the whole run")
    parser.add_argument("--supernet-share", type=float, default=0.42,
                        help="share of the budget left after loading the data for supernet training")
    parser.add_argument("--supernet-epochs", type=float, default=None,
                        help="fixed supernet epochs (instead of sizing them to the budget)")
    parser.add_argument("--standalone-epochs", type=float, default=None,
                        help="fixed epochs of every stand-alone net (instead of sizing them to the budget)")
    parser.add_argument("--subnets", type=int, default=13)
    parser.add_argument("--procs", type=int, default=13,
                        help="processes training stand-alone nets concurrently (0: in this process)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--min-epochs", type=float, default=2.0)
    parser.add_argument("--probe-steps", type=int, default=8, help="timed steps that size the epochs")
    parser.add_argument("--eval-batch", type=int, default=250)
    parser.add_argument("--calib-images", type=int, default=None,
                        help="BN-calibration images (default: the whole calibration split, 2,000 on CIFAR-10)")
    parser.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples of the rank CIs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run on digits (seconds)")
    parser.add_argument("--inherited-from", default=None, metavar="RECORD",
                        help="take the subnets and weight-inherited accuracies from an earlier record of "
                             "this benchmark with the same data, space, recipe, sampler, supernet epochs "
                             "and seed, and train only the stand-alone nets")
    parser.add_argument("--out", default=str(RESULTS / "supernet_ranking.json"))
    args = parser.parse_args(argv)
    space_options = json.loads(args.space_options)
    sampler_options = json.loads(args.sampler_options) if args.sampler_options else {}
    data = resolve_data_spec(args.data)
    data_options = {"train_size": args.train_size} if args.train_size else {}
    if args.image_size:
        data_options["image_size"] = args.image_size
    if args.smoke:
        args.device, args.batch_size, args.subnets, args.procs = "cpu", 16, 4, 0
        args.lr, args.min_epochs, args.eval_batch, args.calib_images = 0.05, 0.05, 64, 64
        args.threads, args.warmup_epochs, args.bootstrap = args.threads or 1, 0.0, 200
        args.probe_steps = 1
        args.budget_s = min(args.budget_s, 20.0)
        args.supernet_epochs, args.standalone_epochs = 0.05, 0.03
        data, data_options = SMOKE_DATA[0], dict(SMOKE_DATA[1])
        space_options = {**SMOKE_OFA, **space_options}
        sampler_options = {"num_random": 1, **sampler_options}
    deadline = Deadline(args.budget_s)
    device = setup_device(args.device, args.threads)
    stages: Dict[str, float] = {}

    from raynas.data import load_dataset
    from raynas.evaluators.weight_inherited import resolve_calib_images
    from raynas.registry import create_space
    from raynas.training import make_sampling_strategy
    from raynas.training.sampling import resolved_sampling_options

    make_sampling_strategy(args.sampler, **sampler_options)  # bad options fail before any work
    # recorded with every default filled in: a record keeps saying what was trained when a
    # default changes (and --inherited-from refuses a record trained under other defaults)
    sampler_options = resolved_sampling_options(args.sampler, sampler_options)
    reused, reused_raw = None, b""
    if args.inherited_from:  # an unreadable record fails before the data are loaded
        try:
            reused_raw = Path(args.inherited_from).read_bytes()
            reused = json.loads(reused_raw)
        except (OSError, ValueError) as exc:
            parser.error(f"--inherited-from: cannot read {args.inherited_from} ({exc}); give a JSON record "
                         f"written by this benchmark")
    t = time.perf_counter()
    dataset = load_dataset(data, seed=args.seed, **data_options)
    stages["data_s"] = time.perf_counter() - t
    try:  # fail before the training budget is spent, not after
        calib_images = resolve_calib_images(len(dataset.split("calib")), args.calib_images)
    except Exception as exc:  # noqa: BLE001 - ConfigError, reported as a usage error
        parser.error(str(exc))
    space = create_space("ofa_mbv3_cifar", **space_options)
    base = recipe(args, device, data, data_options, space_options, output="")
    column = None
    if reused is not None:  # checked before any work (and before the scratch folder exists)
        expected = {"smoke": args.smoke, "space": space.spec(), "data": data if args.smoke else args.data,
                    "data_options": data_options, "recipe": {k: base[k] for k in _RECIPE_KEYS},
                    "sampler": {"name": args.sampler, "options": sampler_options}, "subnets": args.subnets,
                    "calib_images": calib_images, "eval_batch": args.eval_batch, "seed": args.seed}
        if args.supernet_epochs is not None:  # not given: the record's epochs are the run's
            expected["supernet_epochs"] = args.supernet_epochs
        try:
            column = inherited_column(args.inherited_from, reused_raw, reused, expected)
        except (ValueError, KeyError, TypeError) as exc:
            parser.error(str(exc) if isinstance(exc, ValueError) else
                         f"--inherited-from {args.inherited_from}: not a supernet_ranking record (missing {exc})")
    work = tempfile.mkdtemp(prefix="raynas-ranking-")
    base["output"] = work
    if column is None:
        supernet_config = dict(base, sampler=args.sampler, sampler_options=sampler_options,
                               output=str(Path(work) / "supernet"))
        archs, inherited, supernet_summary = supernet_column(
            args, dataset, supernet_config, space, calib_images, device, deadline, stages)
    else:
        archs, inherited, supernet_summary = column["archs"], column["inherited"], column["supernet"]
        print(f"supernet column: {len(archs)} subnets from {args.inherited_from}", flush=True)
    costs = [space.cost(a, num_classes=dataset.num_classes) for a in archs]

    # ---- 4. stand-alone nets, same recipe and epochs for all
    t = time.perf_counter()
    standalone_config = dict(base, output=str(Path(work) / "standalone"))
    standalone = train_standalone_many(
        archs, [c["macs"] for c in costs], standalone_config,
        budget_s=deadline.remaining() - (5.0 if args.smoke else 20.0), procs=args.procs,
        output=str(Path(work) / "standalone"), min_epochs=args.min_epochs,
        probe_steps=args.probe_steps, epochs=args.standalone_epochs)
    stages["standalone_s"] = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)  # checkpoints of this run only; the report has the numbers
    alone = [r["accuracy"] for r in standalone["results"]]

    # ---- 5. rank agreement
    agreement = rank_agreement(inherited, alone, args.bootstrap, args.seed)
    tau = agreement["kendall_tau"]
    stages["total_s"] = deadline.elapsed()
    from raynas.arch import arch_id

    subnets = [{"arch": a, "arch_id": arch_id(a), "macs": c["macs"], "params": c["params"],
                "inherited_accuracy": i, "standalone_accuracy": s,
                "standalone_seconds": r["seconds"], "standalone_per_epoch": r.get("per_epoch")}
               for a, c, i, s, r in zip(archs, costs, inherited, alone, standalone["results"])]
    report = {
        "benchmark": "supernet_ranking", "smoke": args.smoke,
        "command": "python benchmarks/supernet_ranking.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        **environment(device), "load_average_end": load_average(),
        "space": space.spec(), "data": args.data if not args.smoke else data, "data_options": data_options,
        "dataset_sizes": dataset.sizes,
        "recipe": {k: base[k] for k in ("batch_size", "lr", "optimizer", "weight_decay",
                                        "warmup_epochs", "label_smoothing", "bf16", "channels_last")},
        "sampler": {"name": args.sampler, "options": sampler_options},
        "seed": args.seed, "budget_s": args.budget_s, "stages_s": stages, "supernet": supernet_summary,
        # where the supernet column came from when it was read, not trained (its stage times there)
        "inherited_from": None if column is None else {**column["source"], "stages_s": column["stages_s"],
                                                       "torch": column["torch"]},
        "standalone": {k: standalone[k] for k in ("epochs", "steps_per_epoch", "workers",
                                                   "estimated_wall_per_epoch_s", "seconds")},
        "evaluation": {"split": "val", "val_images": len(dataset.split("val")),
                       "points_per_image": 100.0 / len(dataset.split("val")),
                       "calib_images": calib_images, "batch_size": args.eval_batch},
        "subnets": subnets, **agreement, "target_tau": TARGET_TAU,
        "passed": tau is not None and tau >= TARGET_TAU,
        "largest_subnet": {k: subnets[-1][k] for k in ("macs", "inherited_accuracy", "standalone_accuracy")},
        "smallest_subnet": {k: subnets[0][k] for k in ("macs", "inherited_accuracy", "standalone_accuracy")},
    }
    ci = agreement["kendall_tau_ci95"]
    print(f"Kendall tau {tau} (95% CI {ci}), Spearman rho {agreement['spearman_rho']} over {len(archs)} "
          f"subnets; largest {subnets[-1]['inherited_accuracy']:.2f}% inherited / "
          f"{subnets[-1]['standalone_accuracy']:.2f}% stand-alone; smallest "
          f"{subnets[0]['inherited_accuracy']:.2f}% / {subnets[0]['standalone_accuracy']:.2f}%; "
          f"{stages['total_s']:.0f}s", flush=True)
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
