"""Where one rank's training reports to: this process (:class:`LocalSession`) or a Ray Train
worker (:class:`RayTrainSession`), which hands a restarted worker the latest checkpoint."""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

#: the checkpoint folder under a run's output
CHECKPOINT_DIR = "checkpoint"


class LocalSession:
    """Training in this process: rank 0 of 1; checkpoints go straight to their directory."""

    rank, world_size = 0, 1

    def __init__(self, checkpoint_dir: Path, resume: Optional[Path] = None) -> None:
        self.checkpoint_dir, self.resume = Path(checkpoint_dir), resume

    @contextlib.contextmanager
    def restore_dir(self) -> Iterator[Optional[Path]]:
        yield self.resume

    def report(self, metrics: Mapping[str, Any], write: Optional[Callable[[Path], None]]) -> None:
        if write is not None:
            write(self.checkpoint_dir)


class RayTrainSession:
    """One Ray Train worker: checkpoints are written by rank 0 and reported to Ray Train, which
    keeps them in the run's storage and hands the latest back after a worker failure."""

    def __init__(self, resume: Optional[Path] = None) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.resume = resume

    @contextlib.contextmanager
    def restore_dir(self) -> Iterator[Optional[Path]]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()  # set after a failure: the latest reported one
        if checkpoint is None:
            yield self.resume
            return
        with checkpoint.as_directory() as path:
            yield Path(path)

    def report(self, metrics: Mapping[str, Any], write: Optional[Callable[[Path], None]]) -> None:
        import ray.train
        from ray.train import Checkpoint

        if write is None or self.rank != 0:
            ray.train.report(dict(metrics))
            return
        with tempfile.TemporaryDirectory(prefix="raynas-ckpt-") as tmp:
            target = Path(tmp) / CHECKPOINT_DIR
            write(target)
            ray.train.report(dict(metrics), checkpoint=Checkpoint.from_directory(str(target)))
