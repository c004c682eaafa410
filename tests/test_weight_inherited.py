"""WeightInheritedEvaluator: recalibrated top-1 on the held-out val split, independent of the
order archs are evaluated in, equal to an independent computation, plus analytic cost."""
from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from raynas import ConfigError
from raynas.bn import recalibrate_bn
from raynas.data import iterate_batches, resize, to_float
from raynas.evaluators.weight_inherited import WeightInheritedEvaluator
from raynas.rng import derive_rng
from tiny_supernet import digits16, single_threaded, trained_supernet


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_threaded():
        yield


ARCHS = [{"w1": 4, "w2": 8, "resolution": 12}, {"w1": 8, "w2": 24, "resolution": 16},
         {"w1": 12, "w2": 16, "resolution": 12}, {"w1": 12, "w2": 24, "resolution": 16}]


@pytest.fixture(scope="module")
def evaluator():
    ds = digits16()
    return WeightInheritedEvaluator.from_dataset(trained_supernet(), ds, calib_images=192,
                                                 batch_size=64)


def _untimed(results):
    """The metrics without each arch's own evaluation time (a measurement, not a result)."""
    assert all(m["eval_seconds"] > 0 for m in results)
    return [{k: v for k, v in m.items() if k != "eval_seconds"} for m in results]


def test_results_do_not_depend_on_evaluation_order(evaluator):
    forward = _untimed(evaluator.evaluate(ARCHS))
    backward = _untimed(evaluator.evaluate(ARCHS[::-1])[::-1])
    assert forward == backward  # exact: same calibration batches for every arch
    again = _untimed(evaluator.evaluate([ARCHS[0], ARCHS[0]]))
    assert again == [forward[0], forward[0]]
    assert len({m["accuracy"] for m in forward}) > 1
    for arch, metrics in zip(ARCHS, forward):
        assert set(metrics) == {"accuracy", "loss", "params", "macs", "flops"}
        assert {k: metrics[k] for k in ("params", "macs", "flops")} == evaluator.supernet.space.cost(arch)
        assert 50.0 < metrics["accuracy"] <= 100.0


def test_accuracy_matches_an_independent_computation(evaluator):
    ds = digits16()
    arch = ARCHS[2]
    reported, reported_loss = (evaluator.evaluate([arch])[0][k] for k in ("accuracy", "loss"))

    net = trained_supernet()
    net.activate(arch)
    res = net.input_resolution(arch)
    # the evaluator's documented calibration set: the first 3 batches of 64 of a seeded shuffle
    calib = [resize(to_float(x, ds.mean, ds.std), res) for x, _ in
             iterate_batches(ds.split("calib"), None, 64, rng=derive_rng(0, "bn-calibration"),
                             shuffle=True, drop_last=True)][:3]
    recalibrate_bn(net, calib)
    net.eval()
    val = ds.split("val")
    with torch.no_grad():
        logits = net(resize(to_float(val.images, ds.mean, ds.std), res))
    expected = 100.0 * int((logits.argmax(1) == val.labels).sum()) / len(val)
    assert reported == pytest.approx(expected, abs=100.0 / len(val) + 1e-9)  # at most one tie flips
    assert reported_loss == pytest.approx(float(F.cross_entropy(logits, val.labels)), rel=1e-5)

    # without recalibration the same subnet scores lower: the evaluator really recalibrates
    fresh = trained_supernet()
    fresh.activate(arch)
    fresh.eval()
    with torch.no_grad():
        stale = fresh(resize(to_float(val.images, ds.mean, ds.std), res)).argmax(1)
    assert reported > 100.0 * int((stale == val.labels).sum()) / len(val)


def test_configuration_errors_and_no_pickling(evaluator):
    ds = digits16()
    with pytest.raises(ConfigError, match="calib_images=251 but the calib split has 250 images"):
        WeightInheritedEvaluator.from_dataset(trained_supernet(), ds, calib_images=251, batch_size=64)
    with pytest.raises(TypeError, match="inside a pool actor"):
        pickle.dumps(evaluator)
    net = evaluator.supernet
    net.train()
    evaluator.evaluate([ARCHS[0]])
    assert net.training  # the caller's mode is restored
    small = WeightInheritedEvaluator(trained_supernet(), ds.split("calib"), ds.split("val"),
                                     batch_size=400, mean=ds.mean, std=ds.std)
    assert len(small._calib) == 1 and small._calib[0].shape[0] == len(ds.split("calib"))


def test_calibration_takes_the_asked_number_of_images_in_near_equal_batches():
    from raynas.evaluators.weight_inherited import calibration_batches

    calib = digits16().split("calib")
    batches = calibration_batches(calib, None, 64)
    assert [len(b) for b in batches] == [63, 63, 62, 62]  # all 250, no batch much smaller
    rows = torch.cat([b.reshape(len(b), -1) for b in batches])
    assert len(torch.unique(rows, dim=0)) == len(torch.unique(calib.images.reshape(250, -1), dim=0))
    first = calibration_batches(calib, 192, 64)
    assert [len(b) for b in first] == [64, 64, 64]
    # the same seeded order: a larger calibration set extends a smaller one
    assert torch.equal(torch.cat(first), torch.cat(calibration_batches(calib, 250, 250))[:192])
    with pytest.raises(ConfigError, match="calib_images=0"):
        calibration_batches(calib, 0, 64)


def test_evaluation_settings_default_to_the_training_run_and_record_what_they_used():
    from raynas.evaluators.weight_inherited import DEFAULT_EVAL_BATCH, EvaluationSettings

    meta = {"dataset": "digits", "config": {"data": "digits", "seed": 3, "calib_images": 100,
                                            "eval_batch_size": 50,
                                            "data_options": {"image_size": 16, "cache_dir": "/elsewhere"}}}
    settings = EvaluationSettings.for_checkpoint(meta)
    assert (settings.data, settings.seed, settings.calib_images, settings.batch_size) == ("digits", 3, 100, 50)
    assert settings.data_options == {"image_size": 16}  # what defines the splits; never a path
    dataset = settings.load_dataset()
    assert dataset.image_size == 16 and dataset.seed == 3
    assert settings.to_dict(dataset) == {"data": "digits", "seed": 3, "data_options": {"image_size": 16},
                                         "split": "val", "calib_images": 100, "batch_size": 50,
                                         "channels_last": False}
    other = EvaluationSettings.for_checkpoint(meta, data="imagefolder:x", seed=0, calib_images=7, batch_size=8)
    assert (other.data, other.seed, other.data_options, other.calib_images, other.batch_size) == \
        ("imagefolder:x", 0, {}, 7, 8)
    bare = EvaluationSettings.for_checkpoint({"dataset": "digits"})
    assert (bare.seed, bare.calib_images, bare.batch_size) == (0, None, DEFAULT_EVAL_BATCH)
    assert bare.to_dict(digits16())["calib_images"] == 250
    with pytest.raises(ConfigError, match="calib_images=300"):
        EvaluationSettings.for_checkpoint(meta, calib_images=300).to_dict(dataset)
