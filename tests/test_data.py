"""trainact.harness.data: readers (folders, archives, CIFAR pickles), cache, synthetic set, BatchLoader."""

from __future__ import annotations

import io
import math
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from trainact.harness import data as D
from trainact.harness.data import BatchLoader, DataError, ImageDataset, load_dataset, sources, synthetic_dataset
from trainact.harness.data import formats
from trainact.harness.data.imagefolder import ImageFolderReader
from trainact.harness.data.readers import Reader
from helpers import make_archive, make_cifar, make_tree, save_image

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------
# checks


def _stats(images: torch.Tensor):
    x = images.to(torch.float64) / 255
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3), correction=0)


def _check(ds: ImageDataset, expected: dict, classes=("cat", "dog", "frog"), test_split="test") -> None:
    assert ds.classes == sorted(classes)
    for images, labels, split in ((ds.train_images, ds.train_labels, "train"), (ds.test_images, ds.test_labels, test_split)):
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64 and images.is_contiguous()
        torch.testing.assert_close(images, expected[split][0], rtol=0, atol=0)
        torch.testing.assert_close(labels, expected[split][1], rtol=0, atol=0)
    mean, std = _stats(expected["train"][0])
    torch.testing.assert_close(torch.tensor(ds.mean, dtype=torch.float64), mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.tensor(ds.std, dtype=torch.float64), std, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------------
# formats


@pytest.mark.parametrize("test_split", ["test", "val"])
def test_image_folder_directory_roundtrip(tmp_path, test_split):
    root = tmp_path / "mini"
    expected = make_tree(root, counts=(("train", 3), (test_split, 2)))
    (root / "train" / "README.txt").write_text("not an image, not in a class folder")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    ds = load_dataset(root, cache_dir=tmp_path / "cache")
    _check(ds, expected, test_split=test_split)
    assert ds.name == "mini" and ds.source == str(root.resolve())
    assert ds.num_classes == 3 and ds.image_shape == (3, 6, 8)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".zip"])
@pytest.mark.parametrize("top", [None, "cifar-mini"])
def test_archives_roundtrip(tmp_path, suffix, top):
    expected = make_tree(tmp_path / "src")
    path = make_archive(tmp_path / "src", tmp_path / f"mini{suffix}", top)
    ds = load_dataset(path, cache_dir=tmp_path / "cache")
    _check(ds, expected)
    assert ds.name == "mini" and ds.source == str(path.resolve())


def test_grayscale_becomes_rgb_with_every_loader_and_mixed_too(tmp_path):
    """An all-gray folder is RGB (3 equal channels) in memory, as the streaming loader feeds it: one model."""
    expected = make_tree(tmp_path / "gray", channels=1)
    ds = load_dataset(tmp_path / "gray", cache_dir=tmp_path / "cache")
    assert ds.image_shape == (3, 6, 8)
    _check(ds, {split: (images.expand(-1, 3, -1, -1).contiguous(), labels)
                for split, (images, labels) in expected.items()})
    streamed = load_dataset(tmp_path / "gray", cache_dir=tmp_path / "cache", loader="stream")
    assert streamed.input_shape == ds.input_shape
    # one RGB image among gray ones: everything becomes RGB, gray images replicated over the channels
    rgb = torch.randint(0, 256, (3, 6, 8), dtype=torch.uint8)
    save_image(tmp_path / "gray" / "train" / "cat" / "img99.png", rgb)
    ds = load_dataset(tmp_path / "gray", cache_dir=tmp_path / "cache")
    assert ds.image_shape == (3, 6, 8)
    torch.testing.assert_close(ds.train_images[3], rgb, rtol=0, atol=0)  # sorted after img00..02 of cat
    torch.testing.assert_close(ds.train_images[0], expected["train"][0][0].expand(3, -1, -1), rtol=0, atol=0)


