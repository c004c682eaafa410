"""Search strategies driven by hand (the Tune protocol without Tune): what each one learns, and
the guarantees the base gives all of them (no repeats, no equivalent repeats, constraints)."""
from __future__ import annotations

import math
from typing import Any, Dict, List

import numpy as np
import pytest

from raynas import arch_id, create_space
from raynas.arch import Arch
from raynas.constraints import CostModel, parse_constraints
from raynas.objectives import parse_objectives
from raynas.pareto import hypervolume
from raynas.searchers import make_searcher
from raynas.searchers.base import ArchSearcher
from spaces.synthetic import SyntheticSpace


def drive(searcher: ArchSearcher, metrics_fn, max_trials: int = 10_000) -> List[Arch]:
    """Suggest, evaluate, complete -- one trial at a time, as Tune does with max_concurrent=1."""
    evaluated: List[Arch] = []
    for t in range(max_trials):
        config = searcher.suggest(f"t{t}")
        if config is None or config == ArchSearcher.FINISHED:
            break
        rows = [{"arch_id": arch_id(a), **metrics_fn(a)} for a in config["archs"]]
        evaluated.extend(config["archs"])
        searcher.on_trial_complete(f"t{t}", {"batch": rows})
    return evaluated


def score_fn(space):
    return lambda arch: {"score": space.score(arch), "params": space.cost(arch)["params"]}


@pytest.fixture(scope="module")
def space():
    return create_space("synthetic", num_layers=8, num_choices=4, seed=3)


def test_reinforce_policy_concentrates_on_the_best_arch_of_a_tiny_space():
    tiny = create_space("synthetic", num_layers=3, num_choices=3, seed=1)
    best = max(tiny.enumerate(), key=tiny.score)
    searcher = make_searcher("reinforce", {"learning_rate": 0.1}).setup(
        tiny, parse_objectives("score"), budget=27, batch_size=1, seed=0)
    uniform = 1 / 27
    drive(searcher, score_fn(tiny))
    probs = searcher.probabilities()
    p_best = float(np.prod([probs[f"op{i}"][op] for i, op in enumerate(best["ops"])]))
    assert searcher.most_likely() == best
    assert p_best > 0.9 > 20 * uniform


def test_reinforce_gradient_step_moves_probability_toward_rewarded_choices(space):
    searcher = make_searcher("reinforce", {"learning_rate": 0.5, "optimizer": "sgd",
                                           "normalize_rewards": False}).setup(
        space, parse_objectives("score"), budget=10, seed=0)
    good = {"ops": [2] * 8}
    searcher._update(good, 0.0)       # first reward sets the baseline: no advantage
    before = searcher.probabilities()["op0"][2]
    searcher._update(good, 1.0)       # advantage +1
    after_good = searcher.probabilities()["op0"][2]
    searcher._update(good, -5.0)      # below the baseline
    after_bad = searcher.probabilities()["op0"][2]
    assert math.isclose(before, 0.25) and after_good > before and after_bad < after_good


def test_local_search_finds_the_optimum_where_random_search_does_not(space):
    optimum = space.optimum()
    found = {}
    for strategy in ("local_search", "random"):
        bests = []
        for seed in range(3):
            searcher = make_searcher(strategy).setup(space, parse_objectives("score"), budget=200,
                                                     batch_size=8, seed=seed)
            bests.append(max(space.score(a) for a in drive(searcher, score_fn(space))))
        found[strategy] = bests
    assert all(math.isclose(b, optimum) for b in found["local_search"]), found
    assert max(found["random"]) < optimum - 0.5, found


def test_local_search_climbs_only_uphill_and_restarts_at_local_optima(space):
    searcher = make_searcher("local_search", {"num_init": 3}).setup(
        space, parse_objectives("score"), budget=300, batch_size=8, seed=5)
    path = []
    original = searcher._move_to

    def record(point):
        path.append(point)
        original(point)

    searcher._move_to = record
    drive(searcher, score_fn(space))
    assert searcher.restarts >= 1 and len(path) >= 3
    # between restarts every move is strictly uphill; a restart follows a local optimum
    for prev, nxt in zip(path, path[1:]):
        if nxt[1] <= prev[1]:
            assert all(space.score(n) <= prev[1] for n in space.neighbors(prev[0]))


def test_grid_covers_a_small_space_once_then_finishes():
    small = create_space("synthetic", num_layers=4, num_choices=3, seed=0)
    searcher = make_searcher("grid").setup(small, parse_objectives("score"), budget=500, batch_size=7, seed=0)
    seen = drive(searcher, score_fn(small))
    assert len(seen) == 81 and len({arch_id(a) for a in seen}) == 81
    assert searcher.suggest("after") == ArchSearcher.FINISHED
    with pytest.raises(Exception, match="grid limit"):
        make_searcher("grid", {"limit": 10}).setup(small, parse_objectives("score"), budget=5)


