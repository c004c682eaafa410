"""Exit codes that tell the truth: every failure, interruption or shortfall of ``raynas search``
exits non-zero with one line naming the problem and the fix, and bad input is refused before
Ray or a pool start (2: bad input; 1: the search ran and failed; 130: interrupted)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import raynas
import raynas.runtime
from raynas.arch import canonical_json
from raynas.checkpoint import save_supernet_checkpoint
from raynas.cli.main import main
from raynas.ledger import JOURNAL_FILE
from conftest import shared_data_path
from tiny_supernet import make_supernet

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SYNTHETIC = dict(num_layers=3, num_choices=3, seed=1)   # 27 archs
NB201 = "nb201/nb201_cifar10.csv"


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if anything starts (or joins) Ray: the input must be refused before."""
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the input was checked")

    import raynas.tuner  # imported now, so that its own name for ensure_ray is the one patched

    for module in (raynas, raynas.runtime, raynas.tuner):
        monkeypatch.setattr(module, "ensure_ray", refuse)


def _synthetic_table(path: Path, keep=lambda i: True, bogus_keys: bool = False, options=SYNTHETIC) -> Path:
    space = raynas.create_space("synthetic", **options)
    archs = [a for i, a in enumerate(space.enumerate()) if keep(i)]
    keys = [f"not-an-arch-{i}" if bogus_keys else canonical_json(a) for i, a in enumerate(archs)]
    pd.DataFrame({"arch_str": keys, "acc": [space.score(a) for a in archs]}).to_csv(path, index=False)
    return path


def _search(table: Path, out: Path, *extra: str, options=SYNTHETIC):
    return ["search", "--space", "synthetic", *sum((["-o", f"{k}={v}"] for k, v in options.items()), []),
            "--table", str(table), "--table-metric", "accuracy=acc", "--output", str(out), "--batch-size", "4",
            *extra]


def _one_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ---------------------------------------------------------------------------- refused before Ray
def test_a_misspelled_table_column_is_refused_before_ray(no_ray, tmp_path, capsys):
    shared = shared_data_path(NB201)
    assert main(["search", "--space", "nb201", "--table", str(shared), "--table-metric", "accuracy=c10_valid_12ep",
                 "-n", "10", "--output", str(tmp_path)]) == 2
    _one_error(capsys, "'c10_valid_12ep'", "does not exist", "c10valid_valid_12ep")   # lists the columns
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("extra, needle", [
    (["--objective", "accuracy:max:min"], "must be one metric name"),
    (["--objective", "latency_ms"], "not a metric this search reports"),
    (["--constraint", "params<=1"], "no architecture of space"),
    (["--constraint", "flops <= many"], "cannot read constraint"),
    (["--strategy", "evolution", "--strategy-option", "population_size=x"], "bad options for strategy"),
    (["--strategy", "evolushun"], "unknown strategy"),
    (["--max-failures", "150%"], "--max-failures"),
    (["--name", "../../x"], "not a plain folder name"),
    (["-n", "0"], "num_samples"),
])
def test_bad_options_are_refused_before_ray(no_ray, tmp_path, capsys, extra, needle):
    table = _synthetic_table(tmp_path / "t.csv")
    assert main(_search(table, tmp_path / "out", "-n", "5", *extra)) == 2
    _one_error(capsys, needle)
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_for_other_classes_is_refused_before_ray(no_ray, tmp_path, capsys):
    checkpoint = save_supernet_checkpoint(tmp_path / "ckpt", make_supernet(0, num_classes=3, w1=(4,), w2=(8,)),
                                          {"num_classes": 3, "dataset": "digits"})
    assert main(["search", "--checkpoint", str(checkpoint), "-n", "4", "--output", str(tmp_path / "out")]) == 2
    _one_error(capsys, "trained for 3 classes", "has 10")


# ---------------------------------------------------------------------------- ran, and failed
def test_every_arch_failing_exits_1(ray_session, tmp_path, capsys):
    table = _synthetic_table(tmp_path / "t.csv", bogus_keys=True)
    assert main(_search(table, tmp_path / "out", "-n", "8", "--name", "all-failed")) == 1
    _one_error(capsys, "every arch failed (8 of 8)", "is not in table")
    assert len(raynas.SearchResult.load(tmp_path / "out" / "all-failed").df) == 8   # the record is kept


