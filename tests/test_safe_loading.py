"""Nothing a user can receive is executed on load: a payload planted in each file format
(checkpoint meta.json, predictor.json, export config.json) never runs, and the error says why."""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import raynas
from raynas import CheckpointError
from raynas.checkpoint import load_supernet_checkpoint, save_supernet_checkpoint
from raynas.errors import RaynasError, UnknownSpaceError
from raynas.export import load_exported, save_exported
from raynas.predictors import load_predictor, make_predictor
from tiny_supernet import SPACE_NAME, make_supernet

TINY = {"w1": (4, 8), "w2": (8, 12), "image_size": 8}


class Payload:
    """A module planted beside an artifact (and on ``sys.path``, as the current directory is
    under ``python -m``, notebooks and pytest): importing it writes a marker file."""

    def __init__(self, folder: Path) -> None:
        self.name = f"raynas_payload_{uuid.uuid4().hex[:8]}"
        self.marker = folder / f"{self.name}.ran"
        (folder / f"{self.name}.py").write_text(
            f"open({str(self.marker)!r}, 'w').write('pwned')\n"
            "from raynas import register_space\n"
            "from spaces.synthetic import SyntheticSpace\n"
            f"register_space('payload_space')(SyntheticSpace)\n")
        self.folder = folder

    def __enter__(self) -> "Payload":
        sys.path.insert(0, str(self.folder))
        return self

    def __exit__(self, *exc) -> None:
        sys.path.remove(str(self.folder))

    def assert_not_run(self) -> None:
        assert not self.marker.exists() and self.name not in sys.modules


def _plant(path: Path, key: str, payload: Payload, name: str = "payload_space") -> None:
    """Point the space of a JSON artifact at the payload module, as an attacker would."""
    data = json.loads(path.read_text())
    data[key] = {"name": name, "options": {}, "module": payload.name}
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("name", ["payload_space", SPACE_NAME])
def test_checkpoint_meta_never_imports_its_module(tmp_path, name):
    folder = tmp_path / "ckpt"
    save_supernet_checkpoint(folder, make_supernet(0, num_classes=3, **TINY), {"num_classes": 3})
    assert "module" not in json.loads((folder / "meta.json").read_text())["space"]
    with Payload(folder) as payload:
        _plant(folder / "meta.json", "space", payload, name)
        if name == "payload_space":
            with pytest.raises(CheckpointError, match="never imports from a file"):
                load_supernet_checkpoint(folder)
        else:
            # a registered name is resolved through the registry; the module field is ignored
            # (the tiny space's options differ from the planted empty ones: the error is a shape one)
            with pytest.raises(RaynasError):
                load_supernet_checkpoint(folder)
        payload.assert_not_run()


def test_predictor_json_never_imports_its_module(tmp_path):
    space = raynas.create_space("synthetic", num_layers=4, num_choices=3, seed=1)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(30)]
    folder = make_predictor("gbt", space, n_estimators=5).fit(archs, [space.score(a) for a in archs]) \
        .save(tmp_path / "pred")
    with Payload(folder) as payload:
        _plant(folder / "predictor.json", "space", payload)
        with pytest.raises(UnknownSpaceError, match="never imports from a file"):
            load_predictor(folder)
        payload.assert_not_run()


def test_export_config_never_imports_its_module(tmp_path):
    net = make_supernet(0, num_classes=3, **TINY)
    arch = {"w1": 4, "w2": 8}
    folder = save_exported(tmp_path / "export", net.export(arch), space=net.space, arch=arch, num_classes=3,
                           mean=[0.5] * 3, std=[0.25] * 3)
    with Payload(folder) as payload:
        _plant(folder / "config.json", "space", payload)
        with pytest.raises(CheckpointError, match="never imports from a file"):
            load_exported(folder)
        payload.assert_not_run()


