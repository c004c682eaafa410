"""The --smoke modes of the training benchmarks: each runs its whole pipeline on CPU in seconds
(digits, tiny spaces) and writes a report whose numbers are consistent."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _read(path):
    return json.loads(path.read_text())


def _correct_of(accuracy: float, images: int) -> bool:
    """Whether ``accuracy`` (percent) is what some number of correct answers out of ``images``
    gives: what an evaluation over a split reports, unlike e.g. a mean of per-batch accuracies."""
    correct = accuracy * images / 100
    return 0 <= correct <= images and abs(correct - round(correct)) < 1e-6


def test_supernet_ranking_smoke(tmp_path):
    from benchmarks import supernet_ranking
    from raynas import create_space
    from benchmarks.common import SMOKE_OFA

    out = tmp_path / "ranking.json"
    supernet_ranking.main(["--smoke", "--out", str(out)])
    report = _read(out)
    space = create_space("ofa_mbv3_cifar", **SMOKE_OFA)
    macs = [s["macs"] for s in report["subnets"]]
    assert len(macs) == 4 and macs == sorted(macs) and len(set(macs)) == 4
    assert report["subnets"][0]["arch"] == space.smallest()
    assert report["subnets"][-1]["arch"] == space.largest()
    # both accuracies are counts over the validation images, and the rank agreement is the one
    # these per-subnet accuracies give (recomputed here, not read back)
    from scipy.stats import kendalltau, spearmanr

    images = report["evaluation"]["val_images"]
    inherited = [s["inherited_accuracy"] for s in report["subnets"]]
    alone = [s["standalone_accuracy"] for s in report["subnets"]]
    assert images > 0 and all(_correct_of(a, images) for a in inherited + alone), (images, inherited, alone)
    for key, statistic in (("kendall_tau", kendalltau), ("spearman_rho", spearmanr)):
        value = statistic(inherited, alone).statistic
        assert report[key] == (pytest.approx(value) if math.isfinite(value) else None), (key, report[key], value)
    assert report["passed"] == (report["kendall_tau"] is not None and report["kendall_tau"] >= report["target_tau"])
    assert report["supernet"]["steps"] == round(0.05 * report["supernet"]["steps_per_epoch"])
    assert report["supernet"]["per_epoch"][-1]["step"] == report["supernet"]["steps"]
    assert all(s["standalone_per_epoch"][-1]["accuracy"] == s["standalone_accuracy"] for s in report["subnets"])
    assert report["evaluation"]["calib_images"] == 64 and report["bootstrap"] == 200
    assert set(report["stages_s"]) >= {"data_s", "supernet_train_s", "inherited_eval_s", "standalone_s"}

    # --inherited-from: the supernet column is read back (not retrained), the stand-alone column is
    # retrained with the same recipe, and the record names the file it read by its hash
    import hashlib
    import tempfile

    again = tmp_path / "again.json"
    supernet_ranking.main(["--smoke", "--out", str(again), "--inherited-from", str(out)])
    second = _read(again)
    assert [s["arch"] for s in second["subnets"]] == [s["arch"] for s in report["subnets"]]
    assert [s["inherited_accuracy"] for s in second["subnets"]] == inherited
    assert [s["standalone_accuracy"] for s in second["subnets"]] == alone  # deterministic on CPU
    assert second["inherited_from"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert "supernet_train_s" not in second["stages_s"] and second["supernet"] == report["supernet"]
    # a record of other settings is refused before any work: usage error, no scratch folder, no file
    scratch_before = set(Path(tempfile.gettempdir()).glob("raynas-ranking-*"))
    with pytest.raises(SystemExit) as refused:
        supernet_ranking.main(["--smoke", "--seed", "1", "--out", str(tmp_path / "no.json"),
                               "--inherited-from", str(out)])
    assert refused.value.code == 2 and not (tmp_path / "no.json").exists()
    assert set(Path(tempfile.gettempdir()).glob("raynas-ranking-*")) == scratch_before


def test_supernet_throughput_smoke(tmp_path):
    from benchmarks import supernet_throughput

    out = tmp_path / "throughput.json"
    supernet_throughput.main(["--smoke", "--out", str(out)])
    report = _read(out)
    timings = report["seconds_per_step"]
    statics = [k for k in timings if k.startswith("static:")]
    assert len(statics) == 3  # largest, one random, smallest (sandwich with num_random=1)
    assert all(t > 0 for t in timings.values())
    assert math.isclose(report["slicing_overhead"],
                        timings["supernet_largest"] / timings["static_largest"])
    assert math.isclose(report["sandwich_ratio"], timings["sandwich"] / sum(timings[k] for k in statics))
    assert [s["role"] for s in report["sandwich_subnets"]] == ["teacher", "student", "student"]
    assert all(s["slicing_overhead"] > 0 for s in report["sandwich_subnets"])


def test_vit_cifar_supernet_smoke(tmp_path):
    from benchmarks import vit_cifar_supernet

    out = tmp_path / "vit.json"
    vit_cifar_supernet.main(["--smoke", "--out", str(out)])
    report = _read(out)
    assert set(report["subnets"]) == {"largest", "smallest", "random0", "random1"}
    assert report["subnets"]["largest"]["params"] > report["subnets"]["smallest"]["params"]
    # the timm export of the largest subnet scores what the supernet scores (fp32, no BN)
    assert report["largest_exported_test"] == pytest.approx(report["subnets"]["largest"]["test"], abs=0.3)


def test_hybrid_modes_smoke(tmp_path):
    from benchmarks import hybrid_modes
    from raynas.arch import arch_id

    out = tmp_path / "hybrid.json"
    hybrid_modes.main(["--smoke", "--seeds", "0", "--standalone-steps", "2", "--out", str(out)])
    report = _read(out)
    runs = {r["mode"]: r for r in report["runs"]}
    assert set(runs) == {"convex", "uniform", "weighted"} and report["complete"]
    assert len({r["steps"] for r in runs.values()}) == 1  # equal steps per mode
    assert runs["uniform"]["alpha"]["final"] == [0.5, 0.5, 0.5]  # uniform sampling never trains α
    for mode in ("convex", "weighted"):
        assert runs[mode]["alpha"]["final"] != [0.5, 0.5, 0.5]
        assert runs[mode]["ops"] == ["conv" if a > 0.5 else "attn" for a in runs[mode]["alpha"]["final"]]
        # α logged every --log-every steps, from step 0 to the last
        assert [row[0] for row in runs[mode]["trajectory"]] == [0, 2, 4, 6]
    assert len(runs["uniform"]["candidates_val"]) == 2
    # each distinct derived arch trained alone once; the summary reads the accuracies back
    assert set(report["standalone"]) == {arch_id(r["arch"]) for r in runs.values()}
    assert all(0 <= a["test"] <= 100 and a["steps"] == 2 for a in report["standalone"].values())
    for mode, summary in report["summary"].items():
        assert summary["standalone_test"] == [report["standalone"][arch_id(runs[mode]["arch"])]["test"]]
    # uniform sampling picks the best of its random candidates by validation accuracy
    assert runs["uniform"]["inherited"]["val"] == max(runs["uniform"]["candidates_val"])
    from raynas.data import load_dataset

    images = len(load_dataset(report["data"], seed=0, image_size=report["image_size"]).split("val"))
    accuracies = ([a["val"] for a in report["standalone"].values()]
                  + [r["inherited"]["val"] for r in runs.values()])
    assert all(_correct_of(a, images) for a in accuracies), (images, accuracies)
    assert (tmp_path / "hybrid_alpha.png").stat().st_size > 1000
    lines = (tmp_path / "hybrid_alpha.csv").read_text().splitlines()
    assert lines[0] == "mode,seed,step,layer,alpha" and len(lines) == 1 + 3 * 4 * 3


def test_hybrid_alpha_summary_reads_convergence_from_the_trajectory():
    from benchmarks.hybrid_modes import alpha_summary

    steps = list(range(0, 101, 10))
    settles_high = [0.5, 0.7, 0.85, 0.93, 0.88, 0.95, 0.97, 0.98, 0.98, 0.985, 0.99]
    wanders = [0.5, 0.6, 0.4, 0.55, 0.45, 0.6, 0.4, 0.62, 0.38, 0.6, 0.45]
    summary = alpha_summary([[s, a, b] for s, a, b in zip(steps, settles_high, wanders)])
    assert summary["decided"] == [True, False] and summary["settled"] == [True, False]
    assert summary["decided_at_step"] == [50, None]   # left the band at step 40, back for good at 50
    assert summary["converged_layers"] == 1 and summary["layers"] == 2
    assert summary["last_quarter_range"][1] == pytest.approx(0.22)


def test_rank_agreement_with_bootstrap_intervals():
    from scipy.stats import kendalltau

    from benchmarks.supernet_ranking import rank_agreement

    same = rank_agreement([1, 2, 3, 4, 5], [10, 20, 30, 40, 50], 300, seed=0)
    assert same["kendall_tau"] == pytest.approx(1.0) and same["kendall_tau_ci95"] == pytest.approx([1.0, 1.0])
    assert same["spearman_rho"] == pytest.approx(1.0)
    a = [0.1, 0.5, 0.2, 0.9, 0.7, 0.4, 0.3, 0.8]
    b = [1, 3, 5, 8, 6, 2, 4, 7]
    out = rank_agreement(a, b, 2000, seed=1)
    assert out["kendall_tau"] == pytest.approx(kendalltau(a, b).statistic)
    lo, hi = out["kendall_tau_ci95"]
    assert -1 <= lo < out["kendall_tau"] < hi <= 1
    assert out["bootstrap_used"] <= 2000 and out == rank_agreement(a, b, 2000, seed=1)  # seeded
    assert rank_agreement([1, 1, 1], [1, 2, 3], 50, seed=0)["kendall_tau"] is None  # one side ties


def test_ranking_subnets_cover_the_macs_range_evenly():
    """Uniform samples bunch in the middle of the MACs range; the picks must not."""
    from benchmarks.supernet_ranking import pick_subnets
    from raynas import create_space

    space = create_space("ofa_mbv3_cifar", width_mult=0.5, resolutions=[12, 14, 16],
                         stage_strides=[2, 2, 2, 1, 2])
    archs = pick_subnets(space, 13, seed=0, pool=600)
    macs = [space.cost(a)["macs"] for a in archs]
    step = (macs[-1] - macs[0]) / 12
    assert archs[0] == space.smallest() and archs[-1] == space.largest()
    gaps = [b - a for a, b in zip(macs, macs[1:])]
    assert min(gaps) > 0.5 * step and max(gaps) < 1.5 * step, [round(g / step, 2) for g in gaps]


def test_supernet_convergence_smoke(tmp_path):
    from benchmarks import supernet_convergence

    out = tmp_path / "convergence.json"
    supernet_convergence.main(["--smoke", "--out", str(out)])
    report = _read(out)
    steps, timed = report["protocols"]["steps"], report["protocols"]["time"]
    # equal steps: every run trains the recipe's steps; each variant is paired with a stand-alone run
    runs = {name: run["seeds"]["0"] for name, run in steps["runs"].items()}
    assert {r["steps"] for r in runs.values()} == {report["dataset_sizes"]["train"] // 256}
    assert steps["pairs"] == {"issue": "alone:issue", "random0": "alone:random0"}
    for name, run in runs.items():
        assert [r["step"] for r in run["per_epoch"]] == sorted({r["step"] for r in run["per_epoch"]})
        assert run["per_epoch"][-1]["step"] == run["steps"]
        assert all(r["train_loss"] is not None for r in run["per_epoch"])
        if name in steps["pairs"]:
            gap = runs[steps["pairs"][name]]["final"]["accuracy"] - run["final"]["largest"]
            assert steps["summary"][name]["gap_to_alone"] == pytest.approx(gap, abs=0.01)
    # equal time: steps in inverse proportion to the probed seconds per step
    per_step = timed["probes"][0]["seconds_per_step"]
    for name, run in timed["runs"].items():
        expected = max(1, round(timed["reference_steps"] * per_step["issue"] / per_step[name]))
        assert run["seeds"]["0"]["steps"] == expected
    assert timed["runs"]["issue"]["seeds"]["0"]["steps"] == timed["reference_steps"]

    first = tmp_path / "first.json"
    first.write_text(out.read_text())
    # --append adds a seed without retraining what is there; another setting is refused
    supernet_convergence.main(["--smoke", "--out", str(out), "--append", "--protocols", "steps",
                               "--seeds", "0,1", "--variants", "random0"])
    again = _read(out)["protocols"]["steps"]
    # the same seed trained in another process and merged in gives the same record
    seed1 = tmp_path / "seed1.json"
    supernet_convergence.main(["--smoke", "--out", str(seed1), "--protocols", "steps", "--seeds", "1",
                               "--variants", "random0"])
    merged = tmp_path / "merged.json"
    supernet_convergence.main(["--merge", str(first), str(seed1), "--out", str(merged)])

    def accuracies(summary):   # wall times differ between the two trainings of seed 1
        return {name: {k: v for k, v in row.items() if k != "train_seconds"} for name, row in summary.items()}

    merged_steps = _read(merged)["protocols"]["steps"]
    assert accuracies(merged_steps["summary"]) == accuracies(again["summary"])
    assert merged_steps["summary"]["random0"]["seeds"] == ["0", "1"]
    assert merged_steps["runs"]["issue"] == steps["runs"]["issue"]
    with pytest.raises(SystemExit):   # never over a file that exists
        supernet_convergence.main(["--merge", str(first), str(seed1), "--out", str(merged)])
    other = tmp_path / "other_split.json"
    other.write_text(json.dumps(dict(_read(seed1), data_seed=9)))
    with pytest.raises(SystemExit):   # another train/val split
        supernet_convergence.main(["--merge", str(first), str(other), "--out", str(tmp_path / "no.json")])
    assert not (tmp_path / "no.json").exists()
    assert again["runs"]["issue"] == steps["runs"]["issue"]
    assert again["runs"]["random0"]["seeds"]["0"] == steps["runs"]["random0"]["seeds"]["0"]
    assert set(again["runs"]["random0"]["seeds"]) == {"0", "1"}
    assert again["summary"]["random0"]["seeds"] == ["0", "1"]
    with pytest.raises(SystemExit):
        supernet_convergence.main(["--smoke", "--out", str(out), "--append", "--calib-images", "100"])


def test_recorded_ranking_runs_recompute_from_their_subnets():
    """Every recorded OFA ranking run (benchmarks/results/supernet_ranking_*.json): its headline
    tau, rho and pass/fail are what its per-subnet accuracies give, and each stand-alone accuracy
    is the last point of that net's per-epoch curve."""
    from scipy.stats import kendalltau, spearmanr

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    records = sorted(results.glob("supernet_ranking_*.json"))
    assert records, "no recorded ranking run"
    for path in records:
        report = _read(path)
        inherited = [s["inherited_accuracy"] for s in report["subnets"]]
        alone = [s["standalone_accuracy"] for s in report["subnets"]]
        assert report["kendall_tau"] == pytest.approx(kendalltau(inherited, alone).statistic), path.name
        assert report["spearman_rho"] == pytest.approx(spearmanr(inherited, alone).statistic), path.name
        assert report["passed"] == (report["kendall_tau"] >= report["target_tau"]), path.name
        low, high = report["kendall_tau_ci95"]
        assert low <= report["kendall_tau"] <= high, path.name
        for subnet in report["subnets"]:
            curve = subnet["standalone_per_epoch"]
            if curve:  # the oldest record kept only the final accuracy
                assert curve[-1]["accuracy"] == subnet["standalone_accuracy"], (path.name, subnet["arch_id"])
