"""Supernet checkpoints: bit-exact round trips (directory and bytes), safe loading of training
state, and one CheckpointError naming the file for every kind of damage."""
from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch

from raynas import CheckpointError
from raynas.checkpoint import (checkpoint_to_bytes, load_supernet_checkpoint,
                               load_supernet_from_bytes, load_training_state, read_checkpoint_meta,
                               save_supernet_checkpoint)
from tiny_supernet import SPACE_NAME, make_supernet

SPACE = {"w1": (4, 8), "w2": (8, 12), "resolutions": (8,), "image_size": 8}
ARCH = {"w1": 4, "w2": 12, "resolution": 8}


def _trained(steps=3):
    net = make_supernet(3, num_classes=5, **SPACE)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for i in range(steps):
        net.activate({"w1": (4, 8)[i % 2], "w2": 12, "resolution": 8})
        loss = net(torch.randn(6, 3, 8, 8, generator=gen)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, opt


def _save(path, net, opt=None, **extra):
    meta = {"num_classes": 5, "dataset": "digits", "epoch": 2, "step": 40,
            "config": {"lr": 0.1, "strategy": "sandwich"}}
    return save_supernet_checkpoint(path, net, meta, optimizer_state=opt.state_dict() if opt else None,
                                    **extra)


def _outputs(net):
    net.activate(ARCH)
    net.eval()
    with torch.no_grad():
        return net(torch.linspace(-2, 2, 2 * 3 * 8 * 8).view(2, 3, 8, 8))


def test_round_trip_is_bit_exact(tmp_path):
    net, opt = _trained()
    extra = {"global_step": 40, "sampler": {"phase": 1, "counts": [3, 4]}, "rng": torch.arange(4)}
    path = _save(tmp_path / "ckpt", net, opt, extra_state=extra)
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.safetensors",
                                                     "optimizer.pt", "trainer_state.pt"]
    loaded, meta = load_supernet_checkpoint(path)
    original = net.state_dict()
    assert set(loaded.state_dict()) == set(original)
    for key, value in loaded.state_dict().items():
        assert value.dtype == original[key].dtype and torch.equal(value, original[key]), key
    assert torch.equal(_outputs(loaded), _outputs(net))
    assert meta["space"] == net.space.spec() and meta["space"]["name"] == SPACE_NAME
    assert (meta["num_classes"], meta["epoch"], meta["step"], meta["dataset"]) == (5, 2, 40, "digits")
    assert meta["config"]["strategy"] == "sandwich" and read_checkpoint_meta(path) == meta

    state = load_training_state(path)
    assert state["extra_state"]["sampler"] == extra["sampler"]
    assert torch.equal(state["extra_state"]["rng"], extra["rng"])
    opt2 = torch.optim.SGD(loaded.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(state["optimizer_state"])
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])


def test_bytes_round_trip_through_pickle(tmp_path):
    net, opt = _trained()
    path = _save(tmp_path / "ckpt", net, opt)
    blobs = pickle.loads(pickle.dumps(checkpoint_to_bytes(path)))  # what Ray's object store does
    assert set(blobs) == {"meta.json", "model.safetensors", "optimizer.pt"}
    shutil.rmtree(path)  # no filesystem needed on the receiving side
    loaded, meta = load_supernet_from_bytes(blobs)
    assert torch.equal(_outputs(loaded), _outputs(net)) and meta["step"] == 40
    assert load_training_state(blobs)["extra_state"] is None


def test_save_replaces_atomically_and_refuses_unsafe_state(tmp_path):
    net, opt = _trained(2)
    path = _save(tmp_path / "ckpt", net, opt)
    newer, _ = _trained(4)
    _save(path, newer)
    assert torch.equal(_outputs(load_supernet_checkpoint(path)[0]), _outputs(newer))
    assert not (path / "optimizer.pt").exists()  # the whole directory was replaced

    with pytest.raises(CheckpointError, match="extra_state holds objects that safe loading"):
        _save(path, net, extra_state={"obj": _NoClasses(net)})
    with pytest.raises(CheckpointError, match="extra_state cannot be saved"):
        _save(path, net, extra_state={"fn": lambda: 0})
    with pytest.raises(CheckpointError, match="JSON-able"):
        save_supernet_checkpoint(path, net, {"num_classes": 5, "bad": {1, 2}})
    with pytest.raises(CheckpointError, match="num_classes"):
        save_supernet_checkpoint(path, _NoClasses(net), {})
    assert torch.equal(_outputs(load_supernet_checkpoint(path)[0]), _outputs(newer))  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary leftovers


