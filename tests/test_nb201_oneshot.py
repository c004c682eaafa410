"""The single-path NB201 supernet: one weight set per (edge, op), exports equal to the active
subnet, isomorphism-aware serving, few-shot splitting, and the ranking-oriented samplers."""
from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch

from raynas import create_space
from raynas.checkpoint import load_supernet_checkpoint, read_checkpoint_meta
from raynas.errors import ConfigError
from raynas.rng import derive_rng
from raynas.training import make_sampling_strategy
from spaces.nb201 import EDGES, OP_NAMES, canonical_cell, nb201_unique_str
from spaces.nb201_oneshot import live_nodes
from trainables.supernet import SupernetTrainer, train_supernet
from raynas.training import SupernetTrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(channels=4, cells_per_stage=1, resolution=8)
# digits at 8x8: 1200 training images, 75 steps of 16 per epoch
TRAIN = dict(space="nb201", space_options=TINY, data="digits", data_options={"image_size": 8},
             epochs=0.08, batch_size=16, lr=0.05, device="cpu", sampler="uniform", cpu_threads=1,
             eval_batch_size=64, calib_images=64, checkpoint_every_steps=3, label_smoothing=0.0)
SKIP_BRANCH = {"edges": ["nor_conv_3x3", "none", "none", "skip_connect", "nor_conv_1x1", "none"]}


def _space(**options):
    return create_space("nb201", **{**TINY, **options})


def _trained(supernet, space, steps: int = 4, seed: int = 0):
    """A few SGD steps on random data: BN statistics and weights away from their init."""
    opt = torch.optim.SGD(supernet.parameters(), lr=0.1)
    supernet.train()
    for s in range(steps):
        supernet.activate(space.sample(derive_rng(seed, "t", s)))
        x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(s))
        opt.zero_grad()
        supernet(x).square().mean().backward()
        opt.step()
    return supernet


def _archs(space, n: int, seed: int = 1):
    fixed = [space.largest(), space.smallest(), SKIP_BRANCH,
             {"edges": ["none", "none", "none", "nor_conv_3x3", "none", "nor_conv_1x1"]}]
    return fixed + [space.sample(derive_rng(seed, "a", k)) for k in range(n)]


@pytest.mark.parametrize("options", [{}, {"iso_key": "unique_str"}, {"split_edge": 3}])
def test_export_equals_the_active_subnet_in_eval_mode(options):
    space = _space()
    torch.manual_seed(0)
    supernet = _trained(space.build_supernet(10, **options), space)
    if options.get("split_edge") is not None:
        supernet.split()
        _trained(supernet, space, seed=5)  # the sub-supernets drift apart
    supernet.eval()
    x = torch.randn(5, 3, 8, 8)
    for arch in _archs(space, 25):
        supernet.activate(arch)
        with torch.no_grad():
            expected = supernet(x)
            static = supernet.export(arch).eval()
            assert torch.equal(static(x), expected), arch


def test_one_weight_set_per_edge_and_op_and_only_the_chosen_ops_learn():
    space = _space()
    supernet = space.build_supernet(10)
    cell = supernet.bodies[0].cells[0]
    assert len(cell.edges) == len(EDGES)
    for edge in cell.edges:
        assert sorted(edge) == sorted(op for op in OP_NAMES if op != "none")
    # each conv of each edge is its own tensor
    ids = {id(edge[op][1].weight) for c in supernet.bodies[0].cells if hasattr(c, "edges")
           for edge in c.edges for op in ("nor_conv_1x1", "nor_conv_3x3")}
    assert len(ids) == 2 * len(EDGES) * 3  # 3 cells (one per stage) x 6 edges x 2 convs
    supernet.activate(SKIP_BRANCH)
    supernet(torch.randn(2, 3, 8, 8)).sum().backward()
    for c in supernet.bodies[0].cells:
        if not hasattr(c, "edges"):
            continue
        for e, edge in enumerate(c.edges):
            for op in ("nor_conv_1x1", "nor_conv_3x3"):
                has_grad = edge[op][1].weight.grad is not None
                assert has_grad == (SKIP_BRANCH["edges"][e] == op), (e, op)


def test_dead_nodes_are_skipped_but_zero_nodes_still_feed_convolutions():
    # node 1 feeds only `none` edges: dead; node 2 has only `none` inputs but feeds a conv
    edges = ["nor_conv_3x3", "none", "none", "skip_connect", "none", "nor_conv_1x1"]
    assert live_nodes(edges) == (True, False, True, True)
    assert live_nodes(["none"] * 6) == (False, False, False, True)
    space = _space()
    supernet = _trained(space.build_supernet(10), space).eval()
    arch = {"edges": edges}
    supernet.activate(arch)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(supernet(x), supernet.export(arch).eval()(x))