def test_jpeg_matches_pillow_decoding(tmp_path):
    make_tree(tmp_path / "jpg", ext=".jpg")
    ds = load_dataset(tmp_path / "jpg", cache_dir=tmp_path / "cache")
    path = tmp_path / "jpg" / "train" / "dog" / "img01.jpg"
    with Image.open(path) as im:
        ref = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)  # (3, H, W)
    torch.testing.assert_close(ds.train_images[4], ref, rtol=0, atol=0)


@pytest.mark.parametrize("kind,protocol", [("cifar10", 2), ("cifar100", 5)])
@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_cifar_pickles(tmp_path, kind, protocol, point_at):
    expected = make_cifar(tmp_path / "data", kind, protocol=protocol)
    folder = next((tmp_path / "data").iterdir())
    ds = load_dataset(tmp_path / "data" if point_at == "parent" else folder, cache_dir=tmp_path / "cache")
    assert ds.name == kind and ds.classes == expected["classes"]
    torch.testing.assert_close(ds.train_images, expected["train"][0], rtol=0, atol=0)
    torch.testing.assert_close(ds.train_labels, expected["train"][1], rtol=0, atol=0)
    torch.testing.assert_close(ds.test_images, expected["test"][0], rtol=0, atol=0)
    torch.testing.assert_close(ds.test_labels, expected["test"][1], rtol=0, atol=0)
    mean, std = _stats(expected["train"][0])
    torch.testing.assert_close(torch.tensor(ds.mean, dtype=torch.float64), mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.tensor(ds.std, dtype=torch.float64), std, rtol=0, atol=1e-12)


def test_cifar_release_archive(tmp_path):
    """The official cifar-10-python.tar.gz layout: cifar-10-batches-py/ inside a .tar.gz."""
    expected = make_cifar(tmp_path / "src", "cifar10", protocol=2)
    path = make_archive(tmp_path / "src", tmp_path / "cifar-10-python.tar.gz", None)
    ds = load_dataset(path, cache_dir=tmp_path / "cache")
    assert ds.name == "cifar10"
    torch.testing.assert_close(ds.test_images, expected["test"][0], rtol=0, atol=0)


def test_cifar_pickle_with_foreign_globals_is_refused(tmp_path):
    make_cifar(tmp_path, "cifar10", protocol=2)
    bad = pickle.dumps({b"data": os.getcwd, b"labels": []})  # references a function: must not be loaded
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(bad)
    with pytest.raises(DataError, match=r"data_batch_3.*refusing to load global"):
        load_dataset(tmp_path, cache_dir=tmp_path / "cache")


# ----------------------------------------------------------------------------------------------------
# cache


def test_cache_hit_skips_decoding_and_a_change_invalidates_it(tmp_path, monkeypatch):
    root, cache = tmp_path / "mini", tmp_path / "cache"
    expected = make_tree(root)
    first = load_dataset(root, cache_dir=cache)
    assert len(list(cache.glob("*.pt"))) == 1 and not list(cache.glob("*.tmp"))

    decode = ImageFolderReader.decode

    def fail(*a, **k):
        raise AssertionError("decoder called despite a valid cache")

    monkeypatch.setattr(ImageFolderReader, "decode", fail)
    second = load_dataset(root, cache_dir=cache)
    _check(second, expected)
    assert second.mean == first.mean and second.std == first.std

    # change one file: a new key, so the decoder runs and sees the new pixels
    new = torch.full((3, 6, 8), 7, dtype=torch.uint8)
    target = root / "test" / "dog" / "img01.png"
    save_image(target, new)
    os.utime(target, ns=(1, 1_000_000_000))
    with pytest.raises(AssertionError, match="decoder called"):
        load_dataset(root, cache_dir=cache)
    monkeypatch.setattr(ImageFolderReader, "decode", decode)
    third = load_dataset(root, cache_dir=cache)
    torch.testing.assert_close(third.test_images[3], new, rtol=0, atol=0)


