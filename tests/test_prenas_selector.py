"""PreNAS zero-cost selector: isomer groups, Algorithm 1 allocation, buckets, mBR, candidates file."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from raynas.arch import arch_id
from raynas.errors import ConfigError
from raynas.proxies import best_ranks, mean_best_rank
from raynas.registry import create_space
from raynas.selectors import (PreNASSelector, ResourceBuckets, SupernetSaliency, allocate, arrangements,
                              count_compositions, read_candidates, select_candidates)
from raynas.selectors.prenas import ISOMER_PROXY
from raynas.training.preferred import PreferredSampling

TINY = dict(embed_dims=[16, 24], depths=[2, 3], num_heads=[1, 2], mlp_ratios=[1.0, 2.0], head_dim=8,
            img_size=16, patch_size=8, num_classes=5)


@pytest.fixture(scope="module")
def space():
    return create_space("vit", **TINY)


@pytest.fixture(scope="module")
def selector(space):
    """A real selector: one data-free pass of the tiny supernet (shared by the tests)."""
    return PreNASSelector(space, batch_size=4, seed=0)


def _supernet_shapes(space):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = space.build_supernet()
    return {n: p.shape for n, p in net.named_parameters()}


# ---------------------------------------------------------------------- isomer groups
def test_isomer_groups_partition_the_space_by_fixed_decisions_and_choice_counts(space):
    structure = space.isomer_structure()
    groups = list(structure.groups())
    # per (embed_dim, depth): (depth + 1) head-count splits x (depth + 1) MLP splits, 2 choices each
    assert len(groups) == 2 * ((2 + 1) ** 2 + (3 + 1) ** 2)
    assert len({g.key for g in groups}) == len(groups)

    a = {"embed_dim": 24, "depth": 3, "num_heads": [2, 1, 2], "mlp_ratio": [1.0, 1.0, 2.0]}
    reordered = {"embed_dim": 24, "depth": 3, "num_heads": [2, 2, 1], "mlp_ratio": [2.0, 1.0, 1.0]}
    other_counts = {"embed_dim": 24, "depth": 3, "num_heads": [2, 2, 2], "mlp_ratio": [2.0, 1.0, 1.0]}
    other_embed = {**a, "embed_dim": 16}
    g = structure.group_of(a)
    assert g == structure.group_of(reordered)
    assert g != structure.group_of(other_counts) and g != structure.group_of(other_embed)
    assert g.fixed_values == {"depth": 3, "embed_dim": 24}
    assert g.counts_of("num_heads") == (1, 2) and g.counts_of("mlp_ratio") == (2, 1)
    # isomers share params and FLOPs exactly; the members are every reordering (3 x 3 here)
    members = list(structure.members(g))
    assert len(members) == g.size == 9 and len({arch_id(m) for m in members}) == 9
    assert arch_id(space.validate(a)) in {arch_id(m) for m in members}
    costs = {(space.cost(m)["params"], space.cost(m)["flops"]) for m in members}
    assert len(costs) == 1
    assert all(structure.group_of(m) == g for m in members)


def test_compositions_and_arrangements_count_by_hand():
    assert sorted(count_compositions(3, 2)) == [(0, 3), (1, 2), (2, 1), (3, 0)]
    assert len(list(count_compositions(4, 3))) == 15  # C(6, 2)
    assert sorted(arrangements((1, 2))) == [(0, 1, 1), (1, 0, 1), (1, 1, 0)]
    assert len(set(arrangements((1, 1, 2)))) == 12  # 4! / (1! 1! 2!)


# ---------------------------------------------------------------------- Algorithm 1
def test_allocate_gives_the_larger_choice_to_the_highest_scores():
    scores = np.array([[0.1], [0.9], [0.5], [0.7]])
    assert allocate(scores, (2, 2)) == [0, 1, 0, 1]
    assert allocate(scores, (1, 3)) == [0, 1, 1, 1]
    assert allocate(scores, (4, 0)) == [0, 0, 0, 0]
    assert allocate(np.array([[0.5], [0.5]]), (1, 1)) == [1, 0]  # ties go to the lower layer
    # three choices: the optimum of the assignment equals a brute force over all arrangements
    steps = np.array([[0.3, 0.1], [0.2, 0.9], [0.4, 0.05], [0.1, 0.2]])
    gain = np.concatenate([np.zeros((4, 1)), np.cumsum(steps, axis=1)], axis=1)
    best = max(arrangements((1, 2, 1)), key=lambda a: sum(gain[l, c] for l, c in enumerate(a)))
    got = allocate(steps, (1, 2, 1))
    assert sum(gain[l, c] for l, c in enumerate(got)) == pytest.approx(sum(gain[l, c] for l, c in enumerate(best)))
    with pytest.raises(ConfigError):
        allocate(scores, (1, 1))  # counts do not sum to the layers


def test_selector_allocates_by_hand_set_layer_normalised_scores(space):
    """Greedy allocation on the supernet maps: heads follow the per-layer qkv score, MLP ratios
    follow the per-layer fc1 score (hand-set layer-normalised SNIP)."""
    shapes = _supernet_shapes(space)
    head_score, mlp_score = [0.2, 0.9, 0.5], [0.7, 0.1, 0.4]
    normalised = {n: torch.zeros(s) for n, s in shapes.items()}
    for layer in range(3):
        normalised[f"blocks.{layer}.attn.qkv.weight"].fill_(head_score[layer])
        normalised[f"blocks.{layer}.mlp.fc1.weight"].fill_(mlp_score[layer])
    plain = {n: torch.ones(s) for n, s in shapes.items()}
    sel = PreNASSelector(space, saliency=SupernetSaliency(plain, normalised))
    structure = sel.structure

    one_big_head = structure.group_of({"embed_dim": 24, "depth": 3, "num_heads": [2, 1, 1],
                                       "mlp_ratio": [2.0, 2.0, 1.0]})
    arch = sel.representative(one_big_head)
    assert arch["num_heads"] == [1, 2, 1]            # layer 1 has the highest head score
    assert arch["mlp_ratio"] == [2.0, 1.0, 2.0]      # layers 0 and 2 have the highest MLP scores
    two_big_heads = structure.group_of({"embed_dim": 16, "depth": 3, "num_heads": [2, 2, 1],
                                        "mlp_ratio": [2.0, 1.0, 1.0]})
    arch = sel.representative(two_big_heads)
    assert arch["num_heads"] == [1, 2, 2] and arch["mlp_ratio"] == [2.0, 1.0, 1.0]
    # the step score of a head step is the score of the qkv rows the step adds: 3 * hd * e weights
    steps = sel.step_scores(one_big_head, "num_heads")
    assert steps[:, 0] == pytest.approx([s * 3 * 8 * 24 for s in head_score])
    # every member of a group shares its step matrix only with groups of the same fixed decisions
    assert sel.step_scores(two_big_heads, "num_heads")[:, 0] == pytest.approx([s * 3 * 8 * 16 for s in head_score])


def test_representative_maximises_layer_normalised_snip_over_its_group(selector):
    """On the real data-free pass, the allocated member is the best of the group by Eq. 13
    (checked by scoring every member), and its plain score is the SNIP sum over its weights."""
    structure = selector.structure
    for depth, heads, ratios in ((3, (1, 2), (2, 1)), (3, (2, 1), (1, 2)), (2, (1, 1), (1, 1))):
        group = next(g for g in structure.groups() if g.fixed_values == {"depth": depth, "embed_dim": 24}
                     and g.counts_of("num_heads") == heads and g.counts_of("mlp_ratio") == ratios)
        chosen = selector.representative(group)
        scores = {arch_id(m): selector.isomer_score(m) for m in structure.members(group)}
        assert selector.isomer_score(chosen) == pytest.approx(max(scores.values()), rel=1e-12)
    arch = {"embed_dim": 16, "depth": 2, "num_heads": [2, 1], "mlp_ratio": [1.0, 2.0]}
    plain = selector.saliency.maps["snip"]
    by_hand = (plain["patch_embed.proj.weight"][:16].sum() + plain["head.weight"][:, :16].sum()
               + plain["blocks.0.attn.qkv.weight"][:48, :16].sum() + plain["blocks.0.attn.proj.weight"][:16, :16].sum()
               + plain["blocks.0.mlp.fc1.weight"][:16, :16].sum() + plain["blocks.0.mlp.fc2.weight"][:16, :16].sum()
               + plain["blocks.1.attn.qkv.weight"][:24, :16].sum() + plain["blocks.1.attn.proj.weight"][:16, :8].sum()
               + plain["blocks.1.mlp.fc1.weight"][:32, :16].sum() + plain["blocks.1.mlp.fc2.weight"][:16, :32].sum())
    assert selector.snip_score(arch) == pytest.approx(float(by_hand), rel=1e-6)


# ---------------------------------------------------------------------- buckets
def test_buckets_by_hand():
    b = ResourceBuckets.parse("5M:7M:1M")
    assert b.edges == (5e6, 6e6, 7e6) and len(b) == 2
    assert [b.index(v) for v in (4.99e6, 5e6, 5.999e6, 6e6, 6.5e6, 7e6)] == [None, 0, 0, 1, 1, None]
    assert ResourceBuckets.parse("5M,6M,8M").edges == (5e6, 6e6, 8e6)
    assert ResourceBuckets.covering(5.27e6, 10.4e6, 1e6).edges == tuple(float(x) * 1e6 for x in range(5, 12))
    with pytest.raises(ConfigError):
        ResourceBuckets.parse("5M:4M:1M")
    with pytest.raises(ConfigError):
        ResourceBuckets.parse("five:6M:1M")


def test_select_keeps_the_top_n_by_plain_snip_per_params_bucket(space, selector):
    low, high = space.cost(space.smallest())["params"], space.cost(space.largest())["params"]
    eps = (high - low) / 4
    buckets = ResourceBuckets.regular(low, high + 1, eps)
    selection = selector.select(buckets, per_bucket=2)
    reps = selection.representatives
    assert len(reps) == len(list(selector.structure.groups()))
    chosen_total = 0
    for b in range(len(buckets)):
        lo, hi = buckets.bounds(b)
        inside = [r for r in reps if lo <= r.params < hi]
        assert {r.arch_id for r in inside} == {r.arch_id for r in reps if r.bucket == b}
        expected = sorted(inside, key=lambda r: (-r.score, r.arch_id))[:2]
        got = [c for c in selection.candidates if c.bucket == b]
        assert [c.arch_id for c in got] == [c.arch_id for c in expected]
        assert [c.rank for c in got] == list(range(1, len(expected) + 1))
        chosen_total += len(expected)
    assert len(selection.candidates) == chosen_total >= len(buckets)
    for c in selection.candidates:
        assert c.params == space.cost(c.arch)["params"] and np.isfinite(c.score) and c.score > 0
    with pytest.raises(ConfigError):
        selector.select(buckets, per_bucket=0)


# ---------------------------------------------------------------------- mean best rank
def test_mean_best_rank_by_hand():
    scores = [3.0, 1.0, 2.0, 5.0, 4.0, 9.0]
    truth = [80.0, 90.0, 70.0, 60.0, 50.0, 10.0]
    groups = ["a", "a", "a", "b", "b", "c"]
    # a: the proxy picks 80, second of three -> (2 - 1) / 2; b: picks the best -> 0 / 1; c: alone
    assert mean_best_rank(scores, truth, groups) == pytest.approx((1 + 0) / (2 + 1))
    assert [(r.group, r.rank, r.size) for r in best_ranks(scores, truth, groups)] == [("a", 2, 3), ("b", 1, 2)]
    # a proxy that cannot tell members apart counts as picking the worst
    assert mean_best_rank([1.0, 1.0], [10.0, 20.0], ["g", "g"]) == 1.0
    assert mean_best_rank([float("nan"), 0.0], [20.0, 10.0], ["g", "g"]) == 1.0  # NaN never wins
    assert np.isnan(mean_best_rank([1.0], [1.0], ["g"]))


def test_isomer_best_ranks_of_a_perfect_truth_is_zero(selector):
    structure = selector.structure
    groups = [g for g in structure.groups() if g.fixed_values["depth"] == 2 and g.size > 1][:3]

    class LayerNormalisedTruth:
        metrics = ("accuracy",)

        def evaluate(self, archs):
            return [{"accuracy": selector.isomer_score(a)} for a in archs]

    report = selector.isomer_best_ranks(groups, LayerNormalisedTruth())
    assert report[ISOMER_PROXY]["mbr"] == 0.0
    assert report["num_archs"] == sum(g.size for g in groups)
    assert 0.0 <= report["snip"]["mbr"] <= 1.0


# ---------------------------------------------------------------------- candidates file
def test_candidates_json_is_read_by_preferred_sampling(space, tmp_path):
    out = tmp_path / "candidates.json"
    low, high = space.cost(space.smallest())["params"], space.cost(space.largest())["params"]
    selection = select_candidates(space, ResourceBuckets.regular(low, high + 1, (high - low) / 3), 1,
                                  output=out, batch_size=4, seed=1)
    data = read_candidates(out)
    assert data["format"] == "raynas.candidates/1" and data["space"] == space.spec()
    assert [c["arch_id"] for c in data["candidates"]] == [c.arch_id for c in selection.candidates]
    assert all({"arch", "params", "score", "bucket"} <= set(c) for c in data["candidates"])
    assert json.loads(out.read_text()) == data

    sampling = PreferredSampling(str(out))
    sampling.bind(space)
    assert {arch_id(a) for a in sampling.candidates} == {c.arch_id for c in selection.candidates}
    expected_groups = {(c.arch["embed_dim"], c.arch["depth"]) for c in selection.candidates}
    assert {key for key, _ in sampling.groups} == expected_groups
    drawn = {arch_id(sampling.draw(seed=0, step=s, k=0)[1]) for s in range(50)}
    assert drawn <= {c.arch_id for c in selection.candidates} and len(drawn) > 1


def test_selector_rejects_a_space_without_isomers():
    with pytest.raises(ConfigError, match="isomer structure"):
        PreNASSelector(create_space("nb201", channels=4, cells_per_stage=1))


def test_benchmark_smoke_writes_one_candidate_per_filled_bucket(tmp_path):
    import sys

    from conftest import PROJECT_ROOT

    sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
    import prenas_selector

    out = tmp_path / "report.json"
    report = prenas_selector.main(["--smoke", "--out", str(out), "--candidates", str(tmp_path / "c.json")])
    assert json.loads(out.read_text())["candidates"] == json.loads(json.dumps(report["candidates"]))
    filled = [b for b in report["bucket_summary"] if b["groups"] > 0]
    assert len(report["candidates"]) == len(filled) and report["num_isomer_groups"] == 50
    assert [c["arch_id"] for c in read_candidates(tmp_path / "c.json")["candidates"]] == \
        [c["arch_id"] for c in report["candidates"]]
    for c, b in zip(report["candidates"], filled):
        assert b["range"][0] <= c["params"] < b["range"][1] and c["score"] > 0


def test_preferred_vs_uniform_benchmark_smoke_and_resume(tmp_path):
    """Both trainings score the same candidates and reference archs, the per-candidate gains
    add up to the summary, and --resume reruns nothing."""
    import sys

    from conftest import PROJECT_ROOT

    sys.path.insert(0, str(PROJECT_ROOT))
    from benchmarks import prenas_preferred

    out = tmp_path / "preferred.json"
    report = prenas_preferred.main(["--smoke", "--out", str(out)])
    assert report["complete"] and [t["training"] for t in report["trainings"]] == ["preferred", "uniform"]
    ids = {arch_id(a) for a in report["candidates"]}
    assert len(ids) == len(report["selection"]["candidates"]) >= 2
    for training in report["trainings"]:
        assert training["steps"] == 6
        assert {a["arch_id"] for a in training["archs"] if a["role"] == "candidate"} == ids
        assert len([a for a in training["archs"] if a["role"] == "random"]) == 2
        assert all(0 <= a["test"] <= 100 for a in training["archs"])
    gain = report["summary"]["candidate_gain"]
    assert gain["pairs"] == len(ids)
    assert gain["mean"] == pytest.approx(np.mean([p["preferred_test"] - p["uniform_test"]
                                                  for p in gain["per_candidate"]]))
    assert read_candidates(tmp_path / "preferred_candidates.json")["candidates"]
    assert len((tmp_path / "preferred_archs.csv").read_text().splitlines()) == 1 + 2 * (len(ids) + 2)
    again = prenas_preferred.main(["--smoke", "--resume", "--out", str(out)])
    assert again["trainings"] == report["trainings"]