def _out(supernet, arch, x):
    supernet.activate(arch)
    with torch.no_grad():
        return supernet(x)


def test_iso_key_serves_isomorphic_cells_with_one_set_of_weights():
    space = _space()
    # node 1 = x, node 3 = op(3<-0)(x) + op(3<-1)(node 1): swapping those two ops is isomorphic
    a = {"edges": ["skip_connect", "none", "none", "nor_conv_3x3", "nor_conv_1x1", "none"]}
    b = {"edges": ["skip_connect", "none", "none", "nor_conv_1x1", "nor_conv_3x3", "none"]}
    c = {"edges": ["skip_connect", "none", "none", "nor_conv_3x3", "nor_conv_3x3", "none"]}
    assert nb201_unique_str(a) == nb201_unique_str(b) != nb201_unique_str(c)
    x = torch.randn(4, 3, 8, 8)
    torch.manual_seed(0)
    plain = _trained(space.build_supernet(10), space).eval()
    torch.manual_seed(0)
    iso = _trained(space.build_supernet(10, iso_key="unique_str"), space).eval()
    # without iso_key the two encodings of one class run different weights; with it, the same
    assert not torch.equal(_out(plain, a, x), _out(plain, b, x))
    assert torch.equal(_out(iso, a, x), _out(iso, b, x))
    assert not torch.equal(_out(iso, a, x), _out(iso, c, x))
    # activate returns the arch asked for (its cost is that arch's); the export is the served cell
    assert iso.activate(b) == b
    assert iso.export(b).edges == tuple(canonical_cell(b, "unique_str")["edges"])


def test_split_copies_weights_then_sub_supernets_train_apart():
    space = _space()
    torch.manual_seed(0)
    supernet = _trained(space.build_supernet(10, split_edge=0), space)
    assert supernet.body_index(["nor_conv_3x3"] * 6) == 0  # not split: copy 0 serves all
    x = torch.randn(4, 3, 8, 8)
    supernet.eval()
    archs = [{"edges": [op] + ["nor_conv_3x3"] * 5} for op in OP_NAMES]
    with torch.no_grad():
        before = [_out(supernet, a, x) for a in archs]
        assert supernet.split() is True and supernet.split() is False
        after = [_out(supernet, a, x) for a in archs]
    assert all(torch.equal(u, v) for u, v in zip(before, after)), "splitting changed an output"
    assert [supernet.body_index(a["edges"]) for a in archs] == list(range(len(OP_NAMES)))
    untouched = {k: v.clone() for k, v in supernet.bodies[1].state_dict().items()}
    supernet.train()
    supernet.activate(archs[3])
    supernet(x).sum().backward()
    assert supernet.bodies[1].cells[0].edges[1]["nor_conv_3x3"][1].weight.grad is None
    assert supernet.bodies[3].cells[0].edges[1]["nor_conv_3x3"][1].weight.grad is not None
    assert all(torch.equal(untouched[k], v) for k, v in supernet.bodies[1].state_dict().items())


def test_bad_supernet_options_name_the_problem():
    space = _space()
    with pytest.raises(ConfigError, match="iso_key"):
        space.build_supernet(10, iso_key="graph")
    with pytest.raises(ConfigError, match="split_edge"):
        space.build_supernet(10, split_edge=6)
    with pytest.raises(ConfigError, match="unknown supernet options"):
        space.build_supernet(10, width=3)
    with pytest.raises(ConfigError, match="split_edge"):
        space.build_supernet(10).split()


# ---------------------------------------------------------------------- samplers
def test_fair_sampling_trains_every_op_of_every_edge_once_per_step():
    space = _space()
    fair = make_sampling_strategy("fair")
    fair.bind(space)
    for step in range(5):
        tasks = fair.plan(space, step, seed=3)
        assert len(tasks) == len(OP_NAMES)
        for e in range(len(EDGES)):
            assert sorted(t.arch["edges"][e] for t in tasks) == sorted(OP_NAMES)
    assert fair.plan(space, 2, 3) == fair.plan(space, 2, 3)
    assert fair.plan(space, 2, 3) != fair.plan(space, 3, 3)
    assert len(make_sampling_strategy("fair", rounds=2).plan(space, 0, 0)) == 2 * len(OP_NAMES)