def test_archive_cache_does_not_open_the_archive(tmp_path, monkeypatch):
    make_tree(tmp_path / "src")
    path = make_archive(tmp_path / "src", tmp_path / "mini.tar.gz", "mini")
    first = load_dataset(path, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(sources, "open_archive", lambda p: pytest.fail("archive opened despite a valid cache"))
    second = load_dataset(path, cache_dir=tmp_path / "cache")
    assert second.name == "mini" and second.classes == first.classes
    torch.testing.assert_close(second.train_images, first.train_images, rtol=0, atol=0)
    os.utime(path, ns=(1, 1_000_000_000))  # touched: the cache no longer applies
    with pytest.raises(pytest.fail.Exception, match="archive opened"):
        load_dataset(path, cache_dir=tmp_path / "cache")


def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    root, cache = tmp_path / "mini", tmp_path / "cache"
    expected = make_tree(root)
    load_dataset(root, cache_dir=cache)
    (cache_file,) = cache.glob("*.pt")
    cache_file.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="ignoring unreadable dataset cache"):
        ds = load_dataset(root, cache_dir=cache)
    _check(ds, expected)
    torch.load(cache_file, weights_only=True)  # rewritten, readable again


def test_default_cache_dir_from_environment(tmp_path, monkeypatch):
    make_tree(tmp_path / "mini")
    monkeypatch.setenv("TRAINACT_CACHE", str(tmp_path / "envcache"))
    load_dataset(tmp_path / "mini")
    assert len(list((tmp_path / "envcache").glob("mini-*.pt"))) == 1


# ----------------------------------------------------------------------------------------------------
# errors


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope", cache_dir=tmp_path)


def test_unknown_layout(tmp_path):
    (tmp_path / "stuff" / "images").mkdir(parents=True)
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"understood are .*CIFAR-10.*image-folder.*found: \[images/, notes.txt"):
        load_dataset(tmp_path / "stuff", cache_dir=tmp_path)
    (tmp_path / "stuff" / "train").mkdir()
    with pytest.raises(DataError, match="neither test/ nor val/"):
        load_dataset(tmp_path / "stuff", cache_dir=tmp_path)
    (tmp_path / "data.npz").write_bytes(b"x")
    with pytest.raises(DataError, match="not a .tar/.tar.gz/.tgz/.zip"):
        load_dataset(tmp_path / "data.npz", cache_dir=tmp_path)


class _TensorReader(Reader):
    """A format made up for the test: one torch file `set.pt` holding the four arrays and the class names."""

    key, summary = "tensors", "a torch file set.pt"

    def find(self, storage, base, train_only):
        return base if storage.is_file(base + "set.pt") else None

    def select(self, storage, root):
        return [root + "set.pt"], []

    def decode(self, storage, root, where, request, budget):
        ((_, data),) = storage.read_all([root + "set.pt"])
        d = torch.load(io.BytesIO(data), weights_only=True)
        return tuple(d[k] for k in ("train_images", "train_labels", "test_images", "test_labels")), d["classes"]


