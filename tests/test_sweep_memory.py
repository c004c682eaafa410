"""benchmarks/sweep_memory.py in smoke mode: the generated table is the space, each sweep runs
in a process of its own under the constraint, and its wall time and RSS samples are recorded."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_sweep_memory_smoke_records_rss_per_run(tmp_path):
    import sweep_memory

    out = tmp_path / "sweep.json"
    sweep_memory.main(["--smoke", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["table"]["rows"] == 4 ** 6 and 600 < saved["table"]["feasible"] < 4 ** 6
    runs = saved["runs"]
    assert [r["archs"] for r in runs] == [300, 600]
    for run in runs:
        assert run["batch_sizing"]["source"] == "declared" and run["batch_size"] >= 128
        assert run["all_satisfy_constraint"]
        assert run["driver_rss_mib_peak"] >= run["driver_rss_mib_before"] > 50
        assert run["worker_rss_mib_peak"] > 50 and len(run["rss_samples"]) >= 2
    assert "driver_kib_per_extra_arch" in saved
