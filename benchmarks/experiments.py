"""The evidence experiments: one registry holding the exact `trainact compare` command of each and what it feeds
in the report (`report=`: report kinds, benchmarks/evidence.py, each owning its tables, plots and claims with the
paper's quote). The command line below (run with resume, collect, status, plan) is runner.py's.

    python -m benchmarks.experiments list                      # every experiment and its command
    python -m benchmarks.experiments run fig3-sgd lam-sweep    # run them one after the other (resumes)
    python -m benchmarks.experiments collect                   # copy finished JSON into benchmarks/results/
    python -m benchmarks.experiments status                    # what is finished, what is left to train
    python -m benchmarks.experiments plan --minutes 9          # which whole paper-* runs fit in a GPU window
    python -m benchmarks.report                                # BENCHMARKS.md + the README's results section

Runs are written to --runs DIR (default: $TRAINACT_RUNS or ./runs, git-ignored); checkpoints and logs stay
there. `collect` copies config.json, every run's summary.json and metrics.jsonl, recomputes summary.json and
redraws the plots into benchmarks/results/experiments/NAME/, replacing machine paths by the command's own.

Reuse: an experiment may name others whose finished runs it shares (the same settings, compared with
`CompareConfig.differences`); those run folders are copied before it starts instead of being trained twice.
The runs already collected into the repository are reused the same way, so a long experiment spans sessions
and machines: `run NAME --budgets 1,2` trains part of it, `collect` keeps it, a later `run NAME` does the rest
(`run NAME --device cuda` trains the rest of a CPU experiment on a GPU; the device is not part of the protocol).
An experiment may take its lr from another's lr grid (`lr_from`), the paper's rule of never re-tuning for TrAct.

The paper's ImageNet protocols are registered too (imagenet-*); they need an ImageNet folder at IMAGENET and a
GPU node: `list` prints their launch line (`torchrun --nproc_per_node 8 -m trainact compare ...`), and `run`
launches them that way, after checking that their data is there (without it, it stops before anything starts).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

if __name__ == "__main__" and not __package__:  # run as a file, its relative imports would fail obscurely
    sys.exit(f"run it as a module from the repository root: {' '.join(['python -m benchmarks.experiments', *sys.argv[1:]])}")

from trainact.harness.results import summarize

from .claims.ablations import Ablation, FirstLayerSgd
from .claims.contrast import ContrastCell
from .claims.curves import Curve
from .claims.lam import LamOne, LamSweep, LamTable, LamTrend
from .claims.lead import Lead
from .claims.repro import Repro
from .claims.stems import StemCell
from .claims.wd_pool import WdPoolCell
from .claims.whitening import Whitening
from .claims.zoo import Zoo, ZooShort
from .evidence import Joins, ReadmeFigure, Scale

HERE = Path(__file__).resolve().parent
COLLECTED = HERE / "results" / "experiments"
DATA = "../shared/data/cifar10-jpeg.tar.gz"  # as given on the command line, relative to the repository root

# The CPU-scale CIFAR ResNet: the paper's CIFAR ResNet-18 at a quarter of its width, on a class-balanced
# 20 000-image subset of CIFAR-10's training set (the full 10 000-image test set): about 50 s per epoch here.
RESNET = ["--data", DATA, "--train-subset", "20000", "--width", "16"]
# The CPU-scale ViT-CIFAR: the paper's design (Linear patch embedding of 8x8 patches, 7 layers, 12 heads, MLP 4x
# the hidden size) with hidden size 192 instead of 384, same subset: about a minute per epoch here.
VIT_SIZE = ["--dim", "192", "--depth", "7", "--heads", "12", "--weight-decay", "5e-5"]  # ViT-CIFAR's weight decay
VIT = ["--data", DATA, "--train-subset", "20000", "--model", "vit"] + VIT_SIZE
SEEDS = ["--seeds", "0,1,2"]
BUDGETS = ["--budgets", "1,2,4,8"]
ABLATION_BUDGET = 2  # the λ sweep, the §4.5 ablations and the open question: one budget

EXPERIMENTS: dict[str, dict] = {}
TO_BE_MEASURED = "to be measured"

# The two CIFAR ResNet protocols run here differ in two things only: the authors' code puts a 3x3/2 max-pool after
# the stem and uses no weight decay; our variant has no max-pool and weight decay 5e-4.
OUR_VARIANT, AUTHORS_PROTOCOL = "our CIFAR variant", "authors' protocol"
OUR_VARIANT_LONG = f"{OUR_VARIANT}: no max-pool, weight decay 5e-4"
AUTHORS_PROTOCOL_LONG = f"{AUTHORS_PROTOCOL}: max-pool stem, no weight decay"
# the paper's claims that several experiments check, quoted from PAPER-NUMBERS.md
FIG3_SGD = ("Fig. 3 (ResNet-18 CIFAR-10, SGD, 100–800 ep, λ ∈ {0.05, 0.1, 0.2}): TrAct better in every setting; "
            "TrAct@100 better than baseline@800 (≥ 8×)")
FIG3_ADAM = "Fig. 3 (Adam): TrAct better in every setting; TrAct@100 ≈ baseline@400, TrAct@200 ≈ baseline@800 (4×)"
FIG3_SGD_LR = "Fig. 3 (SGD, lr 0.08, batch 128): TrAct better in every setting"
FIG4_VIT = "Fig. 4 (ViT CIFAR-10): TrAct better for all λ; TrAct@200 ≈ baseline@400 (2×)"
LAM_TREND = "λ ∈ {0.05, 0.1, 0.2}; 0.1 to start, 0.2 for long training (§ hyperparameters)"


def experiment(name: str, title: str, args: list, *, reuse=(), lr_from: Optional[tuple] = None,
               nproc_per_node: int = 1, epoch_time: Optional[str] = None, report: tuple = ()) -> None:
    """Register an experiment. lr_from = (source, budget) or (source, (budget, ...)): its one `--lr` is the lr
    the source's grid selected at that budget; with several budgets, the one they all selected. nproc_per_node > 1:
    launched as `torchrun --nproc_per_node N -m trainact compare ...`; epoch_time: its wall time per epoch on one
    GPU, as far as known; report: what it feeds in BENCHMARKS.md and the README (benchmarks/evidence.py)."""
    EXPERIMENTS[name] = {"title": title, "args": list(args), "reuse": tuple(reuse), "lr_from": lr_from,
                         "nproc_per_node": nproc_per_node, "epoch_time": epoch_time, "report": tuple(report)}


def lr_budgets(spec: tuple) -> tuple:
    """The source budgets of an `lr_from` spec, as a tuple."""
    return spec[1] if isinstance(spec[1], tuple) else (spec[1],)


# the paper's λ grid (0.05, 0.1, 0.2: PAPER-NUMBERS.md) at every budget, up to 16 epochs
experiment("fig3-sgd", "Fig. 3 analogue: CIFAR ResNet, SGD; our CIFAR variant: no max-pool, weight decay 5e-4",
           RESNET + ["--budgets", "1,2,4,8,16"] + SEEDS + ["--lr", "0.04,0.08,0.16", "--lr-grid-seeds", "1",
                                                         "--lam", "0.05,0.1,0.2", "--optimizer", "sgd",
                                                         "--warmup-epochs", "0"],
           report=(Curve(paper=FIG3_SGD, trend=f"ResNet, SGD ({OUR_VARIANT_LONG})"), Scale("resnet"),
                   Lead("short", f"in {OUR_VARIANT}", (1, 2)),
                   ReadmeFigure("TrAct against the baseline per budget, CIFAR ResNet with SGD", "accuracy_vs_budget.png"),
                   LamTrend(f"ResNet, SGD, {OUR_VARIANT}", LAM_TREND),
                   Whitening((("baseline", "baseline"), ("TrAct", "tract-l0.1")), reference=True,
                             setting=f"ResNet, {OUR_VARIANT}, SGD")))
# The TrAct authors' own CIFAR protocol (torch-tract's examples/train_cifar.py and resnet_cifar10.py): their ResNet-18,
# whose stem is followed by a 3x3/2 max-pool, and no weight decay at all (SGD momentum 0.9 or Adam, cosine per step,
# batch 128, crop + flip): the Fig. 3 analogues above with only those two things changed (same subset and width).
AUTHORS = ["--model", "resnet18-maxpool", "--weight-decay", "0"]
experiment("fig3-sgd-authors", "Fig. 3 analogue: CIFAR ResNet, SGD; authors' protocol: max-pool stem, no weight decay",
           RESNET + AUTHORS + ["--budgets", "1,2,4,8,16"] + SEEDS + [
               "--lr", "0.04,0.08,0.16", "--lr-grid-seeds", "1", "--lam", "0.05,0.1,0.2", "--optimizer", "sgd",
               "--warmup-epochs", "0"], reuse=("wd-pool-maxpool-wd0",),
           report=(Curve(paper=FIG3_SGD, trend=f"ResNet, SGD ({AUTHORS_PROTOCOL_LONG})"),
                   Lead("short", f"in the {AUTHORS_PROTOCOL}", (1, 2)),
                   Lead("lasting", "with the authors' max-pool stem", (16, 32))))
# the longer budget the max-pool model makes affordable: baseline and λ 0.1 at the lr the grid chose at 16 epochs,
# 8 seeds (3 were too few to tell whether the gain lasts: one seed +0.15, the others +2.3 and +3.4). The 16-epoch
# budget is its own schedule, trained at seeds 0-2 only (fig3-sgd-authors' runs): the change from 16 to 32 epochs is
# paired on those 3 seeds
experiment("fig3-sgd-authors-32",
           "Fig. 3 analogue at 32 epochs (baseline, λ 0.1, 8 seeds), SGD; authors' protocol: max-pool stem, "
           "no weight decay",
           RESNET + AUTHORS + ["--budgets", "32", "--seeds", "0,1,2,3,4,5,6,7", "--lam", "0.1", "--optimizer",
                               "sgd", "--warmup-epochs", "0"],
           lr_from=("fig3-sgd-authors", 16), report=(Joins("fig3-sgd-authors"),))
# Which of the two differences moves TrAct's gain: {max-pool, none} x {weight decay 0, 5e-4} at 4 and 16 epochs,
# λ 0.1, lr 0.08 (the paper's SGD optimum at every budget), 3 seeds. The cell without either change is fig3-sgd's
# protocol at lr 0.08, whose collected runs are reused. The two cells without weight decay are also the references of
# the stem ablation below, and the max-pool one is the contrast sweep's c = 1.
CELL = ["--budgets", "4,16"] + SEEDS + ["--lr", "0.08", "--lam", "0.1", "--optimizer", "sgd", "--warmup-epochs", "0"]
STEM_LABELS = {"maxpool": "the max-pool stem", "nopool": "no pool"}  # the references' names in the stem ablation
for _pool, _model in (("maxpool", "resnet18-maxpool"), ("nopool", "resnet18")):
    for _wd in ("0", "5e-4"):
        experiment(f"wd-pool-{_pool}-wd{_wd}",
                   f"Weight decay x max-pool: {_model}, weight decay {_wd}, SGD lr 0.08, λ 0.1, 4 and 16 epochs",
                   RESNET + ["--model", _model, "--weight-decay", _wd] + CELL,
                   reuse=("fig3-sgd",) if (_pool, _wd) == ("nopool", "5e-4") else
                   ("fig3-sgd-authors",) if (_pool, _wd) == ("maxpool", "0") else (),
                   report=(WdPoolCell(_pool, _wd, f"{'max-pool stem' if _pool == 'maxpool' else 'no max-pool'}, "
                                      f"{'no weight decay' if _wd == '0' else 'weight decay 5e-4'}"
                                      + {("maxpool", "0"): f" ({AUTHORS_PROTOCOL})",
                                         ("nopool", "5e-4"): f" ({OUR_VARIANT})"}.get((_pool, _wd), ""),
                                      FIG3_SGD_LR),)
                   + ((StemCell(_pool, STEM_LABELS[_pool]),) if _wd == "0" else ())
                   + ((Lead("lasting", "without the max-pool", (16,), vs="fig3-sgd-authors"),)
                      if (_pool, _wd) == ("nopool", "0") else ())
                   + ((ContrastCell(1.0),) if (_pool, _wd) == ("maxpool", "0") else ()))
# What of the max-pool keeps TrAct's gain to 16 epochs, where the no-pool model's faded: the halved resolution, or the
# max's sparse gradient? Two stems give the stages the same 16x16 maps without the max: a stride-2 stem, and the
# stride-1 stem followed by a 2x2 average pool; same protocol as the weight decay x max-pool cells without weight
# decay, which they are compared with (claims/stems.py).
for _stem, _model, _label in (("s2", "resnet18-s2", "the stride-2 stem"),
                              ("avg", "resnet18-avgpool", "the 2x2 average pool")):
    experiment(f"pool-{_stem}", f"Stem ablation: {_model} ({_label}), no weight decay, SGD lr 0.08, λ 0.1, 4 and 16 "
               "epochs", RESNET + ["--model", _model, "--weight-decay", "0"] + CELL,
               report=(StemCell(_stem, _label, FIG3_SGD_LR), Lead("stems")))
# Does TrAct's gain grow when the training images' contrast varies more, as the paper's argument predicts? The
# authors' model without weight decay, each training image's contrast scaled by its own log-uniform factor in [c, 1]
# (around its mean brightness; fixed per seed and image); c = 1 is wd-pool-maxpool-wd0 (claims/contrast.py).
for _c in ("0.3", "0.1"):
    experiment(f"contrast-{_c}", f"Contrast spread {_c}: the authors' model, each training image's contrast scaled by "
               f"a log-uniform factor in [{_c}, 1], no weight decay, SGD lr 0.08, λ 0.1, 4 and 16 epochs",
               RESNET + AUTHORS + CELL + ["--contrast-spread", _c],
               report=(ContrastCell(float(_c), FIG3_SGD_LR), Lead("contrast")))
# TrAct whitens the first layer's gradient; airbench instead starts its first layer from patch-whitening filters (and
# freezes them). fig3-sgd's protocol at 2 and 8 epochs with that first layer (here 16 channels: the 8 leading ± pairs
# of the 27 eigen-filters), at the lr fig3-sgd's baseline selected at both budgets: whitened and trained normally
# (baseline) against whitened + TrAct, and whitened and frozen (baseline only: a frozen layer leaves TrAct nothing).
_WHITEN = RESNET + SEEDS + ["--budgets", "2,8", "--optimizer", "sgd", "--warmup-epochs", "0"]
experiment("whiten-sgd", "airbench's patch-whitened first layer, trained, with and without TrAct (CIFAR ResNet, SGD)",
           _WHITEN + ["--lam", "0.1", "--first-layer-init", "whiten"], lr_from=("fig3-sgd", (2, 8)),
           report=(Whitening((("whitened, trained", "baseline"), ("whitened + TrAct", "tract-l0.1"))),))
experiment("whiten-frozen-sgd", "airbench's patch-whitened first layer, frozen (CIFAR ResNet, SGD)",
           _WHITEN + ["--methods", "baseline", "--first-layer-init", "whiten-frozen"], lr_from=("fig3-sgd", (2, 8)),
           report=(Whitening((("whitened, frozen", "baseline"),)),))
experiment("fig3-adam", "Fig. 3 analogue: CIFAR ResNet, Adam; our CIFAR variant: no max-pool, weight decay 5e-4",
           RESNET + BUDGETS + SEEDS + ["--lr", "0.01,0.003,0.001", "--lr-grid-seeds", "1", "--lam", "0.1",
                                       "--optimizer", "adam", "--warmup-epochs", "0"],
           report=(Curve(paper=FIG3_ADAM, trend=f"ResNet, Adam ({OUR_VARIANT_LONG})"),
                   Lead("none", f"with Adam in {OUR_VARIANT}")))
experiment("fig3-adam-authors", "Fig. 3 analogue: CIFAR ResNet, Adam; authors' protocol: max-pool stem, no weight decay",
           RESNET + AUTHORS + ["--budgets", "1,2,4,8,16"] + SEEDS + [
               "--lr", "0.01,0.003,0.001", "--lr-grid-seeds", "1", "--lam", "0.1", "--optimizer", "adam",
               "--warmup-epochs", "0"],
           report=(Curve(paper=FIG3_ADAM, trend=f"ResNet, Adam ({AUTHORS_PROTOCOL_LONG})"),
                   Lead("none", f"with Adam in the {AUTHORS_PROTOCOL}")))
_FIG4 = VIT + SEEDS + ["--lr", "0.001,0.0003,0.0001", "--lr-grid-seeds", "1", "--optimizer", "adam",
                       "--label-smoothing", "0.1", "--warmup-epochs", "0"]
experiment("fig4-vit", "Fig. 4 analogue: ViT-CIFAR, Adam (cosine), label smoothing 0.1",
           _FIG4 + ["--budgets", "1,2,4,8,16,32", "--lam", "0.1"],
           report=(Curve(paper=FIG4_VIT, trend="ViT"), Scale("vit"), LamTrend("ViT", LAM_TREND), Lead("none", "in the ViT"),
                   Ablation("ViT, standardised inputs", "standardised", ABLATION_BUDGET, reference=True)))
# the paper's other two λ at the budgets 1-8 (the baseline's lr grid and runs are fig4-vit's)
experiment("fig4-vit-lam", "Fig. 4 analogue, the paper's λ grid: ViT-CIFAR with λ 0.05 and 0.2",
           _FIG4 + BUDGETS + ["--lam", "0.05,0.2"], reuse=("fig4-vit",), report=(Joins("fig4-vit"),))
experiment("lam-sweep", f"Fig. 6 analogue: lambda from 0.01 to 10 (CIFAR ResNet, SGD, {ABLATION_BUDGET} epochs)",
           RESNET + SEEDS + ["--budgets", str(ABLATION_BUDGET), "--lam", "0.01,0.03,0.1,0.3,1,3,10",
                             "--optimizer", "sgd", "--warmup-epochs", "0"],
           reuse=("fig3-sgd",), lr_from=("fig3-sgd", ABLATION_BUDGET),
           report=(LamTable(), LamSweep(f"ResNet, {OUR_VARIANT}, SGD", "Fig. 6 (ViT, 200 ep): TrAct above the baseline "
                                        "for every λ in [0.00625, 1.6]", (0.01, 0.03, 0.1, 0.3, 1, 3, 10), (0.00625, 1.6))))
for _opt in ("sgd", "adam"):  # the paper recommends λ = 1 for long training: at the longest budget here
    experiment("lam-long" + ("-adam" if _opt == "adam" else ""),
               f"λ at the longest budget: 0.1 vs 1 (CIFAR ResNet, {'SGD' if _opt == 'sgd' else 'Adam'}, 8 epochs)",
               RESNET + SEEDS + ["--budgets", "8", "--lam", "0.1,1", "--optimizer", _opt, "--warmup-epochs", "0"],
               reuse=(f"fig3-{_opt}",), lr_from=(f"fig3-{_opt}", 8),
               report=(LamTable(), LamOne(f"ResNet, {OUR_VARIANT}, {'SGD' if _opt == 'sgd' else 'Adam'}")))
_VIT_ABLATION = ["--data", DATA, "--train-subset", "20000"] + VIT_SIZE + SEEDS + [
    "--budgets", str(ABLATION_BUDGET), "--lam", "0.1", "--optimizer", "adam", "--label-smoothing", "0.1",
    "--warmup-epochs", "0"]
_VIT_LR = ("fig4-vit", ABLATION_BUDGET)
_FIG7 = "Fig. 7: {} helps up to 400 ep but less than TrAct"
for _model, _row, _short, _what, _extra in (
        ("vit-patchnorm", "ViT + patch-wise normalisation", "patch norm", "patch-wise normalisation", ""),
        ("vit-dualpatchnorm", "ViT + DualPatchNorm", "DualPatchNorm", "DualPatchNorm",
         " (insignificantly better at 200 ep only)")):
    experiment(f"ablation-{_model}", f"§4.5 ablation: {_model}", _VIT_ABLATION + ["--model", _model],
               lr_from=_VIT_LR, report=(Ablation(_row, _short, ABLATION_BUDGET, normalisation=_what,
                                                 paper=_FIG7.format(_what) + _extra),))
for _range, _shown in (("unit", "[0,1]"), ("byte", "[0,255]")):
    experiment(f"ablation-vit-{_range}", f"§4.5 ablation: ViT on {_range} inputs",
               _VIT_ABLATION + ["--model", "vit", "--input-range", _range], lr_from=_VIT_LR,
               report=(Ablation(f"ViT, {_shown} inputs", f"{_shown} inputs", ABLATION_BUDGET, input_range=_shown,
                                relative=f"ablation-vit-{_range}-relative",
                                paper="Fig. 8 (200 ep): TrAct more robust than the baseline, which degrades drastically",
                                versus=("[0,1]", "Fig. 8: TrAct better at [0,255] than at [0,1], nearly insensitive "
                                        "to λ at [0,255]") if _range == "byte" else None),))
    experiment(f"ablation-vit-{_range}-relative", f"§4.5 ablation: ViT on {_range} inputs, scale-invariant lambda",
               _VIT_ABLATION + ["--model", "vit", "--input-range", _range, "--relative-lambda",
                                "--methods", "tract"], lr_from=_VIT_LR)
# fig3-sgd's 2-epoch runs trained again (never reused) on another machine of the same kind: the report compares
# each seed's accuracy and TrAct − baseline with the collected ones.
experiment("repro-fig3-sgd", "fig3-sgd's 2-epoch runs trained again on another machine of the same kind",
           RESNET + SEEDS + ["--budgets", "2", "--lr", "0.08", "--lam", "0.1", "--optimizer", "sgd",
                             "--warmup-epochs", "0"], report=(Repro("fig3-sgd"),))
# GPU only: our CIFAR variant of the paper's protocol (the authors' own is paper-fig3-sgd below), ResNet-18 at
# width 64 on all of CIFAR-10, SGD lr 0.08, at budgets 1:2:4 as the paper's 100:200:400.
experiment("gpu-resnet18",
           "GPU: ResNet-18 on CIFAR-10, SGD lr 0.08, batch 128; our CIFAR variant: no max-pool, weight decay 5e-4",
           ["--data", DATA, "--model", "resnet18", "--width", "64", "--budgets", "5,10,20"] + SEEDS +
           ["--lr", "0.08", "--lam", "0.1", "--optimizer", "sgd", "--warmup-epochs", "0", "--device", "cuda"],
           report=(Curve("gpu", FIG3_SGD_LR, f"ResNet-18 on all of CIFAR-10, GPU ({OUR_VARIANT_LONG})"),))
# GPU only, like gpu-resnet18: the paper's ViT-CIFAR (hidden size 384, 7 layers, 12 heads; Adam, cosine, label
# smoothing 0.1) on all of CIFAR-10, at the lr the paper picks for its shortest budget (10^-3), λ = 0.1.
experiment("gpu-vit", "GPU: ViT-CIFAR on CIFAR-10, the paper's model (Adam lr 1e-3, cosine, label smoothing 0.1)",
           ["--data", DATA, "--model", "vit", "--dim", "384", "--depth", "7", "--heads", "12", "--weight-decay",
            "5e-5", "--budgets", "4"] + SEEDS + ["--lr", "0.001", "--lam", "0.1", "--optimizer", "adam",
                                                  "--label-smoothing", "0.1", "--warmup-epochs", "0", "--device", "cuda"],
           report=(Curve("gpu", "Fig. 4 (ViT CIFAR-10, hidden 384, 7 layers): TrAct better for all λ"),))
# The paper's headline protocols as the authors ran them (their example code: examples/train_cifar.py and
# resnet_cifar10.py of torch-tract), on all of CIFAR-10, GPU only. Fig. 3: the max-pool ResNet-18 at width 64, SGD
# momentum 0.9, lr 0.08 (the paper's SGD optimum at every budget), no weight decay, cosine per step, batch 128, crop
# + flip, λ 0.1; TrAct and the baseline at 100 epochs, the baseline alone at 200 (the paper's "TrAct@100 vs
# baseline@2x" comparison). Fig. 4: ViT-CIFAR (hidden 384, 7 layers, 12 heads), Adam at the paper's 100-epoch lr
# 1e-3, label smoothing 0.1, λ 0.1, 100 epochs. Both train in bf16 autocast, channels-last and compiled, which the
# paper does not say it did: execution settings chosen to fit a GPU window (`plan` says which whole runs fit).
PAPER_SPEED = ["--amp", "bf16", "--channels-last", "--compile", "--device", "cuda", "--eval-every", "10"]
PAPER_FIG3 = ["--data", DATA, "--model", "resnet18-maxpool", "--width", "64", "--weight-decay", "0", "--optimizer",
              "sgd", "--lr", "0.08", "--lam", "0.1", "--warmup-epochs", "0"] + SEEDS + PAPER_SPEED
experiment("paper-fig3-sgd", "Paper protocol, Fig. 3: the authors' ResNet-18, SGD lr 0.08, no weight decay, 100 epochs",
           PAPER_FIG3 + ["--budgets", "100"], epoch_time=TO_BE_MEASURED,
           report=(Curve(None, FIG3_SGD), Lead("paper", "with the authors' ResNet-18 and SGD", (100,))))
experiment("paper-fig3-sgd-200", "Paper protocol, Fig. 3: the authors' ResNet-18 baseline at 200 epochs",
           PAPER_FIG3 + ["--budgets", "200", "--methods", "baseline"], reuse=("paper-fig3-sgd",),
           epoch_time=TO_BE_MEASURED, report=(Joins("paper-fig3-sgd"),))
experiment("paper-fig4-vit", "Paper protocol, Fig. 4: ViT-CIFAR, Adam lr 1e-3, label smoothing 0.1, 100 epochs",
           ["--data", DATA, "--model", "vit", "--dim", "384", "--depth", "7", "--heads", "12", "--weight-decay",
            "5e-5", "--budgets", "100", "--lr", "0.001", "--lam", "0.1", "--optimizer", "adam", "--label-smoothing",
            "0.1", "--warmup-epochs", "0"] + SEEDS + PAPER_SPEED, epoch_time=TO_BE_MEASURED,
           report=(Curve(None, FIG4_VIT), Lead("paper", "with ViT-CIFAR and Adam", (100,))))
experiment("first-layer-sgd", f"Open question: first layer SGD (+TrAct), the rest Adam (CIFAR ResNet, {ABLATION_BUDGET} epochs)",
           RESNET + SEEDS + ["--budgets", str(ABLATION_BUDGET), "--lam", "0.1", "--optimizer", "adam",
                             "--first-layer-sgd", "--first-layer-lr", "0.08", "--warmup-epochs", "0"],
           lr_from=("fig3-adam", ABLATION_BUDGET),
           report=(FirstLayerSgd("fig3-adam", ABLATION_BUDGET, f"ResNet, {OUR_VARIANT}",
                                 "Fig. 9: small improvements over all-Adam TrAct"),))
# The architecture sweep: does TrAct help *my* model? Twelve models of the paper's Table 1 families and of
# today's, with their ImageNet stems adapted to 32 px (trainact/harness/models.py), trained with Table 1's recipe
# scaled to the budget. The lr 0.1 has a fallback, 0.01, chosen by the baseline (seed 0), because Table 1 holds
# BatchNorm convnets only and the LayerNorm models' loss diverges at 0.1. zoo-<model>-two-thirds is TrAct alone at
# 2/3 of the budget (Table 7's comparison); 9 and 6 epochs are the shortest pair whose multistep schedule keeps a
# full-lr epoch after the warm-up. The subset is sized by size_zoo.py (zoo_sizing.md lists the runs per core).
ZOO_SUBSET = 2300  # class-balanced, 230 images a class: 18 batches (17 of 128, one of 124); about 6 core hours
ZOO_BUDGET = 9
ZOO_SHORT_BUDGET = round(2 * ZOO_BUDGET / 3)
ZOO_MODELS = {  # experiment suffix -> model arguments (the name says what, models.py's table how and why)
    "vgg11": ["--model", "cifar:tv:vgg11_bn"],
    "resnet18": ["--model", "resnet18", "--width", "16"],
    "resnet50": ["--model", "resnet50", "--width", "16"],
    "densenet121": ["--model", "cifar:tv:densenet121-k12"],
    "mobilenetv2": ["--model", "cifar:tv:mobilenet_v2"],
    "shufflenetv2": ["--model", "cifar:tv:shufflenet_v2_x1_0"],
    "squeezenet": ["--model", "cifar:tv:squeezenet1_1-bn"],
    "googlenet": ["--model", "cifar:tv:googlenet"],
    "efficientnet-b0": ["--model", "cifar:timm:efficientnet_b0-headinit"],
    "convnext-atto": ["--model", "cifar:timm:convnext_atto"],
    "deit-tiny": ["--model", "cifar:timm:deit_tiny_patch16_224"],
    "swin-tiny": ["--model", "cifar:timm:swin_tiny_patch4_window7_224"],
}
_ZOO = ["--data", DATA, "--train-subset", str(ZOO_SUBSET)] + SEEDS + [
    "--optimizer", "sgd", "--momentum", "0.9", "--weight-decay", "5e-4", "--schedule", "multistep",
    "--warmup-epochs", "1", "--lam", "0.1", "--eval-every", str(ZOO_BUDGET), "--threads", "1"]
_TABLE1 = "Table 1/6 (36 CIFAR-100 models, 200 ep): TrAct better on 33/36 (top-1), 34/36 (top-5); mean top-1 +0.49"
_TABLE7 = "Table 7: TrAct@133 ≈ baseline@200 (mean top-1 75.94 vs 75.90)"
for _key, _model in ZOO_MODELS.items():
    _label = _model[1] + (f" width {_model[3]}" if "--width" in _model else "")
    experiment(f"zoo-{_key}", f"Architecture sweep: {_label}, baseline and TrAct, {ZOO_BUDGET} epochs",
               _ZOO + _model + ["--budgets", str(ZOO_BUDGET), "--lr", "0.1,0.01", "--lr-grid-seeds", "1"],
               report=(Zoo(_key, ZOO_SUBSET, _TABLE1, _TABLE7),))
    experiment(f"zoo-{_key}-two-thirds", f"Architecture sweep: {_label}, TrAct at 2/3 of the budget "
               f"({ZOO_SHORT_BUDGET} epochs)", _ZOO + _model + ["--budgets", str(ZOO_SHORT_BUDGET), "--methods", "tract"],
               reuse=(f"zoo-{_key}",), lr_from=(f"zoo-{_key}", ZOO_BUDGET), report=(ZooShort(f"zoo-{_key}"),))

# The paper's large-scale protocols (PAPER-NUMBERS.md, Tables 2 and 3). They cannot run on this machine: each needs
# ImageNet-1k in the ImageFolder layout, train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (the 50 000 validation images
# sorted into their class folders), at IMAGENET (a symlink will do), and an 8-GPU node; `run` launches them as
# `torchrun --nproc_per_node 8 -m trainact compare ...` (--batch-size is the global batch). The images are streamed
# from disk (--loader stream, 8 workers per GPU by default) at --image-size 224: test images resized to 256 and
# centre-cropped; train images a random 224 crop of the 256 x 256 centre square plus a flip, which is weaker than
# the RandomResizedCrop of the usual ImageNet recipes, so absolute accuracies may trail the paper's; baseline and
# TrAct get the same pipeline. Wall time per epoch on one GPU: to be measured.
IMAGENET = "../shared/data/imagenet"  # placeholder: an ImageNet-layout folder (or a symlink to one) goes here
_IMAGENET = ["--data", IMAGENET, "--image-size", "224", "--loader", "stream", "--amp", "bf16", "--device", "cuda"]
# Table 2: torchvision's ResNet-50, SGD momentum 0.9, weight decay 1e-4, batch 256, lr x0.1 at 1/3 and 2/3 of the
# budget, λ = 0.1. The paper's best base lr was 0.141 at 30 epochs and 0.1 at 60 and 90 (grid 0.2 ... 0.05); as one
# experiment has one lr for all its budgets (TrAct takes the baseline's), each budget is its own experiment.
_RESNET50 = _IMAGENET + SEEDS + ["--model", "tv:resnet50", "--batch-size", "256", "--optimizer", "sgd",
                                 "--momentum", "0.9", "--weight-decay", "1e-4", "--schedule", "step",
                                 "--milestones", "0.333,0.667", "--gamma", "0.1", "--lam", "0.1", "--warmup-epochs", "0"]
for _budget, _lr in ((30, "0.141"), (60, "0.1"), (90, "0.1")):
    experiment(f"imagenet-resnet50-{_budget}",
               f"Table 2: ResNet-50 on ImageNet, {_budget} epochs (SGD lr {_lr}, x0.1 at 1/3 and 2/3, 8 GPUs)",
               _RESNET50 + ["--budgets", str(_budget), "--lr", _lr], nproc_per_node=8, epoch_time=TO_BE_MEASURED)
# Table 3: DeiT-III ViT-S (timm's deit3_small_patch16_224, TrAct on patch_embed.proj), batch 2048, 400 epochs with
# λ = 0.1 and 800 with λ = 0.2. DeiT-III's recipe is LAMB (lr 4e-3), 5 warm-up epochs then cosine, weight decay
# 0.05, 3-Augment, Mixup/CutMix, binary cross-entropy and stochastic depth 0.05; the harness has the schedule,
# the weight decay and the batch, not the rest, so this is AdamW at DeiT's linear-scaling lr (5e-4 x 2048 / 512),
# with the harness's augmentation: a TrAct-vs-baseline comparison under one recipe, not Table 3's absolute numbers.
_DEIT3_S = _IMAGENET + SEEDS + ["--model", "timm:deit3_small_patch16_224", "--batch-size", "2048",
                                "--optimizer", "adamw", "--lr", "2e-3", "--weight-decay", "0.05",
                                "--schedule", "cosine", "--warmup-epochs", "5"]
for _budget, _lam in ((400, "0.1"), (800, "0.2")):
    experiment(f"imagenet-deit3-s-{_budget}",
               f"Table 3: DeiT-III ViT-S on ImageNet, {_budget} epochs, λ {_lam} (AdamW, cosine, 8 GPUs)",
               _DEIT3_S + ["--budgets", str(_budget), "--lam", _lam], nproc_per_node=8, epoch_time=TO_BE_MEASURED)


# ---------------------------------------------------------------------------------------------- helpers
def runs_root(arg: Optional[str]) -> Path:
    return Path(arg or os.environ.get("TRAINACT_RUNS") or "runs").resolve()


def _lr_from(name: str, root: Path) -> list:
    """`--lr X`: the best lr that experiment `lr_from` selected at its budget(s) (finished grid required); with
    several budgets they must agree, as one --lr serves them all."""
    spec = EXPERIMENTS[name]["lr_from"]
    if spec is None:
        return []
    source, budgets = spec[0], lr_budgets(spec)
    at = " and ".join(map(str, budgets))
    for folder in (root / source, COLLECTED / source):
        if (folder / "config.json").is_file():
            best = {b["budget"]: b["lr"] for b in summarize(folder)["best_lr"]}
            if all(b in best for b in budgets):
                lrs = {best[b] for b in budgets}
                if len(lrs) > 1:
                    raise SystemExit(f"{name}: {source}'s lr grid selected different lrs at {at} epochs "
                                     f"({', '.join(f'{b}: {best[b]:g}' for b in budgets)}); one --lr cannot serve "
                                     "them all: register one experiment per budget")
                return ["--lr", format(lrs.pop(), "g")]
    raise SystemExit(f"{name}: takes its lr from {source}'s lr grid at {at} epochs, which has not finished "
                     f"(run `python -m benchmarks.experiments run {source}` first)")


def command(name: str, root: Optional[Path] = None, *, out: Optional[str] = None) -> list:
    """The `trainact compare` arguments of experiment `name` (its lr resolved when `root` is given)."""
    if name not in EXPERIMENTS:
        raise SystemExit(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    e = EXPERIMENTS[name]
    at = " and ".join(map(str, lr_budgets(e["lr_from"]))) if e["lr_from"] else ""
    lr = _lr_from(name, root) if root is not None else (["--lr", f"<best of {e['lr_from'][0]} at {at} epochs>"]
                                                         if e["lr_from"] else [])
    return e["args"] + lr + ["--out", out or f"runs/{name}"]




def with_budgets(name: str, args: list, budgets: Optional[str]) -> list:
    """`args` with `--budgets` narrowed to `budgets` ("1,2"), which must be some of the experiment's own."""
    if budgets is None:
        return args
    i = args.index("--budgets")
    own = [int(b) for b in args[i + 1].split(",")]
    try:
        chosen = [int(b) for b in budgets.split(",")]
    except ValueError:
        raise SystemExit(f"--budgets must be comma-separated epoch counts, got {budgets!r}") from None
    if not chosen or not set(chosen) <= set(own):
        raise SystemExit(f"--budgets {budgets!r}: {name}'s budgets are {args[i + 1]}; choose among them")
    return args[:i + 1] + [",".join(map(str, chosen))] + args[i + 2:]


