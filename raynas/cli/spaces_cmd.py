"""``raynas spaces``: list the registered search spaces, or describe one."""
from __future__ import annotations

import argparse
import json

from raynas.cli.common import parse_kv_options


def register(sub) -> None:
    p = sub.add_parser("spaces", help="list search spaces (or describe one)",
                       description="List the registered search spaces, or describe one: its decisions, "
                                   "its smallest and largest archs and their cost.")
    p.add_argument("name", nargs="?", help="a space to describe")
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE",
                   help="space option (JSON value), e.g. -o width_mult=0.5")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from raynas.registry import create_space, describe_spaces

    if not args.name:
        spaces = describe_spaces()
        width = max(len(n) for n in spaces)
        for name, text in spaces.items():
            print(f"{name:<{width}}  {text}")
        return 0
    space = create_space(args.name, **parse_kv_options(args.option, "space"))
    decisions = space.decisions()
    total = 1.0
    for d in decisions:
        total *= len(d.choices)
    print(f"{space!r}")
    print(f"decisions: {len(decisions)} (up to {total:.3g} combinations)")
    for d in decisions[:12]:
        print(f"  {d.name}: {list(d.choices)}")
    if len(decisions) > 12:
        print(f"  ... {len(decisions) - 12} more")
    for label, arch in (("smallest", space.smallest()), ("largest", space.largest())):
        cost = ", ".join(f"{k}={v:,.0f}" for k, v in space.cost(arch).items())
        print(f"{label}: {json.dumps(arch)}\n  in tables: {space.describe(arch)}\n  cost: {cost}")
    if space.notation:
        print(f"notation of the tables' arch column: {space.notation}")
    return 0
