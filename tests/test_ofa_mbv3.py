"""The OFA MobileNetV3 spaces: arch validation, operators, exact cost, export equivalence,
elastic BN, channel sorting, and agreement with OFA's published configs and latency tables."""
from __future__ import annotations

import json
import re
import tarfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from raynas import ArchError, ConfigError, arch_id, create_space, space_from_spec
from spaces.layers import ElasticBatchNorm2d
from conftest import shared_data_path

TINY_CIFAR = dict(width_mult=0.25)
LUT_RESOLUTIONS = (160, 176, 192, 208, 224)


def _randomise_state(net: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics/affine and kernel transforms, so export checks copy them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        for name, p in net.named_parameters():
            if "transform_" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def _flops(model: nn.Module, resolution: int) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, resolution, resolution))
    return counter.get_total_flops()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: OpenMP threads spin-wait against other
    processes and run far slower than one thread, so these tests use one (restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cifar_space():
    return create_space("ofa_mbv3_cifar", **TINY_CIFAR)


@pytest.fixture(scope="module")
def cifar_net(cifar_space):
    net = cifar_space.build_supernet()
    _randomise_state(net, 0)
    return net.eval()


# --------------------------------------------------------------------------- space & options
def test_imagenet_preset_has_ofa_w12_shapes():
    space = create_space("ofa_mbv3")
    g = space.network_geometry(space.largest())
    assert g.stem_channels == 24 and g.first_block.out_channels == 24
    assert [stage[0].out_channels for stage in g.stages] == [32, 48, 96, 136, 192]
    assert [stage[0].stride for stage in g.stages] == [2, 2, 2, 1, 2]
    assert [stage[0].use_se for stage in g.stages] == [False, True, False, True, True]
    assert [stage[0].activation for stage in g.stages] == ["relu", "relu", "hswish", "hswish", "hswish"]
    assert (g.final_expand_channels, g.feature_channels, g.num_classes) == (1152, 1536, 1000)
    assert g.stages[3][0].mid_channels == 96 * 6 and g.stages[3][1].mid_channels == 136 * 6
    assert space.options["resolutions"] == [128, 144, 160, 176, 192, 208, 224]
    assert space.largest()["resolution"] == 224 and space.smallest()["resolution"] == 128


def test_options_are_recorded_in_their_canonical_form():
    # spec round trip (costs and layer descriptors included): tests/test_space_contract.py
    space = create_space("ofa_mbv3_cifar", kernel_choices=(5, 3), expand_choices=(2.5, 4),
                         kernel_transform=True, num_classes=7)
    assert space.options["kernel_choices"] == [3, 5] and space.options["expand_choices"] == [2.5, 4]
    assert space.options["kernel_transform"] is True and space.options["num_classes"] == 7


@pytest.mark.parametrize("options,word", [
    (dict(kernel_choices=(3, 4)), "kernel_choices"),
    (dict(stage_strides=(2, 2, 2)), "stage_strides"),
    (dict(stage_strides=(2, 2, 3, 1, 2)), "stage_strides"),
    (dict(width_mult=0), "width_mult"),
    (dict(depth_choices=(2, 2)), "depth_choices"),
    (dict(expand_choices=(True, 3)), "expand_choices"),
    (dict(kernel_transform=1), "kernel_transform"),
    (dict(colour="red"), "colour"),
])
def test_bad_options_raise_config_error(options, word):
    with pytest.raises(ConfigError, match=word):
        create_space("ofa_mbv3_cifar", **options)


# --------------------------------------------------------------------------------- validation
def _good():
    return {"resolution": 32, "stages": [{"depth": 2, "kernel": [3, 5], "expand": [3, 4]},
                                         {"depth": 3, "kernel": [3, 5, 7], "expand": [4, 6, 3]},
                                         {"depth": 4, "kernel": [7, 7, 7, 7], "expand": [6, 6, 6, 6]},
                                         {"depth": 2, "kernel": [5, 5], "expand": [3, 3]},
                                         {"depth": 2, "kernel": [3, 3], "expand": [3, 3]}]}


def test_validate_returns_canonical_form(cifar_space):
    arch = _good()
    arch["stages"][0] = {"expand": (3.0, np.int64(4)), "kernel": (3, 5), "depth": np.int32(2)}
    out = cifar_space.validate(arch)
    assert out == _good() and isinstance(out["stages"][0]["expand"][0], int)
    assert arch_id(out) == arch_id(_good())
    assert list(out) == ["resolution", "stages"]


def _edit(path, value=None, delete=False):
    arch = _good()
    *parents, last = path
    target = arch
    for key in parents:
        target = target[key]
    if delete:
        del target[last]
    else:
        target[last] = value
    return arch


@pytest.mark.parametrize("arch,field,needle", [
    ([1, 2], "<arch>", "dict"),
    ({"resolution": object(), "stages": []}, "<arch>", "JSON"),
    (_edit(["stages", 0, "depth"], np.bool_(True)), "stages[0].depth", "True"),
    (_edit(["resolution"], delete=True), "resolution", "missing"),
    (_edit(["extra"], 1), "extra", "unknown field"),
    (_edit(["resolution"], 33), "resolution", "{24, 28, 32}"),
    (_edit(["resolution"], True), "resolution", "True"),
    (_edit(["resolution"], "32"), "resolution", "'32'"),
    (_edit(["stages"], {"depth": 2}), "stages", "5 stage dicts"),
    (_edit(["stages"], _good()["stages"][:4]), "stages", "5 stage dicts"),
    (_edit(["stages", 1], [3, 3]), "stages[1]", "dict"),
    (_edit(["stages", 0, "expand"], delete=True), "stages[0].expand", "missing"),
    (_edit(["stages", 0, "width"], 1.0), "stages[0].width", "unknown field"),
    (_edit(["stages", 2, "depth"], 5), "stages[2].depth", "{2, 3, 4}"),
    (_edit(["stages", 2, "depth"], True), "stages[2].depth", "True"),
    (_edit(["stages", 1, "kernel"], [3, 5]), "stages[1].kernel", "list of 3"),
    (_edit(["stages", 1, "kernel"], 3), "stages[1].kernel", "list of 3"),
    (_edit(["stages", 2, "kernel", 1], 4), "stages[2].kernel[1]", "{3, 5, 7}"),
    (_edit(["stages", 2, "kernel", 1], "5"), "stages[2].kernel[1]", "'5'"),
    (_edit(["stages", 0, "expand", 0], True), "stages[0].expand[0]", "{3, 4, 6}"),
    (_edit(["stages", 4, "expand", 1], None), "stages[4].expand[1]", "None"),
])
def test_validate_names_field_value_and_allowed(cifar_space, arch, field, needle):
    with pytest.raises(ArchError) as info:
        cifar_space.validate(arch)
    assert info.value.field == field
    assert f"'{field}'" in str(info.value) and needle in str(info.value)
    assert not cifar_space.is_valid(arch)


# ----------------------------------------------------------------------- decisions & operators
def test_decisions_and_generic_operators_stay_valid(cifar_space):
    names = [d.name for d in cifar_space.decisions()]
    assert names[:4] == ["resolution", "s0.depth", "s0.b0.kernel", "s0.b0.expand"]
    assert len(names) == 1 + 5 * (1 + 4 * 2)
    assert cifar_space.smallest()["stages"][0] == {"depth": 2, "kernel": [3, 3], "expand": [3, 3]}
    assert cifar_space.largest()["stages"][4] == {"depth": 4, "kernel": [7] * 4, "expand": [6] * 4}

    values = cifar_space.to_decisions(_good())
    assert values["s0.b1.kernel"] == 5 and values["s0.b2.kernel"] is None and values["s0.b3.expand"] is None
    assert cifar_space.from_decisions(values) == _good()
    with pytest.raises(ArchError, match="s0.b1.kernel"):
        cifar_space.from_decisions({**values, "s0.b1.kernel": None})

    # operators, crossover and encodings of every space: tests/test_space_contract.py
    rng = np.random.default_rng(0)
    archs = [cifar_space.sample(rng) for _ in range(40)]
    assert len({arch_id(a) for a in archs}) == 40
    for arch in archs:
        assert cifar_space.input_resolution(arch) == arch["resolution"]
        active = sum(1 + 2 * s["depth"] for s in arch["stages"]) + 1
        assert cifar_space.encode(arch).sum() == active


# --------------------------------------------------------------------------- export & cost
# export equal to the active subnet, exact params/FLOPs, rebuild from the spec, the active subnet
# left alone by another export (these options included): tests/test_space_contract.py


def test_default_imagenet_cost_is_exact_at_small_resolution():
    space = create_space("ofa_mbv3")
    net = space.build_supernet()
    rng = np.random.default_rng(5)
    for _ in range(2):
        arch = {**space.sample(rng), "resolution": 128}
        static = net.export(arch)
        cost = space.cost(arch)
        assert cost["params"] == sum(p.numel() for p in static.parameters())
        assert cost["flops"] == _flops(static, 128)


def test_build_is_seeded_and_leaves_global_rng_alone(cifar_space):
    state = torch.random.get_rng_state()
    a, b, c = (cifar_space.build_supernet(seed=s) for s in (7, 7, 8))
    assert torch.equal(torch.random.get_rng_state(), state)
    wa, wb, wc = (n.stages[2][0].depthwise.conv.weight for n in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    a.activate(cifar_space.smallest())
    assert a.stages[0].active_depth == 2 and b.stages[0].active_depth == 4
    assert b.stages[0][0].depthwise.conv.active_kernel == 7


def test_kernel_transform_matrices_receive_gradients_only_for_small_kernels():
    space = create_space("ofa_mbv3_cifar", **TINY_CIFAR, kernel_transform=True)
    net = space.build_supernet()
    arch = space.largest()
    arch["stages"][0]["kernel"] = [3, 5, 7, 7]
    net.activate(arch)
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    blocks = net.stages[0]
    assert blocks[0].depthwise.conv.transform_7to5.grad.abs().sum() > 0
    assert blocks[0].depthwise.conv.transform_5to3.grad.abs().sum() > 0
    assert blocks[1].depthwise.conv.transform_7to5.grad.abs().sum() > 0
    assert blocks[1].depthwise.conv.transform_5to3.grad is None
    assert blocks[2].depthwise.conv.transform_7to5.grad is None


# ----------------------------------------------------------------------------- elastic BN
@pytest.mark.parametrize("momentum", [0.1, None])
def test_elastic_bn_updates_active_slice_like_batchnorm(momentum):
    g = torch.Generator().manual_seed(0)
    elastic, ref = ElasticBatchNorm2d(16, momentum=momentum), nn.BatchNorm2d(8, momentum=momentum)
    with torch.no_grad():
        elastic.running_mean.copy_(torch.randn(16, generator=g))
        elastic.running_var.copy_(torch.rand(16, generator=g) + 0.5)
        elastic.weight.copy_(torch.rand(16, generator=g))
        elastic.bias.copy_(torch.randn(16, generator=g))
        for name in ("running_mean", "running_var", "weight", "bias"):
            getattr(ref, name).copy_(getattr(elastic, name)[:8])
    untouched = elastic.running_mean[8:].clone(), elastic.running_var[8:].clone()
    elastic.train(), ref.train()
    for step in range(4):
        x = torch.randn(6, 8, 5, 5, generator=g) * (step + 1) + step
        assert torch.allclose(elastic(x), ref(x), atol=1e-6)
    assert torch.allclose(elastic.running_mean[:8], ref.running_mean, atol=1e-6)
    assert torch.allclose(elastic.running_var[:8], ref.running_var, atol=1e-6)
    assert int(elastic.num_batches_tracked) == int(ref.num_batches_tracked) == 4
    assert torch.equal(elastic.running_mean[8:], untouched[0])
    assert torch.equal(elastic.running_var[8:], untouched[1])
    elastic.eval(), ref.eval()
    x = torch.randn(3, 8, 4, 4, generator=g)
    assert torch.allclose(elastic(x), ref(x), atol=1e-6)
    assert isinstance(elastic, nn.BatchNorm2d)


def test_bn_recalibration_of_subnet_equals_recalibrating_export(cifar_space):
    net = cifar_space.build_supernet(seed=3)
    _randomise_state(net, 3)
    arch = cifar_space.sample(np.random.default_rng(3))
    net.activate(arch)
    static = net.export(arch)
    batches = [torch.randn(8, 3, 28, 28, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    for model in (net, static):  # the generic recalibration: reset, cumulative average
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        model.train()
        with torch.no_grad():
            outs = [model(x) for x in batches]
        model.eval()
        model._recal_outs = outs
    for a, b in zip(net._recal_outs, static._recal_outs):
        assert (a - b).abs().max().item() < 1e-4
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        assert (net(x) - static(x)).abs().max().item() < 1e-5
        assert (net.export(arch).eval()(x) - static(x)).abs().max().item() < 1e-5


# --------------------------------------------------------------------------- channel sorting
def _importance(block):
    return block.project.conv.weight.abs().sum(dim=(0, 2, 3))


def test_channel_sorting_keeps_largest_network_and_orders_channels():
    space = create_space("ofa_mbv3_cifar", **TINY_CIFAR, kernel_transform=True)
    net = space.build_supernet(seed=4)
    _randomise_state(net, 4)
    net.eval().activate(space.largest())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = net(x)
        assert any((_importance(b)[1:] > _importance(b)[:-1]).any() for s in net.stages for b in s)
        net.sort_channels()
        after = net(x)
    assert (before - after).abs().max().item() < 1e-5
    for stage in net.stages:
        for block in stage:
            imp = _importance(block)
            assert (imp[1:] <= imp[:-1]).all()
            if block.se is not None:
                se_imp = block.se.expand.weight.abs().sum(dim=(0, 2, 3))
                assert (se_imp[1:] <= se_imp[:-1]).all()


def test_channel_sorting_width_phase_keeps_trained_buckets():
    space = create_space("ofa_mbv3_cifar", **TINY_CIFAR)
    net = space.build_supernet(seed=5)
    _randomise_state(net, 5)
    net.eval()
    mid4 = space.largest()
    for stage in mid4["stages"]:
        stage["expand"] = [4] * stage["depth"]
    net.activate(mid4)
    x = torch.randn(2, 3, 32, 32)
    block = net.stages[1][0]
    width4 = block.geometry(7, 4).mid_channels
    cols = block.project.conv.weight[:, :width4].clone()
    with torch.no_grad():
        before = net(x)
        net.sort_channels(stage=1, width_phase=1)
        after = net(x)
    # channels moved only inside [0, width(e=4)) and [width(e=4), max): the e=4 subnet is unchanged
    assert (before - after).abs().max().item() < 1e-5
    moved = block.project.conv.weight[:, :width4]
    assert torch.allclose(moved.sum(dim=1), cols.sum(dim=1), atol=1e-5)
    imp = _importance(block)
    assert (imp[1:width4] <= imp[:width4 - 1]).all()
    with pytest.raises(ConfigError):
        net.sort_channels(stage=5)


# ------------------------------------------------------------------ OFA latency tables & configs
def _load_lut(resolution: int):
    yaml = pytest.importorskip("yaml")
    path = shared_data_path(f"ofa/note10_latency_lut/{resolution}_lookup_table.yaml")
    with open(path) as f:
        return yaml.safe_load(f)


def test_layer_descriptors_are_note10_table_keys():
    space = create_space("ofa_mbv3")
    rng = np.random.default_rng(7)
    for res in LUT_RESOLUTIONS:
        lut = _load_lut(res)
        archs = [{**a, "resolution": res} for a in
                 [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(4)]]
        latencies = []
        for arch in archs:
            keys = space.layer_descriptors(arch)
            missing = [k for k in keys if k not in lut]
            assert not missing, missing[:3]
            assert keys[0].startswith("Conv-") and keys[-1] == "Logits-input:1x1x1536-output:1000"
            assert len(keys) == 1 + 1 + sum(s["depth"] for s in arch["stages"]) + 4
            latencies.append(sum(lut[k]["mean"] for k in keys))
        assert 5 < latencies[0] < min(latencies[2:]) and max(latencies[2:]) < latencies[1] < 150


def _published_subnets():
    path = shared_data_path("ofa/ofa_specialized_configs.tar")
    with tarfile.open(path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    for name, raw in sorted(files.items()):
        if not name.endswith("net.config"):
            continue
        net = json.loads(raw)
        run = json.loads(files[name.replace("net.config", "run.config")])
        if net.get("name") == "MobileNetV3":
            yield name.split("/")[-2], net, run["image_size"]


def test_geometry_cost_and_latency_match_published_ofa_subnets():
    """OFA's released subnets (w1.0 and w1.2) rebuilt from our arch format have identical layer
    shapes; MACs equal the 'flops-NNNM' names; Note10 latency matches the 'lat-NNms' name."""
    checked = 0
    for tag, net_config, image_size in _published_subnets():
        blocks = [b["mobile_inverted_conv"] for b in net_config["blocks"][1:]]
        stages = []
        for b in blocks:
            if b["stride"] == 2 or not stages or b["out_channels"] != stages[-1][-1]["out_channels"]:
                stages.append([])
            stages[-1].append(b)
        width_mult = 1.2 if net_config["first_conv"]["out_channels"] == 24 and blocks[0]["out_channels"] == 32 else 1.0
        space = create_space("ofa_mbv3", width_mult=width_mult, resolutions=list(range(128, 264, 4)))
        arch = space.validate({"resolution": image_size, "stages": [
            {"depth": len(s), "kernel": [b["kernel_size"] for b in s],
             "expand": [b["expand_ratio"] for b in s]} for s in stages]})
        geometry = space.network_geometry(arch)
        assert geometry.stem_channels == net_config["first_conv"]["out_channels"]
        for ours, theirs in zip(geometry.blocks[1:], blocks):
            assert (ours.in_channels, ours.out_channels, ours.mid_channels, ours.kernel, ours.stride,
                    ours.use_se, ours.activation) == (
                theirs["in_channels"], theirs["out_channels"], theirs["mid_channels"],
                theirs["kernel_size"], theirs["stride"], theirs["use_se"],
                theirs["act_func"].replace("h_swish", "hswish")), tag
        assert geometry.final_expand_channels == net_config["final_expand_layer"]["out_channels"]
        assert geometry.feature_channels == net_config["feature_mix_layer"]["out_channels"]
        flops_tag = re.match(r"flops-(\d+)M", tag)
        if flops_tag:
            assert round(space.cost(arch)["macs"] / 1e6) == int(flops_tag.group(1))
        lat_tag = re.match(r"note10_lat-(\d+)ms", tag)
        if lat_tag and width_mult == 1.2 and image_size in LUT_RESOLUTIONS:
            lut = _load_lut(image_size)
            latency = sum(lut[k]["mean"] for k in space.layer_descriptors(arch))
            assert abs(latency - int(lat_tag.group(1))) < 1.0, (tag, latency)
        checked += 1
    assert checked >= 20


def test_step_throughput_benchmark_smoke(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ofa_step_throughput.py"
    spec = importlib.util.spec_from_file_location("bench_ofa_step_throughput", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "r.json"
    module.main(["--smoke", "--random-archs", "0", "--memory-format", "channels_last", "--out", str(out)])
    torch.set_num_threads(1)  # main() set it; keep this module's setting
    result = json.loads(out.read_text())
    assert result["smoke"] and result["space"]["options"]["width_mult"] == 0.25
    space = space_from_spec(result["space"])
    assert [r["arch"] for r in result["archs"]] == [space.largest(), space.smallest()]
    for r in result["archs"]:
        assert r["supernet_images_per_s"] > 0 and r["static_images_per_s"] > 0 and r["ratio"] > 0
