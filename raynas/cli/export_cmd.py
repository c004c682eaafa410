"""``raynas export``: write a standalone subnet (safetensors + config.json) from a supernet."""
from __future__ import annotations

import argparse

from raynas.cli.common import HelpFormatter, read_arch


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a subnet as a standalone model",
        description="Recalibrate the subnet's BatchNorm statistics, measure its validation accuracy, "
                    "and write model.safetensors + config.json that rebuild it with "
                    "raynas.export.load_exported(folder). --timm also writes OUTPUT/timm/ (a timm "
                    "MobileNetV3 for OFA spaces, loadable with timm alone) and --onnx OUTPUT/model.onnx; "
                    "each is checked to give the subnet's outputs.",
        formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, help="supernet checkpoint folder")
    p.add_argument("--arch", required=True, help="arch as JSON, or a .json file (e.g. a best.json)")
    p.add_argument("--output", required=True, help="folder to write")
    p.add_argument("--data", help="dataset for recalibration/validation; default: the checkpoint's")
    p.add_argument("--calib-images", type=int,
                   help="BN-calibration images (default: the checkpoint's training setting, else the "
                        "whole calibration split, as the search pool does)")
    p.add_argument("--device", default=None, help="torch device of the evaluation: cpu | cuda "
                                                  "(default: cuda if available)")
    p.add_argument("--timm", action="store_true", help="also write OUTPUT/timm/ (config.json + model.safetensors)")
    p.add_argument("--onnx", action="store_true", help="also write OUTPUT/model.onnx (needs 'raynas[onnx]')")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from raynas.export import export_subnet

    if args.onnx:
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            from raynas.errors import ConfigError
            raise ConfigError("--onnx needs onnx and onnxscript: pip install 'raynas[onnx]'") from None

    path, metrics = export_subnet(args.checkpoint, read_arch(args.arch), args.output, data=args.data,
                                  calib_images=args.calib_images, device=args.device)
    extra = ", ".join(f"{k}={v:,.4g}" for k, v in metrics.items() if k not in ("accuracy", "eval_seconds"))
    print(f"exported to {path}: accuracy {metrics['accuracy']:.2f}% ({extra})")
    _other_formats(path, args.timm, args.onnx)
    return 0


def _other_formats(path, timm: bool, onnx: bool) -> None:
    from raynas.export_formats import export_formats

    for fmt, (where, diff) in export_formats(path, timm=timm, onnx=onnx).items():
        checked = "not checked (onnxruntime missing)" if diff is None else f"max output difference {diff:.2g}"
        print(f"{fmt:>8}: {where} ({checked})")
