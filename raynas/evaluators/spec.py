"""Evaluator specs: the plain-JSON recipe that rebuilds an evaluator, stored in ``search.json``
so that a search can be resumed -- from the CLI (``raynas search --resume DIR``) or from Python
(``raynas.resume_search(DIR)``) -- without the user rebuilding what it was evaluated with.

Two kinds can be rebuilt from a file alone: a results table (``TabularEvaluator`` of a CSV or
Parquet file) and a supernet checkpoint served by a ``SupernetPool``. Evaluators built from
those carry their spec as JSON (``evaluator.spec``, read here: the evaluators need not import
this module); anything else (a function, a pool of a custom factory) has none, and a resume
then needs the evaluator passed again.

A spec names files and options only; rebuilding resolves the space through the registry and
reads the checkpoint as safetensors + JSON (see :mod:`raynas.checkpoint`): nothing in it is
executed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from raynas.errors import ConfigError, DataError, clip

KINDS = ("table", "checkpoint")


@dataclass(frozen=True)
class EvaluatorSpec:
    """How to rebuild an evaluator: ``kind`` ``"table"`` (``table``, ``key``, ``table_metrics``,
    ``fidelities``) or ``"checkpoint"`` (``checkpoint``, ``data``, ``actors`` and the
    weight-inherited evaluation's ``calib_batches``, ``batch_size``, ``device``, ``seed``)."""

    kind: str
    table: Optional[str] = None
    key: str = "arch_str"
    table_metrics: Optional[Dict[str, str]] = None
    fidelities: Optional[Tuple[Dict[str, str], ...]] = None
    checkpoint: Optional[str] = None
    data: Optional[str] = None
    actors: Optional[int] = None
    calib_batches: Optional[int] = None
    batch_size: int = 128
    device: Optional[str] = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown evaluator kind {clip(self.kind, 60)}; known: {', '.join(KINDS)}")
        if self.kind == "table" and not self.table:
            raise ConfigError("a table evaluator spec needs the table's path")
        if self.kind == "checkpoint" and not self.checkpoint:
            raise ConfigError("a checkpoint evaluator spec needs the checkpoint's folder")

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> Dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        if self.fidelities is not None:
            out["fidelities"] = [dict(f) for f in self.fidelities]
        if self.kind == "checkpoint":
            for k in ("key", "table_metrics"):
                out.pop(k, None)
        else:
            for k in ("batch_size", "seed", "data", "actors", "calib_batches", "device"):
                out.pop(k, None)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EvaluatorSpec":
        """Read a spec from ``search.json`` (also the CLI's older form without ``kind``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"an evaluator spec is a JSON object, got {clip(data, 100)}")
        fields = dict(data)
        kind = fields.pop("kind", None) or ("checkpoint" if fields.get("checkpoint") else
                                           "table" if fields.get("table") else None)
        if kind is None:
            raise ConfigError("this experiment does not record its evaluator (it was not started with a table or "
                              "a checkpoint evaluator): pass the evaluator again")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ConfigError(f"evaluator spec has unknown fields {unknown}: written by another raynas version?")
        if fields.get("fidelities") is not None:
            fields["fidelities"] = tuple(dict(f) for f in fields["fidelities"])
        if fields.get("table_metrics") is not None:
            fields["table_metrics"] = dict(fields["table_metrics"])
        return cls(kind=kind, **fields)

    def replace(self, **changes: Any) -> "EvaluatorSpec":
        """This spec with some fields changed (e.g. a moved checkpoint, more actors)."""
        return EvaluatorSpec.from_json({**self.to_json(), **{k: v for k, v in changes.items()}})

    # ------------------------------------------------------------------ rebuilding
    def prepare(self, space: Any) -> "PreparedEvaluator":
        """Read and check the evaluator's inputs without Ray (cheap: before Ray and a pool
        start): a table with its columns, or a checkpoint (meta, weights' header) with its
        dataset, whose classes must fit."""
        prepared = PreparedEvaluator(self, space)
        if self.kind == "checkpoint":
            from raynas.checkpoint import check_dataset_fits, read_checkpoint_meta
            from raynas.data import load_dataset
            from raynas.pool import check_checkpoint

            check_checkpoint(self.checkpoint)
            meta = read_checkpoint_meta(self.checkpoint)
            prepared.dataset = load_dataset(self.data or meta.get("dataset") or "digits", seed=self.seed)
            check_dataset_fits(meta, prepared.dataset, self.checkpoint)
            return prepared
        from raynas.evaluators.tabular import TabularEvaluator

        if not Path(self.table).is_file():
            raise DataError(f"results table {self.table} does not exist")
        # loads the table once here and checks every metric column (listing the columns)
        prepared.table = TabularEvaluator(self.table, space=space, key=self.key, metrics=self.table_metrics,
                                          fidelities=self.fidelities).check()
        return prepared

    def build(self, space: Any):
        """The evaluator (a pool for a checkpoint: it starts Ray's actors)."""
        return self.prepare(space).build()


class PreparedEvaluator:
    """An evaluator's inputs, read and checked: :meth:`metrics` it will report, :meth:`build`."""

    def __init__(self, spec: EvaluatorSpec, space: Any) -> None:
        self.spec = spec
        self.space = space
        self.table = None
        self.dataset = None

    def metrics(self) -> Sequence[str]:
        if self.table is not None:
            return self.table.metrics
        from raynas.evaluators.weight_inherited import WeightInheritedEvaluator

        return WeightInheritedEvaluator.metrics

    def build(self):
        if self.table is not None:
            return self.table
        from raynas.pool import SupernetPool

        spec = self.spec
        pool = SupernetPool.from_checkpoint(spec.checkpoint, data=self.dataset, seed=spec.seed,
                                            calib_batches=spec.calib_batches, batch_size=spec.batch_size,
                                            device=spec.device, num_actors=spec.actors)
        pool.spec = spec.to_json()   # the dataset travelled loaded; the spec names it as the user did
        return pool


def spec_of(evaluator: Any) -> Optional[EvaluatorSpec]:
    """The spec an evaluator (or a pool) carries, if it can be rebuilt from files."""
    spec = getattr(evaluator, "spec", None)
    if isinstance(spec, EvaluatorSpec):
        return spec
    return EvaluatorSpec.from_json({k: v for k, v in spec.items() if v is not None}) if isinstance(spec, Mapping) \
        else None
