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
    # CIFAR-10 at 32x32, width 0.25, 10,000 training images (the CPU ranking setting)
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/supernet_convergence.py --preset cifar
    # CIFAR-10 at 16x16, the OFA ranking benchmark's CPU setting: the issue's sandwich vs today's
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/supernet_convergence.py --preset cifar16 --protocols steps
    # on a GPU (bf16, channels_last; more epochs fit)
    PYTHONPATH=. python benchmarks/supernet_convergence.py --preset cifar --device cuda --threads 0
    PYTHONPATH=. python benchmarks/supernet_convergence.py --smoke     # CPU, seconds
    # seeds run in parallel (one process each, --out per seed), then one record of them all
    python benchmarks/supernet_convergence.py --merge a.json b.json --out merged.json

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
# random subnets, in-place distillation from step 0 at T=1, lr 0.1, clip 5); the others change
# one thing each. Every preset names distill_warmup explicitly: records made before the
# sandwich's default became a labels-only first half (distill_warmup=0.5) trained with 0.
VARIANTS: Dict[str, Dict[str, Any]] = {
    "issue": {"flip": True},
    "noflip": {},    # the dataset's own augmentation: crops, no flips on digits
    "base": {},      # the same for datasets that flip (CIFAR-10)
    "largest_only": {"sampler": "fixed", "sampler_options": {"arch": "largest"}},
    "random1": {"sampler_options": {"num_random": 1}},
    "random0": {"sampler_options": {"num_random": 0}},
    "students_half": {"sampler_options": {"num_random": 2, "student_weight": 0.5}},
    "labels_only": {"sampler_options": {"num_random": 2, "distill": False}},
    # the demo's sandwich (one random subnet): distillation throughout, never, or after a
    # labels-only first half (students imitate a teacher that has learnt something)
    "demo_kd": {"sampler_options": {"num_random": 1, "distill_warmup": 0.0}},
    "demo_labels": {"sampler_options": {"num_random": 1, "distill": False}},
    "demo_kd_warmup": {"sampler_options": {"num_random": 1, "distill_warmup": 0.5}},
    "kd_t2": {"kd_temperature": 2.0},
    "lr_0.05": {"lr": 0.05},
    "lr_0.2": {"lr": 0.2},
    "no_warmup": {"warmup_epochs": 0.0},
    "no_clip": {"grad_clip": None},
    # OFA progressive shrinking, its phases in OFA's proportions of the epochs (full network,
    # then kernel, depth, expand; a fixed teacher; a fresh optimizer per phase)
    "progressive": {"sampler": "progressive_shrinking", "sampler_options": {}},
}


PRESETS: Dict[str, Dict[str, Any]] = {
    # the demo's space and recipe as the issue measured them: digits upsampled to 32x32
    "digits": {
        "data": "digits", "data_options": {},
        "space_options": {"width_mult": 0.5, "stage_strides": [2, 2, 2, 1, 2]},
        "recipe": {"epochs": 6, "batch_size": 64, "lr": 0.1, "warmup_epochs": 0.5,
                   "label_smoothing": 0.1, "sampler": "sandwich",
                   "sampler_options": {"num_random": 2, "distill_warmup": 0.0}},
        "variants": ["issue", "noflip", "largest_only", "random1", "random0", "students_half",
                     "progressive"],
        "time_variants": ["issue", "noflip", "random1"],
        "time_reference": "issue",
    },
    # the demo's data and space: digits at 16x16 (they are 8x8), input 12-16 px; the same recipe
    "digits16": {
        "data": "digits", "data_options": {"image_size": 16},
        "space_options": {"width_mult": 0.5, "resolutions": [12, 14, 16], "stage_strides": [2, 2, 2, 1, 2]},
        "recipe": {"epochs": 6, "batch_size": 64, "lr": 0.1, "warmup_epochs": 0.5,
                   "label_smoothing": 0.1, "sampler": "sandwich",
                   "sampler_options": {"num_random": 2, "distill_warmup": 0.0}},
        "variants": ["noflip", "random1", "random0", "students_half", "labels_only", "kd_t2", "lr_0.05",
                     "lr_0.2", "no_warmup", "no_clip", "progressive"],
        "time_variants": ["noflip", "random1", "random0", "students_half", "progressive"],
        "time_reference": "noflip",
    },
    # CIFAR-10 (32x32), width 0.25, 10,000 training images: the CPU ranking benchmark's setting
    "cifar": {
        "data": CIFAR10_SPEC, "data_options": {"train_size": 10000},
        "space_options": {"width_mult": 0.25, "stage_strides": [2, 2, 2, 1, 2]},
        "recipe": {"epochs": 6, "batch_size": 128, "lr": 0.1, "warmup_epochs": 0.5,
                   "label_smoothing": 0.1, "weight_decay": 5e-5, "sampler": "sandwich",
                   "sampler_options": {"num_random": 2, "distill_warmup": 0.0}},
        "variants": ["base", "random1", "students_half"],
        "time_variants": ["base", "random1"],
        "time_reference": "base",
    },
    # the OFA ranking benchmark's CPU setting (CIFAR-10 at 16x16, 20,000 training images, width
    # 0.5, its recipe): the issue's sandwich (two random subnets, distillation from step 0) as
    # "base", then the library's default sandwich (one random subnet) with distillation from step
    # 0, never, or after a labels-only first half (the demo's)
    "cifar16": {
        "data": CIFAR10_SPEC, "data_options": {"image_size": 16, "train_size": 20000},
        "space_options": {"width_mult": 0.5, "resolutions": [12, 14, 16], "stage_strides": [2, 2, 2, 1, 2]},
        "recipe": {"epochs": 6, "batch_size": 128, "lr": 0.1, "warmup_epochs": 1.0,
                   "label_smoothing": 0.1, "weight_decay": 5e-4, "sampler": "sandwich",
                   "sampler_options": {"num_random": 2, "distill_warmup": 0.0}},
        "variants": ["base", "demo_kd", "demo_labels", "demo_kd_warmup"],
        "time_variants": [],
        "time_reference": "base",
    },
}


