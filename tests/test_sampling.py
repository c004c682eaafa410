"""Sampling strategies: what each plans per step, restricted sub-spaces, PreNAS preferred sampling,
phase schedules (no training here; ``test_supernet_training.py`` trains)."""
from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from raynas import create_space
from raynas.arch import arch_id
from raynas.errors import ConfigError
from raynas.training import PhasePlan, SubSpace, make_sampling_strategy, space_dimensions
from raynas.training.preferred import PreferredSampling
from raynas.training.schedule import Phase

TINY_OFA = dict(width_mult=0.1, resolutions=[6, 8], depth_choices=[1, 2], kernel_choices=[3, 5],
                expand_choices=[2, 3])
TINY_VIT = dict(img_size=16, patch_size=4, embed_dims=[32, 48, 64], depths=[2, 3],
                num_heads=[1, 2], mlp_ratios=[2.0, 4.0], head_dim=16, num_classes=10)


@pytest.fixture(scope="module")
def ofa():
    return create_space("ofa_mbv3_cifar", **TINY_OFA)


@pytest.fixture(scope="module")
def vit():
    return create_space("vit", **TINY_VIT)


def test_sandwich_plans_largest_teacher_random_students_and_smallest(ofa):
    strategy = make_sampling_strategy("sandwich", num_random=2)
    tasks = strategy.plan(ofa, 7, seed=1)
    assert [t.arch for t in (tasks[0], tasks[-1])] == [ofa.largest(), ofa.smallest()]
    teacher, students = tasks[0], tasks[1:]
    assert teacher.is_teacher and teacher.regularize and (teacher.label_weight, teacher.distill_weight) == (1, 0)
    assert all(not s.is_teacher and not s.regularize and (s.label_weight, s.distill_weight) == (0, 1)
               for s in students)
    again = strategy.plan(ofa, 7, seed=1)
    assert [arch_id(t.arch) for t in again] == [arch_id(t.arch) for t in tasks]  # (seed, step)
    others = {arch_id(strategy.plan(ofa, s, seed=1)[1].arch) for s in range(20)}
    assert len(others) > 10  # a new random subnet per step
    labels = make_sampling_strategy("sandwich", num_random=0, distill=False).plan(ofa, 0, 0)
    assert len(labels) == 2 and all(t.label_weight == 1 and t.distill_weight == 0 for t in labels)


def test_sandwich_distill_warmup_trains_students_on_labels_first(ofa):
    """distill_warmup=0.25 of a 40-step run: steps 0-9 on labels (no teacher), 10 on distilled."""
    strategy = make_sampling_strategy("sandwich", num_random=1, distill_warmup=0.25)
    strategy.bind_schedule(PhasePlan.build(strategy.phases(4.0, 0.1, 0.0), steps_per_epoch=10))
    for step, distilled in ((0, False), (9, False), (10, True), (39, True)):
        teacher, *students = strategy.plan(ofa, step, seed=0)
        assert teacher.is_teacher == distilled, step
        assert all((s.label_weight, s.distill_weight) == ((0, 1) if distilled else (1, 0)) for s in students), step
    assert strategy.describe() == "sandwich rule, labels for the first 25% of the steps, then in-place distillation"
    assert make_sampling_strategy("sandwich", distill_warmup=0).describe() == "sandwich rule, in-place distillation"
    # the default: labels for the first half of the run (the convergence benchmark's finding)
    default = make_sampling_strategy("sandwich")
    default.bind_schedule(PhasePlan.build(default.phases(4.0, 0.1, 0.0), steps_per_epoch=10))
    assert [default.plan(ofa, step, seed=0)[0].is_teacher for step in (0, 19, 20, 39)] == [False, False, True, True]
    assert default.describe() == "sandwich rule, labels for the first 50% of the steps, then in-place distillation"
    for bad in (1.0, -0.1, True, "half"):
        with pytest.raises(ConfigError, match="distill_warmup"):
            make_sampling_strategy("sandwich", distill_warmup=bad)


def test_uniform_and_fixed(ofa):
    uniform = make_sampling_strategy("spos", num_subnets=2)
    tasks = uniform.plan(ofa, 3, 0)
    assert len(tasks) == 2 and all(t.label_weight == 1 and not t.is_teacher for t in tasks)
    assert arch_id(tasks[0].arch) != arch_id(tasks[1].arch)
    fixed = make_sampling_strategy("fixed", arch="smallest")
    fixed.bind(ofa)
    assert [t.arch for t in fixed.plan(ofa, 5, 0)] == [ofa.smallest()]
    with pytest.raises(ConfigError, match="bad options"):
        make_sampling_strategy("uniform", num_random=3)
    with pytest.raises(ConfigError, match="unknown sampling strategy 'sandwitch'"):
        make_sampling_strategy("sandwitch")


def test_subspace_samples_only_unlocked_dimensions(ofa, vit):
    assert set(space_dimensions(ofa)) == {"resolution", "depth", "kernel", "expand"}
    assert set(space_dimensions(vit)) == {"embed_dim", "depth", "heads", "mlp_ratio"}
    from raynas.rng import derive_rng

    sub = SubSpace(ofa, {"kernel": None, "depth": [2]})
    seen_kernels = set()
    for i in range(40):
        arch = sub.sample(derive_rng(0, i))
        assert arch["resolution"] == 8
        assert all(s["depth"] == 2 and s["expand"] == [3, 3] for s in arch["stages"])
        seen_kernels |= {k for s in arch["stages"] for k in s["kernel"]}
        assert sub.contains(arch)
    assert seen_kernels == {3, 5}
    assert sub.smallest()["stages"][0] == {"depth": 2, "kernel": [3, 3], "expand": [3, 3]}
    assert sub.largest() == ofa.largest()
    with pytest.raises(ConfigError, match="no dimension"):
        SubSpace(ofa, {"width": None})
    with pytest.raises(ConfigError, match="no choice"):
        SubSpace(ofa, {"depth": [4]})


