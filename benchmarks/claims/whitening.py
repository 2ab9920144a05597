"""Not in the paper: TrAct (a whitened gradient) against airbench's patch-whitened first layer (frozen, trained,
trained with TrAct), paired per seed with the plain runs of the same protocol. `Whitening` registrations say which
runs fill which column; no claim to reproduce: each row's verdict names the better variant, if the interval does."""
from __future__ import annotations

from dataclasses import dataclass

from trainact.harness.results import pm, stats

from ..evidence import Kind, entries
from ..figures import across, bar_plot
from .core import Claim, Source, budgets_of, paired

# the comparison's columns, and the questions it asks of them (a − b); the README's sentence quotes the first three
WHITENING_COLUMNS = ("baseline", "TrAct", "whitened, frozen", "whitened, trained", "whitened + TrAct")
WHITENING_QUESTIONS = (("TrAct", "whitened, frozen"), ("TrAct", "whitened, trained"), ("whitened + TrAct", "TrAct"),
                       ("whitened + TrAct", "whitened, trained"), ("whitened, frozen", "baseline"))


@dataclass(frozen=True)
class Whitening(Kind):
    """Columns of the whitening comparison this experiment's runs fill: ((column, method label), ...).
    `reference`: the plain runs the whitened ones are compared with; `setting` names the protocol."""

    columns: tuple
    reference: bool = False
    setting: str = ""

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        setting = whitening_setting(registry)
        out = []
        for b, pairs in whitening_comparisons(src, registry).items():
            for (x, y), p in pairs.items():
                word = {1: f"{x} better", -1: f"{y} better", 0: "no clear difference"}[p.side()]
                out.append(Claim(f"not in the paper: {x} vs {y} ({setting}, {b} ep)",
                                 "not in the paper (airbench's patch-whitened first layer)",
                                 f"{x} − {y}, points: {p.text()}", word, (p,)))
        return out

    @classmethod
    def section(cls, src, registry: dict) -> list[str]:
        """The accuracies per budget and column, the paired differences, and their plot."""
        comparisons = whitening_comparisons(src, registry)
        if not comparisons:
            return []
        variants = whitening_variants(registry)
        reference = next(name for name, item in entries(registry, Whitening) if item.reference)
        lines = ["### Not in the paper: TrAct vs a patch-whitened first layer (CIFAR ResNet, SGD)", "",
                 "airbench initialises its first convolution with patch-whitening filters (eigenvectors of the same "
                 "patch covariance AᵀA/r that TrAct uses, scaled by (e + ε)^-1/2, ε = 5e-4, in ± pairs, leading "
                 "first) and freezes it; TrAct whitens the first layer's gradient instead. Same protocol, lr and seeds "
                 f"as `{reference}` (whose baseline and TrAct runs these are); the whitening is computed from each "
                 "run's standardised training images (`--first-layer-init whiten` / `whiten-frozen`, "
                 "`src/trainact/harness/whiten.py`). The width-16 ResNet's stem has 16 channels for 27 patch "
                 "features, so it keeps the 8 leading eigen-filter pairs.", "",
                 "| budget | " + " | ".join(label for label, _, _ in variants) + " |",
                 "|---:|" + "---:|" * len(variants)]
        values, errors = {}, {}
        for b in comparisons:
            cells = []
            for label, name, method in variants:
                acc = list(src.top1(name, b, method).values())
                if acc:
                    st = stats(acc)
                    cells.append(f"{pm(st)} (n = {st['n']})")
                    values[(f"{b} ep", label)], errors[(f"{b} ep", label)] = st["mean"], st["std"] or 0
                else:
                    cells.append("—")
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
        lines += ["", "Paired per seed, points [95 % t interval]:", ""]
        for b, pairs in comparisons.items():
            lines.append(f"- {b} epochs: " + "; ".join(f"{x} − {y}: {p.text()}" for (x, y), p in pairs.items()))
        path, image = across("whitening.png", "whitening")
        bar_plot(path, list(dict.fromkeys(g for g, _ in values)), [label for label, _, _ in variants], values,
                 errors=errors, zoom=True, ylabel="final test top-1 (%), mean ± std",
                 title="CIFAR ResNet, SGD: whitened first layer vs TrAct")
        return lines + ["", image, ""]

    @classmethod
    def sentences(cls, src, registry: dict) -> list[str]:
        """One sentence on TrAct vs a whitened first layer (whichever way it falls)."""
        comparisons = whitening_comparisons(src, registry)
        if not comparisons:
            return []
        parts = []
        for b, pairs in comparisons.items():
            shown = {(x, y): p for (x, y), p in pairs.items() if (x, y) in WHITENING_QUESTIONS[:3]}
            clear = [f"{x} over {y}" if p.side() > 0 else f"{y} over {x}" for (x, y), p in shown.items() if p.side()]
            parts.append(f"at {b} epochs " + ", ".join(f"{x} − {y} {p.text()}" for (x, y), p in shown.items())
                         + (f" (clear: {', '.join(clear)})" if clear else " (no clear difference)"))
        return ["Not in the paper — TrAct against airbench's patch-whitened first layer "
                f"(CIFAR {whitening_setting(registry)}; points [95 % t interval], paired per seed): "
                + "; ".join(parts) + "."]


def whitening_variants(registry: dict) -> list:
    """[(column, experiment, method label)] of the whitening comparison, in WHITENING_COLUMNS order."""
    found = {column: (column, name, method) for name, item in entries(registry, Whitening)
             for column, method in item.columns}
    return [found[c] for c in WHITENING_COLUMNS if c in found]


def whitening_setting(registry: dict) -> str:
    """The protocol the whitening comparison runs (its reference's `setting`)."""
    return next((item.setting for _, item in entries(registry, Whitening) if item.reference), "")


def whitening_comparisons(src: Source, registry: dict) -> dict:
    """{budget: {(a, b): paired a − b}} for the questions the whitening comparison asks, where both were run."""
    variants = whitening_variants(registry)
    whitened = [name for name, item in entries(registry, Whitening) if not item.reference]
    out = {}
    for b in budgets_of(src, whitened):
        got = {column: src.top1(name, b, method) for column, name, method in variants}
        pairs = {(x, y): paired(got[x], got[y]) for x, y in WHITENING_QUESTIONS if got.get(x) and got.get(y)}
        if pairs:
            out[b] = pairs
    return out
