"""Cluster usage: the autoscaler configuration, a multi-node local cluster (node loss, the
checkpoint through the object store, the CLI joining a running cluster), and what the dashboards
show (Tune's TensorBoard events per trial, named by arch_id, with the arch's decisions)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import raynas

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def test_cluster_yaml_is_a_valid_autoscaler_config():
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load((ROOT / "examples" / "cluster.yaml").read_text())
    # the launcher fills cluster_synced_files in before validating; the rest is checked as written
    validate_config({"cluster_synced_files": [], **config})
    workers = config["available_node_types"]["a100_8x"]
    assert workers["resources"]["GPU"] == 8 and config["file_mounts"] == {"~/raynas": "."}
    assert any("pip install" in c and "raynas" in c for c in config["setup_commands"])


def _events(path: Path):
    """Events of a TensorBoard event file (TFRecord framing: length, crc, payload, crc)."""
    from tensorboardX.proto import event_pb2

    data, offset, out = path.read_bytes(), 0, []
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        out.append(event_pb2.Event.FromString(data[offset + 12:offset + 12 + length]))
        offset += 12 + length + 4
    return out


def test_tensorboard_shows_one_run_per_arch_with_its_metrics_and_decisions(ray_session, tmp_path):
    space = raynas.create_space("synthetic", num_layers=4, num_choices=3, seed=1)
    result = raynas.search(space, lambda a: {"score": space.score(a), "latency_ms": 1.0 + a["ops"][0]},
                           strategy="random", num_samples=3, objectives="score", batch_size=1, max_concurrent=2,
                           name="tb", storage_path=tmp_path, progress=False, tune_loggers=True)
    for row, arch in zip(result.df.itertuples(), result.archs()):
        trial_dir = tmp_path / "tb" / f"arch_{row.arch_id}"
        scalars, hparams = {}, b""
        for event_file in trial_dir.glob("events.out.tfevents.*"):
            for event in _events(event_file):
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        scalars[value.tag] = value.simple_value
                    hparams += value.metadata.plugin_data.content
        assert scalars["ray/tune/score"] == pytest.approx(space.score(arch), rel=1e-6)
        assert scalars["ray/tune/latency_ms"] == 1.0 + arch["ops"][0]
        assert all(f"decisions/op{i}".encode() in hparams for i in range(4))
        params = json.loads((trial_dir / "params.json").read_text())
        assert params["decisions"] == space.to_decisions(arch) and params["arch_ids"] == [row.arch_id]


@pytest.mark.timeout(960)   # the check's own limits (faulthandler 840 s, subprocess 900 s) come first
def test_multinode_cluster_node_loss_object_store_and_cli(tmp_path):
    # A Cluster cannot share a process with the session's embedded Ray: its own process.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(HERE / "multinode_check.py")], capture_output=True, text=True,
                         timeout=900, env=env, cwd=tmp_path)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["checkpoint"]["nodes"] == 2 and summary["checkpoint"]["restarts"] >= 1
    assert summary["search"]["archs"] == 40 and summary["search"]["restarts"] >= 1
    assert summary["cli"]["archs"] == 6
