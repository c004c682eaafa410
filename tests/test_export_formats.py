"""Exports that load without raynas: OFA subnets as timm MobileNetV3 models (checked in a
process that cannot import raynas, with the README's timm-only loader), and ONNX."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from raynas import create_space
from raynas.export import save_exported
from raynas.export_formats import ONNX_FILE, TIMM_DIR, check_batch, export_onnx, export_timm
from docs_runner import blocks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _trained_looking(supernet, seed: int = 0):
    """Random weights and BN statistics (a fresh init has mean 0 / var 1 everywhere, which
    would hide a wrong mapping of running statistics)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in supernet.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return supernet.eval()


def _exported(tmp_path: Path, space, arch, name: str):
    supernet = _trained_looking(space.build_supernet(10))
    supernet.activate(arch)
    folder = save_exported(tmp_path / name, supernet.export(arch).eval(), space=space, arch=arch, num_classes=10,
                           mean=MEAN, std=STD)
    return supernet, folder


def _timm_loader_block() -> str:
    """The README's timm-only loader (the block marked no-raynas), without its demo call."""
    (block,) = [b for b in blocks("README.md") if b.mode == "no-raynas"]
    return block.text.split("\nmodel, pretrained_cfg = load_timm_subnet(")[0]


NO_RAYNAS = textwrap.dedent('''\
    import importlib.abc, sys
    class _NoRaynas(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("raynas", "spaces", "trainables"):
                raise ImportError(f"{name} is not installed here")
            return None
    sys.meta_path.insert(0, _NoRaynas())
    ''')


@pytest.mark.parametrize("space_name, options", [
    ("ofa_mbv3_cifar", {"width_mult": 0.25}),                                  # stride-1 stem, 24-32 px
    ("ofa_mbv3", {"width_mult": 0.35, "resolutions": [128, 160]}),           # ImageNet layout
])
def test_ofa_subnet_is_a_timm_model_that_loads_without_raynas(space_name, options, tmp_path):
    space = create_space(space_name, **options)
    rng = np.random.default_rng(3)
    archs = [space.sample(rng), space.smallest()]
    for i, arch in enumerate(archs):
        supernet, folder = _exported(tmp_path, space, arch, f"subnet{i}")
        timm_dir, diff = export_timm(folder)
        assert timm_dir == folder / TIMM_DIR and diff <= 1e-4
        x = check_batch({"input_resolution": arch["resolution"]}, batch=3, seed=7)
        np.save(tmp_path / f"x{i}.npy", x.numpy())
        with torch.inference_mode():
            np.save(tmp_path / f"want{i}.npy", supernet(x).numpy())   # the supernet's active subnet
    script = NO_RAYNAS + _timm_loader_block() + textwrap.dedent(f'''
        import numpy as np, torch, timm
        for i in range({len(archs)}):
            model, cfg = load_timm_subnet(f"subnet{{i}}/{TIMM_DIR}")
            assert type(model).__module__ == "timm.models.mobilenetv3", type(model)
            assert cfg["mean"] == {list(MEAN)!r} and cfg["input_size"][1] == np.load(f"x{{i}}.npy").shape[-1]
            with torch.inference_mode():
                got = model(torch.from_numpy(np.load(f"x{{i}}.npy"))).numpy()
            np.save(f"got{{i}}.npy", got)
        assert "raynas" not in sys.modules and "spaces" not in sys.modules
        print("timm", timm.__version__)
        ''')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for i in range(len(archs)):
        want, got = np.load(tmp_path / f"want{i}.npy"), np.load(tmp_path / f"got{i}.npy")
        assert got.shape == want.shape == (3, 10)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_the_no_raynas_guard_really_blocks_raynas(tmp_path):
    """The subprocess check above would prove nothing if raynas stayed importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", NO_RAYNAS + "import raynas"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "raynas is not installed here" in done.stderr


def test_a_space_without_a_timm_form_says_so(tmp_path):
    from raynas.errors import ConfigError

    space = create_space("nb201")
    arch = space.smallest()
    model = space.build_static(arch, 10)
    folder = save_exported(tmp_path / "nb", model, space=space, arch=arch, num_classes=10, mean=MEAN, std=STD)
    with pytest.raises(ConfigError, match="no timm export"):
        export_timm(folder)
    assert not (folder / TIMM_DIR).exists()


def test_onnx_export_gives_the_subnets_outputs_under_onnxruntime(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    space = create_space("ofa_mbv3_cifar", width_mult=0.25)
    arch = space.sample(np.random.default_rng(5))
    supernet, folder = _exported(tmp_path, space, arch, "subnet")
    path, diff = export_onnx(folder)
    assert path == folder / ONNX_FILE and diff is not None and diff <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = check_batch({"input_resolution": arch["resolution"]}, batch=5, seed=11)   # another batch size
    (got,) = session.run(["logits"], {"images": x.numpy()})
    with torch.inference_mode():
        want = supernet(x).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