def test_isomorphic_sampling_draws_classes_uniformly():
    space = _space()
    iso = make_sampling_strategy("isomorphic")
    iso.bind(space)
    uniform = make_sampling_strategy("uniform")
    n = 4000
    drawn = [iso.plan(space, s, seed=0)[0].arch for s in range(n)]
    assert all(canonical_cell(a, "unique_str") == a for a in drawn)
    # the largest unique_str class holds 275 of the 15,625 encodings: uniform sampling draws it
    # about 70 times in 4,000, class-uniform sampling about 4000 / 6466 times
    big = "#+#+(0)@nor_conv_3x3"
    by_class = collections.Counter(nb201_unique_str(a) for a in drawn)
    plain = collections.Counter(nb201_unique_str(uniform.plan(space, s, 0)[0].arch) for s in range(n))
    assert plain[big] > 40 and by_class[big] <= 5
    assert len(by_class) > 0.45 * n  # nearly all draws are distinct classes (6,466 of them)
    with pytest.raises(ConfigError, match="representatives"):
        make_sampling_strategy("isomorphic").bind(create_space("ofa_mbv3_cifar"))


def test_few_shot_phases_split_halfway():
    few = make_sampling_strategy("few_shot", split_at=0.25)
    phases = few.phases(8, 0.1, 1.0)
    assert [p.name for p in phases] == ["one_shot", "few_shot"]
    assert [p.epochs for p in phases] == [2.0, 6.0]
    assert phases[1].split_supernet and phases[1].reset_optimizer and not phases[0].split_supernet
    with pytest.raises(ConfigError, match="split_at"):
        make_sampling_strategy("few_shot", split_at=1.0)
    with pytest.raises(ConfigError, match="itself"):
        make_sampling_strategy("few_shot", base="few_shot")


