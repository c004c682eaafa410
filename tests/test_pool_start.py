"""A pool's start says what it waits for: workers Ray has placed that are still building their
evaluator are shown as such, and only workers not placed yet are reported as short of resources
(a slow evaluator build on a busy machine used to be reported as "another pool holds them")."""
from __future__ import annotations

import functools
import threading
import time

import numpy as np
import pytest

import raynas
import raynas.pool
from fault_helpers import SyntheticEvaluator
from raynas.evaluators.synthetic import SleepEvaluator


@pytest.fixture
def warn_early(monkeypatch):
    monkeypatch.setattr(raynas.pool, "RESOURCE_WARNING_AFTER_S", 0.5)


def _archs(n: int):
    space = raynas.create_space("synthetic")
    return [space.sample(np.random.default_rng(i)) for i in range(n)]


def test_a_slow_start_is_shown_as_workers_placed_and_building(ray_session, capsys, tmp_path):
    slow_start = functools.partial(SyntheticEvaluator, {}, str(tmp_path), start_s=3.0)
    pool = raynas.SupernetPool(slow_start, num_actors=2, cpus_per_actor=1.5)
    try:
        pool.wait_ready()
        assert ray_session.get(pool.dispatcher.start_counts.remote()) == (2, 2)
        assert len(pool.evaluate(_archs(4))) == 4
    finally:
        pool.shutdown()
    err = capsys.readouterr().err
    assert "2 placed, building evaluators" in err
    assert "waiting for resources" not in err   # placed workers are never reported as short


def test_workers_that_cannot_be_placed_are_reported_with_what_they_need(ray_session, warn_early, capsys):
    @ray_session.remote(num_cpus=3)
    class Holder:
        def ping(self) -> bool:
            return True

    holder = Holder.remote()
    ray_session.get(holder.ping.remote())   # placed: 3 of the session's 4 CPUs are taken
    pool = raynas.SupernetPool(functools.partial(SleepEvaluator, 0.0), num_actors=1, cpus_per_actor=1.5)

    def free_the_cpus_later():
        # counted from the moment the dispatcher answers (its own start takes seconds on a busy
        # machine): the driver then polls every 0.5 s and warns after RESOURCE_WARNING_AFTER_S
        assert ray_session.get(pool.dispatcher.start_counts.remote()) == (0, 0)
        time.sleep(3.0)
        ray_session.kill(holder)

    release = threading.Thread(target=free_the_cpus_later)
    release.start()
    try:
        pool.wait_ready()   # returns once the holder is gone
        assert len(pool.evaluate(_archs(2))) == 2
    finally:
        release.join()
        pool.shutdown()
    err = capsys.readouterr().err
    assert "1 of 1 pool actors are waiting for resources: each needs 1.5 CPU" in err