def run_config(preset: Mapping[str, Any], name: str, args, output: str) -> Dict[str, Any]:
    """The full training config of run ``name``: a variant, or ``alone:<variant>`` (the largest
    arch trained alone with that variant's recipe, its sampling left out)."""
    cuda = args.device.startswith("cuda")
    config = dict(space="ofa_mbv3_cifar", space_options=preset["space_options"], data=preset["data"],
                  data_options=preset["data_options"], output=output, device=args.device,
                  bf16=cuda, channels_last=True, cpu_threads=args.threads or None, seed=args.data_seed,
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


def mean(values: List[float]) -> float:
    return round(sum(values) / len(values), 2)


def summarise(runs: Mapping[str, Dict[str, Any]], pairs: Mapping[str, str]) -> Dict[str, Any]:
    """Per run: final accuracies (mean over seeds, and each seed's), and each variant's gap to
    its stand-alone net over the seeds both have."""
    out = {}
    for name, run in runs.items():
        seeds = run["seeds"]
        first = next(iter(seeds.values()))
        row: Dict[str, Any] = {"steps": first["steps"], "seeds": sorted(seeds, key=int),
                               "train_seconds": mean([r["train_seconds"] for r in seeds.values()])}
        for key in ("largest", "smallest", "accuracy"):
            if key in first["final"]:
                values = [seeds[k]["final"][key] for k in row["seeds"]]
                row[key] = mean(values)
                row[f"{key}_per_seed"] = values
        if name in pairs and pairs[name] in runs:
            alone = runs[pairs[name]]["seeds"]
            both = [k for k in row["seeds"] if k in alone]
            row["alone"] = pairs[name]
            if both:
                row["gap_to_alone"] = mean([alone[k]["final"]["accuracy"] - seeds[k]["final"]["largest"]
                                            for k in both])
        out[name] = row
    return out


def print_table(title: str, summary: Mapping[str, Dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'run':22s} {'seeds':>5s} {'steps':>6s} {'train s':>8s} {'largest':>8s} {'smallest':>9s} {'gap':>6s}")
    for name, row in summary.items():
        largest = row.get("largest", row.get("accuracy"))
        smallest = row.get("smallest")
        print(f"{name:22s} {len(row['seeds']):5d} {row['steps']:6d} {row['train_seconds']:8.0f} {largest:8.2f} "
              f"{'' if smallest is None else f'{smallest:.2f}':>9s} "
              f"{'' if 'gap_to_alone' not in row else format(row['gap_to_alone'], '.2f'):>6s}")


#: what must match for --append to add runs to an existing report
SAME_SETTING = ("preset", "data", "data_options", "space_options", "recipe", "evaluation", "data_seed")


def differing_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> List[str]:
    """The SAME_SETTING keys on which two reports differ (what --append and --merge refuse)."""
    return [k for k in SAME_SETTING if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True)]


class MergeError(ValueError):
    """Reports that cannot be merged (another setting, or one seed measured twice differently)."""


def merge_reports(reports: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One report of several runs of the same setting (e.g. one process per seed): their runs'
    seeds side by side, every protocol's summary recomputed from them, all commands kept."""
    first = reports[0]
    merged = json.loads(json.dumps(first))
    for other in reports[1:]:
        differ = differing_settings(other, first)
        if differ:
            raise MergeError(f"the reports were measured with other settings ({', '.join(differ)})")
        merged["commands"] += other.get("commands", [])
        merged["variants"].update(other.get("variants", {}))
        for label, protocol in other.get("protocols", {}).items():
            if label not in merged["protocols"]:
                merged["protocols"][label] = json.loads(json.dumps(protocol))
                continue
            into = merged["protocols"][label]
            if label == "time":   # steps per run come from each report's own probe
                shared = set(into.get("epochs", {})) & set(protocol.get("epochs", {}))
                if any(into["epochs"][n] != protocol["epochs"][n] for n in shared):
                    raise MergeError("their equal-time runs were sized by different probes; merge "
                                     "equal-step runs only (--protocols steps)")
                into.setdefault("probes", []).extend(protocol.get("probes", []))
            into.setdefault("pairs", {}).update(protocol.get("pairs", {}))
            for name, run in protocol.get("runs", {}).items():
                seeds = into.setdefault("runs", {}).setdefault(name, {"config": run["config"], "seeds": {}})["seeds"]
                for seed, result in run["seeds"].items():
                    if seed in seeds and seeds[seed] != result:
                        raise MergeError(f"seed {seed} of {label} run {name!r} differs between the reports")
                    seeds[seed] = result
    for protocol in merged["protocols"].values():
        protocol["summary"] = summarise(protocol.get("runs", {}), protocol.get("pairs", {}))
    merged["merged_from"] = len(reports)
    return merged


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
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds of every run")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the train/calib/val split")
    parser.add_argument("--epochs", type=float, default=None, help="override the preset's epochs")
    parser.add_argument("--probe-rounds", type=int, default=5)
    parser.add_argument("--probe-steps", type=int, default=2)
    parser.add_argument("--eval-batch", type=int, default=250)
    parser.add_argument("--calib-images", type=int, default=None,
                        help="BN-calibration images (default: the whole calib split)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--append", action="store_true",
                        help="add the runs (and seeds) that --out lacks to it instead of refusing to "
                             "overwrite it; the setting must match")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run on 8x8 digits (seconds)")
    parser.add_argument("--merge", nargs="+", metavar="REPORT",
                        help="train nothing: write one report (--out) of these reports of the same setting")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.merge:
        return merge_main(parser, args.merge, args.out)

    preset = json.loads(json.dumps(PRESETS[args.preset]))
    if args.data:
        preset["data"] = args.data
    data_label = preset["data"]  # as given (relative to the project root), for the record
    preset["data"] = resolve_data_spec(preset["data"])
    if args.epochs:
        preset["recipe"]["epochs"] = args.epochs
    variants = preset["variants"] if args.variants is None else [v for v in args.variants.split(",") if v]
    time_variants = (preset["time_variants"] if args.time_variants is None
                     else [v for v in args.time_variants.split(",") if v])
    protocols = [p for p in args.protocols.split(",") if p]
    try:
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    if args.smoke:
        preset.update(data=SMOKE_DATA[0], data_options=dict(SMOKE_DATA[1]), space_options=dict(SMOKE_OFA))
        data_label = preset["data"]
        preset["recipe"].update(epochs=1, batch_size=256)
        variants = ["issue", "random0"] if args.variants is None else variants
        time_variants = ["issue", "random0"] if args.time_variants is None else time_variants
        args.probe_rounds, args.probe_steps, args.eval_batch = 1, 1, 64
    unknown = sorted(set(variants + time_variants) - set(VARIANTS))
    if unknown or not seeds or set(protocols) - {"steps", "time"}:
        parser.error(f"unknown variant(s) {unknown} (known: {', '.join(VARIANTS)}), no --seeds, or a "
                     f"protocol other than steps/time in {protocols}")
    out_path = Path(args.out or RESULTS / f"supernet_convergence_{'smoke' if args.smoke else args.preset}.json")
    if out_path.exists() and not args.append and not args.smoke:
        parser.error(f"{out_path} exists; pass --append to add runs to it or --out another file")

    device = setup_device(args.device, args.threads or None)
    from raynas.data import load_dataset
    from raynas.evaluators.weight_inherited import resolve_calib_images

    dataset = load_dataset(preset["data"], seed=args.data_seed, **preset["data_options"])
    calib_images = resolve_calib_images(len(dataset.split("calib")), args.calib_images)
    work = tempfile.mkdtemp(prefix="raynas-convergence-")
    report: Dict[str, Any] = {
        "benchmark": "supernet_convergence", "preset": args.preset, "smoke": args.smoke,
        **environment(device), "data": data_label, "data_options": preset["data_options"],
        "data_seed": args.data_seed, "dataset_sizes": dataset.sizes,
        "space_options": preset["space_options"], "recipe": preset["recipe"],
        "evaluation": {"split": "val", "val_images": len(dataset.split("val")),
                       "calib_images": calib_images, "batch_size": args.eval_batch},
        "commands": [], "variants": {}, "protocols": {},
    }
    if args.append and out_path.exists():
        saved = json.loads(out_path.read_text())
        differ = differing_settings(saved, report)
        if differ:
            parser.error(f"--append: {out_path} was measured with other settings ({', '.join(differ)})")
        report.update({k: saved[k] for k in ("commands", "variants", "protocols") if k in saved})
    report["commands"].append({"command": "python benchmarks/supernet_convergence.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "load_average_start": load_average(),
        "threads": torch.get_num_threads()})
    report["variants"].update({v: VARIANTS[v] for v in variants + time_variants})

    def run_all(names: List[str], epochs_of: Mapping[str, float], label: str) -> Dict[str, Any]:
        runs = report["protocols"][label].setdefault("runs", {})
        for name in names:
            config = run_config(preset, name, args, str(Path(work) / label / name))
            config["epochs"] = epochs_of.get(name, config["epochs"])
            for seed in seeds:
                if str(seed) in runs.get(name, {}).get("seeds", {}):
                    continue  # --append: measured before
                print(f"[{label}] {name} seed {seed}: {config['epochs']:.2f} epochs", flush=True)
                result = train_run(dict(config, seed=seed), dataset)
                runs.setdefault(name, {"config": {k: config[k] for k in RECORDED if k in config},
                                       "seeds": {}})["seeds"][str(seed)] = result
                write_report(str(out_path), report)  # partial results survive an interrupted run
        return runs

    if "steps" in protocols:
        steps = report["protocols"].setdefault("steps", {"pairs": {}})
        steps["pairs"].update(alone_runs(variants))
        runs = run_all(interleave(variants, steps["pairs"]), {}, "steps")
        steps["summary"] = summarise(runs, steps["pairs"])
        print_table("equal steps", steps["summary"])
    if "time" in protocols and time_variants:
        # steps per run = the reference's steps x (its seconds per step / the run's), both from
        # one probe: a ratio, so a later --append under another load sizes runs consistently
        ref = preset["time_reference"]
        names = list(dict.fromkeys([ref] + time_variants))
        timed = report["protocols"].setdefault("time", {"reference": ref, "pairs": {}, "probes": [],
                                                        "epochs": {}})
        timed["pairs"].update(alone_runs(names))
        names = interleave(names, timed["pairs"])
        configs = {n: run_config(preset, n, args, str(Path(work) / "probe" / n)) for n in names}
        from trainables.timing import time_training_steps

        probe = time_training_steps(configs, dataset, steps=args.probe_steps, rounds=args.probe_rounds)
        spe = len(dataset.split("train")) // preset["recipe"]["batch_size"]
        reference_steps = round(preset["recipe"]["epochs"] * spe)
        per_step = probe["seconds_per_step"]
        fresh = {n: max(1, round(reference_steps * per_step[ref] / per_step[n])) / spe for n in names}
        # runs measured before keep the epochs they were trained with
        timed["epochs"] = {**fresh, **timed["epochs"]}
        timed["reference_steps"] = reference_steps
        timed["probes"].append({**probe, "load_average": load_average()})
        runs = run_all(names, timed["epochs"], "time")
        timed["summary"] = summarise(runs, timed["pairs"])
        print_table(f"equal wall time (the time of {reference_steps} steps of '{ref}')", timed["summary"])
    report["load_average_end"] = load_average()
    write_report(str(out_path), report)
    return report


def merge_main(parser: argparse.ArgumentParser, paths: List[str], out: Optional[str]) -> Dict[str, Any]:
    if not out:
        parser.error("--merge needs --out (the merged report)")
    if Path(out).exists():
        parser.error(f"{out} exists; --out another file")
    reports = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--merge: cannot read {path} ({exc})")
        if not isinstance(report, dict) or report.get("benchmark") != "supernet_convergence":
            parser.error(f"--merge: {path} is not a supernet_convergence report")
        reports.append(report)
    try:
        merged = merge_reports(reports)
    except MergeError as exc:
        parser.error(f"--merge: {exc}")
    write_report(out, merged)
    for label, protocol in merged["protocols"].items():
        print_table(label, protocol["summary"])
    return merged


RECORDED = ("epochs", "sampler", "sampler_options", "lr", "warmup_epochs", "grad_clip", "kd_temperature",
            "flip")


if __name__ == "__main__":
    main()
