"""Peak memory of one streamed epoch against the in-memory loader, on an image folder several times the budget.

    python -m benchmarks.bench_stream_memory       # ~1 GiB decoded vs a 256 MiB budget; writes results/stream-memory-cpu.json

The folder is generated at run time into a temporary directory (seeded): --train + --test JPEGs of random sizes
between --min-side and --max-side pixels, smooth random colour fields (a few random pixels upscaled, plus noise) so
that they compress like photographs; at --image-size 224 the defaults decode to about 1 GiB (train images are held
as 256 x 256 squares, test images as 224 x 224: harness/data/images.py), four times the 256 MiB budget.

Each variant runs in a fresh child process (as benchmarks/bench_memory.py does):
- stream: `load_dataset(folder, image_size=224, loader="auto", memory_budget=--budget)`, which must choose to
  stream (it computes the channel statistics by decoding the train images once, with --workers processes), then
  one training epoch of StreamLoader (batch --batch, random crop + flip, --workers decoding processes);
- memory: the same folder decoded into the in-memory arrays (`loader="memory"`), then one BatchLoader epoch.
Figures: the child's peak resident set (ru_maxrss of RUSAGE_SELF), its resident set after importing torch and
trainact (the floor), the growth between the two, the largest peak among its worker processes (RUSAGE_CHILDREN),
and the epoch's wall time. Decoded data that stays out of memory shows as a stream growth far below the memory
variant's, which holds the whole decoded set.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time

from .common import RESULTS, child_command, child_env, invocation, machine_info, write_result

VARIANTS = ("stream", "memory")


def _rss(who: int) -> int:
    return resource.getrusage(who).ru_maxrss * 1024  # Linux reports KiB


def make_folder(root: str, *, train: int, test: int, min_side: int, max_side: int, seed: int,
                classes: int = 10) -> int:
    """root/{train,test}/c<k>/<i>.jpg (at most `classes` classes, each with images in both splits); returns the
    number of files."""
    import numpy as np
    from PIL import Image

    classes = min(classes, train, test)

    rng = np.random.default_rng(seed)
    n = 0
    for split, count in (("train", train), ("test", test)):
        for i in range(count):
            folder = os.path.join(root, split, f"c{i % classes}")
            os.makedirs(folder, exist_ok=True)
            w, h = (int(v) for v in rng.integers(min_side, max_side + 1, 2))
            coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
            img = np.asarray(coarse.resize((w, h), Image.BILINEAR), dtype=np.int16)
            img = np.clip(img + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(folder, f"{i:06d}.jpg"), quality=90)
            n += 1
    return n


def child(variant: str, folder: str, cache: str, image_size: int, budget: int, workers: int, batch: int) -> None:
    import torch

    from trainact.harness.data import BatchLoader, ImageDataset, StreamDataset, StreamLoader, load_dataset

    torch.set_num_threads(1)
    floor = _rss(resource.RUSAGE_SELF)
    loader_kind = "auto" if variant == "stream" else "memory"
    t0 = time.perf_counter()
    ds = load_dataset(folder, cache_dir=cache, image_size=image_size, loader=loader_kind,
                      memory_budget=budget if variant == "stream" else None, workers=workers)
    load_seconds = time.perf_counter() - t0
    chosen = "stream" if isinstance(ds, StreamDataset) else "memory"
    kw = dict(batch_size=batch, train=True, mean=ds.mean, std=ds.std, seed=0)
    if isinstance(ds, ImageDataset):
        loader = BatchLoader(ds.train_images, ds.train_labels, image_size=ds.image_size, crop_padding=0, **kw)
    else:
        loader = StreamLoader(ds, split="train", workers=workers, **kw)
    images, t1 = 0, time.perf_counter()
    for x, _ in loader.epoch(0):
        images += x.shape[0]
    epoch_seconds = time.perf_counter() - t1
    note = getattr(ds, "note", None)
    for path in {os.path.realpath(folder), folder} if note else ():  # no path of this machine in the results
        note = note.replace(path, "<the generated folder>")
    print(json.dumps({"variant": variant, "chosen": chosen, "note": note, "images": images,
                      "floor_rss_bytes": floor, "peak_rss_bytes": _rss(resource.RUSAGE_SELF),
                      "workers_peak_rss_bytes": _rss(resource.RUSAGE_CHILDREN),
                      "load_seconds": load_seconds, "epoch_seconds": epoch_seconds}))


def _size(text: str) -> int:
    from trainact.harness.options import parse_bytes

    return parse_bytes(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=5000, help="train images to generate")
    parser.add_argument("--test", type=int, default=500, help="test images to generate")
    parser.add_argument("--min-side", type=int, default=128)
    parser.add_argument("--max-side", type=int, default=224)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--budget", type=_size, default=256 * 2**20, help="--memory-budget of the stream variant")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes of the streaming loader")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of stream,memory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(RESULTS, "stream-memory-cpu.json"))
    parser.add_argument("--child", nargs=6, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        variant, folder, cache, image_size, budget, workers = args.child
        child(variant, folder, cache, int(image_size), int(budget), int(workers), args.batch)
        return 0
    for name in ("train", "test", "min_side", "image_size", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.max_side < args.min_side:
        parser.error(f"--max-side {args.max_side} is below --min-side {args.min_side}")
    if args.workers < 0:
        parser.error(f"--workers must be at least 0, got {args.workers}")
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"--variants: unknown {unknown or 'empty'}; choose among {', '.join(VARIANTS)}")
    side = round(args.image_size / 0.875)
    decoded = 3 * (args.train * side * side + args.test * args.image_size * args.image_size)
    if decoded <= args.budget:
        parser.error(f"the folder would decode to {decoded} bytes, not over --budget {args.budget}: auto would "
                     "not stream; raise --train or lower --budget")

    mib = 2**20
    tmp = tempfile.mkdtemp(prefix="bench-stream-")
    try:
        folder = os.path.join(tmp, "images")
        t0 = time.perf_counter()
        files = make_folder(folder, train=args.train, test=args.test, min_side=args.min_side,
                            max_side=args.max_side, seed=args.seed)
        print(f"generated {files} JPEGs in {time.perf_counter() - t0:.1f}s: {decoded / mib:.0f} MiB decoded at "
              f"--image-size {args.image_size}, budget {args.budget / mib:.0f} MiB", flush=True)
        results = {}
        for variant in variants:
            cache = os.path.join(tmp, f"cache-{variant}")
            cmd = child_command(__spec__.name, "--batch", str(args.batch), "--child", variant, folder,
                        cache, str(args.image_size), str(args.budget), str(args.workers))
            out = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
            if out.returncode:
                raise SystemExit(f"the {variant} child failed:\n{out.stderr[-3000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if variant == "stream" and r["chosen"] != "stream":
                raise SystemExit(f"loader auto kept {decoded} decoded bytes in memory despite --budget {args.budget}")
            r["growth_bytes"] = r["peak_rss_bytes"] - r["floor_rss_bytes"]
            results[variant] = r
            print(f"{variant:7s} peak RSS {r['peak_rss_bytes'] / mib:7.0f} MiB (floor {r['floor_rss_bytes'] / mib:.0f}, "
                  f"growth {r['growth_bytes'] / mib:.0f}), workers' peak {r['workers_peak_rss_bytes'] / mib:.0f} MiB, "
                  f"epoch {r['epoch_seconds']:.1f}s for {r['images']} images", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    write_result(args.out, {
        "benchmark": "stream-memory", "command": invocation(__spec__.name), **machine_info(),
        "folder": {"train": args.train, "test": args.test, "min_side": args.min_side, "max_side": args.max_side,
                   "seed": args.seed, "format": "jpeg", "decoded_bytes": decoded},
        "image_size": args.image_size, "budget_bytes": args.budget, "workers": args.workers, "batch": args.batch,
        "results": results,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
