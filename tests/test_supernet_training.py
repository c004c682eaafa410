"""Supernet training: Ray Train data parallelism equals one process, failures and resumes continue
exactly, progressive shrinking follows its schedule file, hybrid modes are step-seeded."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from raynas.arch import arch_id
from raynas.checkpoint import load_supernet_checkpoint, read_checkpoint_meta
from raynas.errors import ConfigError
from raynas.training import SupernetTrainConfig, make_sampling_strategy
from raynas.training.schedule import PhasePlan
from trainables.supernet import SupernetTrainer, read_subnet_logs, train_supernet

TINY_OFA = dict(width_mult=0.1, resolutions=[6, 8], depth_choices=[1, 2], kernel_choices=[3, 5],
                expand_choices=[2, 3])
# digits at 8x8: 1200 training images, 75 steps per epoch of the global batch of 16
BASE = dict(space="ofa_mbv3_cifar", space_options=TINY_OFA, data="digits",
            data_options={"image_size": 8}, epochs=1, batch_size=16, lr=0.005, device="cpu",
            sampler="sandwich", sampler_options={"num_random": 1}, cpu_threads=1, max_steps=6,
            checkpoint_every_steps=3, record_subnets=True, eval_batch_size=64,
            calib_images=64)
# float32 sums in another order (gloo all-reduce, global BN statistics) differ by ~1e-7 per step;
# at this learning rate training amplifies that to ~1e-5 over the six steps
DDP_TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted single-process run of BASE: (output dir, checkpoint, metrics)."""
    out = tmp_path_factory.mktemp("reference")
    checkpoint, metrics = train_supernet(dict(BASE, output=str(out)), progress=False)
    return out, checkpoint, metrics


def _state(checkpoint):
    model, _ = load_supernet_checkpoint(checkpoint)
    return {k: v.detach().double() for k, v in model.state_dict().items()}


def _max_diff(a, b, params_only=True):
    keys = [k for k in a if not params_only or ("running" not in k and "num_batches" not in k)]
    return max(float((a[k] - b[k]).abs().max()) for k in keys)


def _initial_state():
    trainer = SupernetTrainer(SupernetTrainConfig.from_any(BASE))
    return {k: v.detach().double() for k, v in trainer.module.state_dict().items()}


def _check_two_ranks_match_single_process(out, checkpoint, reference, attempts):
    ref_out, ref_checkpoint, _ = reference
    logs = read_subnet_logs(out)
    assert sorted(logs) == [0, 1]
    assert sorted(logs[0]) == sorted(logs[1]) == list(range(6))  # every attempt together
    assert logs[0] == logs[1], "ranks activated different subnets"
    assert logs[0] == read_subnet_logs(ref_out)[0], "the subnets differ from the single-process run"
    assert len({tuple(entry[0]) for entry in logs[0].values()}) > 1  # a random subnet per step
    assert sorted(p.name for p in (out / "subnets").iterdir()) == attempts

    ref, ddp, init = _state(ref_checkpoint), _state(checkpoint), _initial_state()
    assert _max_diff(ref, ddp) <= DDP_TOLERANCE
    assert _max_diff(ref, init) > 50 * DDP_TOLERANCE  # training moved the weights far more
    assert _max_diff(ref, ddp, params_only=False) <= 10 * DDP_TOLERANCE  # BN running statistics


def test_two_gloo_workers_activate_the_same_subnets_and_match_one_process(ray_session, reference, tmp_path):
    """2 Ray Train workers, global batch 16 = 2 x 8, end where one process with batch 16 ends."""
    checkpoint, metrics = train_supernet(dict(BASE, output=str(tmp_path)), num_workers=2)
    assert metrics["steps"] == 6 and 0 <= metrics["largest_accuracy"] <= 100
    _check_two_ranks_match_single_process(tmp_path, checkpoint, reference,
                                          ["rank0-from0.json", "rank1-from0.json"])


@pytest.mark.slow   # a restarted run starts a second worker group: a minute on a loaded 2-core machine
def test_ray_train_failure_restarts_from_the_latest_checkpoint(ray_session, reference, tmp_path):
    """Both workers fail at step 3; FailureConfig(max_failures=1) restarts them from the step-3
    checkpoint and the run ends with the uninterrupted single-process weights."""
    checkpoint, metrics = train_supernet(
        dict(BASE, output=str(tmp_path), fail_at_step=3, max_failures=1), num_workers=2)
    assert metrics["steps"] == 6
    _check_two_ranks_match_single_process(
        tmp_path, checkpoint, reference,
        ["rank0-from0.json", "rank0-from3.json", "rank1-from0.json", "rank1-from3.json"])