def test_a_registered_reader_is_asked_and_named(tmp_path, monkeypatch):
    """Adding a format is one Reader in formats.READERS: detection asks it, in a directory or an archive, and an
    unrecognised source names it among the formats known."""
    monkeypatch.setattr(formats, "READERS", formats.READERS + (_TensorReader(),))
    g = torch.Generator().manual_seed(0)
    arrays = dict(train_images=torch.randint(0, 256, (6, 3, 4, 4), generator=g, dtype=torch.uint8),
                  train_labels=torch.tensor([0, 1] * 3), test_images=torch.randint(0, 256, (2, 3, 4, 4), generator=g,
                  dtype=torch.uint8), test_labels=torch.tensor([0, 1]))
    (tmp_path / "src" / "top").mkdir(parents=True)
    torch.save(arrays | {"classes": ["a", "b"]}, tmp_path / "src" / "top" / "set.pt")
    for path in (tmp_path / "src", make_archive(tmp_path / "src", tmp_path / "set.zip", None)):
        ds = load_dataset(path, cache_dir=tmp_path / "cache")
        assert ds.classes == ["a", "b"] and ds.name == path.name.removesuffix(".zip")
        for k, v in arrays.items():
            torch.testing.assert_close(getattr(ds, k), v, rtol=0, atol=0)
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "other")) + r": understood are .*CIFAR-10.*set\.pt"):
        load_dataset(tmp_path / "other", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("packed", [False, True])
def test_corrupt_image_is_named(tmp_path, packed):
    make_tree(tmp_path / "src")
    (tmp_path / "src" / "test" / "dog" / "img01.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    path = make_archive(tmp_path / "src", tmp_path / "mini.zip", "top") if packed else tmp_path / "src"
    name = "top/test/dog/img01.png" if packed else "test/dog/img01.png"
    with pytest.raises(DataError, match=f"cannot decode image {name}"):
        load_dataset(path, cache_dir=tmp_path / "cache")


def test_mixed_sizes(tmp_path):
    make_tree(tmp_path / "src")
    save_image(tmp_path / "src" / "train" / "dog" / "img01.png", torch.zeros(3, 7, 8, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"train/dog/img01.png is 8x7 but train/cat/img00.png is 8x6"):
        load_dataset(tmp_path / "src", cache_dir=tmp_path / "cache")


def test_mismatched_and_empty_classes(tmp_path):
    make_tree(tmp_path / "src")
    (tmp_path / "src" / "test" / "frog").rename(tmp_path / "src" / "test" / "toad")
    with pytest.raises(DataError, match=r"only in train/: \['frog'\]; only in test/: \['toad'\]"):
        load_dataset(tmp_path / "src", cache_dir=tmp_path / "cache")
    (tmp_path / "src" / "test" / "toad").rename(tmp_path / "src" / "test" / "frog")
    for f in (tmp_path / "src" / "train" / "dog").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"without images.*train/dog/"):
        load_dataset(tmp_path / "src", cache_dir=tmp_path / "cache")


def test_synthetic_options_are_checked():
    with pytest.raises(DataError, match="unknown synthetic dataset option"):
        load_dataset(None, synthetic={"sed": 1})
    with pytest.raises(DataError, match="num_classes"):
        synthetic_dataset(num_classes=1)


# ----------------------------------------------------------------------------------------------------
# the real archive (slow: decodes 60,000 JPEGs once)


@pytest.mark.slow
def test_real_cifar10_jpeg_archive(tmp_path):
    path = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    ds = load_dataset(path, cache_dir=tmp_path)
    assert ds.train_images.shape == (50000, 3, 32, 32) and ds.test_images.shape == (10000, 3, 32, 32)
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert torch.bincount(ds.train_labels).tolist() == [5000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    torch.testing.assert_close(torch.tensor(ds.mean), torch.tensor([0.4913, 0.4821, 0.4465]), rtol=0, atol=2e-3)
    torch.testing.assert_close(torch.tensor(ds.std), torch.tensor([0.2452, 0.2428, 0.2606]), rtol=0, atol=2e-3)


# ----------------------------------------------------------------------------------------------------
# synthetic set and subsets


@pytest.fixture(scope="module")
def synth() -> ImageDataset:
    return synthetic_dataset(seed=0, train_size=3000, test_size=500)


def test_synthetic_deterministic_shapes_balanced(synth):
    again = synthetic_dataset(seed=0, train_size=3000, test_size=500)
    other = synthetic_dataset(seed=1, train_size=3000, test_size=500)
    torch.testing.assert_close(again.train_images, synth.train_images, rtol=0, atol=0)
    torch.testing.assert_close(again.test_labels, synth.test_labels, rtol=0, atol=0)
    assert (other.train_images != synth.train_images).float().mean() > 0.5
    assert synth.train_images.shape == (3000, 3, 32, 32) and synth.train_images.dtype == torch.uint8
    assert synth.test_images.shape == (500, 3, 32, 32) and synth.test_labels.dtype == torch.int64
    assert torch.bincount(synth.train_labels).tolist() == [300] * 10
    assert len(synth.classes) == 10 and synth.name == "synthetic" and "seed=0" in synth.source
    mean, std = _stats(synth.train_images)
    torch.testing.assert_close(torch.tensor(synth.mean, dtype=torch.float64), mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.tensor(synth.std, dtype=torch.float64), std, rtol=0, atol=1e-12)
    small = synthetic_dataset(seed=3, num_classes=4, train_size=10, test_size=5, image_size=16, channels=1)
    assert small.train_images.shape == (10, 1, 16, 16) and small.num_classes == 4


def test_synthetic_contrast_spread_and_class_not_in_brightness(synth):
    x = synth.train_images.to(torch.float64)
    per_image_std = x.std(dim=(1, 2, 3))
    q10, q90 = torch.quantile(per_image_std, torch.tensor([0.1, 0.9], dtype=torch.float64))
    assert q90 / q10 > 4  # contrast is log-uniform over a range of 6.7x
    per_image_mean = x.mean(dim=(1, 2, 3))
    assert torch.quantile(per_image_mean, 0.1) < 70 and torch.quantile(per_image_mean, 0.9) > 185  # dark and bright
    # brightness and contrast carry no class information: a nearest-class-mean rule on them is at chance
    feats = torch.stack([per_image_mean, per_image_std.log()], 1)
    centres = torch.stack([feats[synth.train_labels == c].mean(0) for c in range(10)])
    scale = feats.std(0)
    pred = torch.cdist(feats / scale, centres / scale).argmin(1)
    assert (pred == synth.train_labels).double().mean() < 0.16


def test_subset_balanced_reproducible(synth):
    sub = synth.subset(1003, seed=5)
    assert sub.train_images.shape[0] == 1003
    counts = torch.bincount(sub.train_labels, minlength=10)
    assert counts.max() - counts.min() <= 1
    torch.testing.assert_close(synth.subset(1003, seed=5).train_images, sub.train_images, rtol=0, atol=0)
    assert not torch.equal(synth.subset(1003, seed=6).train_images, sub.train_images)
    assert sub.test_images is synth.test_images and sub.classes == synth.classes
    # every chosen image is one of the originals (found by its bytes), with its label, none twice
    pos = {img.numpy().tobytes(): i for i, img in enumerate(synth.train_images)}
    idx = torch.tensor([pos[img.numpy().tobytes()] for img in sub.train_images])
    assert len(set(idx.tolist())) == 1003
    torch.testing.assert_close(synth.train_labels[idx], sub.train_labels, rtol=0, atol=0)
    mean, std = _stats(sub.train_images)
    torch.testing.assert_close(torch.tensor(sub.mean, dtype=torch.float64), mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.tensor(sub.std, dtype=torch.float64), std, rtol=0, atol=1e-12)
    with pytest.raises(DataError, match=r"\[1, 3000\]"):
        synth.subset(3001, seed=0)
    with pytest.raises(DataError):
        synth.subset(0, seed=0)


def test_load_dataset_none_is_synthetic():
    a = load_dataset(None, synthetic={"seed": 2, "train_size": 20, "test_size": 10})
    b = synthetic_dataset(seed=2, train_size=20, test_size=10)
    torch.testing.assert_close(a.train_images, b.train_images, rtol=0, atol=0)
    assert a.source == b.source


# ----------------------------------------------------------------------------------------------------
# BatchLoader


def _tagged(n=40, c=3, h=6, w=5, seed=0):
    """Random images whose label is their index, so every batch says which images it holds."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, c, h, w), generator=g, dtype=torch.uint8), torch.arange(n)


def _loader(images, labels, **kw):
    c = images.shape[1]
    return BatchLoader(images, labels, **({"mean": [0.5] * c, "std": [0.25] * c} | kw))


def _collect(loader, epoch=0):
    xs, ys = zip(*loader.epoch(epoch))
    return list(xs), list(ys)


def test_loader_deterministic_per_seed_and_epoch():
    images, labels = _tagged()
    a = _loader(images, labels, batch_size=8, train=True, seed=3)
    b = _loader(images, labels, batch_size=8, train=True, seed=3)
    xa, ya = _collect(a, epoch=5)
    xb, yb = _collect(b, epoch=5)
    for u, v in zip(xa + ya, xb + yb):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    x6, y6 = _collect(a, epoch=6)
    assert not torch.equal(torch.cat(ya), torch.cat(y6))
    _, y_other_seed = _collect(_loader(images, labels, batch_size=8, train=True, seed=4), epoch=5)
    assert not torch.equal(torch.cat(ya), torch.cat(y_other_seed))
    assert sorted(torch.cat(ya).tolist()) == list(range(40))  # an epoch is a permutation
    assert len(a) == len(xa) == 5


def test_crop_and_flip_only_move_pixels():
    images, labels = _tagged(n=64, h=6, w=5)
    p = 2
    loader = _loader(images, labels, batch_size=64, train=True, input_range="byte", crop_padding=p, seed=1)
    (x,), (y,) = _collect(loader)
    assert x.dtype == torch.float32
    padded = torch.nn.functional.pad(images, (p, p, p, p))  # (N, C, H + 2p, W + 2p)
    candidates = {}  # (dy, dx, flip) -> (N, C, H, W): every crop of the zero-padded images, mirrored or not
    for dy in range(2 * p + 1):
        for dx in range(2 * p + 1):
            window = padded[:, :, dy : dy + 6, dx : dx + 5].float()
            candidates[dy, dx, False], candidates[dy, dx, True] = window, window.flip(-1)
    seen_flip, seen_shift = set(), set()
    for out, i in zip(x, y.tolist()):
        matches = [key for key, crops in candidates.items() if torch.equal(out, crops[i])]
        assert len(matches) == 1, (i, matches)
        seen_flip.add(matches[0][2])
        seen_shift.add(matches[0][:2])
    assert seen_flip == {False, True} and len(seen_shift) > 10


def test_input_ranges_and_no_augmentation_in_eval():
    images, labels = _tagged(n=10, c=2)
    mean, std = (0.3, 0.6), (0.2, 0.5)
    kw = dict(batch_size=4, train=False, mean=mean, std=std)
    byte = torch.cat(_collect(BatchLoader(images, labels, input_range="byte", **kw))[0])
    unit = torch.cat(_collect(BatchLoader(images, labels, input_range="unit", **kw))[0])
    stdz = torch.cat(_collect(BatchLoader(images, labels, **kw))[0])
    ref = images.double()
    torch.testing.assert_close(byte, ref.float(), rtol=0, atol=0)
    torch.testing.assert_close(unit, (ref / 255).float())
    m, s = torch.tensor(mean, dtype=torch.float64).view(1, 2, 1, 1), torch.tensor(std, dtype=torch.float64).view(1, 2, 1, 1)
    torch.testing.assert_close(stdz, ((ref / 255 - m) / s).float())
    half = torch.cat(_collect(BatchLoader(images, labels, dtype=torch.bfloat16, **kw))[0])
    assert half.dtype == torch.bfloat16
    # train with augment=False: shuffled, but pixels untouched
    loader = BatchLoader(images, labels, batch_size=4, train=True, augment=False, input_range="byte", mean=mean, std=std)
    x, y = _collect(loader)
    torch.testing.assert_close(torch.cat(x), images[torch.cat(y)].float(), rtol=0, atol=0)


@pytest.mark.parametrize("n,bs,ws,drop_last", [(50, 4, 3, False), (50, 4, 3, True), (49, 5, 2, False), (25, 4, 3, False)])
def test_ddp_ranks_split_each_global_batch(n, bs, ws, drop_last):
    images, labels = _tagged(n=n)
    single = _loader(images, labels, batch_size=bs * ws, train=True, seed=7, drop_last=drop_last, input_range="byte")
    ranks = [_loader(images, labels, batch_size=bs, train=True, seed=7, drop_last=drop_last, input_range="byte",
                     rank=r, world_size=ws) for r in range(ws)]
    per_rank = [_collect(r) for r in ranks]
    assert len({len(r) for r in ranks}) == 1  # every rank takes the same number of steps
    for r, (xs, _) in zip(ranks, per_rank):
        assert len(r) == len(xs)
    gx, gy = _collect(single)
    for b in range(len(ranks[0])):
        # the ranks' batches, concatenated, are the global batch of a 1-process run (images and augmentation)
        torch.testing.assert_close(torch.cat([pr[1][b] for pr in per_rank]), gy[b], rtol=0, atol=0)
        torch.testing.assert_close(torch.cat([pr[0][b] for pr in per_rank]), gx[b], rtol=0, atol=0)
        assert all(pr[1][b].shape[0] > 0 for pr in per_rank)
    seen = torch.cat([torch.cat(pr[1]) for pr in per_rank])
    assert len(set(seen.tolist())) == len(seen)  # nothing twice in an epoch
    if drop_last:
        assert len(seen) == (n // (bs * ws)) * bs * ws


def test_eval_sharding_covers_test_set_once():
    images, labels = _tagged(n=50)
    seen = []
    for r in range(3):
        loader = _loader(images, labels, batch_size=7, train=False, rank=r, world_size=3)
        xs, ys = _collect(loader)
        assert len(loader) == len(ys)
        seen += torch.cat(ys).tolist()
        torch.testing.assert_close(torch.cat(xs), ((images[torch.cat(ys)].float() / 255 - 0.5) / 0.25))
    assert sorted(seen) == list(range(50))


def test_loader_validation():
    images, labels = _tagged(n=10)
    ok = dict(batch_size=4, train=True, mean=[0.5] * 3, std=[0.2] * 3)
    for bad, match in [
        (dict(batch_size=0), "batch_size"),
        (dict(input_range="zscore"), "input_range"),
        (dict(mean=[0.5, 0.5]), "one value per channel"),
        (dict(std=[0.2, 0.0, 0.2]), "std must be > 0"),
        (dict(rank=2, world_size=2), "rank"),
        (dict(dtype=torch.int32), "floating"),
        (dict(batch_size=11, drop_last=True), "no batches"),
    ]:
        with pytest.raises(ValueError, match=match):
            BatchLoader(images, labels, **(ok | bad))
    with pytest.raises(ValueError, match="uint8"):
        BatchLoader(images.float(), labels, **ok)


# ----------------------------------------------------------------------------------------------------
# --contrast-spread: each training image's contrast scaled by a factor fixed per (seed, image)


def test_contrast_factors_are_log_uniform_and_fixed_per_seed_and_image():
    from trainact.harness.data.contrast import contrast_factors

    f = contrast_factors(4000, 0.1, seed=0)
    assert f.dtype == torch.float32 and f.shape == (4000,)
    assert torch.equal(f, contrast_factors(4000, 0.1, seed=0))  # reproducible
    assert torch.equal(f[:50], contrast_factors(50, 0.1, seed=0))  # image i's factor: the seed and i alone
    assert not torch.equal(f[:50], contrast_factors(50, 0.1, seed=1))  # another seed, other factors
    assert 0.1 <= f.min() and f.max() <= 1
    u = torch.log(f.double()) / math.log(0.1)  # log-uniform on [0.1, 1]: u uniform on [0, 1]
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert counts.sum() == 4000 and ((counts - 400).abs() < 80).all(), counts  # ±4 sd of a binomial bin
    assert torch.equal(contrast_factors(10, 1.0, seed=0), torch.ones(10))


def test_contrast_keeps_each_images_mean_and_no_other_random_draw():
    images, labels = _tagged(n=40)  # every pixel >= 1: a 0 in a batch is crop padding
    from trainact.harness.data.contrast import contrast_factors

    kw = dict(batch_size=8, train=True, input_range="byte", seed=3)
    off, low = _loader(images, labels, **kw), _loader(images, labels, contrast_spread=0.3, **kw)
    f = contrast_factors(40, 0.3, seed=3)
    for epoch in (0, 2):  # the same crop, flip and order; the pixels scaled around the image's mean
        for (x0, y0), (x1, y1) in zip(off.epoch(epoch), low.epoch(epoch)):
            assert torch.equal(y0, y1)
            m = images[y0].double().mean((1, 2, 3)).float().view(-1, 1, 1, 1)
            expected = torch.where(x0 > 0, m + f[y0].view(-1, 1, 1, 1) * (x0 - m), 0.0)
            torch.testing.assert_close(x1, expected)
    plain = dict(kw, augment=False)  # uncropped: the mean is kept and the spread around it shrinks by f
    (x,), (y,) = _collect(_loader(images, labels, contrast_spread=0.3, **(plain | {"batch_size": 40})), epoch=5)
    source = images[y].double()
    torch.testing.assert_close(x.double().mean((1, 2, 3)), source.mean((1, 2, 3)), rtol=0, atol=1e-4)
    torch.testing.assert_close(x.double().std((1, 2, 3)), f[y].double() * source.std((1, 2, 3)), rtol=1e-5, atol=0)
    assert (x.amin((1, 2, 3)) >= source.amin((1, 2, 3)) - 1e-4).all()  # within the image's own range: no clipping
    assert (x.amax((1, 2, 3)) <= source.amax((1, 2, 3)) + 1e-4).all()


def test_contrast_spread_one_is_off_and_the_test_set_is_untouched(synth):
    from trainact.harness.config import CompareConfig
    from trainact.harness.train import make_loaders

    cpu = torch.device("cpu")
    small = synth.subset(200, seed=0)
    default, one, low = (make_loaders(CompareConfig(contrast_spread=c), small, cpu, seed=1) for c in (1.0, 1, 0.1))
    assert CompareConfig(contrast_spread=1.0).to_json() == CompareConfig().to_json()  # config.json as before
    for epoch in (0, 1):  # C = 1: bit for bit the batches without the option
        for (x0, y0), (x1, y1) in zip(default[0].epoch(epoch), one[0].epoch(epoch)):
            assert torch.equal(x0, x1) and torch.equal(y0, y1)
    for (x0, y0), (x1, y1) in zip(default[1].epoch(0), low[1].epoch(0)):  # test images as they are
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(default[0].epoch(0), low[0].epoch(0)))


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, float("nan"), True, "0.3"])
def test_a_contrast_spread_out_of_range_is_refused_naming_the_value(bad):
    from trainact.harness.config import CompareConfig

    with pytest.raises(ValueError, match=r"contrast_spread must be a number in \(0, 1\] .* got " + re.escape(repr(bad))):
        CompareConfig(contrast_spread=bad)
    images, labels = _tagged(n=10)
    with pytest.raises(ValueError, match=r"contrast_spread must be a number in \(0, 1\].* got " + re.escape(repr(bad))):
        _loader(images, labels, batch_size=4, train=True, contrast_spread=bad)


def test_contrast_spread_applies_to_training_images_only(capsys):
    from trainact.harness.cli import main
    from trainact.harness.config import CompareConfig

    images, labels = _tagged(n=10)
    with pytest.raises(ValueError, match=r"contrast_spread=0.3 applies to training images; an evaluation loader"):
        _loader(images, labels, batch_size=4, train=False, contrast_spread=0.3)
    with pytest.raises(ValueError, match=r"first_layer_init 'whiten' .* contrast_spread=0.5 \(--contrast-spread\)"):
        CompareConfig(first_layer_init="whiten", contrast_spread=0.5)
    assert main(["compare", "--contrast-spread", "2"]) == 2
    assert "argument --contrast-spread: '2' must be a number in (0, 1]" in capsys.readouterr().err


def test_measure_loader_throughput(monkeypatch):
    from trainact.harness.data import loader as loader_module

    images, labels = _tagged(n=64)
    clock = iter([10.0, 12.0])  # the start and the end of the measurement: 2 s
    monkeypatch.setattr(loader_module.time, "perf_counter", lambda: next(clock))
    rate = D.measure_loader_throughput(_loader(images, labels, batch_size=16, train=True), epochs=2)
    assert rate == 2 * 64 / 2.0  # every image of both epochs counted, over the measured time
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        D.measure_loader_throughput(_loader(images, labels, batch_size=16, train=True), epochs=0)
