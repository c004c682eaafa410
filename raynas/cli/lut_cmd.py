"""``raynas lut build``: latency lookup tables for a space, timed operator by operator here."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from raynas.cli.common import HelpFormatter, parse_kv_options


def register(sub) -> None:
    p = sub.add_parser("lut", help="latency lookup tables: build one for a space on this machine",
                       description="Latency lookup tables price an arch as the sum of its operators' "
                                   "measured latencies (Once-for-All's format). Run 'raynas lut build "
                                   "--help' for the options.")
    actions = p.add_subparsers(dest="action", metavar="<action>")
    actions.required = True
    b = actions.add_parser(
        "build", help="time every operator of a space and write <res>_lookup_table.yaml files",
        description="Collect every distinct operator of the space (seeded random archs until no new "
                    "one appears, plus the smallest and largest), time each at batch 1 on --device "
                    "with --threads CPU threads, and write one OFA-format table per input "
                    "resolution into --output. 'raynas search --latency-table DIR' and 'raynas "
                    "specialize --latency-table DIR' read the folder.",
        formatter_class=HelpFormatter)
    b.add_argument("--space", required=True, help="search space (see 'raynas spaces'), e.g. ofa_mbv3_cifar")
    b.add_argument("--space-option", "-o", action="append", metavar="KEY=VALUE",
                   help="space option, e.g. -o width_mult=0.5 (the tables are for exactly this space)")
    b.add_argument("--output", required=True, help="folder written (one <res>_lookup_table.yaml per resolution)")
    b.add_argument("--device", default="cpu", help="torch device the operators are timed on: cpu | cuda | auto")
    b.add_argument("--threads", type=int, default=1, help="torch CPU threads while timing")
    b.add_argument("--resolution", type=int, action="append", metavar="PX",
                   help="only this input resolution (repeatable); default: every resolution of the space")
    b.add_argument("--warmup", type=int, default=5, help="untimed runs per operator")
    b.add_argument("--repeats", type=int, default=20, help="timed runs per operator (their mean is the entry)")
    b.add_argument("--seed", type=int, default=0, help="seeds the arch sample and the inputs")
    b.add_argument("--overwrite", action="store_true", help="replace tables already in --output")
    b.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace) -> int:
    from raynas.errors import ConfigError
    from raynas.hardware import build_latency_tables, collect_descriptors
    from raynas.hardware.lut import TABLE_PATTERN
    from raynas.registry import create_space

    space = create_space(args.space, **parse_kv_options(args.space_option, "space"))
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise ConfigError("need --repeats >= 1, --warmup >= 0 and --threads >= 1")
    out = Path(args.output).expanduser()
    groups = collect_descriptors(space)
    resolutions = sorted(args.resolution or [r for r in groups if r is not None])
    existing = [out / TABLE_PATTERN.format(resolution=r) for r in resolutions
                if (out / TABLE_PATTERN.format(resolution=r)).exists()]
    if existing and not args.overwrite:
        raise ConfigError(f"{existing[0]} exists: pass --overwrite to replace the tables in {out}, or "
                          "another --output")
    count = sum(len(groups.get(r, [])) for r in resolutions)
    print(f"space {space.name}: {count} operators at resolution(s) {resolutions}, timed on {args.device} "
          f"({args.threads} thread(s), {args.warmup} warm-up + {args.repeats} runs each)")
    start = time.perf_counter()
    written = build_latency_tables(space, out, device=args.device, warmup=args.warmup, repeats=args.repeats,
                                   resolutions=resolutions if None not in groups else None, seed=args.seed,
                                   threads=args.threads, progress=True)
    print(f"wrote {len(written)} table(s) in {time.perf_counter() - start:.1f}s:")
    for res, path in sorted(written.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        print(f"  resolution {res}: {path}")
    print(f"use them with: raynas search --latency-table {out} ... or raynas specialize --latency-table {out} ...")
    return 0
