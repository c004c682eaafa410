"""Shared pieces of the training benchmarks: data spec defaults, device names, reports, wall-time
budgets, probing a recipe's seconds per step, training stand-alone nets concurrently, and the
train-then-evaluate harness (common options, the trainer recipe, resumable reports, inherited
accuracy on the validation and test splits).

Everything trains through the shared loop (``trainables.supernet``): supernets, stand-alone nets
(``train_standalone``) and the probes that size epochs to a wall-time budget.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from raynas.io import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CIFAR10_SPEC = "cifar10:../shared/data/cifar10/cifar10_jpg.tar.gz"  # relative to the project root
# the digits at 8x8 and an OFA space a hundredth of the CIFAR one: what --smoke trains on CPU
SMOKE_DATA = ("digits", {"image_size": 8})
SMOKE_OFA = dict(width_mult=0.1, resolutions=[6, 8], depth_choices=[1, 2], kernel_choices=[3, 5],
                 expand_choices=[2, 3])


def resolve_data_spec(spec: str) -> str:
    """A relative ``kind:path`` spec is read from the project root (where the defaults point)."""
    kind, sep, path = spec.partition(":")
    if sep and path and not Path(path).is_absolute() and not Path(path).exists() \
            and (ROOT / path).exists():
        return f"{kind}:{ROOT / path}"
    return spec


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def environment(device: torch.device) -> Dict[str, Any]:
    return {"device": device_name(device), "torch": torch.__version__,
            "python": sys.version.split()[0], "threads": torch.get_num_threads()}


def write_report(path: str, report: Mapping[str, Any]) -> None:
    atomic_write_json(path, dict(report))
    print(f"wrote {path}", flush=True)


def setup_device(name: str, threads: Optional[int]) -> torch.device:
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # static shapes per subnet: autotune once each
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


class EpochRecorder:
    """A ``fit`` callback: after every epoch (and the last step), the accuracies that matter --
    the trainer's own final report (:meth:`SupernetTrainer.evaluate_extremes`: BN recalibrated
    on the calibration split, top-1 on the validation split)."""

    def __init__(self, quiet: bool = False) -> None:
        self.records: List[Dict[str, Any]] = []
        self.quiet = quiet
        self.eval_seconds = 0.0
        self.start = time.perf_counter()

    def __call__(self, trainer) -> None:
        if trainer.step % trainer.steps_per_epoch and trainer.step != trainer.stop_step:
            return
        t = time.perf_counter()
        record = {"epoch": trainer.step / trainer.steps_per_epoch, "step": trainer.step,
                  "train_seconds": t - self.start - self.eval_seconds,
                  "train_loss": trainer.history[-1]["train_loss"] if trainer.history else None}
        metrics = trainer.evaluate_extremes()
        trainer.module.train()
        record.update({NAMES[k]: v for k, v in metrics.items() if k in NAMES})
        self.records.append(record)
        self.eval_seconds += time.perf_counter() - t
        if not self.quiet:
            print(f"    step {trainer.step:5d}  " + "  ".join(
                f"{k} {record[k]:.2f}" for k in NAMES.values() if k in record), flush=True)


#: the trainer's report keys -> the names the benchmarks record
NAMES = {"largest_accuracy": "largest", "smallest_accuracy": "smallest", "accuracy": "accuracy"}


def load_average() -> Optional[List[float]]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


class Deadline:
    """A wall-time budget that started when this object was made."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget = time.perf_counter(), float(budget_s)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.budget - self.elapsed()


def seconds_per_step(config: Mapping[str, Any], dataset, steps: int = 8, warmup: int = 3) -> float:
    """Wall seconds of one training step of ``config`` (a throwaway trainer, after warm-up)."""
    from trainables.timing import seconds_per_step as measure

    return measure(dict(config), dataset, steps=steps, warmup=warmup)


def epochs_for(budget_s: float, step_s: float, steps_per_epoch: int, minimum: float,
               maximum: Optional[float] = None) -> float:
    """Epochs (in steps of 1/steps_per_epoch) that fit ``budget_s`` at ``step_s`` per step."""
    steps = int(max(0.0, budget_s) / max(step_s, 1e-9))
    epochs = max(minimum, steps / steps_per_epoch)
    return min(epochs, maximum) if maximum is not None else epochs


def steps_per_epoch(dataset, batch_size: int) -> int:
    return len(dataset.split("train")) // batch_size


