"""``raynas train``: train a weight-sharing supernet (in this process or on Ray Train workers)."""
from __future__ import annotations

import argparse
import json
import logging

from raynas.cli.common import HelpFormatter, parse_kv_options


def register(sub) -> None:
    from raynas.cli.main import add_ray_options

    p = sub.add_parser(
        "train", help="train a weight-sharing supernet",
        description="Train the supernet of a space on a dataset with a subnet sampling strategy "
                    "(by default the sandwich rule: the largest subnet, one random subnet and the smallest "
                    "per step; the students learn from the labels for the first half of the run, then "
                    "by in-place distillation from the largest). Writes an atomic "
                    "checkpoint (model.safetensors + meta.json + training state) under "
                    "OUTPUT/checkpoint. --workers N trains data-parallel on N Ray Train workers "
                    "(DDP: NCCL on GPUs, gloo on CPU); --resume continues a checkpoint exactly.",
        formatter_class=HelpFormatter)
    p.add_argument("--config", help="JSON file of training options (flags below override it)")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue from this checkpoint directory (its config is used unless --config is given)")
    p.add_argument("--space", help="search space (see 'raynas spaces'), e.g. ofa_mbv3_cifar")
    p.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE", help="space option")
    p.add_argument("--supernet-option", action="append", metavar="KEY=VALUE",
                   help="supernet build option, e.g. mode=weighted for the hybrid space")
    p.add_argument("--data", help="dataset: digits | cifar10:<path> | imagefolder:<path>")
    p.add_argument("--output", help="output folder (the checkpoint goes to OUTPUT/checkpoint)")
    p.add_argument("--epochs", type=float)
    p.add_argument("--batch-size", type=int, help="global batch (split over the workers)")
    p.add_argument("--lr", type=float, help="peak learning rate (cosine schedule)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"])
    p.add_argument("--sampler", help="subnet sampling: sandwich | uniform | fair | isomorphic | few_shot | "
                                     "progressive_shrinking | preferred | fixed")
    p.add_argument("--sampler-option", action="append", metavar="KEY=VALUE",
                   help="sampling-strategy option, e.g. num_random=2")
    p.add_argument("--schedule", help="progressive-shrinking phase schedule (JSON/YAML file)")
    p.add_argument("--candidates", help="preferred-sampling candidates (JSON file)")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many steps (smoke runs)")
    p.add_argument("--checkpoint-every-steps", type=int)
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="NHWC memory format (2-3x faster convolutions on CPU as on GPU)")
    p.add_argument("--calib-images", type=int,
                   help="BN-calibration images of the final report; search and export default to it "
                        "(default: the whole calibration split)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    group = p.add_argument_group("data parallelism (Ray Train)")
    group.add_argument("--workers", type=int, help="Ray Train workers (0: train in this process)")
    group.add_argument("--threads", type=int, help="torch CPU threads per worker")
    group.add_argument("--max-failures", type=int, help="restarts from the latest checkpoint")
    group.add_argument("--storage-path", help="Ray Train storage shared by all nodes")
    add_ray_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from trainables.supernet import train_supernet

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = dict(space=args.space, data=args.data, output=args.output, epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                     sampler=args.sampler, device=args.device, seed=args.seed,
                     max_steps=args.max_steps, checkpoint_every_steps=args.checkpoint_every_steps,
                     channels_last=args.channels_last, compile=args.compile, calib_images=args.calib_images,
                     num_workers=args.workers, cpu_threads=args.threads,
                     max_failures=args.max_failures, storage_path=args.storage_path)
    if args.space_option:
        overrides["space_options"] = parse_kv_options(args.space_option, "space")
    if args.supernet_option:
        overrides["supernet_options"] = parse_kv_options(args.supernet_option, "supernet")
    sampler_options = parse_kv_options(args.sampler_option, "sampler")
    if args.schedule:
        sampler_options["schedule"] = args.schedule
        overrides["sampler"] = overrides["sampler"] or "progressive_shrinking"
    if args.candidates:
        sampler_options["candidates"] = args.candidates
        overrides["sampler"] = overrides["sampler"] or "preferred"
    if sampler_options:
        overrides["sampler_options"] = sampler_options
    if (args.workers or 0) > 0 or args.address:
        from raynas.runtime import ensure_ray

        ensure_ray(args.address, num_cpus=args.num_cpus)
    checkpoint, metrics = train_supernet(args.config, resume=args.resume, **overrides)
    print(f"checkpoint: {checkpoint}")
    print(json.dumps({k: round(v, 3) for k, v in metrics.items() if isinstance(v, (int, float))}, indent=2))
    return 0
