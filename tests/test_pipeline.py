"""The main job end to end on a tiny setting: train -> pool -> Tune search -> export -> reload."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import raynas
from raynas.export import export_subnet, load_exported
from raynas.reporting import write_search_artifacts
from trainables.supernet import train_supernet

TINY = {"width_mult": 0.25, "stage_strides": [2, 2, 2, 1, 2], "resolutions": [16, 24]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet")
    path, metrics = train_supernet({"space": "ofa_mbv3_cifar", "space_options": TINY, "data": "digits",
                                    "output": str(out), "epochs": 1, "batch_size": 32, "max_steps": 4,
                                    "eval_batch_size": 64, "cpu_threads": 1}, progress=False)
    assert 0.0 <= metrics["largest_accuracy"] <= 100.0
    return path


def test_search_on_the_pool_then_export_reproduces_accuracy(ray_session, checkpoint, tmp_path):
    space = raynas.create_space("ofa_mbv3_cifar", **TINY)
    limit = 0.7 * space.cost(space.largest())["macs"]
    with raynas.SupernetPool.from_checkpoint(str(checkpoint), batch_size=64) as pool:
        result = raynas.search(space, pool, strategy="evolution", num_samples=16,
                               constraints=[f"macs<={limit}"], objectives=["accuracy:max", "macs:min"],
                               strategy_options={"population_size": 6, "sample_size": 3},
                               name="pipe", storage_path=tmp_path, progress=False)
        health = pool.health()
    assert len(result.df) == 16 and result.df["arch_id"].is_unique and len(result.ok) == 16
    assert (result.df["macs"] <= limit).all()
    assert health["evaluated"] == 16 and health["alive"] == health["workers"]
    # each arch's own evaluation time (not its batch's average), and timestamps as timestamps
    saved = raynas.SearchResult.load(tmp_path / "pipe").df
    assert saved["eval_seconds"].nunique() == 16 and (saved["eval_seconds"] > 0).all()
    assert str(saved["finished_at"].dtype) == "datetime64[ns, UTC]"

    paths = write_search_artifacts(result, space, quiet=True)
    assert set(paths) == {"results", "best", "pareto", "front"}
    front = json.loads(paths["front"].read_text())
    assert front["front"] and all(m["arch_id"] == raynas.arch_id(m["arch"]) for m in front["front"])
    best = json.loads(paths["best"].read_text())
    assert best["arch_id"] == raynas.arch_id(best["arch"])

    # the exported subnet, recalibrated as the pool did, reports the accuracy the search saw ...
    export_dir, metrics = export_subnet(checkpoint, best["arch"], tmp_path / "best", batch_size=64)
    assert metrics["accuracy"] == pytest.approx(best["metrics"]["accuracy"], abs=1e-9)
    model, config = load_exported(export_dir)
    assert sum(p.numel() for p in model.parameters()) == int(best["metrics"]["params"])
    # ... and a new process rebuilds it from the two files alone and reproduces that accuracy
    code = ("import sys; from raynas.export import verify_exported; "
            "print(verify_exported(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, str(export_dir)], capture_output=True, text=True,
                         check=True)
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(metrics["accuracy"], abs=1e-9)


def test_training_report_pool_and_export_score_an_arch_alike(ray_session, tmp_path):
    """One evaluation setting everywhere: the trainer's final report, the pool and the export
    all take the training run's dataset options, split seed and BN-calibration size."""
    from raynas.export import verify_exported

    path, metrics = train_supernet({"space": "ofa_mbv3_cifar", "space_options": TINY, "data": "digits",
                                    "data_options": {"image_size": 16}, "seed": 3, "calib_images": 100,
                                    "eval_batch_size": 50, "output": str(tmp_path / "s"), "epochs": 1,
                                    "channels_last": True,
                                    "batch_size": 32, "max_steps": 6, "cpu_threads": 1}, progress=False)
    assert metrics["calib_images"] == 100
    space = raynas.create_space("ofa_mbv3_cifar", **TINY)
    with raynas.SupernetPool.from_checkpoint(str(path), num_actors=1) as pool:
        assert pool.evaluation == {"data": "digits", "seed": 3, "data_options": {"image_size": 16},
                                   "split": "val", "calib_images": 100, "batch_size": 50,
                                   "channels_last": True}
        largest, smallest = pool.evaluate([space.largest(), space.smallest()])
    assert largest["accuracy"] == metrics["largest_accuracy"]
    assert smallest["accuracy"] == metrics["smallest_accuracy"]
    export_dir, exported = export_subnet(path, space.largest(), tmp_path / "largest")
    assert exported["accuracy"] == metrics["largest_accuracy"]
    assert json.loads((export_dir / "config.json").read_text())["evaluation"] == pool.evaluation
    assert verify_exported(export_dir) == pytest.approx(exported["accuracy"], abs=1e-9)


def test_a_calibration_size_the_split_cannot_give_is_refused_in_one_line(checkpoint, tmp_path, capsys):
    from raynas.checkpoint import read_checkpoint_meta
    from raynas.cli.main import main
    from raynas.registry import space_from_spec

    arch = json.dumps(space_from_spec(read_checkpoint_meta(checkpoint)["space"]).smallest())
    for argv in (["search", "--checkpoint", str(checkpoint), "--calib-images", "251", "-n", "2",
                  "--output", str(tmp_path)],
                 ["export", "--checkpoint", str(checkpoint), "--arch", arch, "--output", str(tmp_path / "x"),
                  "--calib-images", "251"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "calib_images=251 but the calib split has 250 images" in err and err.count("error:") == 1
