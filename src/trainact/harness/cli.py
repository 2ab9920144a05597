"""`trainact`: the command line of the TrAct harness.

    trainact compare                                   # built-in synthetic data, narrow ResNet-18, baseline vs TrAct
    trainact compare --data ../shared/data/cifar10-jpeg.tar.gz --width 64 --budgets 100,200,400,800 \\
        --seeds 0,1,2,3,4 --lr 0.08 --lam 0.01,0.1,1 --out runs/cifar10-sgd
    trainact compare --optimizer adam --lr 0.01,0.001 --budgets 100,200   # the paper's lr rule: TrAct uses
                                                                          # the baseline's best lr per budget
    torchrun --nproc_per_node 4 -m trainact compare --data ... --device cuda
    torchrun --nproc_per_node 8 -m trainact compare --data imagenet/ --image-size 224 --loader stream \\
        --model tv:resnet50 --schedule step --milestones 0.333,0.667 --gamma 0.1 ...   # images of any size,
                                                                          # decoded per batch, x0.1 at 1/3 and 2/3
    trainact report runs/compare                       # tables and plots again, from the saved JSON alone

Exit status: 0 on success, 2 on bad usage (unknown option, bad value, contradictory flags, a missing optional
package, an output folder in use by another comparison), 1 when the run fails (unreadable data, a model that
cannot be built, ...); `--debug` prints the traceback.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable, Optional, Sequence

from trainact import __version__
from trainact.harness.config import (AMP_MODES, DEFAULT_MEMORY_BUDGET, DEFAULT_STEP_GAMMA, FIRST_LAYER_INITS,
                                     INPUT_RANGES, LOADERS, OPTIMIZERS, SCHEDULES, CompareConfig)

D = CompareConfig()  # the defaults, shown in --help


class UsageError(ValueError):
    """Bad or contradictory options: exit status 2."""


def _list_of(kind: Callable, what: str):
    """A comma-separated list of `kind` values; `what` is the singular noun for messages ("an integer")."""
    def parse(text: str):
        items = [t.strip() for t in text.split(",")]
        if any(not t for t in items):
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list (empty item)")
        out = []
        for t in items:
            try:
                out.append(kind(t))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{t!r} in {text!r} is not {what}") from None
        return out

    parse.__name__ = "list"
    return parse


def _options(text: str) -> dict:
    """`key=value,key=value` with integer values."""
    out = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        try:
            if not eq or not key.strip():
                raise ValueError
            out[key.strip()] = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} in {text!r} is not key=integer") from None
    return out


def _int_at_least(minimum: int):
    """An argparse type: an integer >= `minimum`."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
        return v

    return parse


_positive_int, _non_negative_int = _int_at_least(1), _int_at_least(0)


_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


def _bytes(text: str) -> int:
    """A size such as 256MiB, 8GiB, 1.5G or 1000000 (bytes); K/M/G/T are binary (2^10, 2^20, ...) with or
    without iB."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 256MiB, 8GiB, or a number of bytes)")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1 byte")
    return value


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction in (0, 1)")
    return v


def _csv(xs) -> str:
    return ",".join(format(x, "g") if isinstance(x, float) else str(x) for x in xs)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (lists as `a,b`), unless there is none or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if ("(default" in text or d is None or d is argparse.SUPPRESS or isinstance(d, bool)
                or not action.option_strings):
            return text
        if isinstance(d, (list, tuple)):
            d = _csv(d)
        return f"{text} (default: {d})"


EXAMPLES = """examples:
  trainact compare                                  # quick CPU demo: synthetic data, narrow ResNet-18
  trainact compare --data ../shared/data/cifar10-jpeg.tar.gz --width 64 \\
      --budgets 100,200,400,800 --seeds 0,1,2,3,4 --lr 0.08 --lam 0.01,0.1,1 --out runs/cifar10-sgd
  trainact compare --optimizer adam --lr 0.01,0.001 ...   # TrAct gets the baseline's best lr per budget
  torchrun --nproc_per_node 4 -m trainact compare --data ... --device cuda
  torchrun --nproc_per_node 8 -m trainact compare --data imagenet/ --image-size 224 \\
      --loader stream --schedule step --milestones 0.333,0.667 ...   # ImageNet-style data
  trainact report runs/compare                      # table + plots again, from the JSON files alone

