"""The pool sizes its chunks from the evaluations it measured and records a per-chunk timeline
(what benchmarks/orchestration.py computes utilisation, start-up and tail from)."""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

import raynas
from raynas.evaluators.synthetic import SleepEvaluator
from raynas.pool import CHUNK_TARGET_S, DEFAULT_MAX_CHUNK, ROUNDS_PER_TRIAL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

DELAY_S = 0.02


@pytest.fixture(scope="module")
def space():
    return raynas.create_space("synthetic", num_layers=8, num_choices=4, seed=5)


def _archs(space, n: int, offset: int = 0):
    return [space.sample(np.random.default_rng(offset + i)) for i in range(n)]


def test_adaptive_chunks_follow_the_measured_evaluation_time(ray_session, space):
    with raynas.SupernetPool(functools.partial(SleepEvaluator, DELAY_S), num_actors=2, cpus_per_actor=0.5) as pool:
        pool.wait_ready(progress=False)
        assert pool.health()["chunk_size"] == DEFAULT_MAX_CHUNK        # nothing measured yet
        pool.evaluate(_archs(space, 4))
        health = pool.health()
        chunk = health["chunk_size"]
        # about CHUNK_TARGET_S of work by the seconds per arch the workers measured: at most 25
        # archs of 20 ms (a sleep overshoots, more on a busy machine, never undershoots)
        per_arch = sum(health["eval_seconds"]) / 4
        assert per_arch >= DELAY_S and chunk == round(CHUNK_TARGET_S / per_arch)
        assert 2 <= chunk <= round(CHUNK_TARGET_S / DELAY_S)
        assert pool.evaluator().preferred_batch_size == 2 * chunk * ROUNDS_PER_TRIAL
        pool.reset_stats()
        results = pool.evaluate(_archs(space, 100, offset=1000))
        timeline = pool.timeline()
        health = pool.health()
    assert len(results) == 100 and all("score" in r for r in results)
    sizes = [c[3] for c in timeline]
    assert sum(sizes) == 100 and max(sizes) <= chunk and len(timeline) == -(-100 // chunk)
    assert all(start < end for _, start, end, _ in timeline)
    for worker in (0, 1):
        archs = sum(c[3] for c in timeline if c[0] == worker)
        # the worker's own seconds cover its sleeps; the dispatcher's busy time covers those
        assert health["eval_seconds"][worker] >= DELAY_S * archs * 0.99
        assert health["busy_seconds"][worker] >= health["eval_seconds"][worker]


def test_a_fixed_max_chunk_is_kept(ray_session, space):
    with raynas.SupernetPool(functools.partial(SleepEvaluator, 0.001), num_actors=2, cpus_per_actor=0.5,
                             max_chunk=3) as pool:
        pool.evaluate(_archs(space, 8))
        pool.reset_stats()
        pool.evaluate(_archs(space, 20, offset=500))
        assert pool.health()["chunk_size"] == 3
        assert pool.evaluator().preferred_batch_size == 2 * 3 * ROUNDS_PER_TRIAL
        sizes = sorted(c[3] for c in pool.timeline())
    assert sum(sizes) == 20 and max(sizes) == 3


def test_timeline_stats_start_up_tail_and_steady_utilisation():
    import orchestration

    # two workers; both busy from t=10 to t=12, then only worker 0 until t=13
    chunks = [(0, 10.0, 11.0, 4), (1, 10.0, 12.0, 8), (0, 11.0, 13.0, 8)]
    stats = orchestration.timeline_stats(chunks, num_actors=2, t0=8.0, t1=14.0)
    assert stats["startup_s"] == 2.0 and stats["finish_s"] == 1.0
    assert stats["tail_s"] == 1.0                              # 12 -> 13: one worker idle
    assert stats["steady_utilisation"] == pytest.approx(5.0 / (2 * 3.0), abs=1e-4)
    assert stats["busy_per_s"] == [0.0, 0.0, 2.0, 2.0, 1.0, 0.0]   # seconds 8..13
