"""Datasets by spec: digits, CIFAR-10 (python batches and JPG archive), ImageFolder; seeded
stratified splits; batching and tensor transforms."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_data_path
from raynas import DataError
from raynas.data import augment, iterate_batches, load_dataset, resize, to_float
from raynas.data.cifar import CIFAR10_CLASSES
from raynas.data.splits import stratified_split


# ------------------------------------------------------------------------------------ digits
def test_digits_shapes_labels_and_pixels():
    ds = load_dataset("digits", seed=0)
    assert ds.num_classes == 10 and ds.image_size == 32
    assert ds.sizes == {"train": 1200, "calib": 250, "val": 347}
    for split in ds.splits.values():
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 32, 32)
        assert split.labels.dtype == torch.int64
        assert torch.equal(split.images[:, 0], split.images[:, 2])  # replicated grey channels
    with pytest.raises(DataError, match="no 'test' split"):
        ds.split("test")

    from sklearn.datasets import load_digits
    native = load_dataset("digits", image_size=8, seed=0)
    ref = np.round(load_digits().images * 255.0 / 16.0).astype(np.uint8)
    val_rows = native.source_indices["val"]
    assert np.array_equal(native.split("val").images[:, 1].numpy(), ref[val_rows])
    assert np.array_equal(native.split("val").labels.numpy(), load_digits().target[val_rows])


def test_splits_are_deterministic_disjoint_and_stratified():
    a, b, c = (load_dataset("digits", image_size=8, seed=s) for s in (0, 0, 1))
    for name in ("train", "calib", "val"):
        assert torch.equal(a.split(name).images, b.split(name).images)
        assert np.array_equal(a.source_indices[name], b.source_indices[name])
    assert not np.array_equal(a.source_indices["val"], c.source_indices["val"])
    idx = a.source_indices
    union = np.concatenate([idx["train"], idx["calib"], idx["val"]])
    assert len(union) == 1797 and len(np.unique(union)) == 1797  # disjoint and complete
    overall = np.bincount(np.concatenate([a.split(n).labels.numpy() for n in ("train", "calib", "val")]))
    for name, split in a.splits.items():
        hist = np.bincount(split.labels.numpy(), minlength=10)
        assert np.all(np.abs(hist - overall * len(split) / 1797) <= 1.0), (name, hist)
    # val depends only on the seed, not on how big calib is
    d = load_dataset("digits", image_size=8, seed=0, calib_size=100)
    assert np.array_equal(d.source_indices["val"], idx["val"]) and len(d.split("calib")) == 100


def test_stratified_split_sizes_and_errors():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    parts = stratified_split(labels, {"val": 10, "calib": 7}, np.random.default_rng(0), rest_size=40)
    assert {k: len(v) for k, v in parts.items()} == {"val": 10, "calib": 7, "train": 40}
    assert np.bincount(labels[parts["val"]]).tolist() == [5, 3, 2]
    with pytest.raises(DataError, match="ask for 101 images"):
        stratified_split(labels, {"val": 101}, np.random.default_rng(0))


def test_spec_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="unknown dataset kind 'mnist'.*digits.*cifar10.*imagefolder"):
        load_dataset("mnist:/x")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="takes no path"):
        load_dataset("digits:/tmp")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match=r"expected cifar-10-batches-py/.*cifar10_jpg\.tar\.gz under"):
        load_dataset(f"cifar10:{tmp_path}")
    with pytest.raises(DataError, match="ask for"):
        load_dataset("digits", val_size=2000)


# ------------------------------------------------------------------------ CIFAR python batches
def _write_batch(path: Path, n: int, offset: int) -> np.ndarray:
    data = ((np.arange(n * 3072) + offset) % 251).astype(np.uint8).reshape(n, 3072)
    labels = [(i + offset) % 10 for i in range(n)]
    with open(path, "wb") as f:  # protocol 2 and bytes keys, as the original batches
        pickle.dump({b"batch_label": b"x", b"labels": labels, b"data": data,
                     b"filenames": [b"f"] * n}, f, protocol=2)
    return data


def test_cifar_python_batches_in_torchvision_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    first = _write_batch(folder / "data_batch_1", 20, 0)
    for i in range(2, 6):
        _write_batch(folder / f"data_batch_{i}", 20, i)
    _write_batch(folder / "test_batch", 10, 7)
    ds = load_dataset(f"cifar10:{tmp_path}", val_size=20, calib_size=10, cache_dir=tmp_path / "c")
    assert ds.sizes == {"train": 70, "calib": 10, "val": 20, "test": 10}
    assert ds.class_names == CIFAR10_CLASSES and ds.mean[0] == pytest.approx(0.4914)
    assert ds.hflip and ds.eval_splits().hflip  # photos may be mirrored (digits may not)
    assert torch.equal(ds.split("test").labels, torch.tensor([(i + 7) % 10 for i in range(10)]))
    rows = ds.source_indices["val"]
    in_first = rows[rows < 20]
    val_imgs = ds.split("val").images[: len(in_first)]
    assert np.array_equal(val_imgs.reshape(len(in_first), -1).numpy(), first[in_first])
    with pytest.raises(DataError, match="ask for 5000|ask for 7000"):
        load_dataset(f"cifar10:{folder}")  # the folder itself also works; defaults too big here


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Exploit(marker), b"labels": []}, f, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_1.*(posix|os)\.system.*refuses"):
        load_dataset(f"cifar10:{tmp_path}")
    assert not marker.exists()
    (folder / "data_batch_1").write_bytes(b"\x80\x02}q\x00(X")  # truncated pickle
    with pytest.raises(DataError, match="truncated or not a CIFAR python batch"):
        load_dataset(f"cifar10:{tmp_path}")


# --------------------------------------------------------------------------- CIFAR JPG archive
def _jpeg(color) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _write_archive(path: Path, per_class=(2, 1), classes=CIFAR10_CLASSES) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for split, n in zip(("train", "test"), per_class):
            for label, cls in enumerate(classes):
                for i in range(n):
                    data = _jpeg((label * 25, 100 + i * 50, 255 - label * 25))
                    info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def test_small_jpg_archive_labels_pixels_and_cache(tmp_path):
    archive = tmp_path / "cifar10_jpg.tar.gz"
    _write_archive(archive)
    cache = tmp_path / "cache"
    ds = load_dataset(f"cifar10:{tmp_path}", val_size=5, calib_size=5, cache_dir=cache)
    assert ds.sizes == {"train": 10, "calib": 5, "val": 5, "test": 10}
    test = ds.split("test")
    assert test.labels.tolist() == list(range(10))
    red = test.images[:, 0].float().mean(dim=(1, 2))
    assert torch.allclose(red, torch.arange(10.0) * 25, atol=3)  # JPEG is nearly exact on flat colours
    entry = Path(ds.info["cache"])
    assert (entry / "meta.json").is_file() and (entry / "train_images.npy").is_file()
    stamp = (entry / "train_images.npy").stat().st_mtime_ns
    again = load_dataset(f"cifar10:{archive}", val_size=5, calib_size=5, cache_dir=cache)
    assert (entry / "train_images.npy").stat().st_mtime_ns == stamp  # served from the cache
    assert torch.equal(again.split("val").images, ds.split("val").images)


def test_corrupt_or_wrong_archive_is_a_data_error(tmp_path):
    bad = tmp_path / "a" / "cifar10_jpg.tar.gz"
    bad.parent.mkdir()
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage" * 100)
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_dataset(f"cifar10:{bad.parent}", cache_dir=tmp_path / "c")
    wrong = tmp_path / "b" / "cifar10_jpg.tar.gz"
    wrong.parent.mkdir()
    _write_archive(wrong, classes=("cats", "dogs"))
    with pytest.raises(DataError, match="unknown class folder 'cats'"):
        load_dataset(f"cifar10:{wrong}", cache_dir=tmp_path / "c")


def test_real_cifar10_jpg_archive():
    archive = shared_data_path("cifar10/cifar10_jpg.tar.gz")
    ds = load_dataset(f"cifar10:{archive.parent}")  # default cache: decoded once, then reused
    full_train = np.concatenate([ds.split(n).labels.numpy() for n in ("train", "calib", "val")])
    assert len(full_train) == 50_000 and len(ds.split("test")) == 10_000
    assert np.bincount(full_train).tolist() == [5000] * 10
    assert np.bincount(ds.split("test").labels.numpy()).tolist() == [1000] * 10
    assert ds.sizes == {"train": 43_000, "calib": 2000, "val": 5000, "test": 10_000}
    means = ds.split("val").images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor([0.4913, 0.4821, 0.4465]), atol=0.01)


# ------------------------------------------------------------------------------ imagefolder
def _write_folder(root: Path, classes=("ant", "bee", "cow"), n=6, colors=None):
    from PIL import Image

    for label, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            color = (40 * label, 10 * i, 200)
            Image.new("RGB", (20 + i, 12 + 2 * i), color).save(root / cls / f"{i}.png")


def test_imagefolder_memory_mapped_cache(tmp_path, monkeypatch):
    _write_folder(tmp_path / "imgs")
    cache = tmp_path / "cache"
    ds = load_dataset(f"imagefolder:{tmp_path / 'imgs'}", image_size=8, cache_dir=cache,
                      val_size=3, calib_size=3)
    assert ds.class_names == ("ant", "bee", "cow") and ds.image_size == 8
    assert ds.sizes == {"train": 12, "calib": 3, "val": 3}
    train = ds.split("train")
    assert train.rows is not None and len(train.store) == 18  # lazily indexed, mapped store
    imgs, labels = train.images, train.labels
    assert imgs.shape == (12, 3, 8, 8)
    expected_red = (labels * 40).to(torch.uint8)
    assert torch.equal(imgs[:, 0, 4, 4], expected_red)  # flat colours survive the resize exactly
    assert torch.equal(imgs[:, 2], torch.full_like(imgs[:, 2], 200))
    # batches read through the row index give the same images
    xs = torch.cat([x for x, _ in train.batches(5)])
    assert torch.equal(xs, imgs)
    # a second load is served from the cache without decoding
    import raynas.data.imagefolder as imf
    monkeypatch.setattr(imf, "_decode_into", lambda *a, **k: pytest.fail("decoded twice"))
    again = load_dataset(f"imagefolder:{tmp_path / 'imgs'}", image_size=8, cache_dir=cache,
                         val_size=3, calib_size=3)
    assert torch.equal(again.split("val").images, ds.split("val").images)
    small = ds.eval_splits()
    assert set(small.splits) == {"calib", "val"} and small.split("val").rows is None
    assert len(pickle.dumps(small)) < 4000  # not the whole mapped store


def test_imagefolder_train_test_layout_and_errors(tmp_path):
    _write_folder(tmp_path / "d" / "train")
    _write_folder(tmp_path / "d" / "test", n=2)
    ds = load_dataset(f"imagefolder:{tmp_path / 'd'}", image_size=4, cache_dir=tmp_path / "c")
    assert len(ds.split("test")) == 6 and ds.split("test").labels.tolist() == [0, 0, 1, 1, 2, 2]
    (tmp_path / "e" / "empty_class").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(f"imagefolder:{tmp_path / 'e'}", cache_dir=tmp_path / "c")
    _write_folder(tmp_path / "f", n=3)
    (tmp_path / "f" / "ant" / "9.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"9\.png is unreadable"):
        load_dataset(f"imagefolder:{tmp_path / 'f'}", cache_dir=tmp_path / "c")


# ------------------------------------------------------------------ batching and transforms
def test_iterate_batches_is_seeded_and_complete():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    labels = torch.arange(10)
    run = lambda seed, **kw: list(iterate_batches(images, labels, 4, rng=np.random.default_rng(seed), **kw))
    a, b, c = run(1), run(1), run(2)
    assert [len(y) for _, y in a] == [4, 4, 2]
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))
    assert sorted(torch.cat([y for _, y in a]).tolist()) == list(range(10))
    assert torch.cat([y for _, y in a]).tolist() != torch.cat([y for _, y in c]).tolist()
    assert all(torch.equal(x[:, 0, 0, 0].long(), y) for x, y in a)
    assert [len(y) for _, y in run(1, drop_last=True)] == [4, 4]
    ordered = list(iterate_batches(images, labels, 3, shuffle=False))
    assert torch.cat([y for _, y in ordered]).tolist() == list(range(10))
    with pytest.raises(TypeError, match="seeded numpy Generator"):
        list(iterate_batches(images, labels, 4, shuffle=True))


def _reference_augment(x, tops, lefts, flips, pad):
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    out = []
    for img, t, l, f in zip(padded, tops, lefts, flips):
        crop = img[:, t:t + x.shape[2], l:l + x.shape[3]]
        out.append(crop.flip(-1) if f else crop)
    return torch.stack(out)


def test_augment_matches_a_per_image_reference_and_is_seeded():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 8, 10), dtype=torch.uint8, generator=gen)
    out = augment(x, np.random.default_rng(5), pad=3)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, augment(x, np.random.default_rng(5), pad=3))
    assert not torch.equal(out, augment(x, np.random.default_rng(6), pad=3))
    rng = np.random.default_rng(5)  # the same draws augment makes, in its order
    tops, lefts, flips = rng.integers(0, 7, 16), rng.integers(0, 7, 16), rng.random(16) < 0.5
    assert torch.equal(out, _reference_augment(x, tops, lefts, flips, 3))
    flipped_only = augment(x, np.random.default_rng(1), pad=0)
    for img, res in zip(x, flipped_only):
        assert torch.equal(res, img) or torch.equal(res, img.flip(-1))


def test_to_float_and_resize():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 4, 4)
    f = to_float(x, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert f.dtype == torch.float32
    assert torch.allclose(f[1, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))
    assert torch.allclose(f[0, :, 0, 0], torch.tensor([-2.0, -1.0, -0.5]))
    assert resize(f, 4) is f and resize(f, None) is f
    assert resize(f, 6).shape == (2, 3, 6, 6) and torch.allclose(resize(f, 6), f[:, :, :1, :1].expand(2, 3, 6, 6))


def _load_small_archive(args):
    folder, cache = args
    ds = load_dataset(f"cifar10:{folder}", val_size=5, calib_size=5, cache_dir=cache)
    return [ds.split(n).images.sum().item() for n in ("train", "calib", "val", "test")]


def test_concurrent_processes_share_one_cache_entry(tmp_path):
    import multiprocessing

    _write_archive(tmp_path / "cifar10_jpg.tar.gz")
    cache = tmp_path / "cache"
    with multiprocessing.get_context("fork").Pool(3) as pool:
        results = pool.map(_load_small_archive, [(tmp_path, cache)] * 3)
    assert results[0] == results[1] == results[2]
    entries = list((cache / "datasets").iterdir())
    assert len(entries) == 1
    assert sorted(p.name for p in entries[0].iterdir() if not p.name.startswith(".")) == [
        "meta.json", "test_images.npy", "test_labels.npy", "train_images.npy", "train_labels.npy"]


def test_split_to_device_and_row_indexed_batches(tmp_path):
    _write_folder(tmp_path / "imgs", n=4)
    ds = load_dataset(f"imagefolder:{tmp_path / 'imgs'}", image_size=4, cache_dir=tmp_path / "c",
                      val_size=3, calib_size=3)
    train = ds.split("train")
    moved = train.to("cpu")
    assert moved.rows is None and torch.equal(moved.images, train.images)
    a = [y for _, y in train.batches(2, rng=np.random.default_rng(3), shuffle=True)]
    b = [y for _, y in moved.batches(2, rng=np.random.default_rng(3), shuffle=True)]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and sum(len(y) for y in a) == len(train)


def test_data_pipeline_benchmark_smoke(tmp_path):
    import importlib.util
    import json

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "data_pipeline.py"
    spec = importlib.util.spec_from_file_location("bench_data_pipeline", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--smoke", "--batch-size", "100", "--out", str(tmp_path / "r.json")])
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["smoke"] and result["sizes"]["train"] == 1200
    for key in ("pipeline_host", "pipeline_on_device"):
        assert result[key]["batches"] == 5 and result[key]["images"] == 500
        assert result[key]["images_per_s"] > 0
    # the evaluator part, with the tiny test space standing in for a real one
    from tiny_supernet import SPACE_NAME, digits16, single_threaded
    with single_threaded():
        ev = module.bench_evaluator(digits16(), SPACE_NAME, torch.device("cpu"), 64, archs=3,
                                    calib_images=128, bf16=False, budget_s=30)
    assert ev["archs"] == 3 and ev["calib_batches"] == 2 and ev["calib_images"] == 128 and ev["val_images"] == 347
    assert ev["s_per_arch_mean"] > 0
