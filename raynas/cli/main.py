"""``raynas``: command-line entry point. Each subcommand lives in its own module."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional

from raynas.errors import RaynasError, shorten

#: most characters of an error line (a message may quote a user's input)
MESSAGE_LIMIT = 2000

DESCRIPTION = """\
raynas: neural architecture search on Ray Tune.

  raynas demo                       the whole pipeline on the embedded default (digits, CPU, ~5 min)
  raynas spaces                     list search spaces
  raynas train  --space S --data D  train a weight-sharing supernet
  raynas search --checkpoint C ...  search it (or a table) with a Tune strategy
  raynas export --checkpoint C --arch A   write a standalone subnet (raynas, timm, ONNX)
  raynas proxies list|score|validate|select   zero-cost proxies, PreNAS candidate selection
  raynas lut build --space S        latency lookup tables for a space, timed on this machine
  raynas specialize --checkpoint C --latency-table T --latency 15,20   archs per device/target
  raynas darts --space nb201 --schedule linear   differentiable search (DARTS, TD-DARTS)
  raynas retrain --arch A --data D  train an arch from scratch (DARTS' recipe by default)

Without --address an embedded local Ray starts; --address auto (or RAY_ADDRESS) joins a cluster.
Run 'raynas <command> --help' for the options of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    from raynas.cli import demo, export_cmd, search_cmd, spaces_cmd, train_cmd

    parser = argparse.ArgumentParser(prog="raynas", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"raynas {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for module in (demo, spaces_cmd, train_cmd, search_cmd, export_cmd):
        module.register(sub)
    for module in _optional_commands():
        module.register(sub)
    return parser


def _optional_commands():
    """Commands that other parts of raynas add (each module exposes ``register(sub)``)."""
    import importlib

    out = []
    for name in ("raynas.cli.proxies_cmd", "raynas.cli.lut_cmd", "raynas.cli.specialize_cmd",
                 "raynas.cli.darts_cmd"):
        try:
            out.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return out


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """--address and --num-cpus, shared by every command that starts or joins Ray."""
    group = parser.add_argument_group("Ray")
    group.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                       help="Ray cluster to join ('auto' on a cluster node, or ray://host:10001); "
                            "default: RAY_ADDRESS, else an embedded local Ray")
    group.add_argument("--num-cpus", type=int, default=None,
                       help="CPUs of the embedded local Ray (default: all)")


def subparsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of ``parser`` by name ({} when it has none)."""
    for action in parser._actions:  # argparse keeps no public list of them
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _deepest_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)subcommand that ``args`` chose, e.g. ``raynas proxies validate``'s."""
    for dest in ("command", "action"):
        child = subparsers(parser).get(getattr(args, dest, None) or "")
        if child is None:
            break
        parser = child
    return parser


def _version() -> str:
    import raynas
    return raynas.__version__


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    if argv is not None and any("\x00" in str(a) for a in argv):
        # (a real command line cannot hold one; only a caller of main() can pass it)
        print("raynas: error: an argument contains a NUL character", file=sys.stderr)
        return 2
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # the subcommand's usage, not the top level's, says what it accepts
            _deepest_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse printed the usage and one error line (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except RaynasError as exc:
        # 2: bad input (nothing ran, or it could not go on); 1: it ran, and failed. Values are
        # clipped where messages echo them; the cap guards any message that still grew long.
        print(f"raynas {args.command}: error: {shorten(str(exc), MESSAGE_LIMIT)}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt as exc:
        print(f"raynas {args.command}: interrupted{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
