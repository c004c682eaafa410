"""Multi-node checks on a local Ray cluster (``ray.cluster_utils.Cluster``: a head and two worker
nodes with logical CPUs), run in their own process by test_multinode.py (a Cluster cannot share a
process with the tests' embedded Ray). Prints one JSON summary line; exits non-zero on failure.

1. A supernet checkpoint reaches pool actors on other nodes through Ray's object store: the
   checkpoint folder is deleted before they evaluate, and they agree exactly with a local
   evaluator; the actors are spread over both worker nodes.
2. A worker node is removed: its actor is replaced on a live node, which reloads the supernet
   from the object store, and evaluations go on with the same values.
3. A node is removed in the middle of a Tune search: the search completes, every arch once.
4. ``raynas search --address <this cluster>`` in another process works against the cluster.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# every process of the cluster (raylets, workers) must import raynas and the test spaces
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")])
sys.path[:0] = [str(ROOT), str(HERE)]

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

# a node's loss is noticed in ~10 s instead of the default ~30 s (faster detection marks live
# nodes dead when the machine is loaded)
FAST_FAILURE_DETECTION = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                          "health_check_failure_threshold": 10}


def main() -> int:
    import faulthandler

    faulthandler.dump_traceback_later(int(os.environ.get("RAYNAS_MULTINODE_TIMEOUT", "840")), exit=True)
    work = Path(tempfile.mkdtemp(prefix="raynas-multinode-"))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"head": 100}, "include_dashboard": False,
        "_system_config": FAST_FAILURE_DETECTION})
    summary = {}
    try:
        # join before the worker nodes exist: the driver attaches to the head's raylet (nodes on
        # one machine share an IP), as a driver on a real cluster's head does
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        assert ray.get_runtime_context().get_node_id() == cluster.head_node.node_id
        nodes = [cluster.add_node(num_cpus=3, resources={"evaluator": 2}) for _ in range(2)]
        cluster.wait_for_nodes()
        summary["checkpoint"] = check_checkpoint_through_object_store(cluster, nodes, work)
        spare = cluster.add_node(num_cpus=3, resources={"evaluator": 2})
        cluster.wait_for_nodes()
        summary["search"] = check_node_loss_mid_search(cluster, spare, work)
        summary["cli"] = check_cli_against_cluster(cluster.address, work)
    finally:
        ray.shutdown()
        cluster.shutdown()
        _forget_cluster(cluster.address)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))
    return 0


def _tiny_checkpoint(path: Path) -> Path:
    from raynas.checkpoint import save_supernet_checkpoint
    from tiny_supernet import trained_supernet

    # trained briefly, so that archs differ in accuracy and agreement means something
    return save_supernet_checkpoint(path, trained_supernet(steps=60), {"num_classes": 10, "dataset": "digits"})


def _local_accuracy(checkpoint: Path, archs):
    from raynas.checkpoint import load_supernet_checkpoint
    from raynas.data import load_dataset
    from raynas.evaluators.weight_inherited import WeightInheritedEvaluator

    supernet, _ = load_supernet_checkpoint(checkpoint)
    local = WeightInheritedEvaluator.from_dataset(supernet, load_dataset("digits", seed=0).eval_splits(),
                                                  batch_size=128, device="cpu")
    return [m["accuracy"] for m in local.evaluate(archs)]


def _replaced(pool, timeout_s: float = 120.0):
    """The pool's health once it has replaced a lost worker (or after ``timeout_s``). The live
    worker may have answered everything before the loss showed: a removed node's worker process
    can go on answering direct calls for seconds, and a node's loss takes seconds to be declared;
    health probes notice it and replace the worker on a live node."""
    deadline = time.monotonic() + timeout_s
    health = pool.health(probe_timeout_s=5)
    while not (health["restarts"] >= 1 and health["alive"] == 2) and time.monotonic() < deadline:
        time.sleep(1)   # between probes of the condition, not a wait for luck
        health = pool.health(probe_timeout_s=5)
    return health


def check_checkpoint_through_object_store(cluster, nodes, work: Path):
    import raynas
    from tiny_supernet import TRAINED_SPACE

    checkpoint = _tiny_checkpoint(work / "ckpt")
    space = raynas.create_space("tiny_elastic_cnn_test", **TRAINED_SPACE)
    archs = list(space.enumerate())
    expected = _local_accuracy(checkpoint, archs)
    pool = raynas.SupernetPool.from_checkpoint(str(checkpoint), data="digits", num_actors=2, max_chunk=3,
                                               resources={"evaluator": 1})
    shutil.rmtree(checkpoint)  # the workers hold what the object store brought them
    head = ray.get_runtime_context().get_node_id()
    got = [m["accuracy"] for m in pool.evaluate(archs[:9])]
    health = pool.health()
    placed = {w["node_id"] for w in health["worker_info"]}
    assert got == expected[:9], (got, expected[:9])
    assert len(set(expected)) > 3, expected
    assert len(placed) == 2 and head not in placed, placed
    # beside the driver, so that losing a worker node never loses the dispatcher (its cache, its counters)
    assert health["dispatcher"]["node_id"] == head, health["dispatcher"]

    victim = pool.health()["worker_info"][0]
    node = next(n for n in nodes if n.node_id == victim["node_id"])
    cluster.remove_node(node, allow_graceful=False)
    after = pool.evaluate(archs[9:])
    assert all("accuracy" in m for m in after), (after, pool.health())
    got_after = [m["accuracy"] for m in after]
    health = _replaced(pool)
    pool.shutdown()
    assert got_after == expected[9:], (got_after, expected[9:])
    assert health["restarts"] >= 1 and health["alive"] == 2 and not health["failures"], health
    assert not health["dispatcher_reconstructed"], health
    survivors = {w["node_id"] for w in health["worker_info"]}
    assert victim["node_id"] not in survivors, survivors
    return {"archs": len(archs), "nodes": len(placed), "restarts": health["restarts"],
            "retries": health["retries"]}


def check_node_loss_mid_search(cluster, spare, work: Path):
    import raynas
    from fault_helpers import SyntheticFactory, evaluation_counts, wait_for

    options = dict(num_layers=8, num_choices=4, seed=3)
    space = raynas.create_space("synthetic", **options)
    logs = work / "logs"
    logs.mkdir()
    budget = 40
    pool = raynas.SupernetPool(SyntheticFactory(space_options=options, log_dir=str(logs), delay_s=0.05),
                               num_actors=2, max_chunk=2, resources={"evaluator": 1})
    removed = threading.Event()

    def remove_a_node() -> None:
        if wait_for(lambda: sum(evaluation_counts(logs).values()) >= 10, 120):
            on_spare = [w for w in pool.health()["worker_info"] if w["node_id"] == spare.node_id]
            cluster.remove_node(spare, allow_graceful=False)
            removed.set() if on_spare else None

    thread = threading.Thread(target=remove_a_node, daemon=True)
    thread.start()
    # The Tune trials (relays to the pool) run on the head: this check is about losing pool
    # workers. (A trial whose own actor is on a lost node can be failed for good by Tune before
    # the node is declared dead: see docs/cluster.md.)
    result = raynas.search(space, pool, strategy="evolution", num_samples=budget, objectives="score", batch_size=4,
                           name="node-loss", storage_path=str(work), progress=False,
                           trial_resources={"cpu": 0.01, "head": 0.01},
                           strategy_options={"population_size": 8, "sample_size": 3})
    thread.join(timeout=60)
    health = _replaced(pool)
    pool.shutdown()
    df = result.df
    assert removed.is_set(), "no pool actor was on the removed node, or the search ended first"
    assert len(df) == budget and df["arch_id"].is_unique and df["error"].isna().all(), df
    assert all(row.score == space.score(arch) for row, arch in zip(df.itertuples(), result.archs()))
    # the lost node held a worker, which was replaced; the dispatcher, beside the driver, lived on
    assert health["alive"] == 2 and health["restarts"] >= 1 and not health["dispatcher_reconstructed"], health
    return {"archs": len(df), "restarts": health["restarts"], "retries": health["retries"],
            "dispatcher_reconstructed": health["dispatcher_reconstructed"]}


def check_cli_against_cluster(address: str, work: Path):
    from tiny_supernet import entry_point_site

    checkpoint = _tiny_checkpoint(work / "ckpt-cli")
    # the CLI finds the test space as a user's installed package (entry point), never by a
    # module named in the checkpoint
    site = entry_point_site(work / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([site, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "raynas.cli.main", "search", "--address", address, "--checkpoint", str(checkpoint),
         "--strategy", "random", "--num-samples", "6", "--batch-size", "3", "--actors", "1",
         "--output", str(work / "cli"), "--name", "on-cluster"],
        capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    import raynas

    result = raynas.SearchResult.load(work / "cli" / "on-cluster")
    assert len(result.df) == 6 and result.df["error"].isna().all(), result.df
    return {"archs": len(result.df)}


def _forget_cluster(address: str) -> None:
    """Cluster leaves its address in /tmp/ray/ray_current_cluster (raynas never reads it: its
    embedded Ray starts with address='local'); remove it so nothing else joins a dead cluster."""
    marker = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        if marker.read_text().strip() == address:
            marker.unlink()
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