def with_device(args: list, device: Optional[str]) -> list:
    """`args` training on `device` ("cuda", "cuda:1", "cpu") instead of the experiment's own. The device is not part
    of the protocol: runs trained on one device and on another are reused and collected together."""
    if device is None:
        return args
    if "--device" in args:
        i = args.index("--device")
        return args[:i + 1] + [device] + args[i + 2:]
    return args + ["--device", device]


def launcher(name: str) -> list:
    """The command that runs `trainact compare` for experiment `name` (torchrun for multi-GPU experiments)."""
    n = EXPERIMENTS[name]["nproc_per_node"]
    if n > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "-m", "trainact", "compare"]
    return [sys.executable, "-m", "trainact", "compare"]


def check_data(name: str) -> None:
    """Stop (naming the path) when experiment `name`'s --data is not there, before anything is started."""
    args = EXPERIMENTS[name]["args"]
    if "--data" not in args:
        return
    data = Path(args[args.index("--data") + 1])
    if not data.exists():
        what = ("an ImageNet folder: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (a symlink will do)"
                if str(data) == IMAGENET else "the data set")
        raise SystemExit(f"{name}: its data {data} is missing (resolved from {Path.cwd()}); put {what} there first")


if __name__ == "__main__":  # the command line is the runner's; the registry never imports it
    from .runner import main

    sys.exit(main())