# ----------------------------------------------------------------- stand-alone nets, concurrently
class StandaloneWorker:
    """Trains stand-alone nets with the shared loop; as a Ray actor, one per GPU share."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from raynas.data import load_dataset

        self.config = dict(config)
        setup_device(self.config.get("device", "cpu"), self.config.get("cpu_threads"))
        self.dataset = load_dataset(self.config["data"], seed=self.config.get("seed", 0),
                                    **self.config.get("data_options", {}))

    def probe(self, archs: Sequence[Dict[str, Any]], steps: int = 6, warmup: int = 3) -> List[float]:
        """Seconds per step of each arch (what the epoch budget is sized with)."""
        return [seconds_per_step(dict(self.config, sampler="fixed", sampler_options={"arch": a},
                                      standalone=True), self.dataset, steps=steps, warmup=warmup)
                for a in archs]

    def train(self, archs: Sequence[Dict[str, Any]], epochs: float, output: str) -> List[Dict[str, Any]]:
        """Each arch from scratch; validation accuracy after every epoch."""
        from raynas.arch import arch_id
        from raynas.training import SupernetTrainConfig
        from trainables.supernet import SupernetTrainer

        out = []
        for arch in archs:
            start = time.perf_counter()
            config = SupernetTrainConfig.from_any(dict(
                self.config, epochs=epochs, output=str(Path(output) / arch_id(arch)), sampler="fixed",
                sampler_options={"arch": arch}, standalone=True))
            trainer = SupernetTrainer(config, self.dataset)
            recorder = EpochRecorder(quiet=True)
            trainer.fit(callback=recorder)
            out.append({"arch_id": arch_id(arch), "accuracy": recorder.records[-1]["accuracy"],
                        "steps": trainer.step, "seconds": time.perf_counter() - start,
                        "per_epoch": recorder.records})
        return out


def _assign(archs: Sequence[Dict[str, Any]], costs: Sequence[float], workers: int) -> List[List[int]]:
    """Longest-processing-time-first assignment of archs to workers (balanced total cost)."""
    bins: List[List[int]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for i in sorted(range(len(archs)), key=lambda i: -costs[i]):
        w = loads.index(min(loads))
        bins[w].append(i)
        loads[w] += costs[i]
    return [b for b in bins if b]


def _report_standalone(done: int, total: int, row: Mapping[str, Any], elapsed: float) -> None:
    print(f"stand-alone {done}/{total}: {row['arch_id'][:12]} {row['accuracy']:.2f}% after "
          f"{row['steps']} steps ({row['seconds']:.0f}s; {elapsed:.0f}s into the stage)", flush=True)


def train_standalone_many(archs: Sequence[Dict[str, Any]], costs: Sequence[float],
                          config: Mapping[str, Any], budget_s: float, procs: int, output: str,
                          min_epochs: float, max_epochs: Optional[float] = None,
                          probe_steps: int = 6, epochs: Optional[float] = None) -> Dict[str, Any]:
    """Train every arch from scratch with the same recipe and the same number of epochs, sized
    so the slowest worker finishes inside ``budget_s`` (or ``epochs``, fixed: no probing).

    ``procs`` > 0: that many Ray actor processes share the device (small CIFAR nets cannot keep
    an H100 busy one at a time: several processes launch kernels in parallel); 0: in this
    process, one after another. Returns per-arch results (input order), epochs and timings.
    """
    deadline = Deadline(budget_s)
    spe = None
    if procs <= 0:
        worker = StandaloneWorker(config)
        spe = steps_per_epoch(worker.dataset, config["batch_size"])
        probes, wall_per_epoch = None, None
        if epochs is None:
            probes = worker.probe(archs, steps=probe_steps, warmup=min(3, probe_steps))
            wall_per_epoch = sum(probes) * spe
            epochs = epochs_for(deadline.remaining(), wall_per_epoch / spe, spe, min_epochs, max_epochs)
        results = []
        for arch in archs:
            results += worker.train([arch], epochs, output)
            _report_standalone(len(results), len(archs), results[-1], deadline.elapsed())
        groups = [list(range(len(archs)))]
    else:
        import ray

        from raynas.runtime import ensure_ray

        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        ensure_ray()
        groups = _assign(archs, costs, min(procs, len(archs)))
        gpu = str(config.get("device", "cpu")).startswith("cuda")
        share = {"num_gpus": 1.0 / len(groups), "num_cpus": 1} if gpu else {"num_cpus": 1}
        actor_cls = ray.remote(**share)(StandaloneWorker)
        actors = [actor_cls.remote(dict(config)) for _ in groups]
        from raynas.data import load_dataset  # cheap: the workers filled the decode cache

        spe = steps_per_epoch(load_dataset(config["data"], seed=config.get("seed", 0),
                                           **config.get("data_options", {})), config["batch_size"])
        probes_per_group, wall_per_epoch = [[None] * len(g) for g in groups], None
        if epochs is None:
            probes_per_group = ray.get([a.probe.remote([archs[i] for i in g], probe_steps, min(3, probe_steps))
                                        for a, g in zip(actors, groups)])
            wall_per_epoch = max(sum(p) for p in probes_per_group) * spe
            epochs = epochs_for(deadline.remaining() * 0.95, wall_per_epoch / spe, spe, min_epochs, max_epochs)
        # one call per arch (an actor runs its calls in order), so each result reports as it lands
        index_of = {a.train.remote([archs[i]], epochs, output): i for a, g in zip(actors, groups) for i in g}
        results = [None] * len(archs)
        pending = list(index_of)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = index_of[ready[0]]
            results[i] = ray.get(ready[0])[0]
            _report_standalone(len(archs) - len(pending), len(archs), results[i], deadline.elapsed())
        for a in actors:
            ray.kill(a)
        probes = [None] * len(archs)
        for g, rows in zip(groups, probes_per_group):
            for i, t in zip(g, rows):
                probes[i] = t
    return {"results": results, "epochs": epochs, "steps_per_epoch": spe,
            "probe_seconds_per_step": probes, "workers": len(groups),
            "estimated_wall_per_epoch_s": wall_per_epoch, "seconds": deadline.elapsed()}


# ----------------------------------------------------------------- the train-then-evaluate harness
def add_run_arguments(parser: argparse.ArgumentParser, *, space: str, space_options: str, batch_size: int,
                      lr: float, out: str, smoke_help: str, resumable: bool) -> None:
    """The options of every train-then-evaluate benchmark: device, data, space, recipe, evaluation
    batch, threads, ``--smoke``, output (and ``--resume`` / ``--overwrite`` where runs append)."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", default=CIFAR10_SPEC)
    parser.add_argument("--space", default=space)
    parser.add_argument("--space-options", default=space_options, help="JSON space options")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--eval-batch", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    if resumable:
        parser.add_argument("--resume", action="store_true", help="keep the runs already in --out, run the rest")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--out", default=out)


