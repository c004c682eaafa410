"""The pool under real failures: workers killed (ray.kill, SIGKILL of the process), the dispatcher
killed, a hung worker, an arch that kills every worker it touches."""
from __future__ import annotations

import os
import signal
import threading

import pytest
import ray

import raynas
from fault_helpers import SyntheticFactory, distinct_archs, evaluation_counts, wait_for

SPACE = dict(num_layers=8, num_choices=4, seed=3)


@pytest.fixture(scope="module")
def space():
    return raynas.create_space("synthetic", **SPACE)


def _evaluations(log_dir) -> int:
    return sum(evaluation_counts(log_dir).values())


def test_search_completes_when_pool_workers_are_killed(ray_session, space, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    budget, chunk = 40, 2
    pool = raynas.SupernetPool(SyntheticFactory(space_options=SPACE, log_dir=str(logs), delay_s=0.03),
                               num_actors=2, max_chunk=chunk, max_retries=3)
    done = threading.Event()

    def kill_workers() -> None:
        assert wait_for(lambda: _evaluations(logs) >= 6, 90)
        ray.kill(pool.worker_handles()[0])                    # like a lost node
        assert wait_for(lambda: _evaluations(logs) >= 16, 90)
        os.kill(pool.health()["worker_info"][-1]["pid"], signal.SIGKILL)   # like the OOM killer
        done.set()

    killer = threading.Thread(target=kill_workers, daemon=True)
    killer.start()
    result = raynas.search(space, pool, strategy="random", num_samples=budget, objectives="score", batch_size=4,
                           name="kills", storage_path=tmp_path, progress=False, seed=1)
    killer.join(timeout=60)
    health = pool.wait_ready().health()
    pool.shutdown()

    assert done.is_set(), "the search ended before both kills happened"
    df = result.df
    assert len(df) == budget and df["arch_id"].is_unique
    assert df["error"].isna().all(), df["error"].dropna().tolist()
    assert df.set_index("arch_id")["score"].to_dict() == {a: space.score(arch) for a, arch in
                                                        zip(df["arch_id"], result.archs())}
    assert health["restarts"] >= 2 and health["retries"] >= 1 and health["alive"] == 2
    counts = evaluation_counts(logs)
    assert set(counts) == set(df["arch_id"])
    # only a chunk in flight at a kill is evaluated again
    assert sum(counts.values()) - budget <= 2 * chunk


def test_requests_survive_a_dispatcher_kill(ray_session, space, tmp_path):
    archs = distinct_archs(space, 24, seed=3)
    pool = raynas.SupernetPool(SyntheticFactory(space_options=SPACE, log_dir=str(tmp_path), delay_s=0.05),
                               num_actors=1, max_chunk=4)
    assert pool.evaluate(archs[:4]) == [{"score": space.score(a)} for a in archs[:4]]
    out = {}
    caller = threading.Thread(target=lambda: out.setdefault("results", pool.evaluate(archs)), daemon=True)
    caller.start()
    assert wait_for(lambda: _evaluations(tmp_path) >= 6, 60)
    ray.kill(pool.dispatcher, no_restart=False)   # Ray restarts it; the pending request is retried
    caller.join(timeout=120)
    health = pool.wait_ready().health()
    pool.shutdown()
    assert out["results"] == [{"score": space.score(a)} for a in archs]
    assert health["dispatcher_reconstructed"] and health["alive"] == 1


def test_hung_worker_is_killed_and_its_chunk_retried(ray_session, space, tmp_path):
    archs = distinct_archs(space, 6, seed=2)
    with raynas.SupernetPool(SyntheticFactory(space_options=SPACE, log_dir=str(tmp_path), hang_once=True),
                             num_actors=1, max_chunk=3, chunk_timeout_s=2.0) as pool:
        results = pool.evaluate(archs)
        health = pool.wait_ready().health()
    assert [r["score"] for r in results] == [space.score(a) for a in archs]
    assert health["timeouts"] == 1 and health["restarts"] == 1 and health["retries"] == 1
    assert health["alive"] == 1 and health["failures"] == 0


def test_an_arch_that_kills_every_worker_fails_alone_with_the_reason(ray_session, space, tmp_path):
    archs = distinct_archs(space, 4, seed=4)
    poison = raynas.arch_id(archs[1])
    with raynas.SupernetPool(SyntheticFactory(space_options=SPACE, log_dir=str(tmp_path), crash_on=[poison]),
                             num_actors=1, max_chunk=4, max_retries=2) as pool:
        results = pool.evaluate(archs)
        again = pool.evaluate([archs[0], archs[1]])   # cached outcome, no new evaluation
        health = pool.wait_ready().health()
    assert "evaluation failed after 2 retries" in results[1]["error"] and "ActorDiedError" in results[1]["error"]
    for i in (0, 2, 3):
        assert results[i] == {"score": space.score(archs[i])}
    assert again[0] == results[0]
    assert health["failures"] == 1 and health["restarts"] == 3 and health["alive"] == 1
    # the poisoned chunk was split: each healthy arch was evaluated at most twice, the poison never
    assert poison not in evaluation_counts(tmp_path)
    assert max(evaluation_counts(tmp_path).values()) <= 2