# ---------------------------------------------------------------------- training
def test_few_shot_training_splits_at_its_phase_and_resumes_exactly(tmp_path):
    config = dict(TRAIN, sampler="few_shot", sampler_options={"split_at": 0.5},
                  supernet_options={"split_edge": 0})
    full, _ = train_supernet(dict(config, output=str(tmp_path / "full")), progress=False)
    meta = read_checkpoint_meta(full)
    total = meta["total_steps"]
    split_events = [e for e in meta["events"] if e["event"] == "split"]
    assert len(split_events) == 1 and split_events[0]["step"] == total // 2
    model, _ = load_supernet_checkpoint(full)
    assert bool(model.is_split) and model.build_options == {"iso_key": None, "split_edge": 0}
    # sub-supernets trained apart after the split
    assert not torch.equal(model.bodies[0].classifier.weight, model.bodies[3].classifier.weight)
    # stop after the split, resume: the same weights as the uninterrupted run
    part, _ = train_supernet(dict(config, output=str(tmp_path / "part"), max_steps=total // 2 + 1),
                             progress=False)
    resumed, _ = train_supernet(None, resume=part, output=str(tmp_path / "resumed"),
                                max_steps=total, progress=False)
    a, b = load_supernet_checkpoint(full)[0].state_dict(), load_supernet_checkpoint(resumed)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_splitting_sampler_needs_a_splittable_supernet():
    with pytest.raises(ConfigError, match="split_edge"):
        SupernetTrainer(SupernetTrainConfig.from_any(dict(TRAIN, sampler="few_shot")))


def test_raynas_train_cli_trains_nb201_with_fair_sampling_and_the_pool_serves_it(tmp_path, ray_session):
    from raynas.cli.main import main
    from raynas.evaluators.weight_inherited import EvaluationSettings, WeightInheritedEvaluator
    from raynas.pool import SupernetPool

    config = tmp_path / "train.json"
    config.write_text(json.dumps({k: v for k, v in TRAIN.items() if k != "sampler"}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--sampler", "fair", "--output", str(out),
                 "--max-steps", "2"]) == 0
    checkpoint = out / "checkpoint"
    meta = read_checkpoint_meta(checkpoint)
    assert meta["step"] == 2 and meta["config"]["sampler"] == "fair"
    # the README's command line (options as flags), on digits
    assert main(["train", "--space", "nb201", "-o", "channels=4", "-o", "cells_per_stage=1",
                 "-o", "resolution=8", "--data", "digits", "--sampler", "isomorphic",
                 "--supernet-option", "iso_key=unique_str", "--epochs", "1", "--max-steps", "1",
                 "--device", "cpu", "--threads", "1", "--output", str(tmp_path / "readme")]) == 0
    iso_meta = read_checkpoint_meta(tmp_path / "readme" / "checkpoint")
    assert iso_meta["supernet_options"]["iso_key"] == "unique_str"
    assert iso_meta["config"]["space_options"] == {"channels": 4, "cells_per_stage": 1, "resolution": 8}
    space = _space()
    archs = _archs(space, 4)
    with SupernetPool.from_checkpoint(str(checkpoint), seed=0, calib_images=64, batch_size=64,
                                      num_actors=1, cpus_per_actor=1.0) as pool:
        pooled = pool.evaluate(archs)
    supernet, meta = load_supernet_checkpoint(checkpoint)
    # the pool evaluates as the training run did (its data options, memory format): so does the reference
    settings = EvaluationSettings.for_checkpoint(meta, seed=0, calib_images=64, batch_size=64)
    local = WeightInheritedEvaluator.from_dataset(supernet, settings.load_dataset(), calib_images=64, batch_size=64,
                                                  channels_last=settings.channels_last).evaluate(archs)
    assert [r["accuracy"] for r in pooled] == [r["accuracy"] for r in local]
    assert [r["params"] for r in pooled] == [space.cost(a)["params"] for a in archs]


# ---------------------------------------------------------------------- the benchmark
def test_oneshot_benchmark_smoke_records_numbers_recomputable_from_its_csv(tmp_path, ray_session):
    import pandas as pd

    from benchmarks.oneshot_nb201 import TRUTH, main, ranking
    from conftest import shared_data_path

    table = shared_data_path("nb201/nb201_cifar10.csv")
    data = shared_data_path("cifar10/cifar10_jpg.tar.gz")
    out = tmp_path / "oneshot.json"
    report = main(["--smoke", "--variants", "few_shot", "--work", str(tmp_path / "work"),
                   "--out", str(out), "--table", str(table), "--data", f"cifar10:{data}"])
    saved = json.loads(out.read_text())
    rows = pd.read_csv(tmp_path / "oneshot_archs.csv")
    assert len(rows) == saved["num_archs"] == 6
    assert rows["unique_str"].nunique() == 6  # distinct isomorphism classes
    assert saved["skeleton"]["cells_per_stage"] == 1 and saved["skeleton"]["resolution"] == 8
    recomputed = ranking(rows["inherited_few_shot"], rows[TRUTH])
    assert recomputed["kendall_tau"] == pytest.approx(saved["variants"]["few_shot"]["ranking"]["kendall_tau"])
    ensemble = ranking(rows["proxy_ensemble"], rows[TRUTH])
    assert ensemble["spearman_rho"] == pytest.approx(saved["proxies"]["ensemble"]["spearman_rho"])
    search = saved["variants"]["few_shot"]["search"]
    truth = pd.read_csv(table).set_index("arch_str")[TRUTH]
    for strategy in ("evolution", "random"):
        run = search[strategy]["runs"][0]
        assert run[TRUTH] == pytest.approx(truth[run["arch_str"]]) and run["evaluated"] == 6
    assert report["variants"]["few_shot"]["training"]["steps"] == 4
    # a rerun reuses the finished checkpoint instead of training again
    again = main(["--smoke", "--variants", "few_shot", "--work", str(tmp_path / "work"), "--out",
                  str(tmp_path / "again.json"), "--table", str(table), "--data", f"cifar10:{data}",
                  "--search-seeds", "0", "--proxies", ""])
    assert again["variants"]["few_shot"]["training"]["reused"] is True
    assert again["variants"]["few_shot"]["ranking"] == saved["variants"]["few_shot"]["ranking"]


def test_eval_splits_keep_a_seeded_subset_of_the_validation_images():
    from raynas.data import load_dataset
    from raynas.errors import DataError

    data = load_dataset("digits", seed=0)
    val = data.split("val").images
    small = data.eval_splits(val_size=100)
    assert len(small.split("val")) == 100 and len(small.split("calib")) == len(data.split("calib"))
    kept = small.split("val").images
    # every kept image is a validation image, in split order, and the choice is reproducible
    positions = [int(np.flatnonzero((val == img).flatten(1).all(1))[0]) for img in kept]
    assert positions == sorted(positions) and len(set(positions)) == 100
    assert torch.equal(load_dataset("digits", seed=0).eval_splits(val_size=100).split("val").images, kept)
    assert list(small.source_indices["val"]) == [data.source_indices["val"][p] for p in positions]
    with pytest.raises(DataError, match="val_size"):
        data.eval_splits(val_size=len(val) + 1)
