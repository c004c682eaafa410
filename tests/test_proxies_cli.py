"""Batched proxy scoring on a SupernetPool, and the ``raynas proxies`` CLI (validate, select)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import shared_data_path
from raynas.cli.main import main
from raynas.evaluators.chunked import evaluate_in_chunks
from raynas.proxies import ProxyEvaluator, rank_correlations
from raynas.proxies.pooled import proxy_factory
from raynas.registry import create_space

NB201_SMALL = {"channels": 4, "cells_per_stage": 1}


def test_pooled_data_free_scores_equal_in_process_scores(ray_session):
    """Data-free mode on two pool actors: the same scores as in-process, whatever the actor or
    the order (inits are seeded per arch)."""
    from raynas.pool import SupernetPool

    space = create_space("nb201", **NB201_SMALL)
    rng = np.random.default_rng(3)
    archs = list({space.table_key(a): a for a in (space.sample(rng) for _ in range(4))}.values())
    proxies = ["synflow", "snip", "naswot", "params"]
    options = dict(data_free=True, batch_size=4, seed=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the pool's CPU workers run one torch thread each on this machine
    try:
        local = ProxyEvaluator(space, proxies, **options).evaluate(archs)
    finally:
        torch.set_num_threads(threads)
    with SupernetPool(proxy_factory(space, proxies, device="cpu", **options), num_actors=2,
                      metrics=proxies) as pool:
        pooled = evaluate_in_chunks(pool.evaluator(), list(reversed(archs)), chunk_size=2)[::-1]
        assert pool.evaluate(archs[:2]) == pooled[:2]  # served again from the pool's cache
    assert len({r["synflow"] for r in local}) == len(archs)  # the archs are told apart
    for a, b in zip(local, pooled):
        assert set(b) >= set(proxies)
        for p in proxies:
            assert b[p] == pytest.approx(a[p], rel=1e-6, abs=1e-9), p


def test_evaluate_in_chunks_keeps_order_in_process():
    space = create_space("nb201", **NB201_SMALL)
    archs = [space.sample(np.random.default_rng(i)) for i in range(5)]
    ev = ProxyEvaluator(space, ["params"], data_free=True, batch_size=1)
    def untimed(results):   # each arch's own evaluation time is a measurement, not a score
        return [{k: v for k, v in m.items() if k != "eval_seconds"} for m in results]

    assert untimed(evaluate_in_chunks(ev, archs, chunk_size=2)) == untimed(ev.evaluate(archs))


def _validate(table, out, threshold, extra=()):
    return main(["proxies", "validate", "--space", "nb201", "-o", "channels=4", "-o", "cells_per_stage=1",
                 "--table", str(table), "--truth", "c10_test_200ep", "--num-archs", "12", "--seed", "1",
                 "--proxy", "synflow", "--proxy", "snip", "--batch-size", "4", "--no-progress",
                 "--threshold", str(threshold), "--output", str(out), *extra])


def test_proxies_validate_on_nb201_reports_correlations_and_falls_back(tmp_path, capsys):
    table = shared_data_path("nb201/nb201_cifar10.csv")
    out = tmp_path / "report.json"
    assert _validate(table, out, threshold=0.99) == 0
    printed = capsys.readouterr()
    report = json.loads(out.read_text())
    assert report["num_archs"] == 12 and report["truth_metric"] == "c10_test_200ep"
    # the correlations are those of the recorded scores against the table's accuracies
    truth_by_key = pd.read_csv(table).set_index("arch_str")["c10_test_200ep"]
    space = create_space("nb201", **NB201_SMALL)
    truth = [float(truth_by_key[space.table_key(r["arch"])]) for r in report["archs"]]
    assert [r["truth"] for r in report["archs"]] == pytest.approx(truth)
    for name in ("synflow", "snip", "params", "flops"):
        expected = rank_correlations([r[name] for r in report["archs"]], truth)
        assert report["correlations"][name]["spearman"] == pytest.approx(expected["spearman"])
        assert report["correlations"][name]["kendall"] == pytest.approx(expected["kendall"])
    # rho >= 0.99 is out of reach on 12 archs: both proxies fail, params / FLOPs take over
    assert report["passed"] == [] and sorted(report["failed"]) == ["snip", "synflow"]
    assert report["fallback"] is True and report["recommended"] in ("params", "flops")
    best = max(("params", "flops"), key=lambda n: report["correlations"][n]["spearman"])
    assert report["recommended"] == best
    assert "falling back" in printed.err and "recommended: " + best + " (fallback)" in printed.out
    assert set(report["mean_best_rank"]) == {"synflow", "snip", "params", "flops"}

    # a threshold every positively correlated proxy reaches: the best of them is recommended
    assert _validate(table, out, threshold=0.0) == 0
    report = json.loads(out.read_text())
    passing = [n for n in ("synflow", "snip") if report["correlations"][n]["spearman"] >= 0.0]
    assert report["passed"] == passing and report["fallback"] is (not passing)
    if passing:
        assert report["recommended"] == max(passing, key=lambda n: report["correlations"][n]["spearman"])


def test_proxies_validate_rejects_missing_truth(capsys):
    assert main(["proxies", "validate", "--space", "nb201", "--num-archs", "5"]) == 2
    assert "--table" in capsys.readouterr().err


def test_proxies_select_writes_candidates(tmp_path, capsys):
    out = tmp_path / "candidates.json"
    options = ["-o", "embed_dims=[16,24]", "-o", "depths=[2,3]", "-o", "num_heads=[1,2]",
               "-o", "mlp_ratios=[1.0,2.0]", "-o", "head_dim=8", "-o", "img_size=16", "-o", "patch_size=8",
               "-o", "num_classes=5"]
    assert main(["proxies", "select", "--space", "vit", *options, "--margin", "2k", "--batch-size", "4",
                 "--no-progress", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    space = create_space("vit", embed_dims=[16, 24], depths=[2, 3], num_heads=[1, 2], mlp_ratios=[1.0, 2.0],
                         head_dim=8, img_size=16, patch_size=8, num_classes=5)
    edges = data["selector"]["buckets"]["edges"]
    assert all(b - a == 2000 for a, b in zip(edges, edges[1:]))
    filled = [s for s in data["buckets"] if s["groups"] > 0]
    assert len(data["candidates"]) == len(filled) > 1  # one per non-empty bucket
    for c in data["candidates"]:
        low, high = c["bucket_range"]
        assert low <= space.cost(c["arch"])["params"] == c["params"] < high
    assert "candidates from" in capsys.readouterr().out
