"""Results read lazily: a finished search's table stays on disk until all of it is asked for
(len, head, best, pareto read only what they need), reading needs no Ray, and the collector's
incremental Parquet flushes write the same table a whole rebuild writes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import raynas
from raynas.arch import arch_id
from raynas.collector import ResultsCollector
from raynas.objectives import parse_objectives
from raynas.results import RESULTS_FILE, SearchResult, records_frame, write_search_meta

ROOT = Path(__file__).resolve().parents[1]


def _experiment(directory: Path, rows: int = 3000, row_group: int = 256) -> Path:
    """A finished two-objective experiment of ``rows`` synthetic archs, some failed, written in
    small row groups so lazy reads have groups to skip."""
    space = raynas.create_space("synthetic", num_layers=10, num_choices=4, seed=2)
    rng = np.random.default_rng(0)
    records, seen = [], set()
    while len(records) < rows:
        arch = space.sample(rng)
        key = arch_id(arch)
        if key in seen:
            continue
        seen.add(key)
        i = len(records)
        row = {"order": i, "arch_id": key, "arch": json.dumps(arch, sort_keys=True), "trial_id": f"t{i // 8}",
               "finished_at": 1.7e9 + i, "score": space.score(arch), "cost": float(rng.uniform(1, 10))}
        if i % 97 == 5:
            row = {**row, "error": "boom"}
            row.pop("score")
        records.append(row)
    directory.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(records_frame(records), preserve_index=False),
                   directory / RESULTS_FILE, row_group_size=row_group)
    write_search_meta(directory, {"name": "exp", "objectives": ["score:max", "cost:min"], "status": "finished",
                                  "space": space.spec()})
    return directory


def test_lazy_reads_equal_the_whole_table(tmp_path):
    directory = _experiment(tmp_path / "exp")
    lazy = SearchResult.load(directory)
    eager = SearchResult(pd.read_parquet(directory / RESULTS_FILE), parse_objectives(["score:max", "cost:min"]),
                         directory)
    assert not lazy.loaded and len(lazy) == len(eager) == 3000
    pd.testing.assert_frame_equal(lazy.head(300), eager.df.head(300))
    pd.testing.assert_series_equal(lazy.best(), eager.ok.sort_values("score", ascending=False, kind="stable").iloc[0])
    pd.testing.assert_frame_equal(lazy.best(n=7), eager.best(n=7))
    pd.testing.assert_frame_equal(lazy.best("cost", n=5), eager.best("cost", n=5))
    pd.testing.assert_frame_equal(lazy.pareto(), eager.pareto())
    assert len(lazy.pareto()) >= 3 and lazy.hypervolume() == eager.hypervolume()
    assert lazy.archs() == eager.archs()
    assert not lazy.loaded                         # none of that read the whole table
    pd.testing.assert_frame_equal(lazy.df, eager.df)
    assert lazy.loaded


def test_reading_a_results_table_does_not_import_ray(tmp_path):
    directory = _experiment(tmp_path / "exp", rows=500)
    code = ("import sys, raynas.results as r\n"
            f"res = r.SearchResult.load({str(directory)!r})\n"
            "print(len(res), res.best()['arch_id'], len(res.pareto()), len(res.head(3)), len(res.df))\n"
            "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))[:5]\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    count, best, front, head, whole = out.stdout.split()
    assert int(count) == int(whole) == 500 and int(head) == 3 and int(front) >= 1 and len(best) > 8


def test_incremental_flushes_write_what_a_rebuild_writes(tmp_path):
    space = raynas.create_space("synthetic", num_layers=8, num_choices=4, seed=1)
    rng = np.random.default_rng(3)
    collector = ResultsCollector(tmp_path / "exp")
    archs, rows = [], {}

    def rebuilt() -> pd.DataFrame:   # the whole table built at once from every stored row
        return records_frame(list(rows.values()))

    for i in range(60):
        arch = space.sample(rng)
        archs.append(arch)
        metrics = {"score": space.score(arch), "eval_seconds": 0.01}
        if i == 17:
            metrics = {"error": "failed"}          # a string column appearing after an all-null part
        if i == 33:
            metrics["extra"] = 1.5                 # a column appearing late
        assert collector.add_row(arch_id(arch), arch, metrics, f"t{i}")
        rows[arch_id(arch)] = collector.latest[arch_id(arch)]
        if i % 10 == 9:
            collector.flush()
            on_disk = pd.read_parquet(tmp_path / "exp" / RESULTS_FILE)
            pd.testing.assert_frame_equal(on_disk, rebuilt(), check_dtype=False)
            pd.testing.assert_frame_equal(on_disk, collector.dataframe(), check_dtype=False)
    # a report of equal fidelity changes nothing; a higher one replaces the written row in place
    assert not collector.add_row(arch_id(archs[3]), archs[3], {"score": 98.0}, "t98")
    assert collector.add_row(arch_id(archs[3]), archs[3], {"score": 99.0, "fidelity": 2.0}, "t99")
    rows[arch_id(archs[3])] = collector.latest[arch_id(archs[3])]
    collector.flush()
    on_disk = pd.read_parquet(tmp_path / "exp" / RESULTS_FILE)
    pd.testing.assert_frame_equal(on_disk, rebuilt(), check_dtype=False)
    assert on_disk.loc[3, "score"] == 99.0 and len(on_disk) == 60 == len(collector)
    collector.journal.close()


def test_a_crashed_trial_counts_as_failed_in_latest_and_the_progress_bar(tmp_path):
    """A trial that dies for good gets error rows; ``latest`` then holds only those (not the
    previous report's rows), and the progress bar counts them as failed."""
    from types import SimpleNamespace

    from raynas.objectives import Objective
    from raynas.progress import SearchProgress

    space = raynas.create_space("synthetic", num_layers=8, num_choices=4, seed=1)
    rng = np.random.default_rng(5)
    archs = [space.sample(rng) for _ in range(5)]
    ids = [arch_id(a) for a in archs]
    collector = ResultsCollector(tmp_path / "exp")
    bar = SearchProgress(5, Objective("score", "max"), collector)
    ok = SimpleNamespace(trial_id="t_ok", config={"arch_ids": ids[:2], "archs": archs[:2]})
    crashed = SimpleNamespace(trial_id="t_dead", config={"arch_ids": ids[2:], "archs": archs[2:]})
    for callback in (collector, bar):
        callback.on_trial_result(0, [], ok, {"batch": [{"arch_id": k, "score": 1.0 + i}
                                                       for i, k in enumerate(ids[:2])]})
    for callback in (collector, bar):
        callback.on_trial_error(1, [], crashed)
    assert sorted(collector.latest) == sorted(ids[2:])
    assert all(row["error"] for row in collector.latest.values())
    assert (bar.failed, bar.best, bar._shown) == (3, 2.0, 5)
    bar.close()
    collector.journal.close()
