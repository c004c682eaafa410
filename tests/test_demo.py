"""`raynas demo` end to end on a few steps: the supernet and its largest network trained alone
side by side, the search, the export, and one table that puts them next to each other."""
from __future__ import annotations

import json

import pytest


def test_demo_prints_the_subnets_next_to_the_network_trained_alone(ray_session, tmp_path, capsys):
    from raynas.cli.main import main

    assert main(["demo", "--output", str(tmp_path), "--epochs", "0.5", "--num-samples", "4",
                 "--actors", "1"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "demo" / "demo.json").read_text())
    rows = {row.pop("network"): row for row in summary["rows"]}
    assert list(rows) == ["largest subnet", "smallest subnet", "best searched subnet", "largest network alone"]
    for name, row in rows.items():
        assert f"{row['accuracy']:8.2f}%" in out and 0 <= row["accuracy"] <= 100
    best = rows["best searched subnet"]
    assert best["exported"] == pytest.approx(best["accuracy"], abs=1e-9)  # the files reproduce it
    assert best["macs"] <= summary["macs_limit"]
    assert rows["largest network alone"]["macs"] == rows["largest subnet"]["macs"]
    # one calibration everywhere: the whole calibration split of the training run's digits
    assert summary["evaluation"]["calib_images"] == 250
    assert summary["evaluation"]["data_options"] == {"image_size": 16}
    assert summary["supernet"]["steps"] == 9 and summary["alone"]["steps"] >= 9  # a cheaper step
    assert (tmp_path / "demo" / "best_subnet" / "model.safetensors").is_file()
    assert "sandwich rule, labels for the first 50% of the steps, then in-place distillation" in out


def test_demo_refuses_bad_options_before_starting_ray(capsys):
    from raynas.cli.main import main

    assert main(["demo", "--macs-fraction", "1.5"]) != 0
    assert "--macs-fraction" in capsys.readouterr().err