def test_a_run_stopped_after_k_steps_resumes_to_the_same_weights(reference, tmp_path):
    from raynas.cli.main import main

    _, ref_checkpoint, _ = reference
    first, _ = train_supernet(dict(BASE, output=str(tmp_path / "a"), max_steps=3), progress=False)
    assert read_checkpoint_meta(first)["step"] == 3
    assert main(["train", "--resume", str(first), "--max-steps", "6",
                 "--output", str(tmp_path / "b")]) == 0
    resumed = tmp_path / "b" / "checkpoint"
    assert read_checkpoint_meta(resumed)["step"] == 6
    ref, again = _state(ref_checkpoint), _state(resumed)
    assert all(torch.equal(ref[k], again[k]) for k in ref), "resumed weights differ"


def test_resume_refuses_a_checkpoint_of_other_training_settings(reference, tmp_path):
    _, ref_checkpoint, _ = reference
    with pytest.raises(ConfigError, match="lr"):
        train_supernet(dict(BASE, output=str(tmp_path), lr=0.5), resume=ref_checkpoint, progress=False)


def test_global_batch_must_split_evenly_over_workers():
    with pytest.raises(ConfigError, match="divisible by num_workers 3"):
        SupernetTrainConfig.from_any(BASE, num_workers=3)


# ------------------------------------------------------------------------ progressive shrinking
SCHEDULE = {
    "always_unlocked": ["resolution"],
    "phases": [
        {"name": "full", "epochs": 0.04, "lr": 0.02},                       # steps 0-2
        {"name": "kernel", "epochs": 0.03, "lr": 0.01, "unlock": ["kernel"]},  # 3-4
        {"name": "depth", "epochs": 0.03, "lr": 0.005, "unlock": ["kernel", "depth"],
         "num_subnets": 2},                                                 # 5-6
        {"name": "expand", "epochs": 0.03, "lr": 0.005,
         "unlock": {"kernel": None, "depth": None, "expand": [2, 3]}, "num_subnets": 2},  # 7-8
    ]}


def test_progressive_shrinking_follows_the_schedule_file(tmp_path, caplog):
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(SCHEDULE))
    config = dict(BASE, output=str(tmp_path / "run"), sampler="progressive_shrinking",
                  sampler_options={"schedule": str(path)}, max_steps=None)
    with caplog.at_level(logging.INFO, logger="raynas.training"):
        checkpoint, _ = train_supernet(config, progress=False)
    meta = read_checkpoint_meta(checkpoint)
    assert meta["step"] == 9
    assert [(p["name"], p["start_step"], p["steps"], p["lr"]) for p in meta["phases"]] == [
        ("full", 0, 3, 0.02), ("kernel", 3, 2, 0.01), ("depth", 5, 2, 0.005), ("expand", 7, 2, 0.005)]
    events = [(e["event"], e["step"]) for e in meta["events"]]
    assert events == [("phase", 0), ("phase", 3), ("teacher", 3), ("phase", 5), ("phase", 7),
                      ("sort_channels", 7)]
    text = caplog.text
    for name, step in (("full", 0), ("kernel", 3), ("depth", 5), ("expand", 7)):
        assert f"'{name}' starts at step {step}" in text
    assert "sorted channels by importance (width phase 0)" in text

    # the trainer trained what the strategy planned, and each phase sampled only its dimensions
    space, cfg = _space_and_config(config)
    strategy = make_sampling_strategy("progressive_shrinking", schedule=str(path))
    strategy.bind(space)
    plan = PhasePlan.build(strategy.phases(cfg.epochs, cfg.lr, 0.0), 75)
    logged = read_subnet_logs(tmp_path / "run")[0]
    largest = space.largest()
    for step in range(9):
        phase = plan.phase(step)
        tasks = strategy.plan(space, step, cfg.seed, phase)
        assert logged[step][0] == [arch_id(t.arch) for t in tasks]
        assert len(tasks) == phase.options["num_subnets"]
        for task in tasks:
            stages = task.arch["stages"]
            assert task.distill_weight == (0.0 if phase.name == "full" else 1.0)
            if phase.name in ("full", "kernel"):
                assert all(s["depth"] == 2 and s["expand"] == [3, 3] for s in stages)
            if phase.name == "full":
                assert all(s["kernel"] == [5, 5] for s in stages)
            if phase.name == "depth":
                assert all(e == 3 for s in stages for e in s["expand"])
        assert {t.arch["resolution"] for t in tasks} <= {6, 8}
    assert largest == strategy.subspace(space, plan.phases[0]).largest()