def previous_report(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Dict[str, Any]:
    """The report in ``--out`` to continue (``--resume``), else {}; an existing report is never
    replaced unasked (``--overwrite``)."""
    out = Path(args.out)
    if out.exists() and args.resume:
        return json.loads(out.read_text())
    if out.exists() and not args.overwrite:
        parser.error(f"{out} exists; pass --overwrite to replace it, --resume to continue it, or another --out")
    return {}


def training_config(args: argparse.Namespace, *, options: Mapping[str, Any], data: str,
                    data_options: Mapping[str, Any], device: torch.device, output: str,
                    **recipe: Any) -> Dict[str, Any]:
    """The trainer config the benchmarks share (AdamW, bf16 on CUDA, no checkpoints or logs
    inside the run) plus ``recipe`` (label smoothing, clipping, sampler...)."""
    return dict(space=args.space, space_options=dict(options), data=data, data_options=dict(data_options),
                output=output, batch_size=args.batch_size, optimizer="adamw", lr=args.lr,
                weight_decay=args.weight_decay, device=str(device), bf16=device.type == "cuda",
                checkpoint_every=10 ** 6, log_every=10 ** 6, cpu_threads=args.threads, **recipe)


def split_for_test(dataset) -> str:
    """The official test set, or the validation split for sources without one (digits)."""
    return "test" if "test" in dataset.splits else "val"


def inherited_evaluators(net, dataset, device: torch.device, calib_images: int,
                         batch_size: int) -> Tuple[Any, Any]:
    """Weight-inherited evaluators of ``net`` (BN recalibrated on the calibration split) scoring
    the validation split and the test split (:func:`split_for_test`)."""
    from raynas.evaluators.weight_inherited import WeightInheritedEvaluator

    common = dict(calib_images=calib_images, batch_size=batch_size, device=device, bf16=device.type == "cuda")
    on_val = WeightInheritedEvaluator.from_dataset(net, dataset, **common)
    on_test = WeightInheritedEvaluator(net, dataset.split("calib"), dataset.split(split_for_test(dataset)),
                                       mean=dataset.mean, std=dataset.std, **common)
    return on_val, on_test
