"""Exported subnets: the two files alone rebuild the model in a fresh process, which reproduces
the evaluator's reported accuracy and the supernet's outputs on the same validation split."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from raynas import CheckpointError
from raynas.data import prepare_inputs
from raynas.evaluators.weight_inherited import WeightInheritedEvaluator
from raynas.export import exported_accuracy, load_exported, predict, save_exported
from tiny_supernet import TRAINED_IMAGE_SIZE, digits16, single_threaded, trained_supernet

ARCH = {"w1": 8, "w2": 16, "resolution": 12}
TESTS_DIR = Path(__file__).resolve().parent

CHILD = """
import json, sys
import numpy as np
import tiny_supernet  # registers the test space, as a user's package registers theirs
from raynas.data import load_dataset
from raynas.export import load_exported, predict, exported_accuracy
model, config = load_exported(sys.argv[1])
ds = load_dataset(config["dataset"], image_size=config["image_size"], seed=0)
val = ds.split("val")
np.save(sys.argv[2], predict(model, config, val.images).numpy())
print(json.dumps({"accuracy": exported_accuracy(model, config, val.images, val.labels)}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    ds = digits16()
    with single_threaded():
        net = trained_supernet()
        evaluator = WeightInheritedEvaluator.from_dataset(net, ds, calib_batches=3, batch_size=64)
        metrics = evaluator.evaluate([ARCH])[0]
        static = net.export(ARCH)  # the supernet is left recalibrated for ARCH
        net.eval()
        with torch.no_grad():
            reference = net(prepare_inputs(ds.split("val").images, ds.mean, ds.std, 12))
    path = save_exported(tmp_path_factory.mktemp("export") / "best", static, space=net.space,
                         arch=ARCH, num_classes=10, mean=ds.mean, std=ds.std, metrics=metrics,
                         dataset="digits", image_size=TRAINED_IMAGE_SIZE)
    return path, metrics, reference


def test_exported_model_reproduces_accuracy_in_a_new_process(exported, tmp_path):
    path, metrics, reference = exported
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["arch"] == ARCH and config["input_resolution"] == 12
    assert config["metrics"]["accuracy"] == metrics["accuracy"] and config["arch_id"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR.parent), str(TESTS_DIR)]),
               OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp_path / "logits.npy")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    child_accuracy = json.loads(out.stdout.strip().splitlines()[-1])["accuracy"]
    assert child_accuracy == pytest.approx(metrics["accuracy"], abs=1e-9)
    logits = torch.from_numpy(np.load(tmp_path / "logits.npy"))
    assert torch.allclose(logits, reference, atol=1e-5, rtol=1e-5)


def test_loaded_model_in_process(exported):
    path, metrics, reference = exported
    model, config = load_exported(path)
    assert not model.training
    val = digits16().split("val")
    with single_threaded():
        assert torch.allclose(predict(model, config, val.images, batch_size=50), reference, atol=1e-5)
        assert exported_accuracy(model, config, val.images, val.labels) == pytest.approx(metrics["accuracy"])


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


@pytest.mark.parametrize("edit,message", [
    (lambda d: (d / "config.json").unlink(), r"config\.json is missing"),
    (lambda d: (d / "model.safetensors").unlink(), r"model\.safetensors is missing"),
    (lambda d: (d / "config.json").write_text("{oops"), r"config\.json is not valid JSON"),
    (lambda d: (d / "config.json").write_text('{"arch": {}}'), r"config\.json lacks space, num_classes"),
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:100]),
     r"model\.safetensors is not the file .*config\.json describes: its sha256"),
    (lambda d: _edit_config(d, arch={"w1": 5, "w2": 16, "resolution": 12}),
     r"cannot rebuild the model described by .*config\.json.*field 'w1' has value 5"),
    (lambda d: _edit_config(d, arch={"w1": 12, "w2": 16, "resolution": 12}),
     r"model\.safetensors does not fit .*conv1\.weight: file \(8, 3, 3, 3\) vs model \(12, 3, 3, 3\)"),
], ids=["no-config", "no-model", "bad-json", "incomplete", "truncated", "invalid-arch", "other-arch"])
def test_damaged_exports_are_checkpoint_errors(exported, tmp_path, edit, message):
    copy = _copy(exported[0], tmp_path / "copy")
    edit(copy)
    with pytest.raises(CheckpointError, match=message):
        load_exported(copy)


def _edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))