def _space_and_config(config):
    from raynas.registry import create_space

    cfg = SupernetTrainConfig.from_any(config)
    return create_space(cfg.space, **cfg.space_options), cfg


def test_width_phase_sorts_channels_without_changing_the_largest_network(tmp_path):
    config = SupernetTrainConfig.from_any(dict(
        BASE, output=str(tmp_path), sampler="progressive_shrinking", sampler_options={"schedule": SCHEDULE}))
    trainer = SupernetTrainer(config)
    for _ in range(2):
        trainer.run_step()
        trainer.step += 1
    net = trainer.module
    net.activate(trainer.space.largest())
    net.eval()
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    before_out = net(x)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer.step = 7
    trainer._enter_phase(3)  # "expand": a width phase
    assert [e["event"] for e in trainer.events if e["step"] == 7] == ["phase", "sort_channels", "teacher"]
    moved = [k for k in before if not torch.equal(before[k], net.state_dict()[k])]
    assert any("expand.conv.weight" in k for k in moved)  # channels were permuted
    net.activate(trainer.space.largest())
    net.eval()
    assert torch.allclose(net(x), before_out, atol=1e-5, rtol=1e-5)


def test_schedule_errors_name_the_problem(tmp_path):
    bad = dict(SCHEDULE, phases=[{"name": "x", "epochs": 1, "lr": 0.1, "unlock": ["width"]}])
    with pytest.raises(ConfigError, match="no dimension"):
        SupernetTrainer(SupernetTrainConfig.from_any(dict(
            BASE, output=str(tmp_path), sampler="progressive_shrinking", sampler_options={"schedule": bad})))
    with pytest.raises(ConfigError, match="unknown key"):
        make_sampling_strategy("progressive_shrinking",
                               schedule={"phases": [{"name": "x", "epochs": 1, "lrr": 0.1}]})


# ------------------------------------------------------------------------ hybrid modes
TINY_HYBRID = dict(img_size=8, channels=8, num_layers=2, expand_ratios=[1, 2], num_heads=[1],
                   head_dim=8, mlp_ratios=[1.0, 2.0])


def test_hybrid_weighted_mode_draws_from_the_step_and_trains_alpha(tmp_path):
    config = dict(BASE, space="hybrid", space_options=TINY_HYBRID, sampler="fixed",
                  sampler_options={}, supernet_options={"mode": "weighted", "seed": 3},
                  alpha_lr=0.05, max_steps=6, checkpoint_every_steps=None)
    runs = []
    for name in ("a", "b"):
        trainer = SupernetTrainer(SupernetTrainConfig.from_any(dict(config, output=str(tmp_path / name))))
        assert trainer.alpha_optimizer is not None
        assert all(id(p) not in {id(q) for _, q in trainer.weight_params} for p in trainer.alpha_params)
        alpha0 = trainer.module.alpha_values()
        trainer.fit()
        runs.append((trainer.subnet_log, trainer.module.alpha_values()))
        assert trainer.module.alpha_values() != alpha0  # α has its own optimizer and moves
    assert runs[0] == runs[1]  # op draws and α updates are (seed, step)-determined
    ops = [tuple(entry[2]) for entry in runs[0][0]]
    assert len(set(ops)) > 1  # different steps draw different ops


# ------------------------------------------------------------------------ every strategy, every family
TINY_VIT = dict(img_size=8, patch_size=4, embed_dims=[16, 32], depths=[1, 2], num_heads=[1, 2],
                mlp_ratios=[1.0, 2.0], head_dim=8, num_classes=10)


