"""Experiment folders: a plain name under the output folder, never clobbered unless asked,
and files readable by others exactly as the user's umask allows."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import raynas
from raynas.checkpoint import save_supernet_checkpoint
from raynas.cli.main import main
from raynas.errors import ConfigError
from raynas.experiments import ExperimentExistsError
from raynas.ledger import read_journal
from tiny_supernet import make_supernet

SPACE = dict(num_layers=6, num_choices=3, seed=2)


def _search(tmp_path, name="exp", num_samples=8, **kwargs):
    space = raynas.create_space("synthetic", **SPACE)
    return raynas.search(space, lambda a: {"score": space.score(a)}, strategy="random", num_samples=num_samples,
                         objectives="score", batch_size=2, name=name, storage_path=tmp_path, progress=False,
                         **kwargs)


@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/b", "", ".", "..", ".hidden", "x" * 300, "a\nb"])
def test_a_name_is_a_plain_folder_name(tmp_path, name):
    with pytest.raises(ConfigError, match="not a plain folder name"):
        _search(tmp_path / "out", name=name)
    assert not (tmp_path / "out").exists() and not Path("/abs").exists()


def test_an_existing_experiment_needs_resume_or_overwrite(ray_session, tmp_path):
    first = _search(tmp_path, num_samples=8)
    journal = (tmp_path / "exp" / "results.journal.jsonl").read_bytes()
    with pytest.raises(ExperimentExistsError, match="already exists .*--resume.*--overwrite"):
        _search(tmp_path, num_samples=4)
    assert (tmp_path / "exp" / "results.journal.jsonl").read_bytes() == journal   # untouched
    assert len(raynas.SearchResult.load(tmp_path / "exp").df) == len(first.df) == 8

    (tmp_path / "exp" / "left-by-the-old-run.txt").write_text("old")
    again = _search(tmp_path, num_samples=4, overwrite=True)
    assert len(again.df) == 4 and not (tmp_path / "exp" / "left-by-the-old-run.txt").exists()
    assert len([e for e in read_journal(tmp_path / "exp") if e["event"] == "result"]) == 2
    with pytest.raises(ConfigError, match="pass one"):
        _search(tmp_path, resume=True, overwrite=True)


def test_default_names_never_collide(ray_session, tmp_path):
    a = _search(tmp_path, name=None, num_samples=2)
    b = _search(tmp_path, name=None, num_samples=2)
    assert a.path != b.path and a.path.parent == b.path.parent == tmp_path.resolve()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_follow_the_users_umask(ray_session, tmp_path, umask):
    from raynas.reporting import write_search_artifacts

    old = os.umask(umask)
    try:
        result = _search(tmp_path, num_samples=4)
        write_search_artifacts(result, raynas.create_space("synthetic", **SPACE), quiet=True)
        checkpoint = save_supernet_checkpoint(tmp_path / "ckpt", make_supernet(0, num_classes=3,
                                                                               w1=(4,), w2=(8,)), {"num_classes": 3})
    finally:
        os.umask(old)
    for path in [tmp_path / "exp" / n for n in ("results.parquet", "best.json", "search.json")] + \
            [checkpoint / "meta.json", checkpoint / "model.safetensors"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o777 & ~umask


def test_cli_refuses_to_clobber_and_to_escape(ray_session, tmp_path, capsys):
    from conftest import shared_data_path

    table = shared_data_path("nb201/nb201_cifar10.csv")
    out = tmp_path / "out"
    argv = ["search", "--space", "nb201", "--table", str(table), "--table-metric", "accuracy=c10valid_valid_12ep",
            "-n", "16", "--output", str(out), "--name", "run"]
    assert main(argv) == 0
    rows = len(raynas.SearchResult.load(out / "run").df)
    assert rows == 16
    capsys.readouterr()
    assert main(argv[:-1] + ["run"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and err.count("error:") == 1
    assert len(raynas.SearchResult.load(out / "run").df) == rows
    assert main(argv + ["--overwrite", "-n", "8"]) == 0
    assert len(raynas.SearchResult.load(out / "run").df) == 8
    for name in ("../../escaped", str(tmp_path / "abs")):
        assert main(argv[:-1] + [name]) == 2
        assert "not a plain folder name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert json.loads((out / "run" / "search.json").read_text())["status"] == "finished"