class _NoClasses:
    """A supernet-like object without num_classes (meta must then give it)."""

    def __init__(self, net):
        self.space = net.space


def _damage(path, name, how):
    target = path / name
    if how == "delete":
        target.unlink()
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "truncate":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        target.write_bytes(b"\x00\xffnot a valid file" * 50)
    else:
        target.write_text(how)  # replacement text


CASES = [
    ("model.safetensors", "delete", r"model\.safetensors is missing"),
    ("model.safetensors", "empty", r"model\.safetensors is empty"),
    # a truncated or rewritten file no longer has the sha256 meta.json records for it
    ("model.safetensors", "truncate", r"model\.safetensors is not the file .*meta\.json describes: its sha256"),
    ("model.safetensors", "garbage", r"model\.safetensors is not the file .*meta\.json describes: its sha256"),
    ("meta.json", "delete", r"meta\.json is missing"),
    ("meta.json", "empty", r"meta\.json is empty"),
    ("meta.json", "{not json", r"meta\.json is not valid JSON"),
    ("meta.json", "[1, 2]", r"meta\.json must hold a JSON object"),
    ("meta.json", '{"num_classes": 5}', r"meta\.json lacks space"),
    ("meta.json", '{"num_classes": 5, "space": {"name": "no_such_space"}}',
     r"cannot rebuild the supernet described by .*meta\.json.*unknown search space 'no_such_space'"),
    ("meta.json", '{"num_classes": 5, "space": {"name": "synthetic", "options": {}}}',
     r"meta\.json.*has no weight-sharing supernet"),
]


@pytest.mark.parametrize("name,how,message", CASES, ids=[f"{n}-{h[:12]}" for n, h, _ in CASES])
def test_each_corruption_is_one_checkpoint_error(tmp_path, name, how, message):
    net, opt = _trained(1)
    path = _save(tmp_path / "ckpt", net, opt)
    _damage(path, name, how)
    with pytest.raises(CheckpointError, match=message):
        load_supernet_checkpoint(path)
    if name == "model.safetensors" and how != "delete":
        blobs = {p.name: p.read_bytes() for p in path.iterdir()}  # damaged in transit
        with pytest.raises(CheckpointError, match=r"blob 'model\.safetensors'"):
            load_supernet_from_bytes(blobs)


def test_weights_for_another_shape_or_space(tmp_path):
    net, _ = _trained(1)
    path = _save(tmp_path / "ckpt", net)
    meta = json.loads((path / "meta.json").read_text())
    meta["space"]["options"]["w1"] = [4, 16]  # a wider supernet: conv shapes differ
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not fit .* shape mismatches "
                                              r"\(e\.g\. conv1\.weight: file \(8, 3, 3, 3\) vs model \(16, 3, 3, 3\)"):
        load_supernet_checkpoint(path)
    meta["space"]["options"]["w1"] = [4, 8]
    meta["num_classes"] = 7
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"fc\.weight: file \(5, 12\) vs model \(7, 12\)"):
        load_supernet_checkpoint(path)

    from safetensors.torch import save_file
    save_file({"other.weight": torch.zeros(2)}, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not the file .*meta\.json describes"):
        load_supernet_checkpoint(path)
    del meta["files"]   # as a checkpoint written before raynas recorded digests: the tensors are checked
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"missing tensors .*unexpected tensors \(e\.g\. other\.weight"):
        load_supernet_checkpoint(path)


def test_missing_directory_and_bad_training_state(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_supernet_checkpoint(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file, not a directory"):
        checkpoint_to_bytes(tmp_path / "file")
    net, opt = _trained(1)
    path = _save(tmp_path / "ckpt", net, opt)
    _damage(path, "optimizer.pt", "truncate")
    with pytest.raises(CheckpointError, match=r"optimizer\.pt is not the file .*meta\.json describes"):
        load_training_state(path)
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]   # as a checkpoint written before raynas recorded digests: the file is parsed
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"optimizer\.pt is truncated, corrupt"):
        load_training_state(path)
    # a pickle that would run code is refused by weights_only loading
    _Evil.marker = tmp_path / "evil-ran"
    torch.save({"x": _Evil()}, path / "optimizer.pt")
    with pytest.raises(CheckpointError, match=r"optimizer\.pt .*safe loading refuses"):
        load_training_state(path)
    assert not (tmp_path / "evil-ran").exists()


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, (f"touch {_Evil.marker}",))
