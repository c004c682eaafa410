"""Tune's own tools see a search: one result row per arch (tune.ExperimentAnalysis, ResultGrid
through Tuner.restore with the public trainable) and a per-arch TensorBoard log."""
from __future__ import annotations

import struct
from pathlib import Path

import pandas as pd
import pytest

import raynas
from raynas.tune_view import TENSORBOARD_DIR


def _score(space):
    def evaluate(arch):
        return {"score": float(space.score(arch)), "tag": float(len(arch["ops"]))}
    return evaluate


@pytest.fixture(scope="module")
def space():
    return raynas.create_space("synthetic")


def _events(folder: Path):
    """(tag, step, value) of every scalar in the TensorBoard event files under ``folder``
    (TFRecord framing read here; the protos come with tensorboardX)."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.append((value.tag, event.step, value.simple_value))
    return out


def test_experiment_analysis_has_one_row_per_arch(ray_session, space, tmp_path):
    from ray import tune

    result = raynas.search(space, _score(space), strategy="evolution", num_samples=40, objectives="score",
                           batch_size=4, name="forty", storage_path=tmp_path, progress=False,
                           strategy_options={"population_size": 8, "sample_size": 3})
    assert len(result.df) == 40
    analysis = tune.ExperimentAnalysis(str(tmp_path / "forty"))
    rows = pd.concat(analysis.trial_dataframes.values(), ignore_index=True)
    assert len(rows) == 40 and set(rows["arch_id"]) == set(result.df["arch_id"])
    table = result.df.set_index("arch_id")
    for _, row in rows.iterrows():
        assert row["score"] == table.loc[row["arch_id"], "score"]
        assert row["arch_index"] == table.loc[row["arch_id"], "order"]
        assert row["params"] == table.loc[row["arch_id"], "params"]   # cost metrics too
    # within a trial, one Tune iteration per arch
    for df in analysis.trial_dataframes.values():
        assert list(df["training_iteration"]) == list(range(1, len(df) + 1))
    # each trial's config (params.json): the ids of the archs it evaluated
    configs = analysis.get_all_configs()
    assert sorted(a for c in configs.values() for a in c["arch_ids"]) == sorted(result.df["arch_id"])

    # TensorBoard: every arch's metrics against its index in the table, and the best so far
    scalars = _events(tmp_path / "forty" / TENSORBOARD_DIR)
    by_tag = {}
    for tag, step, value in scalars:
        by_tag.setdefault(tag, {})[step] = value
    assert sorted(by_tag["arch/score"]) == list(range(40))
    for step, value in by_tag["arch/score"].items():
        assert value == pytest.approx(result.df.loc[result.df["order"] == step, "score"].item(), rel=1e-6)
    best = [by_tag["best/score"][i] for i in range(40)]
    assert best == sorted(best) and best[-1] == pytest.approx(result.df["score"].max(), rel=1e-6)

    # Tune's ResultGrid through Tuner.restore and the public trainable: the same rows
    grid = tune.Tuner.restore(str(tmp_path / "forty"), trainable=raynas.search_trainable(tmp_path / "forty")
                              ).get_results()
    frames = [r.metrics_dataframe for r in grid]
    assert sum(len(f) for f in frames) == 40
    assert set(pd.concat(frames)["arch_id"]) == set(result.df["arch_id"])


def test_one_arch_per_trial_gives_experiment_analysis_dataframe_one_row_per_arch(ray_session, space, tmp_path):
    from ray import tune

    result = raynas.search(space, _score(space), strategy="random", num_samples=40, objectives="score",
                           batch_size=1, name="forty1", storage_path=tmp_path, progress=False)
    df = tune.ExperimentAnalysis(str(tmp_path / "forty1")).dataframe()
    assert len(df) == 40 and set(df["arch_id"]) == set(result.df["arch_id"])
    merged = df.merge(result.df, on="arch_id", suffixes=("", "_table"))
    assert (merged["score"] == merged["score_table"]).all()


def test_without_tensorboard_nothing_is_logged(ray_session, space, tmp_path):
    raynas.search(space, _score(space), strategy="random", num_samples=8, objectives="score", batch_size=4,
                  name="quiet", storage_path=tmp_path, progress=False, tensorboard=False)
    assert not (tmp_path / "quiet" / TENSORBOARD_DIR).exists()
    assert not list((tmp_path / "quiet").glob("*/result.json"))
