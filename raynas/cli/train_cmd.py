"""``raynas train``: train a weight-sharing supernet."""
from __future__ import annotations

import argparse
import json

from raynas.cli.common import parse_kv_options


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a weight-sharing supernet",
        description="Train the supernet of a space on a dataset with a subnet sampling strategy "
                    "(sandwich rule with in-place distillation by default). Writes an atomic "
                    "checkpoint (model.safetensors + meta.json) under OUTPUT/checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="JSON file of training options (flags below override it)")
    p.add_argument("--space", help="search space (see 'raynas spaces'), e.g. ofa_mbv3_cifar")
    p.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE", help="space option")
    p.add_argument("--data", help="dataset: digits | cifar10:<path> | imagefolder:<path>")
    p.add_argument("--output", help="output folder (the checkpoint goes to OUTPUT/checkpoint)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (SGD, nesterov, cosine)")
    p.add_argument("--sampler", help="subnet sampling: sandwich | uniform")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many steps (smoke runs)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import train_supernet

    overrides = dict(space=args.space, data=args.data, output=args.output, epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, sampler=args.sampler, device=args.device,
                     seed=args.seed, max_steps=args.max_steps)
    if args.space_option:
        overrides["space_options"] = parse_kv_options(args.space_option, "space")
    config = SupernetTrainConfig.from_any(args.config, **overrides)
    checkpoint, metrics = train_supernet(config)
    print(f"checkpoint: {checkpoint}")
    print(json.dumps({k: round(v, 3) for k, v in metrics.items()}, indent=2))
    return 0