exit status: 0 success, 2 bad usage (unknown option, bad value, contradictory flags), 1 failure."""


def build_parser() -> argparse.ArgumentParser:
    fmt = _HelpFormatter
    parser = argparse.ArgumentParser(
        prog="trainact", usage="trainact [--version] [--debug] {compare,report} ...", description="TrAct (training "
        "first-layer activations): train with and without TrAct side by side,\nand report what TrAct bought.",
        epilog=EXAMPLES, formatter_class=fmt)
    parser.add_argument("--debug", action="store_true", help="print the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"trainact {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser(
        "compare", formatter_class=fmt, usage="trainact compare [options]",
        help="train baseline and TrAct side by side (the main job)",
        description="Train the same model with and without TrAct for each budget (epochs), seed and lr; TrAct "
        "uses the baseline's best lr per budget (the paper's rule, no re-tuning). Writes config.json, per run "
        "metrics.jsonl and summary.json, a top-level summary.json, plots, and prints a table with the speed-up "
        "(baseline epochs needed for TrAct's accuracy / TrAct's epochs). Rerunning with the same --out skips "
        "finished runs and resumes interrupted ones from their last epoch. With no options it runs a "
        "quick CPU demo on the built-in synthetic data set.")
    c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print the full traceback on errors")
    g = c.add_argument_group("data")
    g.add_argument("--data", metavar="PATH", default=D.data,
                   help="CIFAR-10/100 python folder, image-folder tree (train/<class>/..., test/ or val/), or a "
                        ".tar/.tar.gz/.zip of one; default: the built-in synthetic data set")
    g.add_argument("--synthetic", type=_options, default=D.synthetic, metavar="KEY=VALUE,...",
                   help="options of the built-in synthetic set, e.g. train_size=5000,test_size=1000,image_size=32,"
                        "num_classes=10,seed=0 (without --data)")
    g.add_argument("--cache-dir", metavar="DIR", default=D.cache_dir,
                   help="where decoded images are cached (default: $TRAINACT_CACHE or ~/.cache/trainact)")
    g.add_argument("--train-subset", metavar="N", type=_positive_int, default=D.train_subset,
                   help="train on a seeded, class-balanced subset of N training images (N above the set's size: all "
                        "of it, said in one line)")
    g.add_argument("--input-range", choices=INPUT_RANGES, default=D.input_range,
                   help="standardized: per-channel mean 0 / std 1; unit: [0,1]; byte: [0,255] (paper §4.5 ablation)")
    g.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random crop / horizontal flip. The crop is a random window of the training image's "
                        "size after zero padding by 4 pixels; with --image-size N a random N x N window of the "
                        "training image resized to shorter side round(N / 0.875) and centre-cropped square (resize "
                        "+ random crop, not RandomResizedCrop); without augmentation, that square's centre N x N")
    g.add_argument("--image-size", type=_positive_int, default=D.image_size, metavar="N",
                   help="image folders/archives of any image sizes: test images resized to shorter side "
                        "round(N / 0.875) and centre-cropped to N x N (ImageNet's 0.875 crop ratio, 224 of 256); "
                        "train images see --no-augment (default: images used as stored, all of one size)")
    g.add_argument("--val-fraction", type=_fraction, default=D.val_fraction, metavar="F",
                   help="an image folder with train/ only: hold out a class-balanced fraction F of it as the test "
                        "split (the same split in every run: fixed salt, independent of --seeds)")
    g.add_argument("--loader", choices=LOADERS, default=D.loader,
                   help="memory: decode the whole set once into memory (cached on disk); stream: decode every batch "
                        "from the files with --workers processes (image folders/archives); auto: memory unless the "
                        f"decoded set (3 bytes a pixel) exceeds --memory-budget, {DEFAULT_MEMORY_BUDGET >> 30} GiB "
                        "unless given")
    g.add_argument("--workers", type=_non_negative_int, default=D.workers, metavar="N",
                   help="decoding processes per GPU/process of the streaming loader, 0: in the training process "
                        "(default: min(8, CPUs per process))")
    g.add_argument("--memory-budget", type=_bytes, default=D.memory_budget, metavar="SIZE",
                   help=f"--loader auto streams data whose decoded size exceeds SIZE, e.g. 256MiB, 8GiB (default: "
                        f"{DEFAULT_MEMORY_BUDGET >> 30}GiB)")

    g = c.add_argument_group("model")
    g.add_argument("--model", default=D.model,
                   help="resnet18|resnet34|resnet50 (CIFAR variant), resnet18-maxpool (the TrAct authors' CIFAR ResNet-18: "
                        "a 3x3/2 max-pool after the stem), vit, vit-patchnorm, vit-dualpatchnorm, "
                        "tv:<torchvision name>, timm:<timm name>")
    g.add_argument("--width", type=_positive_int, default=D.width,
                   help="ResNet base width (the paper's ResNet-18: 64; narrow by default for CPU runs)")
    g.add_argument("--patch-size", type=_positive_int, default=None, help="ViT patch size (default: 8)")
    g.add_argument("--dim", type=_positive_int, default=None, help="ViT hidden size (default: 384)")
    g.add_argument("--depth", type=_positive_int, default=None, help="ViT depth (default: 7)")
    g.add_argument("--heads", type=_positive_int, default=None, help="ViT heads (default: 12)")

    g = c.add_argument_group("methods and protocol")
    g.add_argument("--methods", type=_list_of(str, "a method name"), default=list(D.methods),
                   metavar="LIST", help="comma-separated subset of baseline,tract")
    g.add_argument("--lam", dest="lams", type=_list_of(float, "a number"), default=list(D.lams), metavar="LIST",
                   help="TrAct's lambda, or a comma-separated list (the paper: 0.01,0.1,1)")
    g.add_argument("--relative-lambda", action="store_true",
                   help="use lambda * tr(AᵀA/r)/n as the ridge term, invariant to the input scale (for --input-range unit/byte; not in the paper)")
    g.add_argument("--budgets", type=_list_of(int, "an integer"), default=list(D.budgets), metavar="LIST",
                   help="epoch budgets, each its own run with its own schedule (the paper: 100,200,400,800)")
    g.add_argument("--seeds", type=_list_of(int, "an integer"), default=list(D.seeds), metavar="LIST",
                   help="seeds (the paper: 5)")
    g.add_argument("--lr", dest="lrs", type=_list_of(float, "a number"), default=list(D.lrs), metavar="LIST",
                   help="learning rate or a comma-separated grid; the baseline's best per budget is TrAct's lr")
    g.add_argument("--lr-grid-seeds", type=_positive_int, default=None, metavar="N",
                   help="run the lr grid with the first N seeds only (default: all seeds)")

    g = c.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=D.optimizer, help="optimizer")
    g.add_argument("--momentum", type=float, default=D.momentum, help="SGD momentum")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    g.add_argument("--weight-decay", type=float, default=D.weight_decay, help="weight decay (all parameters)")
    g.add_argument("--schedule", choices=SCHEDULES, default=D.schedule,
                   help="cosine: per-step cosine to 0 over each run; multistep: pytorch-cifar100's x0.2 at "
                        "60/120/160 of 200 epochs, i.e. at 30%%/60%%/80%% of the budget; step: x--gamma at each of "
                        "--milestones")
    g.add_argument("--milestones", type=_list_of(float, "a number"), default=None, metavar="LIST",
                   help="--schedule step: increasing fractions of the budget in (0, 1); the lr is multiplied by "
                        "--gamma from epoch max(1, round(fraction x budget)) on, e.g. 0.333,0.667 (the paper's "
                        "ImageNet: 10/20 of 30 epochs)")
    g.add_argument("--gamma", type=float, default=None,
                   help=f"--schedule step: the lr factor at each milestone (default: {DEFAULT_STEP_GAMMA:g})")
    g.add_argument("--warmup-epochs", type=float, default=D.warmup_epochs, help="linear warm-up (epochs, per step)")
    g.add_argument("--label-smoothing", type=float, default=D.label_smoothing, help="label smoothing")
    g.add_argument("--batch-size", type=_positive_int, default=D.batch_size,
                   help="global batch size (divided among torchrun processes)")
    g.add_argument("--grad-accum", type=_positive_int, default=D.grad_accum,
                   help="split each batch into N micro-batches, accumulating gradients; TrAct then pools the "
                        "statistics of all micro-batches (and all processes) into the exact large-batch update")
    g.add_argument("--first-layer-sgd", action="store_true",
                   help="the paper's open question: train the first layer with SGD (momentum) while the rest "
                        "uses --optimizer adam/adamw")
    g.add_argument("--first-layer-lr", type=float, default=None,
                   help="lr of the first layer with --first-layer-sgd (default: 0.08, the paper's SGD lr)")
    g.add_argument("--first-layer-init", choices=FIRST_LAYER_INITS, default=D.first_layer_init,
                   help="default: the model's own init; whiten: airbench's patch-whitening filters (± eigenvectors "
                        "of the first layer's patch covariance over 5000 training images, scaled by "
                        "1/sqrt(eigenvalue + 5e-4)), then trained as usual; whiten-frozen: the same, weight frozen "
                        "(only with --methods baseline: TrAct would have nothing to train)")

    g = c.add_argument_group("execution")
    g.add_argument("--amp", choices=AMP_MODES, default=D.amp, help="mixed precision (fp16 needs CUDA)")
    g.add_argument("--channels-last", action="store_true",
                   help="model and image batches in channels-last memory format (faster convolutions on GPUs)")
    g.add_argument("--compile", action="store_true",
                   help="train through torch.compile(model), TrAct's backward compiled with it; the first steps "
                        "compile (tens of seconds on a CPU); evaluation stays eager. The log says how many graphs "
                        "were compiled and how many graph breaks there were")
    g.add_argument("--device", default=D.device, help="auto (CUDA when present), cpu, cuda, cuda:N")
    g.add_argument("--jobs", type=_positive_int, default=D.jobs,
                   help="train N runs side by side, each in its own process: round-robin over the visible GPUs "
                        "(several per GPU allowed), the CPU's threads split between them; a budget's TrAct runs "
                        "start once its lr grid has finished. Not under torchrun")
    g.add_argument("--threads", type=_positive_int, default=None,
                   help="torch.set_num_threads (default: torch's choice)")
    g.add_argument("--eval-every", type=_positive_int, default=D.eval_every,
                   help="evaluate every N epochs (and always after the last)")
    g.add_argument("--out", metavar="DIR", default=D.out,
                   help="output directory; a fixed default so that rerunning resumes (it must hold the same "
                        "configuration, except more budgets/seeds/lrs/lambdas)")

    r = sub.add_parser("report", formatter_class=fmt, usage="trainact report [--no-plots] [--markdown] DIR",
                       help="print the table and rebuild the plots of a comparison from its JSON files",
                       description="Rebuild the table and the PNG plots of `trainact compare` from DIR's "
                                   "config.json and the runs'\nsummary.json/metrics.jsonl alone (also for "
                                   "unfinished comparisons: missing runs are listed).")
    r.add_argument("dir", metavar="DIR", help="output directory of trainact compare")
    r.add_argument("--no-plots", action="store_true", help="only print the table")
    r.add_argument("--markdown", action="store_true", help="print the table as Markdown (for a README section)")
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print the full traceback on errors")
    return parser


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    """The CompareConfig of parsed `compare` options (ValueError on bad or contradictory values)."""
    return CompareConfig(
        data=args.data, synthetic=args.synthetic, cache_dir=args.cache_dir, train_subset=args.train_subset, input_range=args.input_range,
        augment=args.augment, image_size=args.image_size, val_fraction=args.val_fraction, loader=args.loader,
        workers=args.workers, memory_budget=args.memory_budget, model=args.model, width=args.width, patch_size=args.patch_size, dim=args.dim,
        depth=args.depth, heads=args.heads, methods=args.methods, lams=args.lams,
        relative_lambda=args.relative_lambda, budgets=args.budgets, seeds=args.seeds, lrs=args.lrs,
        lr_grid_seeds=args.lr_grid_seeds, optimizer=args.optimizer, momentum=args.momentum,
        nesterov=args.nesterov, weight_decay=args.weight_decay, schedule=args.schedule, milestones=args.milestones,
        gamma=args.gamma,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, batch_size=args.batch_size, grad_accum=args.grad_accum,
        first_layer_sgd=args.first_layer_sgd, first_layer_lr=args.first_layer_lr,
        first_layer_init=args.first_layer_init, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
        jobs=args.jobs,
        device=args.device, eval_every=args.eval_every, threads=args.threads, out=args.out)


# What `trainact compare` imports beyond torch: module -> (pip package, extra of trainact that installs it)
_PACKAGES = {"tqdm": ("tqdm", "harness"), "matplotlib": ("matplotlib", "harness"), "PIL": ("Pillow", "harness"),
             "numpy": ("numpy", "harness"), "torchvision": ("torchvision", "vision"), "timm": ("timm", "vision")}


def _needed_modules(cfg: CompareConfig) -> list[str]:
    """The optional modules a comparison will import: progress bars and plots always, image decoding for --data
    (image folders and archives: Pillow; CIFAR pickles: numpy), torchvision or timm for tv:/timm: models."""
    needed = ["tqdm", "matplotlib"]
    if cfg.data is not None:
        needed += ["PIL", "numpy"]
    model = cfg.model.removeprefix("cifar:")  # the CIFAR-sized variants build the same libraries' models
    if model.startswith("tv:"):
        needed.append("torchvision")
    elif model.startswith("timm:"):
        needed.append("timm")
    return needed


def check_requirements(modules: Sequence[str], what: str) -> None:
    """UsageError (one line: the missing packages and the pip command) unless every module imports."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        packages = " and ".join(_PACKAGES[m][0] for m in missing)
        extras = ",".join(sorted({_PACKAGES[m][1] for m in missing}))
        raise UsageError(f"{what} needs {packages}, which {'is' if len(missing) == 1 else 'are'} not installed: "
                         f'pip install "trainact[{extras}]"')


