"""The declared supernet interface (raynas/supernet.py): the trainer calls the capabilities a
supernet declares and probes nothing; a capability a supernet lacks fails with a clear error,
before training starts; a model that is not a ``Supernet`` is refused."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from raynas import create_space
from raynas.errors import ConfigError
from raynas.supernet import FixedArchSupernet, Supernet, frozen_teacher
from raynas.training import SupernetTrainConfig
from tiny_supernet import SPACE_NAME, TinySpace, make_supernet
from trainables.supernet import SupernetTrainer

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# digits at 8x8: 75 steps per epoch of 16 images
TINY_RUN = dict(space=SPACE_NAME, data="digits", data_options={"image_size": 8}, epochs=1,
                batch_size=16, lr=0.01, device="cpu", sampler="sandwich", cpu_threads=1,
                eval_batch_size=64, calib_images=64)


def _schedule(sort_channels):
    widths = {"name": "widths", "epochs": 0.03, "lr": 0.01, "unlock": ["w1", "w2"]}
    if sort_channels is not None:
        widths["sort_channels"] = sort_channels
    return {"phases": [{"name": "full", "epochs": 0.03, "lr": 0.01}, widths]}


def _progressive(tmp_path, sort_channels):
    return SupernetTrainConfig.from_any(dict(
        TINY_RUN, output=str(tmp_path), sampler="progressive_shrinking",
        sampler_options={"schedule": _schedule(sort_channels)}))


def test_the_trainer_probes_no_attributes():
    """Capabilities are methods of Supernet: a hasattr/getattr in the trainer means one was not
    declared (add it to raynas.supernet.Supernet with a default instead)."""
    tree = ast.parse((ROOT / "trainables" / "supernet.py").read_text(encoding="utf-8"))
    probes = [node.lineno for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("hasattr", "getattr")]
    assert probes == [], f"trainables/supernet.py probes attributes at lines {probes}"


def test_the_base_declares_every_capability_absent():
    net = make_supernet(0)
    assert net.alpha_parameters() == [] and net.alpha_values() == [] and net.derive_arch() is None
    assert not net.can_split and not net.supports_channel_sorting and net.num_width_phases == 1
    assert net.build_options is None and net.last_forward_ops() == []
    with pytest.raises(ConfigError, match=f"space '{SPACE_NAME}'.*cannot sort channels"):
        net.sort_channels()
    with pytest.raises(ConfigError, match=f"space '{SPACE_NAME}'.*cannot split"):
        net.split()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    net.eval()
    before = net(x)
    net.set_step(5)
    with net.arch_mode():
        assert torch.equal(net(x), before)  # the defaults change nothing


def test_channel_sorting_on_a_supernet_that_cannot_sort_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="phase 'widths' asks for channel sorting but the supernet "
                                          f"of space '{SPACE_NAME}' cannot sort channels"):
        SupernetTrainer(_progressive(tmp_path, True))


def test_auto_sorting_skips_a_supernet_that_cannot_sort(tmp_path):
    """"auto" sorts only where the supernet can: the tiny CNN trains through its width phase
    unsorted, distilling from the fixed teacher, and reports no derived arch (it has no α)."""
    trainer = SupernetTrainer(_progressive(tmp_path / "auto", "auto"))
    trainer.fit()
    assert trainer.step == trainer.total_steps > 2
    events = [e["event"] for e in trainer.events]
    assert events == ["phase", "phase", "teacher"]
    assert isinstance(trainer.teacher, Supernet) and trainer.teacher.active_arch == trainer.space.largest()
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    assert all("alpha" not in record for record in trainer.history)
    assert set(trainer.evaluate_extremes()) == {"largest_accuracy", "smallest_accuracy", "calib_images"}


def test_splitting_a_supernet_that_cannot_split_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match=f"the supernet of space '{SPACE_NAME}' cannot split"):
        SupernetTrainer(SupernetTrainConfig.from_any(dict(TINY_RUN, output=str(tmp_path),
                                                          sampler="few_shot")))


def test_a_model_that_is_not_a_supernet_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(TinySpace, "build_supernet", lambda self, num_classes, **kw: nn.Linear(3, num_classes))
    with pytest.raises(ConfigError, match="build_supernet returned a Linear, not a "
                                          r"raynas\.supernet\.Supernet; subclass Supernet"):
        SupernetTrainer(SupernetTrainConfig.from_any(dict(TINY_RUN, output=str(tmp_path))))


def test_a_fixed_arch_supernet_runs_its_one_arch():
    space = create_space(SPACE_NAME)
    arch = space.smallest()
    torch.manual_seed(0)
    static = space.build_static(arch, 10).eval()
    net = FixedArchSupernet(space, arch, static).eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert net.activate(dict(arch)) == arch and torch.equal(net(x), static(x))
    with pytest.raises(ConfigError, match="standalone model is arch"):
        net.activate(space.largest())
    exported = net.export(arch)
    assert exported is not static and torch.equal(exported(x), static(x))
    teacher = frozen_teacher(net, arch)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in net.parameters())  # the trained model is untouched


def test_ofa_and_hybrid_declare_their_capabilities():
    ofa = create_space("ofa_mbv3_cifar", width_mult=0.1, resolutions=[8], depth_choices=[1],
                       kernel_choices=[3], expand_choices=[2, 3, 4]).build_supernet(10)
    assert ofa.supports_channel_sorting and ofa.num_width_phases == 3 and not ofa.can_split

    hybrid = create_space("hybrid_cifar", img_size=16, channels=16, num_layers=3, expand_ratios=[2],
                          num_heads=[1], head_dim=8, mlp_ratios=[2.0]).build_supernet(mode="uniform")
    hybrid.eval()
    arch = hybrid.activate(hybrid.space.smallest())
    assert len(hybrid.alpha_parameters()) == 3 and len(hybrid.alpha_values()) == 3
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with hybrid.arch_mode():
        assert hybrid.mode == "arch"
        hybrid(x)
        assert hybrid.last_forward_ops() == [layer["op"] for layer in arch["layers"]]
    assert hybrid.mode == "uniform"
