"""``raynas export``: write a standalone subnet (safetensors + config.json) from a supernet."""
from __future__ import annotations

import argparse

from raynas.cli.common import HelpFormatter, read_arch


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a subnet as a standalone model",
        description="Recalibrate the subnet's BatchNorm statistics, measure its validation accuracy, "
                    "and write model.safetensors + config.json that rebuild it with "
                    "raynas.export.load_exported(folder) and nothing else.",
        formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, help="supernet checkpoint folder")
    p.add_argument("--arch", required=True, help="arch as JSON, or a .json file (e.g. a best.json)")
    p.add_argument("--output", required=True, help="folder to write")
    p.add_argument("--data", help="dataset for recalibration/validation; default: the checkpoint's")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from raynas.export import export_subnet

    path, metrics = export_subnet(args.checkpoint, read_arch(args.arch), args.output, data=args.data,
                                  device=args.device)
    extra = ", ".join(f"{k}={v:,.4g}" for k, v in metrics.items() if k != "accuracy")
    print(f"exported to {path}: accuracy {metrics['accuracy']:.2f}% ({extra})")
    return 0
