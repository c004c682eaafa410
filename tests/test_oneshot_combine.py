"""The one-shot NB201 record recomputes from its per-arch CSV, and the combine script agrees
with the benchmark where both compute the same thing."""
import json
from pathlib import Path

import pytest

from benchmarks.oneshot_nb201_combine import combine

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_recorded_rankings_recompute_from_the_per_arch_csv():
    record = json.loads((RESULTS / "oneshot_nb201_cpu.json").read_text())
    report = combine(RESULTS / record["per_arch_csv"])
    assert report["num_archs"] == record["num_archs"] >= 500
    for variant, entry in record["variants"].items():
        for score, name in (("accuracy", f"supernet {variant} (accuracy)"), ("loss", f"supernet {variant} (loss)")):
            for key in ("kendall_tau", "spearman_rho", "top10_precision"):
                assert report["alone"][name][key] == pytest.approx(entry["ranking_by"][score][key], abs=1e-9)
    proxies = record["proxies"]
    assert report["alone"]["proxy ensemble"]["kendall_tau"] == pytest.approx(proxies["ensemble"]["kendall_tau"])
    # the benchmark combined its first variant (by its score) with the proxies: the script must agree
    first = proxies["supernet_plus_ensemble"]["supernet_variant"]
    combined = report["with_proxy_ensemble"][f"supernet {first} ({record['score']})"]
    assert combined["kendall_tau"] == pytest.approx(proxies["supernet_plus_ensemble"]["kendall_tau"], abs=1e-9)
    assert combined["spearman_rho"] == pytest.approx(proxies["supernet_plus_ensemble"]["spearman_rho"], abs=1e-9)


def test_a_csv_without_proxies_is_refused(tmp_path):
    path = tmp_path / "x_archs.csv"
    path.write_text("arch_str,c10_test_200ep,inherited_uniform\na,90.0,50.0\n")
    with pytest.raises(SystemExit, match="proxy_ensemble"):
        combine(path)