def test_mo_evolution_tournament_prefers_the_front_then_crowding(space):
    searcher = make_searcher("mo_evolution", {"population_size": 5, "sample_size": 5}).setup(
        space, parse_objectives(["score:max", "params:min"]), budget=10, seed=0)
    # (score, -params): a, b, c on the front (b in its middle), d and e dominated
    vectors = {"a": [3.0, -9.0], "b": [2.0, -5.0], "c": [1.0, -1.0], "d": [1.5, -6.0], "e": [0.0, -8.0]}
    for i, v in enumerate(vectors.values()):
        searcher.population.append(({"ops": [i] * 8}, v))
    members = list(searcher.population)
    order = searcher.rank_sample(members, [4, 3, 1, 0, 2])
    assert set(order[:3]) == {0, 1, 2} and order[2] == 1   # b, inside the front, comes last of it
    assert order[3] == 3 and order[4] == 4                  # then d (front 1), then e (front 2)


def test_mo_evolution_gets_more_hypervolume_than_random(space):
    objectives = parse_objectives(["score:max", "params:min"])
    reference = [-20.0, -80.0]   # below every score, above every params count of this space
    hv = {}
    for strategy in ("mo_evolution", "random"):
        values = []
        for seed in range(3):
            searcher = make_searcher(strategy, {"population_size": 16, "sample_size": 4}
                                     if strategy == "mo_evolution" else None).setup(
                space, objectives, budget=150, batch_size=8, seed=seed)
            archs = drive(searcher, score_fn(space))
            points = np.array([[space.score(a), -space.cost(a)["params"]] for a in archs])
            values.append(hypervolume(points, reference))
        hv[strategy] = float(np.mean(values))
    assert hv["mo_evolution"] > hv["random"], hv


@pytest.mark.parametrize("strategy", ["random", "evolution", "mo_evolution", "reinforce", "local_search",
                                      "grid", "optuna:tpe", "optuna:nsga2"])
def test_constraints_never_admit_a_violating_arch(strategy):
    small = create_space("synthetic", num_layers=5, num_choices=3, seed=2)
    limit = float(np.quantile([small.cost(a)["params"] for a in small.enumerate()], 0.3))
    objectives = parse_objectives(["score:max", "params:min"] if strategy in ("mo_evolution", "optuna:nsga2")
                                  else "score")
    searcher = make_searcher(strategy).setup(small, objectives, constraints=parse_constraints(f"params<={limit}"),
                                             cost_model=CostModel(small), budget=40, batch_size=4, seed=1)
    archs = drive(searcher, score_fn(small))
    assert len(archs) == 40
    assert all(small.cost(a)["params"] <= limit for a in archs)


class PairedOpsSpace(SyntheticSpace):
    """Synthetic space where ops 0 and 1 of every layer compute the same thing: an arch's
    equivalence key maps op 1 to op 0 (as isomorphic NB201 cells map to one representative)."""

    def equivalence_key(self, arch: Arch) -> str:
        ops = self.validate(arch)["ops"]
        return arch_id({"ops": [0 if op == 1 else op for op in ops]})


@pytest.mark.parametrize("strategy", ["random", "evolution", "reinforce", "local_search", "optuna:tpe"])
def test_equivalent_archs_are_evaluated_once(strategy):
    paired = PairedOpsSpace(num_layers=4, num_choices=3, seed=0)
    paired.name = "paired_test"
    searcher = make_searcher(strategy).setup(paired, parse_objectives("score"), budget=16, batch_size=4, seed=0)
    archs = drive(searcher, score_fn(paired))
    keys = [paired.equivalence_key(a) for a in archs]
    assert len(archs) == 16 == len(set(keys))


def test_optuna_cmaes_searches_decision_indices(space):
    pytest.importorskip("cmaes", reason="Optuna's CMA-ES sampler needs the cmaes package")
    searcher = make_searcher("optuna:cmaes", {"sampler_options": {"n_startup_trials": 4}}).setup(
        space, parse_objectives("score"), budget=24, batch_size=4, seed=0)
    archs = drive(searcher, score_fn(space))
    assert searcher.encoding == "ordinal" and len({arch_id(a) for a in archs}) == 24
    distributions = searcher.inner._ot_study.trials[-1].distributions
    assert type(distributions["op0"]).__name__ == "IntDistribution"
    assert searcher.inner._ot_study.sampler.__class__.__name__ == "CmaEsSampler"


def test_cost_metric_objectives_reach_the_searcher(space):
    """A multi-objective searcher learns a cost objective (params) the evaluator never reports."""
    searcher = make_searcher("mo_evolution", {"population_size": 4, "sample_size": 2}).setup(
        space, parse_objectives(["score:max", "params:min"]), budget=8, batch_size=4, seed=0)
    drive(searcher, lambda a: {"score": space.score(a)})
    assert len(searcher.population) == 4
    for arch, vector in searcher.population:
        assert vector == [space.score(arch), -space.cost(arch)["params"]]
