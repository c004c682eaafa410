"""Multi-fidelity search: ASHA stops poor archs early through the real Tune path; the fine-tune
evaluator reports one accuracy per epoch."""
from __future__ import annotations

import numpy as np
import pytest

import raynas
from raynas import ConfigError, create_space
from raynas.evaluators.synthetic import ScoreFidelityEvaluator

LEVELS = 4


def test_asha_stops_bad_trials_early(ray_session, tmp_path):
    space = create_space("synthetic", num_layers=8, num_choices=4, seed=3)
    n = 16
    result = raynas.search(space, ScoreFidelityEvaluator(space, levels=LEVELS, gap=0.5), strategy="random", num_samples=n, objectives="score",
                           scheduler="asha", max_concurrent=1, storage_path=tmp_path, progress=False, seed=0)
    df = result.df
    assert len(df) == n and df["arch_id"].is_unique
    final = {key: space.score(arch) for key, arch in zip(df["arch_id"], result.archs())}
    stopped = df[df["fidelity"] < LEVELS]
    finished = df[df["fidelity"] == LEVELS]
    assert len(stopped) >= 4 and len(finished) >= 2         # ASHA halves at each rung
    assert df["fidelity"].sum() < n * LEVELS                # fidelities were saved
    # the stopped archs are the poor ones, and the best arch ran to the last fidelity
    assert np.mean([final[k] for k in stopped["arch_id"]]) < np.mean([final[k] for k in finished["arch_id"]])
    best = max(final, key=final.get)
    assert best in set(finished["arch_id"])
    # each row holds the score of the fidelity it reached
    for _, row in df.iterrows():
        assert row["score"] == pytest.approx(final[row["arch_id"]] - 0.5 * (LEVELS - row["fidelity"]))


def test_scheduler_configuration_errors(tmp_path):
    space = create_space("synthetic", num_layers=4, num_choices=3, seed=0)
    with pytest.raises(ConfigError, match="HyperBand pauses trials"):
        raynas.search(space, ScoreFidelityEvaluator(space, levels=LEVELS, gap=0.5), num_samples=8, objectives="score",
                      scheduler="hyperband", max_concurrent=2, storage_path=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="reports 1"):
        raynas.search(space, lambda a: {"score": 0.0}, num_samples=8, objectives="score", scheduler="asha",
                      storage_path=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="unknown scheduler"):
        raynas.search(space, ScoreFidelityEvaluator(space, levels=LEVELS, gap=0.5), num_samples=8, objectives="score", scheduler="pbt",
                      storage_path=tmp_path, progress=False)


def test_finetune_evaluator_reports_each_epoch_and_improves_inherited_weights():
    import pickle

    from raynas.evaluators.finetune import FineTuneEvaluator
    from tiny_supernet import digits16, single_threaded, trained_supernet

    with single_threaded():
        evaluator = FineTuneEvaluator(trained_supernet(steps=15), digits16(), epochs=3, steps_per_epoch=12,
                                      lr=0.05, batch_size=32, calib_images=128)
        arch = {"w1": 8, "w2": 16, "resolution": 16}
        levels = list(evaluator.evaluate_fidelities(arch))
        assert evaluator.num_fidelities == 3 and [m["epoch"] for m in levels] == [1.0, 2.0, 3.0]
        assert levels[-1]["accuracy"] > levels[0]["inherited_accuracy"] + 5   # fine-tuning helps
        assert levels[-1]["params"] == evaluator._load()["supernet"].space.cost(arch)["params"]
        def untimed(m):   # each evaluation's own time is a measurement, not a result
            return {k: v for k, v in m.items() if k != "eval_seconds"}

        assert [untimed(m) for m in evaluator.evaluate([arch])] == [untimed(levels[-1])]   # deterministic
    with pytest.raises(TypeError, match="from a checkpoint folder"):
        pickle.dumps(evaluator)
