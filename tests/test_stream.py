"""Variable-size image folders (--image-size), train-only folders (--val-fraction) and the streaming loader, on tiny
folders of JPEG and PNG files of random sizes written by the tests; the in-memory loader is the streaming loader's
oracle (the same pixels, the same test accuracy), torchvision's Resize + CenterCrop the geometry's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import multiproc
from helpers import make_archive, make_cifar
from trainact.harness.cli import main
from trainact.harness.config import CompareConfig
from trainact.harness.data import BatchLoader, DataError, ImageDataset, StreamDataset, StreamLoader, load_dataset
from trainact.harness.data import images as I
from trainact.harness.data.dataset import mix_seed
from trainact.harness.protocol import RunSpec
from trainact.harness.env import DistEnv
from trainact.harness.train import evaluate, evaluation_counts, precision_context

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")


CLASSES = ("cat", "dog", "frog")
N = 12  # --image-size of the tests
SQ = round(N / 0.875)  # 14: the stored train square
CPU = torch.device("cpu")


def make_folder(root: Path, *, counts=(("train", 4), ("test", 3)), sizes=(12, 30), fixed=None, seed=0) -> dict:
    """root/<split>/<class>/imgNN.{png,jpg} with random sizes in `sizes` (or all `fixed` (h, w)), alternately PNG
    and JPEG; returns {split: [file names relative to root, sorted by class then file]}."""
    g = torch.Generator().manual_seed(seed)
    files = {}
    for split, k in counts:
        files[split] = []
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(k):
                h, w = fixed or torch.randint(sizes[0], sizes[1] + 1, (2,), generator=g).tolist()
                img = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
                name = f"{split}/{cls}/img{i:02d}{'.png' if i % 2 == 0 else '.jpg'}"
                Image.fromarray(img).save(root / name)
                files[split].append(name)
    return files


def _batches(loader, epoch=0):
    return [(x.clone(), y.clone()) for x, y in loader.epoch(epoch)]


def _same_batches(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def _eval_loaders(mem: ImageDataset, st: StreamDataset, *, workers=0, rank=0, world=1, bs=4):
    common = dict(batch_size=bs, train=False, mean=mem.mean, std=mem.std, rank=rank, world_size=world)
    return (BatchLoader(mem.test_images, mem.test_labels, **common),
            StreamLoader(st, split="test", workers=workers, **common))


def _tiny_model(num_classes=3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, num_classes))


def _windows(stored: torch.Tensor, out_h: int, out_w: int, pad: int = 0):
    """Every out_h x out_w window of a (C, H, W) image zero-padded by pad, and its mirror image."""
    x = torch.nn.functional.pad(stored, (pad, pad, pad, pad))
    for dy in range(x.shape[1] - out_h + 1):
        for dx in range(x.shape[2] - out_w + 1):
            w = x[:, dy : dy + out_h, dx : dx + out_w]
            yield w
            yield w.flip(2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("mixed") / "mixed"
    return root, make_folder(root)


@pytest.fixture(scope="module")
def both(folder, tmp_path_factory):
    """The mixed folder at --image-size 12, in memory and streamed."""
    cache = tmp_path_factory.mktemp("cache")
    mem = load_dataset(folder[0], cache_dir=cache, image_size=N)
    st = load_dataset(folder[0], cache_dir=cache, image_size=N, loader="stream")
    return mem, st


# ----------------------------------------------------------------------------------------------------
# --image-size: geometry and the in-memory cache


@pytest.mark.vision
def test_image_size_geometry_is_torchvisions_resize_then_centre_crop():
    T = pytest.importorskip("torchvision.transforms")
    g = torch.Generator().manual_seed(1)
    for h, w in ((17, 30), (30, 17), (13, 13), (49, 50), (40, 14), (256, 341)):
        im = Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())
        for n in (12, 16, 224):
            s = I.resize_size(n)
            assert s == round(n / 0.875)
            ref_test = T.CenterCrop(n)(T.Resize(s)(im))  # the ImageNet evaluation transform
            ref_train = T.CenterCrop(s)(T.Resize(s)(im))
            assert np.array_equal(np.asarray(I.fit(im, n, "test")), np.asarray(ref_test)), (h, w, n)
            assert np.array_equal(np.asarray(I.fit(im, n, "train")), np.asarray(ref_train)), (h, w, n)


def test_image_size_caches_train_squares_and_test_crops_keyed_by_size(folder, tmp_path):
    root, files = folder
    cache = tmp_path / "cache"
    ds = load_dataset(root, cache_dir=cache, image_size=N)
    assert ds.train_images.shape == (12, 3, SQ, SQ) and ds.test_images.shape == (9, 3, N, N)
    assert ds.image_size == N and ds.input_shape == (3, N, N)
    # the pixels are those of the file, decoded, resized and cropped (checked against torchvision above)
    with Image.open(root / files["test"][4]) as im:
        want = np.asarray(I.fit(im.convert("RGB"), N, "test"))
    assert np.array_equal(ds.test_images[4].permute(1, 2, 0).numpy(), want)
    load_dataset(root, cache_dir=cache, image_size=16)
    assert len(list(cache.glob("*.pt"))) == 2  # the size is part of the key
    again = load_dataset(root, cache_dir=cache, image_size=N)
    assert torch.equal(again.train_images, ds.train_images) and again.mean == ds.mean
    with pytest.raises(DataError, match=r"all images must share one size: .* --image-size N resizes them"):
        load_dataset(root, cache_dir=cache)


def test_in_memory_crop_of_the_stored_square(both):
    mem, _ = both
    kw = dict(batch_size=4, train=True, mean=mem.mean, std=mem.std, input_range="byte", image_size=N, crop_padding=0)
    loader = BatchLoader(mem.train_images, mem.train_labels, **kw)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(mix_seed(0, "epoch", 0)))
    seen = torch.cat([x for x, _ in loader.epoch(0)]).to(torch.uint8)  # (12, 3, N, N)
    assert seen.shape == (12, 3, N, N)
    for x, i in zip(seen, order.tolist()):  # each a window of its square, maybe mirrored
        assert any(torch.equal(x, w) for w in _windows(mem.train_images[i], N, N))
    plain = BatchLoader(mem.train_images, mem.train_labels, **{**kw, "augment": False})
    o = I.centre_offset(SQ, N)
    for x, i in zip(torch.cat([x for x, _ in plain.epoch(0)]).to(torch.uint8), order.tolist()):
        assert torch.equal(x, mem.train_images[i][:, o : o + N, o : o + N])


# ----------------------------------------------------------------------------------------------------
# the streaming loader against the in-memory one


def test_both_loaders_feed_the_same_test_pixels_and_give_the_same_accuracy(both):
    mem, st = both
    assert (st.num_train, st.num_test, st.input_shape) == (12, 9, (3, N, N))
    assert st.mean == mem.mean and st.std == mem.std  # exact: histograms over the same stored squares
    assert torch.equal(st.train_labels, mem.train_labels) and torch.equal(st.test_labels, mem.test_labels)
    a, b = _eval_loaders(mem, st)
    assert _same_batches(_batches(a), _batches(b))
    model, ctx = _tiny_model(), precision_context("off", CPU)
    counts_a, _ = evaluation_counts(model, a, ctx, CPU)
    counts_b, _ = evaluation_counts(model, b, ctx, CPU)
    assert counts_a == counts_b and counts_a[2] == 9
    assert evaluate(model, a, ctx, CPU, expected=9) == evaluate(model, b, ctx, CPU, expected=9)
    with pytest.raises(RuntimeError, match="counted 9 images, but the test split has 10"):
        evaluate(model, b, ctx, CPU, expected=10)


@pytest.mark.parametrize("world", [2, 4])
def test_eval_shards_are_unpadded_and_agree_between_loaders(both, world):
    mem, st = both
    total = []
    for rank in range(world):
        a, b = _eval_loaders(mem, st, rank=rank, world=world, bs=2)
        batches = _batches(b)
        assert _same_batches(_batches(a), batches)
        total.append(sum(len(y) for _, y in batches))
    assert sum(total) == 9 and max(total) - min(total) <= 1  # every test image once: no padding duplicates


def test_streamed_training_batches_depend_on_seed_and_epoch_not_on_workers(both):
    mem, st = both
    kw = dict(split="train", batch_size=4, train=True, mean=mem.mean, std=mem.std, input_range="byte")
    ref = _batches(StreamLoader(st, workers=0, seed=3, **kw), epoch=1)
    assert _same_batches(ref, _batches(StreamLoader(st, workers=2, seed=3, **kw), epoch=1))
    assert not _same_batches(ref, _batches(StreamLoader(st, workers=0, seed=3, **kw), epoch=2))
    assert not _same_batches(ref, _batches(StreamLoader(st, workers=0, seed=4, **kw), epoch=1))
    # each image is a random N x N window of the in-memory loader's stored square, maybe mirrored
    by_label = {}
    for img, label in zip(mem.train_images, mem.train_labels.tolist()):
        by_label.setdefault(label, []).append(img)
    for x, y in ref:
        for xi, yi in zip(x.to(torch.uint8), y.tolist()):
            assert any(torch.equal(xi, w) for img in by_label[yi] for w in _windows(img, N, N))
    # without augmentation: the square's centre, as in memory
    plain = _batches(StreamLoader(st, workers=0, seed=3, augment=False, **kw))
    o = I.centre_offset(SQ, N)
    centres = {img[:, o : o + N, o : o + N].numpy().tobytes() for img in mem.train_images}
    assert {xi.to(torch.uint8).numpy().tobytes() for x, _ in plain for xi in x} == centres


def test_streamed_contrast_is_the_in_memory_loaders(both):
    """--contrast-spread streamed: each training image scaled by the in-memory loader's factor for its index, around
    its stored square's mean, before the crop; the same batches as the in-memory loader's for the same draws."""
    from trainact.harness.data.contrast import contrast_factors, scale_contrast

    mem, st = both
    kw = dict(split="train", batch_size=4, train=True, mean=mem.mean, std=mem.std, input_range="byte", seed=3)
    f = contrast_factors(12, 0.2, seed=3)
    plain = StreamLoader(st, workers=0, augment=False, contrast_spread=0.2, **kw)
    o = I.centre_offset(SQ, N)
    for i in range(12):
        x, label = plain._images[(i, 1)]
        expected = scale_contrast(mem.train_images[i], f[i])[:, o : o + N, o : o + N]
        assert label == int(mem.train_labels[i]) and torch.equal(x, expected)
    cropped = StreamLoader(st, workers=0, contrast_spread=0.2, **kw)
    off = StreamLoader(st, workers=0, **kw)
    for (x0, y0), (x1, y1) in zip(_batches(off, epoch=1), _batches(cropped, epoch=1)):
        assert torch.equal(y0, y1) and not torch.equal(x0, x1)  # the same order; other pixels
    for i in range(12):  # the same crop and flip as without it: a window of the scaled square
        x, _ = cropped._images[(i, 1)]
        assert any(torch.equal(x, w) for w in _windows(scale_contrast(mem.train_images[i], f[i]), N, N))
    assert _same_batches(_batches(cropped, epoch=1), _batches(StreamLoader(st, workers=2, contrast_spread=0.2, **kw), 1))
    with pytest.raises(ValueError, match="contrast_spread=0.2 applies to training images"):
        StreamLoader(st, split="test", batch_size=4, train=False, mean=mem.mean, std=mem.std, contrast_spread=0.2)


def test_ranks_take_disjoint_shards_of_one_permutation(both):
    _, st = both
    kw = dict(split="train", batch_size=2, train=True, mean=st.mean, std=st.std, seed=5)
    shards = []
    for rank in range(3):
        loader = StreamLoader(st, rank=rank, world_size=3, **kw)
        loader._sampler.set_epoch(2)
        shards.append([i for i, e in loader._sampler])
        assert len(loader) == 2
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(12))  # disjoint, together every image (12 = 3 x 4)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(5 + 2)).tolist()  # DistributedSampler's
    assert shards == [order[r::3] for r in range(3)]
    five = [list(StreamLoader(st, rank=r, world_size=5, **kw)._sampler) for r in range(5)]
    flat = [i for s in five for i, _ in s]
    assert [len(s) for s in five] == [2] * 5 and len(set(flat)) == 10  # disjoint and equal: 2 of 12 sit out
    with pytest.raises(ValueError, match="has 12 images, fewer than the 13 processes"):
        StreamLoader(st, rank=0, world_size=13, **kw)


def test_stream_without_image_size_crops_like_the_in_memory_loader(tmp_path):
    root = tmp_path / "fixed"
    make_folder(root, fixed=(10, 12))
    mem = load_dataset(root, cache_dir=tmp_path / "c")
    st = load_dataset(root, cache_dir=tmp_path / "c", loader="stream")
    assert st.input_shape == mem.input_shape == (3, 10, 12) and st.mean == mem.mean
    a, b = _eval_loaders(mem, st)
    assert _same_batches(_batches(a), _batches(b))
    train = StreamLoader(st, split="train", batch_size=6, train=True, mean=st.mean, std=st.std, input_range="byte")
    for x, y in train.epoch(0):
        for xi, yi in zip(x.to(torch.uint8), y.tolist()):  # a window of the image zero-padded by 4, maybe mirrored
            candidates = mem.train_images[mem.train_labels == yi]
            assert any(torch.equal(xi, w) for img in candidates for w in _windows(img, 10, 12, pad=4))


def test_stream_of_mixed_sizes_without_image_size_names_the_flag(folder, tmp_path):
    with pytest.raises(DataError, match=r"share one size: .* --image-size N resizes them"):
        load_dataset(folder[0], cache_dir=tmp_path, loader="stream")  # the statistics decode every image


@pytest.mark.parametrize("suffix,storage", [(".zip", "ZipStorage"), (".tar", "TarStorage"), (".tar.gz", "DirStorage")])
def test_archives_stream_with_a_handle_per_worker(folder, tmp_path, suffix, storage):
    path = make_archive(folder[0], tmp_path / f"mini{suffix}", "top")
    cache = tmp_path / "cache"
    mem = load_dataset(path, cache_dir=cache, image_size=N)
    st = load_dataset(path, cache_dir=cache, image_size=N, loader="stream", workers=2)
    assert type(st.storage).__name__ == storage and st.mean == mem.mean
    if suffix == ".tar.gz":  # a compressed tar is extracted once into the cache, then read as files
        (extracted,) = cache.glob("mini-*.files")
        assert (extracted / ".complete").is_file() and (extracted / "top" / "test" / "dog" / "img01.jpg").is_file()
    a, b = _eval_loaders(mem, st, workers=2)
    assert _same_batches(_batches(a), _batches(b))
    assert _same_batches(_batches(b), _batches(b))  # the workers' own handles are opened again per epoch


# ----------------------------------------------------------------------------------------------------
# --val-fraction


def test_val_fraction_holds_out_a_fixed_class_balanced_split(tmp_path):
    root = tmp_path / "trainonly"
    files = make_folder(root, counts=(("train", 5),), fixed=(8, 8))["train"]
    with pytest.raises(DataError, match=r"neither test/ nor val/ beside it: --val-fraction F holds out"):
        load_dataset(root, cache_dir=tmp_path / "c")
    st = load_dataset(root, cache_dir=tmp_path / "c", val_fraction=0.4, loader="stream")
    assert torch.bincount(st.test_labels).tolist() == [2, 2, 2]  # round(0.4 x 5) of each class
    assert sorted(st.train_files + st.test_files) == sorted(files) and not set(st.train_files) & set(st.test_files)
    again = load_dataset(root, cache_dir=tmp_path / "other", val_fraction=0.4, loader="stream")
    assert again.test_files == st.test_files  # the same split every time: a fixed salt
    more = load_dataset(root, cache_dir=tmp_path / "c", val_fraction=0.6, loader="stream")
    assert set(st.test_files) < set(more.test_files)  # a larger fraction holds out a superset
    mem = load_dataset(root, cache_dir=tmp_path / "c", val_fraction=0.4)
    assert mem.test_images.shape[0] == 6 and mem.mean == st.mean
    assert _same_batches(*(_batches(x) for x in _eval_loaders(mem, st)))  # the same split in both loaders
    load_dataset(root, cache_dir=tmp_path / "c", val_fraction=0.6)
    assert len(list((tmp_path / "c").glob("*.pt"))) == 2  # the fraction is part of the cache key
    for f in (root / "train" / "dog").iterdir():
        if f.name != "img00.png":
            f.unlink()
    with pytest.raises(DataError, match=r"needs at least 2 images per class .* train/dog/ has 1"):
        load_dataset(root, cache_dir=tmp_path / "c", val_fraction=0.4)


def test_val_fraction_on_data_with_a_test_split_is_refused(folder, tmp_path):
    with pytest.raises(DataError, match=r"--val-fraction 0.2 .* has its own test/: drop --val-fraction"):
        load_dataset(folder[0], cache_dir=tmp_path, val_fraction=0.2, image_size=N)
    make_cifar(tmp_path / "cifar", "cifar10", protocol=2)
    with pytest.raises(DataError, match=r"CIFAR-10 python folder with its own test split: drop --val-fraction"):
        load_dataset(tmp_path / "cifar", cache_dir=tmp_path, val_fraction=0.2)


# ----------------------------------------------------------------------------------------------------
# --loader auto and the errors


def test_auto_streams_only_over_the_memory_budget(folder, tmp_path):
    root, cache = folder[0], tmp_path / "cache"
    size = 3 * (12 * SQ * SQ + 9 * N * N)  # what the arrays would take, at 3 bytes a pixel
    small = load_dataset(root, cache_dir=cache, image_size=N, loader="auto", memory_budget=size - 1)
    assert isinstance(small, StreamDataset) and f"over the {(size - 1) / 1024:.1f} KiB memory budget" in small.note
    assert not list(cache.glob("*.pt"))  # nothing decoded into memory
    fits = load_dataset(root, cache_dir=cache, image_size=N, loader="auto", memory_budget=size)
    assert isinstance(fits, ImageDataset)
    again = load_dataset(root, cache_dir=cache, image_size=N, loader="auto", memory_budget=size - 1)
    assert isinstance(again, StreamDataset)  # the cached arrays are measured the same way
    make_cifar(tmp_path / "cifar", "cifar10", protocol=2)
    cifar = load_dataset(tmp_path / "cifar", cache_dir=cache, loader="auto", memory_budget=1)
    assert isinstance(cifar, ImageDataset)  # CIFAR pickles are always held in memory
    with pytest.raises(DataError, match="--loader stream reads image folders and archives, but .* CIFAR-10"):
        load_dataset(tmp_path / "cifar", cache_dir=cache, loader="stream")
    with pytest.raises(DataError, match="--image-size 12 resizes image folders, but .* CIFAR-10 python folder"):
        load_dataset(tmp_path / "cifar", cache_dir=cache, image_size=12)
    with pytest.raises(DataError, match="--loader stream reads an image folder or archive; the built-in synthetic"):
        load_dataset(None, loader="stream")


@pytest.mark.parametrize("kw,needle", [
    (dict(image_size=0), "--image-size must be an integer >= 1, got 0"),
    (dict(val_fraction=1.0), r"--val-fraction must be a fraction in \(0, 1\), got 1.0"),
    (dict(loader="disk"), "--loader must be one of auto, memory, stream, got 'disk'"),
    (dict(memory_budget=0), "--memory-budget must be a number of bytes >= 1, got 0"),
])
def test_load_dataset_options_are_checked(folder, tmp_path, kw, needle):
    with pytest.raises(DataError, match=needle):
        load_dataset(folder[0], cache_dir=tmp_path, **kw)


@pytest.mark.parametrize("kw,needle", [
    (dict(image_size=16), r"image_size=16 \(--image-size\) applies to an image folder or archive \(--data\)"),
    (dict(val_fraction=0.1), r"val_fraction=0.1 \(--val-fraction\) applies to an image folder"),
    (dict(data="x", val_fraction=1.5), r"val_fraction must be a fraction in \(0, 1\) \(--val-fraction\), got 1.5"),
    (dict(loader="stream"), r"--loader stream\) reads an image folder or archive"),
    (dict(data="x", loader="memory", workers=2), r"workers=2 \(--workers\) applies to the streaming loader"),
    (dict(data="x", loader="stream", memory_budget=10), r"memory_budget=10 \(--memory-budget\) decides --loader auto"),
    (dict(data="x", loader="disk"), "loader must be one of auto, memory, stream; got 'disk'"),
    (dict(schedule="step"), r"schedule 'step' needs milestones: .* --milestones 0.333,0.667 --gamma 0.1"),
    (dict(schedule="step", milestones=(0.5, 0.5)), r"milestones must increase \(--milestones\), got \[0.5, 0.5\]"),
    (dict(schedule="step", milestones=(0.2, 1.0)), r"fractions of the budget in \(0, 1\) \(--milestones\), got 1.0"),
    (dict(schedule="step", milestones=(0.5,), gamma=2.0), r"gamma must be in \(0, 1\] \(--gamma"),
    (dict(schedule="multistep", milestones=(0.5,)), r"milestones=\[0.5\] \(--milestones\) applies to --schedule step"),
    (dict(gamma=0.5), r"gamma=0.5 \(--gamma\) applies to --schedule step, not 'cosine'"),
])
def test_config_refuses_bad_data_and_schedule_options_naming_the_flag(kw, needle):
    with pytest.raises(ValueError, match=needle):
        CompareConfig(**kw)


def test_old_config_json_loads_with_todays_behaviour_and_new_fields_roundtrip():
    old = CompareConfig(data="d", budgets=(2,)).to_dict()
    for name in ("image_size", "val_fraction", "loader", "workers", "memory_budget", "milestones", "gamma",
                 "contrast_spread"):
        assert name not in old  # a default run's config.json is what it was before these fields existed
    cfg = CompareConfig.from_dict(old)
    assert cfg.loader == "auto" and cfg.image_size is None and not cfg.differences(CompareConfig(data="d", budgets=(2,)))
    new = CompareConfig(data="d", image_size=224, val_fraction=0.1, loader="stream", workers=3, schedule="step",
                        milestones=[0.333, 0.667], gamma=0.1)
    d = json.loads(new.to_json())
    assert d["milestones"] == [0.333, 0.667] and d["image_size"] == 224 and d["loader"] == "stream"
    assert CompareConfig.from_dict(d) == new
    assert new.differences(CompareConfig.from_dict({**d, "workers": 8})) == {}  # workers: how, not what
    assert set(new.differences(CompareConfig.from_dict({**d, "image_size": 160}))) == {"image_size"}
    assert set(CompareConfig(data="d").differences(CompareConfig(data="d", loader="stream"))) == {"loader"}


def test_memory_budget_sizes_parse_and_bad_ones_name_the_flag(capsys):
    from trainact.harness.cli import build_parser, config_from_args, parse_bytes

    assert [parse_bytes(t) for t in ("256MiB", "8GiB", "1.5G", "1000", "64k")] == [2**28, 2**33, 3 * 2**29, 1000, 2**16]
    args = build_parser().parse_args(["compare", "--data", "x", "--memory-budget", "256MiB", "--workers", "0"])
    assert config_from_args(args).memory_budget == 2**28
    assert main(["compare", "--memory-budget", "12XB"]) == 2
    assert "--memory-budget: '12XB' is not a size" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------
# schedules


def test_step_schedule_multiplies_the_lr_at_its_milestones():
    from trainact.harness.train import lr_factor

    cfg = CompareConfig(budgets=(30, 60, 90), schedule="step", milestones=(0.333, 0.667), gamma=0.1, warmup_epochs=0)
    for budget, (m1, m2) in {30: (10, 20), 60: (20, 40), 90: (30, 60)}.items():  # the paper's ImageNet epochs
        per_epoch = [lr_factor(e * 7 + 3, 7, budget, cfg) for e in range(budget)]
        want = [1.0] * m1 + [0.1] * (m2 - m1) + [0.1**2] * (budget - m2)
        assert per_epoch == want, budget
    default_gamma = CompareConfig(schedule="step", milestones=(0.5,), budgets=(4,))
    assert [lr_factor(e, 1, 4, default_gamma) for e in range(4)] == [1, 1, 0.1, 0.1]
    # multistep is the preset step schedule of the CIFAR-100 recipe, exactly
    preset = CompareConfig(budgets=(1,), schedule="multistep", warmup_epochs=0)
    same = CompareConfig(budgets=(1,), schedule="step", milestones=(0.3, 0.6, 0.8), gamma=0.2, warmup_epochs=0)
    for budget in range(1, 41):
        assert [lr_factor(s, 2, budget, preset) for s in range(2 * budget)] == \
               [lr_factor(s, 2, budget, same) for s in range(2 * budget)]


def test_a_step_run_logs_the_milestone_lrs(tmp_path):
    from trainact.harness.train import run_one

    ds = load_dataset(None, synthetic={"train_size": 64, "test_size": 16, "image_size": 8})
    cfg = CompareConfig(synthetic={"train_size": 64, "test_size": 16, "image_size": 8}, width=4, budgets=(3,),
                        lrs=(0.05,), batch_size=32, schedule="step", milestones=(0.34, 0.67), gamma=0.5,
                        warmup_epochs=0, device="cpu", out=str(tmp_path))
    run = RunSpec(3, "baseline", 0.05, 0)
    run_one(run, cfg, ds, tmp_path, CPU, log=lambda m: None)
    rows = [json.loads(line) for line in (tmp_path / run.run_id / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == [0.05, 0.025, 0.0125]  # x0.5 from epochs round(1.02) = 1 and round(2.01) = 2


# ----------------------------------------------------------------------------------------------------
# training with either loader


def _cli(folder, out, *extra):
    return main(["compare", "--data", str(folder), "--cache-dir", str(out.parent / "cache"), "--width", "4",
                 "--batch-size", "4", "--budgets", "1", "--warmup-epochs", "0", "--device", "cpu", "--threads", "1",
                 "--out", str(out), *extra])


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_image_size_trains_and_evaluates_a_mixed_size_folder(folder, tmp_path, capsys, loader):
    extra = ["--workers", "1"] if loader == "stream" else []
    assert _cli(folder[0], tmp_path / "out", "--image-size", str(N), "--loader", loader, *extra) == 0
    top = json.loads((tmp_path / "out" / "config.json").read_text())
    assert top["config"]["image_size"] == N and top["environment"]["dataset"]["image_shape"] == [3, N, N]
    assert top["environment"]["dataset"]["test_size"] == 9
    assert top["environment"].get("loader") == ({"kind": "stream", "workers": 1} if loader == "stream" else None)
    runs = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("b1/*/*/*/summary.json")]
    assert len(runs) == 2 and all(r["completed"] for r in runs)
    assert all(r.get("test_images") == (9 if loader == "stream" else None) for r in runs)


def test_auto_says_in_one_line_that_it_streams(folder, tmp_path, capsys):
    assert _cli(folder[0], tmp_path / "out", "--image-size", str(N), "--memory-budget", "1KiB", "--workers", "0",
                "--methods", "baseline") == 0
    err = capsys.readouterr().err
    assert err.count("streaming them from disk") == 1 and "over the 1.0 KiB memory budget (--memory-budget)" in err


def test_whitened_first_layer_needs_the_images_in_memory(both):
    from trainact.harness.train import build_run_model

    mem, st = both
    cfg = CompareConfig(data="x", width=4, first_layer_init="whiten", image_size=N)
    example = torch.zeros(2, 3, N, N)
    build_run_model(RunSpec(1, "baseline", 0.1, 0), cfg, mem, CPU, example)  # the centre N x N of the squares
    with pytest.raises(ValueError, match="streamed from disk: use --loader memory"):
        build_run_model(RunSpec(1, "baseline", 0.1, 0), cfg, st, CPU, example)


class Interrupt(Exception):
    pass


def test_a_streamed_run_resumes_its_interrupted_epoch_from_the_start(both, tmp_path):
    from trainact.harness.train import run_one

    _, st = both
    cfg = CompareConfig(data="x", image_size=N, loader="stream", workers=0, width=4, budgets=(3,), lrs=(0.05,),
                        batch_size=4, warmup_epochs=0, device="cpu", out=str(tmp_path))
    run = RunSpec(3, "tract", 0.05, 0, lam=0.1)
    whole = run_one(run, cfg, st, tmp_path / "a", CPU, log=lambda m: None)
    assert whole["test_images"] == 9
    ref = (tmp_path / "a" / run.run_id / "metrics.jsonl").read_text().splitlines()

    def stop(epoch, row):
        if epoch == 2:  # after epoch 2's checkpoint; a kill during epoch 3 restarts epoch 3 from its beginning
            raise Interrupt

    with pytest.raises(Interrupt):
        run_one(run, cfg, st, tmp_path / "b", CPU, on_epoch_end=stop, log=lambda m: None)
    resumed = run_one(run, cfg, st, tmp_path / "b", CPU, log=lambda m: None)
    rows = (tmp_path / "b" / run.run_id / "metrics.jsonl").read_text().splitlines()
    drop = lambda line: {k: v for k, v in json.loads(line).items() if k not in ("seconds", "eval_seconds")}  # noqa
    assert [drop(r) for r in rows] == [drop(r) for r in ref]  # bitwise: the same batches after the restart
    assert {k: resumed[k] for k in ("final_top1", "best_top1", "epochs")} == \
           {k: whole[k] for k in ("final_top1", "best_top1", "epochs")}


# ----------------------------------------------------------------------------------------------------
# several processes


def _sharded_counts(rank: int, world: int, root: str, cache: str) -> tuple:
    mem = load_dataset(root, cache_dir=cache, image_size=N)
    st = load_dataset(root, cache_dir=cache, image_size=N, loader="stream")
    dist = DistEnv(rank, world)
    model, ctx = _tiny_model(), precision_context("off", CPU)
    a, b = _eval_loaders(mem, st, rank=rank, world=world, bs=2)
    return evaluation_counts(model, a, ctx, CPU, dist)[0], evaluation_counts(model, b, ctx, CPU, dist)[0]


@pytest.mark.slow
@pytest.mark.distributed
def test_all_reduced_eval_counts_each_test_image_once_with_either_loader(folder, tmp_path):
    load_dataset(folder[0], cache_dir=tmp_path, image_size=N)  # fill the caches once
    load_dataset(folder[0], cache_dir=tmp_path, image_size=N, loader="stream")
    results = multiproc.run(_sharded_counts, str(folder[0]), str(tmp_path), world=2)
    (mem0, st0), (mem1, st1) = results
    assert mem0 == st0 == mem1 == st1 and mem0[2] == 9


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_two_processes_stream_a_mixed_size_folder(folder, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainact", "compare", "--data", str(folder[0]), "--cache-dir", str(tmp_path / "cache"),
           "--image-size", str(N), "--loader", "stream", "--workers", "1", "--width", "4", "--batch-size", "4",
           "--budgets", "1", "--warmup-epochs", "0", "--device", "cpu", "--out", str(out)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"torchrun did not finish in 240 s: {err.stderr!r}")
    assert r.returncode == 0, r.stderr[-3000:]
    top = json.loads((out / "config.json").read_text())
    assert top["environment"]["world_size"] == 2 and top["environment"]["loader"]["kind"] == "stream"
    runs = [json.loads(p.read_text()) for p in out.glob("b1/*/*/*/summary.json")]
    assert len(runs) == 2 and all(s["completed"] for s in runs)
    assert all(s["test_images"] == 9 for s in runs)  # 9 test images over 2 ranks: counted once each, no padding
    assert json.loads((out / "summary.json").read_text())["completed"] is True


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_is_one_line_whatever_the_workers(folder, tmp_path, workers):
    """The same one-line error with decoding workers as without (DataLoader wraps a worker's error in its
    traceback)."""
    name = folder[1]["train"][0]
    (folder[0] / name).write_bytes(b"\\x89PNG\\r\\n\\x1a\\n truncated")
    with pytest.raises(DataError) as err:
        load_dataset(folder[0], cache_dir=tmp_path / f"c{workers}", image_size=N, loader="stream", workers=workers)
    assert len(str(err.value).splitlines()) == 1 and name in str(err.value), str(err.value)
    assert "Traceback" not in str(err.value)
