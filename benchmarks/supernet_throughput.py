"""Training-step throughput of weight sharing vs static models (issue 3, item 6; issue 4 ViT).

(a) one step of the largest subnet inside the supernet vs (b) the same arch exported as a static
module: ``slicing_overhead = time(a) / time(b)`` (target <= 1.15); and (c) one sandwich step
(largest, ``--num-random`` random, smallest; in-place distillation; one optimizer step) vs (d) the
sum of one static step of each of those subnets: ``sandwich_ratio = time(c) / time(d)`` (target
<= 1.1); and, per sandwich subnet, one step of it alone inside the supernet vs its static model
(where a missed target comes from). Every step is the shared trainer's ``train_step`` (bf16
autocast and channels_last on GPU) on the same random batch; the variants are timed in
alternating rounds so drift hits all.

``--ddp-workers 2`` (CPU) also times supernet steps on 2 gloo Ray Train workers with one gradient
all-reduce per step (DDP ``no_sync`` for all but the last subnet) vs one per subnet.

    PYTHONPATH=. python benchmarks/supernet_throughput.py --device cuda --budget-s 40
    PYTHONPATH=. python benchmarks/supernet_throughput.py --device cuda --space vit_cifar --optimizer adamw --budget-s 25
    PYTHONPATH=. python benchmarks/supernet_throughput.py --smoke       # CPU, seconds

Writes benchmarks/results/supernet_throughput[_<space>].json (atomically).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import RESULTS, SMOKE_OFA, Deadline, environment, setup_device, write_report  # noqa: E402

TARGET_SLICING = 1.15
TARGET_SANDWICH = 1.1
CONV_SPACES = ("ofa_mbv3", "ofa_mbv3_cifar", "hybrid", "hybrid_cifar")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step: Callable[[], Any], steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def build_trainers(args, device: torch.device, space_options: Dict[str, Any], work: str):
    """Supernet trainers (largest only; sandwich) and a static trainer per arch, sharing a recipe."""
    from raynas.arch import arch_id
    from raynas.data import load_dataset
    from raynas.registry import create_space
    from raynas.training import SubnetTask, SupernetTrainConfig
    from trainables.supernet import SupernetTrainer

    space = create_space(args.space, **space_options)
    size = space.input_resolution(space.largest()) or 32
    # the trainers need a dataset only to be built (10 classes like CIFAR); batches are random
    dataset = load_dataset("digits", image_size=int(size))
    channels_last = device.type == "cuda" and args.space in CONV_SPACES
    base = dict(space=args.space, space_options=space_options, data="digits",
                data_options={"image_size": int(size)}, batch_size=args.batch_size, device=str(device),
                bf16=device.type == "cuda", channels_last=channels_last, grad_clip=None,
                optimizer=args.optimizer, lr=1e-3, output=work, cpu_threads=args.threads,
                supernet_options=json.loads(args.supernet_options))

    def trainer(**kw) -> SupernetTrainer:
        return SupernetTrainer(SupernetTrainConfig.from_any(dict(base, **kw)), dataset)

    largest = trainer(sampler="fixed", sampler_options={"arch": "largest"})
    # the distilled step (teacher and students), which a sandwich run spends its second half on
    sandwich = trainer(sampler="sandwich", sampler_options={"num_random": args.num_random, "distill_warmup": 0.0})
    tasks = sandwich.strategy.plan(space, 0, args.seed)
    static = {}
    for task in tasks:
        key = arch_id(task.arch)
        if key not in static:
            static[key] = (task.arch, trainer(sampler="fixed", sampler_options={"arch": task.arch},
                                              standalone=True))
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, 3, size, size, generator=gen).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, dataset.num_classes, (args.batch_size,), generator=gen).to(device)
    largest_task = [SubnetTask.labels(space.largest())]
    steps: Dict[str, Callable[[], Any]] = {
        "supernet_largest": lambda: largest.train_step(largest_task, x, y),
        "static_largest": lambda: static[arch_id(space.largest())][1].train_step(largest_task, x, y),
        "sandwich": lambda: sandwich.train_step(tasks, x, y),
    }
    for task in tasks:
        arch, model = static[arch_id(task.arch)]
        steps[f"static:{arch_id(task.arch)}"] = (
            lambda t=model, a=arch: t.train_step([SubnetTask.labels(a)], x, y))
        # the same subnet alone inside the supernet: which subnet's slicing costs what
        steps[f"supernet:{arch_id(task.arch)}"] = (
            lambda a=arch: largest.train_step([SubnetTask.labels(a)], x, y))
    return space, tasks, steps


def measure(args, device, space_options, deadline: Deadline) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="raynas-throughput-") as work:
        space, tasks, steps = build_trainers(args, device, space_options, work)
        for step in steps.values():  # warm-up: cudnn autotuning, allocator, lazy init
            for _ in range(args.warmup):
                step()
        _sync(device)
        rounds: Dict[str, List[float]] = {name: [] for name in steps}
        for r in range(args.rounds):
            if r >= 2 and deadline.remaining() < 0:
                break
            for name, step in steps.items():
                rounds[name].append(_time(step, args.steps, device))
    from raynas.arch import arch_id

    median = {name: float(np.median(v)) for name, v in rounds.items()}
    subnet_ids = [arch_id(t.arch) for t in tasks]
    static_sum = sum(median[f"static:{k}"] for k in subnet_ids)
    b = args.batch_size
    return {
        "space": space.spec(), "batch_size": b, "rounds_run": len(rounds["sandwich"]),
        "seconds_per_step": median, "rounds": rounds,
        "images_per_s": {name: b / t for name, t in median.items()},
        "sandwich_subnets": [{"arch_id": k, "macs": space.cost(t.arch)["macs"],
                              "role": "teacher" if t.is_teacher else "student",
                              "slicing_overhead": median[f"supernet:{k}"] / median[f"static:{k}"]}
                             for k, t in zip(subnet_ids, tasks)],
        "slicing_overhead": median["supernet_largest"] / median["static_largest"],
        "sandwich_ratio": median["sandwich"] / static_sum,
        "target_slicing_overhead": TARGET_SLICING, "target_sandwich_ratio": TARGET_SANDWICH,
    }


def ddp_sync_loop(loop_config: Dict[str, Any]) -> None:
    """Ray Train worker: time blocks of sandwich steps with one gradient all-reduce per step
    (``no_sync``) and one per subnet (``every``), alternating, in the same processes."""
    import ray.train
    import torch.distributed as dist

    from raynas.io import atomic_write_json
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import SupernetTrainer

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    trainer = SupernetTrainer(SupernetTrainConfig.from_any(loop_config["config"]), rank=rank,
                              world_size=world, device=torch.device("cpu"))

    def block(mode: str, steps: int) -> float:
        trainer.config.ddp_sync = mode
        dist.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.run_step()
            trainer.step += 1
        dist.barrier()
        return (time.perf_counter() - start) / steps

    block("no_sync", loop_config["warmup"])
    block("every", loop_config["warmup"])
    times: Dict[str, List[float]] = {"no_sync": [], "every": []}
    for r in range(loop_config["rounds"]):
        for mode in (("no_sync", "every") if r % 2 == 0 else ("every", "no_sync")):
            times[mode].append(block(mode, loop_config["steps"]))
    if rank == 0:
        atomic_write_json(loop_config["out"], times)
    ray.train.report({"rounds": loop_config["rounds"]})


def measure_ddp_sync(args, deadline: Deadline) -> Dict[str, Any]:
    """Seconds per sandwich step on gloo Ray Train workers: one all-reduce per step vs one per
    subnet, alternating blocks of steps inside one run."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from raynas.runtime import ensure_ray

    ensure_ray()
    with tempfile.TemporaryDirectory(prefix="raynas-ddp-") as work:
        config = dict(space="ofa_mbv3_cifar", space_options=dict(SMOKE_OFA, width_mult=0.5, resolutions=[16]),
                      data="digits", data_options={"image_size": 16}, batch_size=32, device="cpu",
                      cpu_threads=1, output=work,
                      sampler_options={"num_random": args.num_random, "distill_warmup": 0.0})
        out = str(Path(work) / "times.json")
        TorchTrainer(ddp_sync_loop,
                     train_loop_config={"config": config, "warmup": 2, "steps": args.ddp_steps,
                                        "rounds": 3, "out": out},
                     torch_config=TorchConfig(backend="gloo"),
                     scaling_config=ScalingConfig(num_workers=args.ddp_workers),
                     run_config=RunConfig(name=f"ddp-sync-{time.time_ns()}",
                                          storage_path=str(Path(work) / "ray"))).fit()
        times = json.loads(Path(out).read_text())
    median = {mode: float(np.median(v)) for mode, v in times.items()}
    return {"workers": args.ddp_workers, "steps_per_block": args.ddp_steps, "rounds": times,
            "seconds_per_step": median, "every_over_no_sync": median["every"] / median["no_sync"],
            "params": "ofa_mbv3_cifar width 0.5 at 16 px, global batch 32, sandwich with "
                      f"{args.num_random} random subnets"}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ofa_mbv3_cifar")
    parser.add_argument("--space-options", default="{}", help="JSON overrides of the space options")
    parser.add_argument("--supernet-options", default="{}", help="JSON supernet build options")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 on GPU, 32 on CPU")
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    parser.add_argument("--num-random", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=40.0,
                        help="no new timing round starts after this (at least 2 run)")
    parser.add_argument("--ddp-workers", type=int, default=0, help="also compare DDP sync modes (CPU)")
    parser.add_argument("--ddp-steps", type=int, default=4, help="steps per timed block")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run (seconds)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    space_options = json.loads(args.space_options)
    if args.smoke:
        args.device, args.batch_size, args.steps, args.rounds, args.warmup = "cpu", 8, 1, 2, 1
        args.threads, args.num_random = args.threads or 1, 1
        if args.space == "ofa_mbv3_cifar":
            space_options = {**SMOKE_OFA, **space_options}
    if args.batch_size is None:
        args.batch_size = 256 if str(args.device).startswith("cuda") else 32
    deadline = Deadline(args.budget_s)
    device = setup_device(args.device, args.threads)
    report: Dict[str, Any] = {"benchmark": "supernet_throughput", "smoke": args.smoke,
                              **environment(device), "amp": "bf16" if device.type == "cuda" else "fp32",
                              "budget_s": args.budget_s}
    report.update(measure(args, device, space_options, deadline))
    if args.ddp_workers:
        report["ddp_sync"] = measure_ddp_sync(args, deadline)
    report["passed"] = (report["slicing_overhead"] <= TARGET_SLICING
                        and report["sandwich_ratio"] <= TARGET_SANDWICH)
    report["wall_s"] = deadline.elapsed()
    print(f"{args.space} on {report['device']}: slicing overhead {report['slicing_overhead']:.3f} "
          f"(target <= {TARGET_SLICING}), sandwich / sum of static steps "
          f"{report['sandwich_ratio']:.3f} (target <= {TARGET_SANDWICH})", flush=True)
    suffix = "" if args.space == "ofa_mbv3_cifar" else f"_{args.space}"
    write_report(args.out or str(RESULTS / f"supernet_throughput{suffix}.json"), report)
    return report


if __name__ == "__main__":
    main()