@pytest.mark.parametrize("space, options, sampler, sampler_options, supernet_options", [
    ("vit", TINY_VIT, "sandwich", {"num_random": 1}, {}),
    ("vit", TINY_VIT, "progressive_shrinking", {}, {}),
    ("vit", TINY_VIT, "preferred", {"candidates": "three"}, {}),
    ("hybrid", TINY_HYBRID, "sandwich", {"num_random": 1}, {}),
    ("hybrid", TINY_HYBRID, "uniform", {}, {"mode": "uniform", "seed": 1}),
    ("hybrid", TINY_HYBRID, "sandwich", {"num_random": 1}, {"mode": "convex"}),
])
def test_strategies_drive_vit_and_hybrid_supernets(tmp_path, space, options, sampler, sampler_options,
                                                   supernet_options):
    from raynas.registry import create_space
    from raynas.rng import derive_rng

    if sampler_options.get("candidates") == "three":
        s = create_space(space, **options)
        sampler_options = {"candidates": [s.sample(derive_rng(0, i)) for i in range(3)],
                           "group_by": ["embed_dim"]}
    config = SupernetTrainConfig.from_any(dict(
        BASE, space=space, space_options=options, sampler=sampler, sampler_options=sampler_options,
        supernet_options=supernet_options, output=str(tmp_path), epochs=0.04, max_steps=None,
        optimizer="adamw", lr=1e-2))
    trainer = SupernetTrainer(config)
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    trainer.fit()
    assert trainer.step == 3
    for step, entry in enumerate(trainer.subnet_log):
        planned = trainer.strategy.plan(trainer.space, step, config.seed, trainer.plan.phase(step))
        assert entry[1] == [arch_id(t.arch) for t in planned]
        if sampler == "preferred":
            allowed = {arch_id(a) for a in trainer.strategy.candidates}
            assert set(entry[1]) <= allowed
    after = trainer.module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if "weight" in k)
    metrics = trainer.evaluate_extremes()
    assert 0 <= metrics["largest_accuracy"] <= 100
    if supernet_options.get("mode") in ("convex", "uniform"):
        assert trainer.module.mode == supernet_options["mode"]  # evaluation ran in arch mode, then back
        assert "derived_accuracy" in metrics


def test_dropout_is_switched_off_only_for_tasks_without_regularisation():
    from raynas.training.recipe import dropout_modules, regularization

    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.9)).train()
    x = torch.ones(256, 4)
    with regularization(dropout_modules(net), enabled=False):
        assert torch.equal(net(x), net[0](x))
    assert net[1].training and (net(x) == 0).any()
    with regularization(dropout_modules(net), enabled=True):
        assert (net(x) == 0).any()


# ------------------------------------------------------------------------ per-dataset augmentation
def test_augmentation_flips_only_datasets_whose_mirror_images_keep_their_labels(tmp_path):
    """Digits (a mirrored digit is another glyph) get crops only; a dataset that allows mirroring
    gets flips too; ``flip`` overrides either; the crop padding is an eighth of the image."""
    import dataclasses

    import numpy as np

    from raynas.data import apply_augment, augment_params, load_dataset, to_float
    from raynas.rng import derive_rng

    digits = load_dataset("digits", image_size=8)
    assert not digits.hflip
    config = SupernetTrainConfig.from_any(BASE, output=str(tmp_path))
    trainer = SupernetTrainer(config, digits)
    assert (trainer.flip, trainer.crop_pad) == (False, 1)
    x, _ = trainer.batch(0)

    def expected(flip: bool) -> torch.Tensor:
        top, left, flips = augment_params(derive_rng(config.seed, "augment", 3), len(x), 1, flip)
        assert flips.any() == flip
        return to_float(apply_augment(x, top, left, flips, pad=1), digits.mean, digits.std)

    assert torch.equal(trainer.inputs(x, 3), expected(False))
    assert not torch.equal(expected(False), to_float(x, digits.mean, digits.std))  # crops still move pixels
    forced = SupernetTrainer(SupernetTrainConfig.from_any(config, flip=True), digits)
    assert torch.equal(forced.inputs(x, 3), expected(True))
    mirrorable = SupernetTrainer(config, dataclasses.replace(digits, hflip=True))
    assert torch.equal(mirrorable.inputs(x, 3), expected(True))
    none = SupernetTrainer(SupernetTrainConfig.from_any(config, augment=False), digits)
    assert torch.equal(none.inputs(x, 3), to_float(x, digits.mean, digits.std))
    assert SupernetTrainer(SupernetTrainConfig.from_any(config, crop_pad=0), digits).crop_pad == 0
    assert np.array_equal(*(augment_params(derive_rng(0, "a"), 8, 2, f)[0] for f in (True, False)))
    with pytest.raises(ConfigError, match="crop_pad"):
        SupernetTrainConfig.from_any(config, crop_pad=-1)
    meta = trainer.meta()
    assert meta["augmentation"] == {"enabled": True, "flip": False, "crop_pad": 1}


def test_a_checkpoint_config_of_an_earlier_release_still_reads():
    config = SupernetTrainConfig.from_any(dict(BASE, eval_calib_batches=4))
    assert config.calib_images == BASE["calib_images"]
    with pytest.raises(ConfigError, match="calib_images"):
        SupernetTrainConfig.from_any(BASE, calib_images=0)
