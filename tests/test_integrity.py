"""Weights carry integrity: checkpoints, exports and predictors record the sha256 of every weight
file and check it on load (one error naming the file); ``verify_exported`` compares the
accuracy it reproduces with the recorded one; error messages never echo a huge input."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import raynas
from raynas import CheckpointError
from raynas.checkpoint import (load_supernet_checkpoint, load_supernet_from_bytes, load_training_state,
                               checkpoint_to_bytes, save_supernet_checkpoint)
from raynas.cli.main import main
from raynas.evaluators.weight_inherited import WeightInheritedEvaluator
from raynas.export import load_exported, save_exported, verify_exported
from raynas.pool import check_checkpoint
from raynas.predictors import load_predictor, make_predictor
from tiny_supernet import TRAINED_IMAGE_SIZE, digits16, make_supernet, single_threaded, trained_supernet

TINY = {"w1": (4, 8), "w2": (8, 12), "image_size": 8}
ARCH = {"w1": 8, "w2": 16, "resolution": 12}


def _damage(path: Path, size: int = 64 * 1024) -> None:
    """Overwrite data (of a safetensors file: past its header) as a bad disk, copy or transfer
    would: the file keeps its size (and header), so only the digest can tell."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little") if path.suffix == ".safetensors" else len(data) // 2
    end = min(len(data), start + size)
    assert end > start
    data[start:end] = bytes((b + 1) % 256 for b in data[start:end])
    path.write_bytes(bytes(data))


def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path):
    net = make_supernet(0, num_classes=3, **TINY)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    folder = save_supernet_checkpoint(tmp_path / "ckpt", net, {"num_classes": 3}, optimizer_state=opt.state_dict())
    files = json.loads((folder / "meta.json").read_text())["files"]
    assert sorted(files) == ["model.safetensors", "optimizer.pt"] and len(files["model.safetensors"]["sha256"]) == 64
    load_supernet_checkpoint(folder)   # intact: loads
    _damage(folder / "model.safetensors")
    for load in (load_supernet_checkpoint, check_checkpoint, lambda p: load_supernet_from_bytes(checkpoint_to_bytes(p))):
        with pytest.raises(CheckpointError, match=r"model\.safetensors'? is not the file .*meta\.json'? describes.*sha256"):
            load(folder)
    _damage(folder / "optimizer.pt", size=16)
    with pytest.raises(CheckpointError, match=r"optimizer\.pt is not the file"):
        load_training_state(folder)


def test_a_damaged_checkpoint_fails_the_cli_before_ray(tmp_path, capsys, monkeypatch):
    folder = save_supernet_checkpoint(tmp_path / "ckpt", make_supernet(0, num_classes=10, **TINY),
                                      {"num_classes": 10, "dataset": "digits"})
    _damage(folder / "model.safetensors")
    monkeypatch.setattr(raynas, "ensure_ray", lambda *a, **k: pytest.fail("Ray started for a damaged checkpoint"))
    assert main(["search", "--checkpoint", str(folder), "-n", "4", "--output", str(tmp_path / "out")]) == 2
    assert "model.safetensors is not the file" in capsys.readouterr().err


def test_a_damaged_predictor_is_refused(tmp_path):
    space = raynas.create_space("synthetic", num_layers=4, num_choices=3, seed=1)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(30)]
    folder = make_predictor("gbt", space, n_estimators=5).fit(archs, [space.score(a) for a in archs]).save(tmp_path / "p")
    load_predictor(folder)
    _damage(folder / "arrays.safetensors", size=32)
    with pytest.raises(CheckpointError, match=r"arrays\.safetensors is not the file .*predictor\.json"):
        load_predictor(folder)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    ds = digits16()
    with single_threaded():
        net = trained_supernet()
        metrics = WeightInheritedEvaluator.from_dataset(net, ds, calib_batches=3, batch_size=64).evaluate([ARCH])[0]
        static = net.export(ARCH)
    return save_exported(tmp_path_factory.mktemp("export") / "best", static, space=net.space, arch=ARCH,
                         num_classes=10, mean=ds.mean, std=ds.std, metrics=metrics, dataset="digits",
                         image_size=TRAINED_IMAGE_SIZE, evaluation={"split": "val", "seed": 0}), metrics


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_verify_exported_reproduces_the_recorded_accuracy(exported):
    path, metrics = exported
    with single_threaded():
        assert verify_exported(path) == pytest.approx(metrics["accuracy"], abs=1e-9)


@pytest.mark.parametrize("edit, value", [("input_resolution", 8), ("mean", [0.0, 0.0, 0.0]), ("std", [1.0, 1.0, 1.0])])
def test_verify_exported_catches_changed_preprocessing(exported, tmp_path, edit, value):
    path, metrics = exported
    changed = _copy(path, tmp_path / "changed")
    config = json.loads((changed / "config.json").read_text())
    if edit == "input_resolution":
        config[edit] = value
    else:
        config["normalization"][edit] = value
    (changed / "config.json").write_text(json.dumps(config))
    with single_threaded(), pytest.raises(CheckpointError, match=r"records \d+\.\d\d% \(tolerance 0\.5 points\)"):
        verify_exported(changed)


def test_damaged_export_weights_are_refused(exported, tmp_path):
    path, _ = exported
    damaged = _copy(path, tmp_path / "damaged")
    _damage(damaged / "model.safetensors", size=256)
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not the file .*config\.json"):
        load_exported(damaged)
    with pytest.raises(CheckpointError, match="is not the file"):
        verify_exported(damaged)


def test_a_huge_arch_is_not_echoed_whole(tmp_path, capsys):
    big = tmp_path / "arch.json"
    big.write_text(json.dumps({"w1": list(range(300_000)), "w2": 8}))   # ~2 MB
    folder = save_supernet_checkpoint(tmp_path / "ckpt", make_supernet(0, num_classes=10, **TINY),
                                      {"num_classes": 10, "dataset": "digits"})
    assert main(["export", "--checkpoint", str(folder), "--arch", str(big), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "w1" in err and len(err) < 2000 and "characters" in err
