"""What a finished search leaves behind for people: best.json, the Pareto plot, a printed table."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from raynas.arch import arch_from_json
from raynas.io import atomic_write_json
from raynas.results import SearchResult


def best_record(result: SearchResult, space) -> Dict[str, Any]:
    row = result.best()
    metrics = {k: float(v) for k, v in row.items()
               if k not in ("arch", "arch_id", "trial_id", "error", "order") and isinstance(v, (int, float))
               and v == v}
    return {"arch_id": row["arch_id"], "arch": arch_from_json(row["arch"]), "space": space.spec(),
            "objective": str(result.objectives[0]), "metrics": metrics}


def write_search_artifacts(result: SearchResult, space, top: int = 10, quiet: bool = False,
                           columns: Sequence[str] = ()) -> Dict[str, Path]:
    """Write results.parquet, best.json and (with >= 2 objectives) pareto.png and pareto.json
    (the front, its reference point and hypervolume); print a table of the ``top`` archs with
    the default columns plus ``columns`` (e.g. the table metrics a user asked for)."""
    paths: Dict[str, Path] = {"results": result.to_parquet()}
    if len(result.ok):
        paths["best"] = Path(result.path) / "best.json"
        atomic_write_json(paths["best"], best_record(result, space))
    if len(result.objectives) >= 2 and len(result.ok):
        paths["pareto"] = result.plot_pareto()
        paths["front"] = Path(result.path) / "pareto.json"
        atomic_write_json(paths["front"], result.pareto_record())
    if not quiet:
        failed = len(result.df) - len(result.ok)
        print(f"\n{len(result.df)} archs evaluated ({failed} failed) -> {result.path}")
        print(result.table(top, space=space, extra=columns))
        for key, path in paths.items():
            print(f"{key:>8}: {path}")
    return paths