def _check_model_name(name: str) -> None:
    if name.startswith(("tv:", "timm:")):
        return
    from trainact.harness.models import available_models

    names = available_models()
    if name not in names:
        raise UsageError(f"unknown model {name!r}; available: {', '.join(names)}")


def cmd_compare(args: argparse.Namespace) -> int:
    import torch

    from trainact.harness import compare, env

    try:
        cfg = config_from_args(args)
    except ValueError as err:
        raise UsageError(str(err)) from None
    _check_model_name(cfg.model)
    model = f" --model {cfg.model}" if cfg.model.startswith(("tv:", "timm:", "cifar:")) else ""
    check_requirements(_needed_modules(cfg), f"trainact compare{model}")  # before any data loading or training
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        dist, device = env.init_distributed(cfg.device)
    except ValueError as err:
        raise UsageError(str(err)) from None
    try:
        if cfg.amp == "fp16" and device.type != "cuda":
            raise UsageError(f"--amp fp16 needs CUDA, but the device is {device} (use --amp bf16 or off)")
        if cfg.jobs > 1 and dist.enabled:
            raise UsageError(f"--jobs {cfg.jobs} trains runs side by side in one process each; under torchrun every "
                             f"run already uses all {dist.world_size} processes: drop --jobs or torchrun")
        if cfg.batch_size % (dist.world_size * cfg.grad_accum):
            raise UsageError(f"--batch-size {cfg.batch_size} (the global batch) is not divisible by the "
                             f"{dist.world_size} processes x {cfg.grad_accum} micro-batches")
        from pathlib import Path

        if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
            raise UsageError(f"--out {cfg.out} is an existing file, not a folder: choose another --out")
        try:
            compare.check_out_dir(cfg)
        except ValueError as err:
            raise UsageError(str(err)) from None
        from trainact.harness.lock import OutDirLocked

        try:
            compare.run_compare(cfg, dist=dist, device=device)
        except OutDirLocked as err:
            raise UsageError(str(err)) from None
        except RuntimeError as err:
            if not (dist.enabled and env.peer_lost(err)):
                raise
            other = f"rank {1 - dist.rank}" if dist.world_size == 2 else "another rank"
            raise ValueError(
                f"rank {dist.rank} lost contact with {other} of this {dist.world_size}-process job "
                f"({env.peer_lost(err)}): that process died or was killed (torchrun's summary "
                f"names it). Rerun the same command to resume from the last finished epoch") from None
    finally:
        env.shutdown_distributed()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trainact.harness import results as R

    out_dir = Path(args.dir)
    if not out_dir.is_dir():
        raise UsageError(f"{out_dir} is not a directory")
    if not args.no_plots:
        check_requirements(["matplotlib"], "trainact report (without --no-plots)")
    summary = R.summarize(out_dir)
    if not args.no_plots:
        from trainact.harness.plots import make_plots

        make_plots(out_dir, summary, R.load_runs(out_dir))
    print(R.format_markdown(summary) if args.markdown else R.format_table(summary))
    if not args.no_plots:
        print(f"plots: {out_dir}/*.png")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, message already printed)
        return exit_.code if isinstance(exit_.code, int) else 2
    debug = getattr(args, "debug", False)
    sub = {"compare": cmd_compare, "report": cmd_report}[args.command]
    try:
        return sub(args)
    except UsageError as err:
        if debug:
            traceback.print_exc()
        print(f"trainact {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, ImportError, OSError) as err:  # DataError is a ValueError; FileNotFoundError an OSError
        if debug:
            traceback.print_exc()
        print(f"trainact {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"trainact {args.command}: interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