def test_a_given_space_must_match_the_file(tmp_path):
    net = make_supernet(0, num_classes=3, **TINY)
    folder = save_supernet_checkpoint(tmp_path / "ckpt", net, {"num_classes": 3})
    loaded, _ = load_supernet_checkpoint(folder, space=net.space)
    assert loaded.space is net.space
    other = raynas.create_space(SPACE_NAME, w1=(4, 8), w2=(8, 16), image_size=8)
    with pytest.raises(CheckpointError, match="not for the given space"):
        load_supernet_checkpoint(folder, space=other)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, net.state_dict()[key])


def test_a_space_of_an_installed_entry_point_resolves_by_name(tmp_path, monkeypatch):
    """Third-party spaces come from installed packages' ``raynas.spaces`` entry points."""
    from raynas import registry

    site = tmp_path / "site"
    (site / "thirdparty_space_pkg").mkdir(parents=True)
    (site / "thirdparty_space_pkg" / "__init__.py").write_text(
        "from raynas import register_space\nfrom spaces.synthetic import SyntheticSpace\n"
        "register_space('thirdparty_synthetic')(SyntheticSpace)\n")
    info = site / "thirdparty_space_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-space-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[raynas.spaces]\nthirdparty = thirdparty_space_pkg\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry.SPACES, "_loaded", False)  # read the entry points again
    space = raynas.space_from_spec({"name": "thirdparty_synthetic", "options": {"num_layers": 3}})
    assert space.name == "thirdparty_synthetic" and space.spec() == {"name": "thirdparty_synthetic",
                                                                   "options": space.options}


# ---------------------------------------------------------------------------- experiment folders
class _OpensAFile:
    """Unpickling this creates ``path``: what a payload that runs code would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_resume_reads_no_pickle_of_the_experiment_folder(ray_session, tmp_path):
    """A search resumes from its JSON (search.json, the journal): Tune's tuner.pkl, its
    experiment and searcher state (where an Optuna study used to travel as a base64 pickle)
    are never read, so payloads planted in them never run."""
    import base64
    import pickle

    import pandas as pd

    from raynas.arch import canonical_json
    from raynas.cli.main import main

    space = raynas.create_space("synthetic", num_layers=3, num_choices=3, seed=1)
    archs = list(space.enumerate())
    table = tmp_path / "t.csv"
    pd.DataFrame({"arch_str": [canonical_json(a) for a in archs], "acc": [space.score(a) for a in archs]}) \
        .to_csv(table, index=False)
    exp = tmp_path / "out" / "exp"
    argv = ["search", "--space", "synthetic", "-o", "num_layers=3", "-o", "num_choices=3", "-o", "seed=1",
            "--table", str(table), "--table-metric", "accuracy=acc", "--strategy", "optuna:tpe", "-n", "12",
            "--batch-size", "3", "--output", str(tmp_path / "out"), "--name", "exp"]
    assert main(argv) == 0
    full = raynas.SearchResult.load(exp).df
    # the driver "died" after the 5th event it journaled: the folder holds that prefix
    journal = exp / "results.journal.jsonl"
    journal.write_text("".join(journal.read_text().splitlines(keepends=True)[:5]))
    (exp / "results.parquet").unlink()
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(_OpensAFile(marker))
    (exp / "tuner.pkl").write_bytes(payload)
    for state in exp.glob("searcher-state-*.pkl"):
        data = json.loads(state.read_text())
        data["strategy_state"]["optuna"] = base64.b64encode(payload).decode()
        state.write_text(json.dumps(data))
    for state in exp.glob("experiment_state-*.json"):
        state.write_text(json.dumps({"trial_data": [[payload.hex(), payload.hex()]], "runner_data": {}}))
    assert main(["search", "--resume", str(exp)]) == 0
    assert not marker.exists()
    resumed = raynas.SearchResult.load(exp).df
    assert resumed["arch_id"].tolist() == full["arch_id"].tolist()
    assert resumed["accuracy"].tolist() == full["accuracy"].tolist()
