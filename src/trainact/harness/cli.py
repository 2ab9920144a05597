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

Contract: `compare`'s options are CompareConfig's declarations (harness/config.py), one flag per field stored
under the field's name and checked by the field's own check as it is parsed, so `config_from_args` builds the
config from any parsed namespace without naming an option; the config then checks the options together. The
flags that are not config options (--debug, --version, `report`'s) are added in `build_parser`.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any, Optional, Sequence

from trainact import __version__
from trainact.harness.config import CompareConfig
from trainact.harness.options import Declared, declarations, parse_bytes

__all__ = ["UsageError", "build_parser", "config_from_args", "check_requirements", "main", "parse_bytes"]



class UsageError(ValueError):
    """Bad or contradictory options: exit status 2."""


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

COMPARE_DESCRIPTION = (
    "Train the same model with and without TrAct for each budget (epochs), seed and lr; TrAct uses the baseline's "
    "best lr per budget (the paper's rule, no re-tuning). Writes config.json, per run metrics.jsonl and "
    "summary.json, a top-level summary.json, plots, and prints a table with the speed-up (baseline epochs needed "
    "for TrAct's accuracy / TrAct's epochs). Rerunning with the same --out skips finished runs and resumes "
    "interrupted ones from their last epoch. With no options it runs a quick CPU demo on the built-in synthetic "
    "data set.")


def build_parser() -> argparse.ArgumentParser:
    """`trainact [--version] [--debug] {compare,report}`: the flags that are not config options are added here;
    `compare`'s options come from CompareConfig's declarations (`add_config_options`)."""
    fmt = _HelpFormatter
    parser = argparse.ArgumentParser(
        prog="trainact", usage="trainact [--version] [--debug] {compare,report} ...", description="TrAct (training "
        "first-layer activations): train with and without TrAct side by side,\nand report what TrAct bought.",
        epilog=EXAMPLES, formatter_class=fmt)
    parser.add_argument("--debug", action="store_true", help="print the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"trainact {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser("compare", formatter_class=fmt, prog="trainact compare", usage="trainact compare [options]",
                       help="train baseline and TrAct side by side (the main job)", description=COMPARE_DESCRIPTION)
    c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print the full traceback on errors")
    add_config_options(c, CompareConfig)

    r = sub.add_parser("report", formatter_class=fmt, prog="trainact report",
                       usage="trainact report [--no-plots] [--markdown] DIR",
                       help="print the table and rebuild the plots of a comparison from its JSON files",
                       description="Rebuild the table and the PNG plots of `trainact compare` from DIR's "
                                   "config.json and the runs'\nsummary.json/metrics.jsonl alone (also for "
                                   "unfinished comparisons: missing runs are listed).")
    r.add_argument("dir", metavar="DIR", help="output directory of trainact compare")
    r.add_argument("--no-plots", action="store_true", help="only print the table")
    r.add_argument("--markdown", action="store_true", help="print the table as Markdown (for a README section)")
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print the full traceback on errors")
    parser.subcommands = {"compare": c, "report": r}  # errors are said by the subcommand, with its usage line
    return parser


def add_config_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per declared field of the config dataclass `cls`, in its --help section, stored under the field's
    name."""
    groups: dict = {}
    for d in declarations(cls):
        if d.option.group not in groups:
            groups[d.option.group] = parser.add_argument_group(d.option.group)
        groups[d.option.group].add_argument(d.flag, dest=d.name, **_argument(d))


def _argument(d: Declared) -> dict:
    """argparse's keywords for a declared option: a boolean is a switch away from its default; a value is parsed
    and then checked by the declaration's own check (argparse reports the typed text and what is wrong with it)."""
    o = d.option
    if isinstance(d.default, bool):
        return {"action": "store_false" if d.default else "store_true", "help": o.help}
    out: dict[str, Any] = {"default": d.default, "help": o.help}
    if o.metavar:
        out["metavar"] = o.metavar
    if o.choices:
        out["choices"] = o.choices
    elif o.parse or o.check:
        out["type"] = _argument_type(d)
    return out


def _argument_type(d: Declared):
    parse, check = d.option.parse, d.option.check

    def convert(text: str):
        value = parse(text) if parse else text
        if check:
            try:
                check(repr(text), value)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None
        return value

    convert.__name__ = d.name
    return convert


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    """The CompareConfig of parsed `compare` options (ValueError on bad or contradictory values)."""
    return CompareConfig(**{d.name: getattr(args, d.name) for d in declarations(CompareConfig)})


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


def cmd_compare(args: argparse.Namespace) -> int:
    import torch

    from trainact.harness import compare, env

    try:
        cfg = config_from_args(args)
    except ValueError as err:
        raise UsageError(str(err)) from None
    model = f" --model {cfg.model}" if cfg.model.startswith(("tv:", "timm:", "cifar:")) else ""
    check_requirements(_needed_modules(cfg), f"trainact compare{model}")  # before any data loading or training
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        dist, device = env.init_distributed(cfg.device)
    except ValueError as err:
        raise UsageError(str(err)) from None
    guard = env.onednn_channels_last_guard(device, cfg.channels_last or cfg.compile)  # before any convolution
    if guard and dist.is_main:
        print(f"trainact compare: {guard}", file=sys.stderr)
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
        except (OutDirLocked, compare.OutDirMismatch) as err:
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
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # said by the subcommand, with its usage line
            parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
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