def test_more_failures_than_allowed_exit_1(ray_session, tmp_path, capsys):
    table = _synthetic_table(tmp_path / "t.csv", keep=lambda i: i % 2 == 0)   # half the archs are missing
    assert main(_search(table, tmp_path / "out", "-n", "12", "--strategy", "random", "--name", "half")) == 1
    _one_error(capsys, "archs failed", "> 10%, --max-failures", "is not in table")
    assert main(_search(table, tmp_path / "out", "-n", "12", "--strategy", "random", "--name", "half",
                        "--max-failures", "90%", "--overwrite")) == 0


def test_fewer_archs_than_asked_exit_1(ray_session, tmp_path, capsys):
    table = _synthetic_table(tmp_path / "t.csv")
    assert main(_search(table, tmp_path / "out", "-n", "40", "--strategy", "grid", "--name", "small")) == 1
    _one_error(capsys, "only 27 of 40 archs were evaluated", "smaller than the budget")


# ---------------------------------------------------------------------------- interrupted
def test_sigint_exits_130_says_interrupted_and_how_to_resume(ray_session, tmp_path):
    larger = dict(num_layers=6, num_choices=3, seed=1)   # 729 archs
    table = _synthetic_table(tmp_path / "t.csv", options=larger)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    # 300 trials of one arch (seconds of Tune's overhead): the search is still going when SIGINT comes
    driver = subprocess.Popen([sys.executable, "-m", "raynas.cli.main", *_search(
        table, out, "-n", "300", "--strategy", "random", "--batch-size", "1", "--name", "ctrl-c", "--num-cpus", "1",
        options=larger)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "ctrl-c" / JOURNAL_FILE
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and driver.poll() is None:
        if journal.exists() and journal.read_text().count('"event":"result"') >= 2:
            break
        time.sleep(0.2)
    assert driver.poll() is None, driver.communicate()
    driver.send_signal(signal.SIGINT)
    stdout, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert "interrupted" in last and f"--resume {out / 'ctrl-c'}" in last, stderr[-3000:]
    meta = json.loads((out / "ctrl-c" / "search.json").read_text())
    assert meta["status"] == "interrupted" and "finished_at" not in meta
    recorded = raynas.SearchResult.load(out / "ctrl-c").df
    assert 2 <= len(recorded) < 300 and recorded["error"].isna().all()
    # what the message says works: the search goes on from where it stopped, to its budget
    assert main(["search", "--resume", str(out / "ctrl-c")]) == 0
    resumed = raynas.SearchResult.load(out / "ctrl-c").df
    assert len(resumed) == 300 and resumed["arch_id"].is_unique
    assert resumed["arch_id"].tolist()[:len(recorded)] == recorded["arch_id"].tolist()
    assert json.loads((out / "ctrl-c" / "search.json").read_text())["status"] == "finished"


# ---------------------------------------------------------------------------- GPUs that are not there
def test_trials_asking_for_absent_gpus_are_refused_not_left_waiting(ray_session, tmp_path):
    """Tune would wait forever to place a trial that needs a GPU the local Ray lacks: refused at
    once, naming the fix, and nothing is written."""
    from raynas.differentiable.sweep import darts_search
    from raynas.errors import ConfigError

    assert ray_session.cluster_resources().get("GPU", 0) == 0
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"asks for 0.5 GPU but the Ray cluster has 0.*gpus_per_trial=0"):
        darts_search({"space": "nb201", "supernet_options": {"channels": 2, "cells_per_stage": 1}, "data": "digits",
                      "epochs": 1, "device": "cpu"}, gpus_per_trial=0.5, storage_path=tmp_path, name="gpu",
                     progress=False)
    space = raynas.create_space("synthetic", **SYNTHETIC)
    with pytest.raises(ConfigError, match="asks for 1 GPU"):
        raynas.search(space, lambda archs: [{"score": space.score(a)} for a in archs], num_samples=4,
                      objectives="score", trial_resources={"cpu": 0.5, "gpu": 1}, storage_path=tmp_path,
                      name="gpu-search", progress=False)
    assert time.monotonic() - started < 60
    assert not (tmp_path / "gpu").exists() and not (tmp_path / "gpu-search").exists()
