"""Search results: one table (arch_id, arch JSON, every metric, timing), Pareto fronts,
hypervolume and plots. Reading results needs pandas/pyarrow only, never Ray (the Tune callback
that fills the table as trials report is :class:`raynas.collector.ResultsCollector`)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from raynas.arch import Arch, arch_from_json, canonical_json
from raynas.errors import ConfigError
from raynas.io import atomic_path, atomic_write_json
from raynas.objectives import Objective, parse_objectives
from raynas.pareto import default_reference, hypervolume, pareto_mask, to_maximisation

RESULTS_FILE = "results.parquet"
#: rows per Parquet row group: what a lazy read of a few rows (head, best) reads at least
ROW_GROUP_ROWS = 8192
META_FILE = "search.json"
_FIXED_COLUMNS = ["order", "arch_id", "arch", "trial_id", "error", "eval_seconds", "finished_at"]
#: count metrics shown (tables) and plotted in millions
_MILLIONS = ("params", "macs", "flops")
#: axis labels of metrics with units
_AXIS_LABELS = {"params": "params (M)", "macs": "MACs (M)", "flops": "FLOPs (M)", "latency_ms": "latency (ms)",
                "accuracy": "accuracy (%)"}


class SearchResult:
    """The table of a finished (or running) search and what users ask of it.

    Opened from a finished search's folder (:meth:`load`), the table stays on disk until
    :attr:`df` (or something that needs every column) is asked for: ``len``, :meth:`head`,
    :meth:`columns`, :meth:`best` and :meth:`pareto` read only the columns (and, for the rows
    they return, the row groups) they need, with pyarrow.
    """

    def __init__(self, df: Optional[pd.DataFrame], objectives: Sequence[Objective], path: Optional[Path] = None,
                 meta: Optional[Mapping[str, Any]] = None, *, table: Optional[Path] = None) -> None:
        if df is None and table is None:
            raise ConfigError("a SearchResult needs a table: a DataFrame or a results.parquet path")
        self._df = df.reset_index(drop=True) if df is not None else None
        self._table = LazyTable(Path(table)) if df is None else None
        self.objectives = list(objectives)
        self.path = Path(path) if path is not None else None
        self.meta = dict(meta or {})

    # ----------------------------------------------------------------- access
    @property
    def df(self) -> pd.DataFrame:
        """Every evaluated arch, one row each, in evaluation order (read whole on first use)."""
        if self._df is None:
            self._df = self._table.read()
        return self._df

    @property
    def loaded(self) -> bool:
        """Whether the whole table is in memory."""
        return self._df is not None

    @property
    def column_names(self) -> List[str]:
        return list(self._df.columns) if self.loaded else self._table.column_names

    def columns(self, names: Sequence[str]) -> pd.DataFrame:
        """Only the columns ``names`` (those the table has), every row, in evaluation order."""
        present = [c for c in names if c in self.column_names]
        return self._df[present] if self.loaded else self._table.read(present)

    def head(self, n: int = 5) -> pd.DataFrame:
        """The first ``n`` rows (reads only the row groups that hold them)."""
        return self._df.head(n) if self.loaded else self._table.head(n)

    @property
    def ok(self) -> pd.DataFrame:
        """Rows whose evaluation succeeded."""
        df = self.df
        if "error" not in df:
            return df
        return df[_ok_mask(df)]

    def __len__(self) -> int:
        return len(self._df) if self.loaded else self._table.num_rows

    def archs(self) -> List[Arch]:
        return [arch_from_json(s) for s in self.columns(["arch"])["arch"]]

    def _ok_columns(self, metrics: Sequence[str]) -> pd.DataFrame:
        """The successful rows' ``metrics`` (index: row positions), without their NaNs."""
        part = self.columns([*metrics, "error"])
        if "error" in part:
            part = part[_ok_mask(part)]
        present = [m for m in metrics if m in part]
        return part[present].dropna(subset=present)

    def _rows(self, positions: Sequence[int]) -> pd.DataFrame:
        """Whole rows at ``positions``, in that order, indexed by position."""
        return self._df.loc[list(positions)] if self.loaded else self._table.take(positions)

    def best(self, metric: Optional[str] = None, mode: Optional[str] = None, n: int = 1
             ) -> Union[pd.Series, pd.DataFrame]:
        """Best row (or top-``n`` rows) by ``metric`` (default: the primary objective)."""
        objective = self._objective(metric, mode)
        ok = self._ok_columns([objective.metric])
        if objective.metric not in ok or ok.empty:
            raise ConfigError(f"no successful evaluation reported '{objective.metric}'")
        ranked = ok.sort_values(objective.metric, ascending=(objective.mode == "min"), kind="stable").head(n)
        rows = self._rows(ranked.index)
        return rows.iloc[0] if n == 1 else rows

    def best_arch(self, metric: Optional[str] = None, mode: Optional[str] = None) -> Arch:
        return arch_from_json(self.best(metric, mode)["arch"])

    def pareto(self, objectives: Optional[Sequence[Any]] = None) -> pd.DataFrame:
        """Non-dominated rows over the objectives (default: the search's), sorted by the first."""
        objs = parse_objectives(objectives) if objectives is not None else self.objectives
        metrics = [o.metric for o in objs]
        ok = self._ok_columns(metrics)
        if ok.empty or any(m not in ok for m in metrics):
            return self._rows([])
        points = to_maximisation(ok[metrics].to_numpy(), objs)
        front = ok[pareto_mask(points)]
        order = front.sort_values(objs[0].metric, ascending=(objs[0].mode == "min"), kind="stable").index
        return self._rows(order)

    def hypervolume(self, reference: Optional[Sequence[float]] = None,
                    objectives: Optional[Sequence[Any]] = None) -> float:
        """Hypervolume of the front w.r.t. ``reference`` (given in the metrics' own units;
        default :meth:`reference_point`, which depends on this run's points: pass one
        reference to compare runs)."""
        objs = parse_objectives(objectives) if objectives is not None else self.objectives
        if reference is None:
            reference = self.reference_point(objs)
        front = self.pareto(objs)
        points = to_maximisation(front[[o.metric for o in objs]].to_numpy(), objs)
        ref = to_maximisation(np.asarray(reference, dtype=np.float64)[None, :], objs)[0]
        return hypervolume(points, ref)

    def reference_point(self, objectives: Optional[Sequence[Any]] = None) -> List[float]:
        """The default hypervolume reference, in the metrics' units: each objective's worst
        evaluated value moved 10% of its range further (see :func:`raynas.pareto.default_reference`)."""
        objs = parse_objectives(objectives) if objectives is not None else self.objectives
        ok = self._ok_columns([o.metric for o in objs])
        if ok.empty or any(o.metric not in ok for o in objs):
            raise ConfigError("no successful evaluation reported every objective "
                              f"({', '.join(o.metric for o in objs)}): no reference point")
        ref = default_reference(to_maximisation(ok[[o.metric for o in objs]].to_numpy(), objs))
        return [float(o.sign * r) for o, r in zip(objs, ref)]

    def pareto_record(self, reference: Optional[Sequence[float]] = None,
                      objectives: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
        """The front as JSON-able data: objectives, reference point, hypervolume and one entry
        (arch_id, arch, objective values) per front member, best first by the first objective."""
        objs = parse_objectives(objectives) if objectives is not None else self.objectives
        reference = list(reference) if reference is not None else self.reference_point(objs)
        front = self.pareto(objs)
        members = [{"arch_id": row["arch_id"], "arch": arch_from_json(row["arch"]),
                    "metrics": {o.metric: float(row[o.metric]) for o in objs}}
                   for _, row in front.iterrows()]
        return {"objectives": [str(o) for o in objs], "reference": [float(r) for r in reference],
                "hypervolume": self.hypervolume(reference, objs), "num_evaluated": int(len(self.ok)),
                "front": members}

    def _objective(self, metric: Optional[str], mode: Optional[str]) -> Objective:
        if metric is None:
            return self.objectives[0]
        for o in self.objectives:
            if o.metric == metric and mode in (None, o.mode):
                return o
        return parse_objectives(f"{metric}:{mode}" if mode else metric)[0]

    # ----------------------------------------------------------------- output
    def to_parquet(self, path: Union[str, Path, None] = None) -> Path:
        target = Path(path) if path is not None else self._default_path(RESULTS_FILE)
        with atomic_path(target, suffix=".parquet") as tmp:
            self.df.to_parquet(tmp, index=False, row_group_size=ROW_GROUP_ROWS)
        return target

    def plot_pareto(self, path: Union[str, Path, None] = None, objectives: Optional[Sequence[Any]] = None,
                    title: Optional[str] = None, constraints: Any = None) -> Path:
        """Scatter of every arch, the Pareto front as a labelled staircase, and a dashed line at
        each constraint bound on a plotted metric (default: the search's constraints). Counts
        (params, MACs, FLOPs) are drawn in millions, latency in ms (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from raynas.constraints import parse_constraints

        objs = parse_objectives(objectives) if objectives is not None else self.objectives
        if len(objs) < 2:
            raise ConfigError("a Pareto plot needs two objectives, e.g. ['accuracy:max', 'flops:min']")
        x, y = objs[1], objs[0]   # cost on x, quality on y: how people read these plots
        ok = self.ok.dropna(subset=[x.metric, y.metric])
        front = self.pareto([y, x]).sort_values(x.metric)
        sx, sy = _plot_scale(x.metric), _plot_scale(y.metric)
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
        ax.scatter(ok[x.metric] / sx, ok[y.metric] / sy, s=14, alpha=0.45, color="tab:gray",
                   label=f"evaluated ({len(ok)})")
        ax.step(front[x.metric] / sx, front[y.metric] / sy, where="post", color="tab:red", lw=1.5)
        ax.scatter(front[x.metric] / sx, front[y.metric] / sy, s=30, color="tab:red",
                   label=f"Pareto front ({len(front)})")
        if len(front):  # name the front's best arch by the primary objective
            best = front.sort_values(y.metric, ascending=(y.mode == "min"), kind="stable").iloc[0]
            ax.annotate(f"best {y.metric} {best[y.metric]:.4g}\n{best['arch_id']}",
                        (best[x.metric] / sx, best[y.metric] / sy), textcoords="offset points",
                        xytext=(-10, -22), ha="right", fontsize=7, color="tab:red")
        limits = parse_constraints(constraints) if constraints is not None else _saved_constraints(self.meta)
        for c in limits:
            for bound in (c.max, c.min):
                if bound is None:
                    continue
                if c.metric == x.metric:
                    ax.axvline(bound / sx, color="tab:blue", ls="--", lw=1, label=str(c))
                elif c.metric == y.metric:
                    ax.axhline(bound / sy, color="tab:blue", ls="--", lw=1, label=str(c))
        ax.ticklabel_format(axis="both", style="plain", useOffset=False)
        ax.set_xlabel(f"{_axis_label(x.metric)}, {'lower' if x.mode == 'min' else 'higher'} is better")
        ax.set_ylabel(f"{_axis_label(y.metric)}, {'higher' if y.mode == 'max' else 'lower'} is better")
        ax.set_title(title or self.meta.get("name", "search"))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        target = Path(path) if path is not None else self._default_path("pareto.png")
        with atomic_path(target, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        return target

    def table(self, n: int = 10, columns: Optional[Sequence[str]] = None, space=None,
              extra: Sequence[str] = ()) -> str:
        """Top-``n`` rows by the primary objective as a text table: ``columns`` (default: arch_id,
        the objectives, params/MACs/latency) plus ``extra`` columns, then the whole arch (the
        space's compact form with ``space``, else its JSON), never cut."""
        objective = self.objectives[0]
        ok = self.ok.dropna(subset=[objective.metric]) if objective.metric in self.ok else self.ok
        if ok.empty:
            return "(no successful evaluations)"
        top = ok.sort_values(objective.metric, ascending=(objective.mode == "min"), kind="stable").head(n)
        cols = list(columns) if columns else _default_columns(top, self.objectives)
        missing = [c for c in extra if c not in top]
        if missing:
            raise ConfigError(f"no column {', '.join(missing)} in the results; they have "
                              f"{', '.join(c for c in top.columns if c != 'arch')}")
        cols += [c for c in extra if c not in cols]
        shown = top[cols].copy()
        for c in cols:
            if c in _MILLIONS:
                shown[c] = shown[c].map(lambda v: f"{v / 1e6:.2f}M")
            elif pd.api.types.is_float_dtype(shown[c]):
                shown[c] = shown[c].map(lambda v: f"{v:.4g}")
        if "arch" not in cols:
            archs = [space.describe(arch_from_json(s)) if space is not None else s for s in top["arch"]]
            width = max(len(a) for a in archs)
            shown["arch"] = [a.ljust(width) for a in archs]   # left-aligned: archs are read left to right
        with pd.option_context("display.max_colwidth", None, "display.width", None):
            return shown.to_string(index=False, justify="left")

    def _default_path(self, name: str) -> Path:
        if self.path is None:
            raise ConfigError("this result has no directory; pass a path")
        return self.path / name

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: Union[str, Path]) -> "SearchResult":
        """Open an experiment directory (or a results.parquet file).

        A finished search's table is complete: it is opened lazily (see the class docstring).
        A search whose driver was killed leaves a results table up to a few seconds old and
        a journal of everything after: both are read, so no evaluated arch is missing.
        """
        path = Path(path)
        directory = path.parent if path.suffix == ".parquet" else path
        table = path if path.suffix == ".parquet" else path / RESULTS_FILE
        meta = read_search_meta(directory) if (directory / META_FILE).exists() else {}
        objectives = parse_objectives(meta.get("objectives") or ["accuracy:max"])
        if meta.get("status") == "finished" and table.exists() and table.name == RESULTS_FILE:
            try:
                return cls(None, objectives, directory, meta, table=table)
            except ConfigError:
                pass   # unreadable: the journal below may rebuild it
        df = load_results_table(directory, table, key=str(meta.get("row_key") or "arch_id"))
        return cls(df, objectives, directory, meta)


class LazyTable:
    """A results.parquet read on demand with pyarrow: its schema and row count from the footer,
    columns by projection, rows by the row groups that hold them."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            self._file = pq.ParquetFile(self.path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for damaged files
            raise ConfigError(f"{self.path} is not a readable Parquet file ({str(exc).splitlines()[0][:200]})"
                              ) from exc
        meta = self._file.metadata
        self.num_rows = int(meta.num_rows)
        self.column_names = list(self._file.schema_arrow.names)
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def read(self, columns: Optional[Sequence[str]] = None) -> pd.DataFrame:
        """The whole table, or only ``columns``."""
        table = self._file.read(columns=list(columns) if columns is not None else None)
        return table.to_pandas().reset_index(drop=True)

    def head(self, n: int) -> pd.DataFrame:
        groups = int(np.searchsorted(self._starts, max(0, int(n)), side="left"))
        groups = max(1, min(groups, len(self._starts) - 1))
        if self.num_rows == 0:
            return self.read()
        return self._file.read_row_groups(list(range(groups))).to_pandas().head(n).reset_index(drop=True)

    def take(self, positions: Sequence[int]) -> pd.DataFrame:
        """Whole rows at ``positions`` (in that order), indexed by position."""
        positions = np.asarray(list(positions), dtype=np.int64)
        if len(positions) == 0:
            return self._file.schema_arrow.empty_table().to_pandas()
        groups = np.searchsorted(self._starts, positions, side="right") - 1
        needed = sorted(set(groups.tolist()))
        table = self._file.read_row_groups(needed)
        offsets = {g: int(self._starts[g]) for g in needed}
        base = np.concatenate([[0], np.cumsum([self._starts[g + 1] - self._starts[g] for g in needed])])
        local = np.array([base[needed.index(g)] + p - offsets[g] for g, p in zip(groups.tolist(), positions.tolist())])
        frame = table.take(local).to_pandas()
        frame.index = pd.Index(positions)
        return frame


def load_results_table(directory: Path, table: Optional[Path] = None, key: str = "arch_id") -> pd.DataFrame:
    """The results of an experiment directory: ``results.parquet`` completed by the journal.
    Rows are keyed by ``key`` (``arch_id``; a sweep's are keyed by ``trial_id``)."""
    from raynas.ledger import iter_records, read_journal

    directory = Path(directory)
    table = table or directory / RESULTS_FILE
    records = {r[key]: r for r in iter_records(read_journal(directory), key)}
    df: Optional[pd.DataFrame] = None
    problem = ""
    if table.exists():
        try:
            df = pd.read_parquet(table)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for damaged files
            problem = f"{table} is not a readable Parquet file ({str(exc).splitlines()[0][:200]})"
    if df is not None and (not records or set(records) <= set(df[key] if key in df else [])):
        return df
    if not records:
        if problem:
            raise ConfigError(f"{problem}; it may be truncated, and there is no journal to rebuild it from")
        raise ConfigError(f"no {RESULTS_FILE} in {directory}: is this a raynas experiment directory?")
    # the journal holds every stored row (the table may lag behind it by a few seconds)
    rows = {}
    if df is not None and key in df:
        rows = {rec[key]: {k: v for k, v in rec.items() if not is_missing(v)} for rec in df.to_dict("records")}
    rows.update(records)
    return records_frame(list(rows.values()))


def _ok_mask(df: pd.DataFrame) -> pd.Series:
    return df["error"].isna() | (df["error"] == "")


def records_frame(records: List[Mapping[str, Any]]) -> pd.DataFrame:
    """Table rows as the results table: in ``order``, the fixed columns first, then the rest
    sorted by name."""
    if not records:
        return pd.DataFrame(columns=_FIXED_COLUMNS)
    df = pd.DataFrame(list(records))
    df = df.sort_values("order", kind="stable").reset_index(drop=True)
    front = [c for c in _FIXED_COLUMNS if c in df]
    df = df[front + sorted(c for c in df.columns if c not in front)]
    if "error" not in df:
        df["error"] = None
    if "finished_at" in df:
        df["finished_at"] = as_timestamps(df["finished_at"])
    return df


def as_timestamps(values: pd.Series) -> pd.Series:
    """UTC timestamps from epoch seconds (the journal's JSON form) or timestamps (a Parquet's)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    return pd.Series([v if isinstance(v, pd.Timestamp) else
                      (pd.NaT if is_missing(v) else pd.Timestamp(float(v), unit="s", tz="UTC"))
                      for v in values], index=values.index, dtype="datetime64[ns, UTC]")


def _saved_constraints(meta: Mapping[str, Any]) -> List[Any]:
    """The constraints search.json records (``str(Constraint)``; a two-sided one is two)."""
    from raynas.constraints import parse_constraints

    out = []
    for text in meta.get("constraints") or []:
        for part in str(text).split(" and "):
            try:
                out += parse_constraints(part)
            except ConfigError:
                continue   # drawn when readable; a plot never fails for it
    return out


def _plot_scale(metric: str) -> float:
    return 1e6 if metric in _MILLIONS else 1.0


def _axis_label(metric: str) -> str:
    return _AXIS_LABELS.get(metric, metric)


def _default_columns(df: pd.DataFrame, objectives: Sequence[Objective]) -> List[str]:
    cols = ["arch_id"] + [o.metric for o in objectives if o.metric in df]
    for extra in ("params", "macs", "latency_ms"):
        if extra in df and extra not in cols:
            cols.append(extra)
    return cols


def is_missing(value: Any) -> bool:
    """None or NaN (a value pandas filled in for a column a row does not have)."""
    if value is None:
        return True
    try:
        return isinstance(value, float) and math.isnan(value)
    except TypeError:
        return False


def write_search_meta(directory: Path, meta: Mapping[str, Any]) -> None:
    atomic_write_json(Path(directory) / META_FILE, dict(meta))


def read_search_meta(directory: Union[str, Path]) -> Dict[str, Any]:
    """``search.json`` of an experiment directory (one clear error if missing or damaged)."""
    path = Path(directory) / META_FILE
    if not path.exists():
        raise ConfigError(f"no {META_FILE} in {directory}: is this a raynas experiment directory?")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); the experiment directory is damaged") from exc
    if not isinstance(meta, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    return meta