def _vit_arch(embed: int, depth: int, heads: int = 1, ratio: float = 2.0):
    return {"embed_dim": embed, "depth": depth, "num_heads": [heads] * depth, "mlp_ratio": [ratio] * depth}


def test_preferred_sampling_yields_only_candidates_and_balances_groups(vit, tmp_path):
    # group (32, 2) holds six candidates, (64, 3) one: balancing gives each group half the draws
    big_group = [_vit_arch(32, 2, h, r) for h in (1, 2) for r in (2.0, 4.0)] + [
        _vit_arch(32, 2, 2, 2.0) | {"num_heads": [1, 2]}, _vit_arch(32, 2, 1, 2.0) | {"mlp_ratio": [2.0, 4.0]}]
    lone = _vit_arch(64, 3, 2, 4.0)
    path = tmp_path / "candidates.json"
    path.write_text(json.dumps({"candidates": [{"arch": a, "params": 1.0, "score": 0.5}
                                               for a in big_group + [lone, big_group[0]]]}))
    strategy = make_sampling_strategy("preferred", candidates=str(path))
    strategy.bind(vit)
    assert strategy.group_keys == ("embed_dim", "depth")
    assert [key for key, _ in strategy.groups] == [(32, 2), (64, 3)]
    assert len(strategy.candidates) == 7  # the duplicate is dropped
    allowed = {arch_id(vit.validate(a)) for a in big_group + [lone]}
    draws = 2000
    counts = Counter(arch_id(strategy.plan(vit, step, seed=4)[0].arch) for step in range(draws))
    assert set(counts) == allowed  # only candidates, every one of them
    lone_share = counts[arch_id(vit.validate(lone))] / draws
    assert abs(lone_share - 0.5) < 5 * math.sqrt(0.25 / draws)
    per_member = [counts[arch_id(vit.validate(a))] for a in big_group]
    expected = draws / 2 / len(big_group)
    assert all(abs(c - expected) < 5 * math.sqrt(expected) for c in per_member)
    # the same (seed, step) gives the same candidate in every process
    fresh = PreferredSampling(str(path))
    fresh.bind(vit)
    assert [fresh.draw(4, s, 0) for s in range(10)] == [strategy.draw(4, s, 0) for s in range(10)]


def test_preferred_sampling_groups_by_summed_dimensions_and_rejects_bad_candidates(ofa):
    from raynas.rng import derive_rng

    archs = [ofa.sample(derive_rng(2, i)) for i in range(12)]
    strategy = PreferredSampling(archs, group_by=["resolution", "depth"], num_subnets=3)
    strategy.bind(ofa)
    for key, members in strategy.groups:
        assert all((a["resolution"], sum(s["depth"] for s in a["stages"])) == key for a in members)
    assert len(strategy.plan(ofa, 0, 0)) == 3
    with pytest.raises(ConfigError, match="candidate 1 is not an arch"):
        PreferredSampling([ofa.largest(), {"resolution": 7, "stages": []}]).bind(ofa)
    with pytest.raises(ConfigError, match="non-empty list"):
        PreferredSampling([])


def test_phase_plan_learning_rates_follow_each_phase():
    phases = [Phase("a", 1, 0.1), Phase("b", 0.5, 0.02, warmup_epochs=0.25)]
    plan = PhasePlan.build(phases, steps_per_epoch=8)
    assert (plan.starts, plan.lengths, plan.total_steps) == ((0, 8), (8, 4), 12)
    assert plan.learning_rate(0) == pytest.approx(0.1)
    assert plan.learning_rate(7) == pytest.approx(0.05 * (1 + math.cos(math.pi * 7 / 8)))
    assert plan.learning_rate(8) == pytest.approx(0.02 / 2)  # warm-up: 2 steps
    assert plan.learning_rate(9) == pytest.approx(0.02)
    assert [plan.phase(s).name for s in (0, 7, 8, 11, 50)] == ["a", "a", "b", "b", "b"]
    with pytest.raises(ConfigError, match="unique"):
        PhasePlan.build([Phase("a", 1, 0.1), Phase("a", 1, 0.1)], 4)


def test_default_progressive_shrinking_schedule_spreads_the_epochs_over_ofa_phases(ofa):
    strategy = make_sampling_strategy("ofa")
    strategy.bind(ofa)
    phases = strategy.phases(20, 0.1, 0.0)
    assert [p.name for p in phases] == ["full", "kernel", "depth-1", "depth-2", "expand-1", "expand-2"]
    assert sum(p.epochs for p in phases) == pytest.approx(20)
    assert [p.fixed_teacher for p in phases] == [False] + [True] * 5
    assert [p.sort_channels for p in phases] == [False] * 4 + ["auto"] * 2
    assert phases[2].options["unlock"] == {"kernel": None, "depth": [1, 2], "resolution": None}
    assert phases[4].options["unlock"]["expand"] == [2, 3]


def test_resolved_sampling_options_fill_every_default():
    """What a record keeps: the given options plus every default, so it still says what was
    trained after a default changes; an unknown option is a config error."""
    from raynas.training.sampling import resolved_sampling_options

    assert resolved_sampling_options("sandwich", {"num_random": 2}) == {
        "num_random": 2, "distill": True, "student_weight": 1.0, "distill_warmup": 0.5}
    assert resolved_sampling_options("fixed", {}) == {"arch": "largest"}
    with pytest.raises(ConfigError, match="sandwich"):
        resolved_sampling_options("sandwich", {"warmup": 0.5})
