"""Does a supernet's largest subnet learn like the same network trained alone? (issue 16)

Trains one supernet per *variant* (a named set of training-option changes: sampling strategy,
subnets per step, distillation, loss scaling, learning rate, clipping, augmentation) and the
largest arch alone, under two protocols:

* ``steps``: every run trains the recipe's number of steps (same epochs, same batch);
* ``time``: every run trains for the wall time that ``--time-reference``'s steps take; the
  per-step cost of every run is measured first in alternating rounds in this process (so load
  from other jobs hits all alike) and turns the time budget into a step count per run.

After every epoch: the weight-inherited accuracy of the largest and smallest subnets (BN
recalibrated on the calibration split, top-1 on the validation split training never sees), the
stand-alone net's validation accuracy, the mean training loss and the training wall time
(evaluation excluded). The gap ``alone - largest`` at the end of each protocol says what weight
sharing costs; comparing variants says what each change contributes.

    # digits, the demo's space: the issue's recipe vs each change and the new default
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/supernet_convergence.py --preset digits
    # CIFAR-10 at 16x16, a small width
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/supernet_convergence.py --preset cifar16
    # on a GPU (bf16, channels_last; more epochs fit)
    PYTHONPATH=. python benchmarks/supernet_convergence.py --preset cifar16 --device cuda --threads 0
    PYTHONPATH=. python benchmarks/supernet_convergence.py --smoke     # CPU, seconds

Writes benchmarks/results/supernet_convergence_<preset>.json (atomically).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import (CIFAR10_SPEC, RESULTS, SMOKE_DATA, SMOKE_OFA, EpochRecorder,  # noqa: E402
                               environment, load_average, resolve_data_spec, setup_device,
                               write_report)

ALONE = "alone:"

# The runs a preset compares: name -> training-option changes on top of the preset's recipe.
# "issue" is the recipe the issue measured (the old demo: flips on digits, sandwich with two
# random subnets, in-place distillation at T=1, lr 0.1, clip 5); the others change one thing
# each, and "default" is what the training defaults now are.
VARIANTS: Dict[str, Dict[str, Any]] = {
    "issue": {"flip": True},
    "noflip": {},
    "largest_only": {"sampler": "fixed", "sampler_options": {"arch": "largest"}},
    "random1": {"sampler_options": {"num_random": 1}},
    "random0": {"sampler_options": {"num_random": 0}},
    "students_half": {"sampler_options": {"num_random": 2, "student_weight": 0.5}},
    "labels_only": {"sampler_options": {"num_random": 2, "distill": False}},
    "kd_t2": {"kd_temperature": 2.0},
    "lr_0.05": {"lr": 0.05},
    "lr_0.2": {"lr": 0.2},
    "no_warmup": {"warmup_epochs": 0.0},
    "no_clip": {"grad_clip": None},
}


PRESETS: Dict[str, Dict[str, Any]] = {
    # the demo's space and recipe as the issue measured them: digits upsampled to 32x32
    "digits": {
        "data": "digits", "data_options": {},
        "space_options": {"width_mult": 0.5, "stage_strides": [2, 2, 2, 1, 2]},
        "recipe": {"epochs": 6, "batch_size": 64, "lr": 0.1, "warmup_epochs": 0.5,
                   "label_smoothing": 0.1, "sampler": "sandwich",
                   "sampler_options": {"num_random": 2}},
        "variants": ["issue", "noflip", "largest_only", "random1", "random0", "students_half",
                     "labels_only", "kd_t2", "lr_0.05", "lr_0.2", "no_warmup", "no_clip"],
        "time_variants": ["issue", "noflip", "random1", "random0", "students_half"],
        "time_reference": "issue",
    },
    # CIFAR-10 resized to 16x16, width 0.5: small enough for a few CPU epochs per run
    "cifar16": {
        "data": CIFAR10_SPEC, "data_options": {"train_size": 20000},
        "space_options": {"width_mult": 0.5, "resolutions": [12, 14, 16],
                          "stage_strides": [1, 2, 2, 1, 2]},
        "recipe": {"epochs": 4, "batch_size": 128, "lr": 0.1, "warmup_epochs": 0.5,
                   "label_smoothing": 0.1, "weight_decay": 5e-5, "sampler": "sandwich",
                   "sampler_options": {"num_random": 2}},
        "variants": ["noflip", "random1", "students_half"],
        "time_variants": ["noflip", "random1"],
        "time_reference": "noflip",
    },
}


def run_config(preset: Mapping[str, Any], name: str, args, output: str) -> Dict[str, Any]:
    """The full training config of run ``name``: a variant, or ``alone:<variant>`` (the largest
    arch trained alone with that variant's recipe, its sampling left out)."""
    cuda = args.device.startswith("cuda")
    config = dict(space="ofa_mbv3_cifar", space_options=preset["space_options"], data=preset["data"],
                  data_options=preset["data_options"], output=output, device=args.device,
                  bf16=cuda, channels_last=True, cpu_threads=args.threads or None, seed=args.seed,
                  checkpoint_every=10 ** 6, log_every=10 ** 6, eval_batch_size=args.eval_batch,
                  calib_images=args.calib_images, **preset["recipe"])
    if name.startswith(ALONE):
        return dict(config, **alone_overrides(name[len(ALONE):]), sampler="fixed",
                    sampler_options={"arch": "largest"}, standalone=True)
    overrides = dict(VARIANTS[name])
    if "sampler_options" in overrides and overrides.get("sampler", config["sampler"]) == config["sampler"]:
        overrides["sampler_options"] = {**config["sampler_options"], **overrides["sampler_options"]}
    return dict(config, **overrides)


SUPERNET_ONLY = ("sampler", "sampler_options", "kd_temperature")


def alone_overrides(variant: str) -> Dict[str, Any]:
    """A variant's changes that apply to a single network (everything but the sampling)."""
    return {k: v for k, v in VARIANTS[variant].items() if k not in SUPERNET_ONLY}


def alone_runs(variants: List[str]) -> Dict[str, str]:
    """variant -> the stand-alone run it is compared with (one run per distinct recipe, named
    after the first variant that needs it)."""
    first: Dict[str, str] = {}
    out = {}
    for v in variants:
        key = json.dumps(alone_overrides(v), sort_keys=True)
        first.setdefault(key, ALONE + v)
        out[v] = first[key]
    return out


def train_run(config: Dict[str, Any], dataset) -> Dict[str, Any]:
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import SupernetTrainer

    trainer = SupernetTrainer(SupernetTrainConfig.from_any(config), dataset)
    recorder = EpochRecorder()
    trainer.fit(callback=recorder)
    last = recorder.records[-1]
    final = {k: last[k] for k in ("largest", "smallest", "accuracy") if k in last}
    return {"steps": trainer.step, "epochs": trainer.step / trainer.steps_per_epoch,
            "train_seconds": last["train_seconds"], "final": final, "per_epoch": recorder.records,
            "load_average_end": load_average()}


def interleave(variants: List[str], pairs: Mapping[str, str]) -> List[str]:
    """Each stand-alone run right after the first variant compared with it."""
    out: List[str] = []
    for v in variants:
        out += [n for n in (v, pairs[v]) if n not in out]
    return out


def summarise(runs: Mapping[str, Dict[str, Any]], pairs: Mapping[str, str]) -> Dict[str, Any]:
    """Final accuracies per run and each variant's gap to its stand-alone net."""
    out = {}
    for name, run in runs.items():
        row = {"steps": run["steps"], "train_seconds": round(run["train_seconds"], 1), **run["final"]}
        if name in pairs:
            row["alone"] = pairs[name]
            row["gap_to_alone"] = round(runs[pairs[name]]["final"]["accuracy"] - run["final"]["largest"], 2)
        out[name] = row
    return out


def print_table(title: str, summary: Mapping[str, Dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'run':16s} {'steps':>6s} {'train s':>8s} {'largest':>8s} {'smallest':>9s} {'gap':>6s}")
    for name, row in summary.items():
        largest = row.get("largest", row.get("accuracy"))
        smallest = row.get("smallest")
        print(f"{name:16s} {row['steps']:6d} {row['train_seconds']:8.0f} {largest:8.2f} "
              f"{'' if smallest is None else f'{smallest:.2f}':>9s} "
              f"{'' if 'gap_to_alone' not in row else format(row['gap_to_alone'], '.2f'):>6s}")


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    parser.add_argument("--data", default=None, help="dataset spec overriding the preset's")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated runs of the steps protocol (default: the preset's); "
                             f"known: {', '.join(VARIANTS)}")
    parser.add_argument("--time-variants", default=None,
                        help="comma-separated runs of the time protocol (default: the preset's; "
                             "'' skips the protocol)")
    parser.add_argument("--protocols", default="steps,time")
    parser.add_argument("--epochs", type=float, default=None, help="override the preset's epochs")
    parser.add_argument("--probe-rounds", type=int, default=5)
    parser.add_argument("--probe-steps", type=int, default=2)
    parser.add_argument("--eval-batch", type=int, default=250)
    parser.add_argument("--calib-images", type=int, default=None,
                        help="BN-calibration images (default: the whole calib split)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run on 8x8 digits (seconds)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    preset = json.loads(json.dumps(PRESETS[args.preset]))
    if args.data:
        preset["data"] = args.data
    preset["data"] = resolve_data_spec(preset["data"])
    if args.epochs:
        preset["recipe"]["epochs"] = args.epochs
    variants = preset["variants"] if args.variants is None else [v for v in args.variants.split(",") if v]
    time_variants = (preset["time_variants"] if args.time_variants is None
                     else [v for v in args.time_variants.split(",") if v])
    protocols = [p for p in args.protocols.split(",") if p]
    if args.smoke:
        preset.update(data=SMOKE_DATA[0], data_options=dict(SMOKE_DATA[1]), space_options=dict(SMOKE_OFA))
        preset["recipe"].update(epochs=1, batch_size=256)
        variants, time_variants = ["issue", "random0"], ["issue", "random0"]
        args.probe_rounds, args.probe_steps, args.eval_batch = 1, 1, 64
    unknown = sorted(set(variants + time_variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    if "time" in protocols and preset["time_reference"] not in VARIANTS:
        parser.error(f"time reference {preset['time_reference']!r} is not a variant")
    out_path = args.out or str(RESULTS / f"supernet_convergence_{'smoke' if args.smoke else args.preset}.json")

    device = setup_device(args.device, args.threads or None)
    from raynas.data import load_dataset

    dataset = load_dataset(preset["data"], seed=args.seed, **preset["data_options"])
    from raynas.evaluators.weight_inherited import resolve_calib_images

    calib_images = resolve_calib_images(len(dataset.split("calib")), args.calib_images)
    work = tempfile.mkdtemp(prefix="raynas-convergence-")
    report: Dict[str, Any] = {
        "benchmark": "supernet_convergence", "preset": args.preset, "smoke": args.smoke,
        "command": "python benchmarks/supernet_convergence.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        **environment(device), "load_average_start": load_average(), "data": preset["data"],
        "data_options": preset["data_options"], "dataset_sizes": dataset.sizes,
        "space_options": preset["space_options"], "recipe": preset["recipe"],
        "variants": {v: VARIANTS[v] for v in sorted(set(variants + time_variants))},
        "evaluation": {"split": "val", "val_images": len(dataset.split("val")),
                       "calib_images": calib_images, "batch_size": args.eval_batch},
        "protocols": {},
    }

    def run_all(names: List[str], epochs_of: Mapping[str, float], label: str) -> Dict[str, Any]:
        runs: Dict[str, Any] = {}
        report["protocols"][label]["runs"] = runs
        for name in names:
            config = run_config(preset, name, args, str(Path(work) / label / name))
            config["epochs"] = epochs_of.get(name, config["epochs"])
            print(f"[{label}] {name}: {config['epochs']:.2f} epochs", flush=True)
            runs[name] = train_run(config, dataset)
            runs[name]["config"] = {k: config[k] for k in ("epochs", "sampler", "sampler_options", "lr",
                                                           "warmup_epochs", "grad_clip", "kd_temperature",
                                                           "flip") if k in config}
            write_report(out_path, report)  # partial results survive an interrupted run
        return runs

    if "steps" in protocols:
        pairs = alone_runs(variants)
        report["protocols"]["steps"] = {"pairs": pairs}
        runs = run_all(interleave(variants, pairs), {}, "steps")
        report["protocols"]["steps"]["summary"] = summarise(runs, pairs)
        print_table("equal steps", report["protocols"]["steps"]["summary"])
    if "time" in protocols and time_variants:
        ref = preset["time_reference"]
        names = list(dict.fromkeys([ref] + time_variants))
        pairs = alone_runs(names)
        names = interleave(names, pairs)
        configs = {n: run_config(preset, n, args, str(Path(work) / "probe" / n)) for n in names}
        from trainables.timing import time_training_steps

        probe = time_training_steps(configs, dataset, steps=args.probe_steps, rounds=args.probe_rounds)
        spe = len(dataset.split("train")) // preset["recipe"]["batch_size"]
        reference_steps = round(preset["recipe"]["epochs"] * spe)
        budget = reference_steps * probe["seconds_per_step"][ref]
        epochs_of = {n: max(1, round(budget / s)) / spe for n, s in probe["seconds_per_step"].items()}
        report["protocols"]["time"] = {"reference": ref, "reference_steps": reference_steps,
                                       "budget_seconds_at_probe": budget, "probe": probe,
                                       "epochs": epochs_of, "pairs": pairs}
        runs = run_all(names, epochs_of, "time")
        report["protocols"]["time"]["summary"] = summarise(runs, pairs)
        print_table(f"equal wall time (the time of {reference_steps} steps of '{ref}')",
                    report["protocols"]["time"]["summary"])
    report["load_average_end"] = load_average()
    write_report(out_path, report)
    return report


if __name__ == "__main__":
    main()
