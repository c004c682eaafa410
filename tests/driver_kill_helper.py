"""A search driver that kills itself (SIGKILL, like a lost head node or ``kill -9``) after a
given number of completed trials, for the resume tests. It joins the Ray cluster at ``--address``
(the test session's), runs an evolution search with :class:`fault_helpers.SyntheticEvaluator`,
and just before dying writes the searcher's state to ``--dump`` (what resume must restore).

``driver_kill_helper.py cli KILL_AFTER ARGS...`` instead runs ``raynas ARGS...`` (the CLI's own
code path) with the same kill switch added to its search."""
from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ray.tune import Callback  # noqa: E402

import raynas  # noqa: E402
from fault_helpers import SyntheticEvaluator  # noqa: E402
from raynas.io import atomic_write_text  # noqa: E402
from raynas.searchers import make_searcher  # noqa: E402

SPACE = dict(num_layers=8, num_choices=4, seed=3)
STRATEGY_OPTIONS = {"population_size": 8, "sample_size": 3}


class KillSwitch(Callback):
    """After ``after`` completed trials, dump the searcher's state and die (other trials may be
    running, or have reported without completing: the journal holds exactly what the searcher
    did, so replaying it must give this state)."""

    def __init__(self, searcher, after: int, dump: Optional[str] = None) -> None:
        self.searcher, self.after, self.dump, self.completed = searcher, after, dump, 0

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.completed += 1
        if self.completed >= self.after:
            if self.dump:
                atomic_write_text(self.dump, json.dumps(self.searcher.get_state()))
            os.kill(os.getpid(), signal.SIGKILL)


def run_cli(kill_after: int, argv: List[str]) -> None:
    """``raynas argv...`` whose search dies after ``kill_after`` completed trials."""
    from raynas.cli.main import main as cli_main

    raynas.search = functools.partial(raynas.search, callbacks=[KillSwitch(None, kill_after)])
    code = cli_main(argv)
    print(f"the CLI exited with {code} before the kill switch fired", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    if sys.argv[1:2] == ["cli"]:
        run_cli(int(sys.argv[2]), sys.argv[3:])
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--dump", required=True)
    parser.add_argument("--num-samples", type=int, default=40)
    parser.add_argument("--kill-after", type=int, default=8)
    args = parser.parse_args()
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "1"  # some trials before, some after the checkpoint
    raynas.ensure_ray(args.address)
    space = raynas.create_space("synthetic", **SPACE)
    searcher = make_searcher("evolution", STRATEGY_OPTIONS)
    evaluator = SyntheticEvaluator(SPACE, args.log_dir, delay_s=0.05)
    raynas.search(space, evaluator, strategy=searcher, num_samples=args.num_samples, objectives="score",
                  batch_size=2, max_concurrent=3, seed=5, name=args.name, storage_path=args.storage,
                  progress=False, callbacks=[KillSwitch(searcher, args.kill_after, args.dump)])
    print("the search finished before the kill switch fired", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
