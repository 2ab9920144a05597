"""The short answer that opens the README's results (not a claim of the paper): in at most five lines, where TrAct
was ahead of the baseline here, where not, and how sure, each number a paired TrAct − baseline with its 95 % t
interval. Every experiment that carries part of the answer is registered with a `Lead` naming its line:

  short, lasting  TrAct − baseline at the item's `budgets` (the shortest ones; longer ones), worded by its interval
                  (lasting: also its change from the first budget to the last, per seed); `vs`: also its gain
                  against another item's of the line, paired per seed
  stems, contrast the findings of the stem ablation and the contrast sweep (stems.py, contrast.py), one line
  none            every budget with 2 paired seeds (`budgets` empty): where the gain is clear and where it is not
  paper           the paper's protocols on a GPU

The last line says what is not known: the paper's regime while its runs do not exist, and what is still to be
trained, with the command: a line none of whose runs exists, a budget short of the seeds its command registers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..evidence import Kind, entries, members
from .contrast import contrast_changes, contrast_finding
from .core import Paired, Source, difference
from .curves import tract_vs_baseline
from .stems import stem_cells, stem_finding, stem_rule
from .wd_pool import WD_POOL_BUDGETS

PAPER_REGIME = "the paper's regime (100–800 epochs on all 50 000 CIFAR training images)"
NOT_IN_PAPER = "**Not in the paper** (CIFAR ResNet, SGD lr 0.08, no weight decay, λ = 0.1)"
LINES = {  # line -> (its opening, what the last line calls it while none of its runs exists)
    "short": ("**Short training with SGD** (CIFAR ResNet, λ = 0.1)", "TrAct in short training with SGD"),
    "lasting": ("**Longer training with SGD** (CIFAR ResNet, lr 0.08, no weight decay, λ = 0.1)",
                "whether the gain lasts"),
    "stems": (NOT_IN_PAPER, "which part of the max-pool stem keeps the gain"),
    "contrast": (NOT_IN_PAPER, "whether training images of varied contrast enlarge it"),
    "none": ("**Adam and the ViT** (λ = 0.1)", "TrAct with Adam and in the ViT"),
    "paper": ("**The paper's protocols on a GPU** (all of CIFAR-10)", PAPER_REGIME),
}
NOT_KNOWN = "**Not known here**"
RUN = "python -m benchmarks.experiments run"


@dataclass(frozen=True)
class Lead(Kind):
    """This experiment's part of line `line` (a key of LINES) of the README's short answer: `what` names its setting
    in the line ("in the authors' protocol"); `budgets` the budgets it quotes (empty: every budget, summarised);
    `vs` an experiment of the same line whose gain this one's is compared with, paired per seed."""

    line: str
    what: str = ""
    budgets: tuple = ()
    vs: Optional[str] = None

    leads = True

    def __post_init__(self):
        if self.line not in LINES:
            raise ValueError(f"Lead line must be one of {', '.join(LINES)}, got {self.line!r}")

    @classmethod
    def sentences(cls, src, registry: dict) -> list[str]:
        """At most five lines: short training, whether it lasts, the stems and contrast (one line), Adam and the ViT,
        and what is not known (the paper's regime, or its line, then what is still to be trained). Nothing before
        any line has data."""
        items = lead_items(registry)
        pending: list = []  # (what is still to be trained, the experiments that train it)
        found = {line: rendered(src, registry, items.get(line, []), pending)
                 for line in ("short", "lasting", "none", "paper")}
        texts = [line_text(LINES[line][0], *found[line]) for line in ("short", "lasting")]
        texts.append(mechanism(src, registry, items, pending))
        texts.append(line_text(LINES["none"][0], *found["none"]))
        if not any(texts):
            return []
        last = last_line(found["paper"], items.get("paper", []), pending)
        return [t for t in texts if t] + ([last] if last else [])


def lead_items(registry: dict) -> dict:
    """{line: [(experiment, Lead)]} in registration order."""
    out: dict = {}
    for name, item in entries(registry, Lead):
        out.setdefault(item.line, []).append((name, item))
    return out


def registered(registry: dict, name: str) -> tuple:
    """([the budgets], the number of seeds) that experiment `name`'s command trains."""
    args = registry[name]["args"]
    budgets = [int(b) for b in args[args.index("--budgets") + 1].split(",")] if "--budgets" in args else []
    return budgets, len(args[args.index("--seeds") + 1].split(",")) if "--seeds" in args else 0


def trained_by(registry: dict, names, budget: int) -> tuple:
    """(the experiment of `names` whose command trains `budget`, the number of seeds it registers); (the first
    name, 0) where none does."""
    for name in names:
        budgets, seeds = registered(registry, name)
        if budget in budgets:
            return name, seeds
    return names[0], 0


def standing(p: Paired) -> str:
    """Where TrAct stands against the baseline, in words, by the side of the interval."""
    side = p.side()
    if side:
        return "clearly ahead" if side > 0 else "clearly behind"
    return "ahead but not clearly" if p.mean > 0 else "behind but not clearly" if p.mean < 0 else "level"


def and_list(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def epochs(budgets) -> str:
    """"1 epoch", "1 and 2 epochs", "4, 8 and 16 epochs"."""
    return and_list(map(str, budgets)) + (" epoch" if list(budgets) == [1] else " epochs")


def seeds_said(parts) -> str:
    ns = sorted({p.n for p in parts})
    many = len(parts) > 1
    if len(ns) == 1:
        return f"{ns[0]} paired seed{'' if ns[0] == 1 else 's'}{' each' if many else ''}"
    return f"{ns[0]}–{ns[-1]} paired seeds"


def at_budgets(src, registry: dict, name: str, item: Lead, line: list, pending: list) -> tuple:
    """(the item's words, its Paired gains) at its budgets, budgets by the same standing together; a budget with
    fewer paired seeds than registered says so and goes to `pending`; None where it has none."""
    names = members(registry, name)
    gains = tract_vs_baseline(src, names)
    groups: list = []  # [standing, [(budget, text)]]
    shown, short = [], False
    for b in item.budgets:
        p, (trainer, seeds) = gains.get(b), trained_by(registry, names, b)
        n = p.n if p else 0
        if n < seeds:
            runs = f"the {b}-epoch runs {item.what}"
            pending.append((f"{seeds - n} more seeds of {runs}" if n else runs, trainer))
        if not n:
            continue
        short |= n < seeds
        text = p.text() + (f", {n} of the {seeds} registered seeds so far" if n < seeds else "")
        if groups and groups[-1][0] == standing(p):
            groups[-1][1].append((b, text))
        else:
            groups.append([standing(p), [(b, text)]])
        shown.append(p)
    if not shown:
        return None, []
    join = "; " if short else ", "
    words = " and ".join(f"{word} at {epochs([b for b, _ in got])} ({join.join(t for _, t in got)})"
                         for word, got in groups)
    lo, hi = item.budgets[0], item.budgets[-1]
    if item.line == "lasting" and lo != hi and lo in gains and hi in gains:  # does the gain last: its per-seed change
        change = difference(gains[hi], gains[lo])
        if change.n >= 2:
            words += f", change per seed from {lo} to {hi} epochs {change.text()}"
    if item.vs:
        other = tract_vs_baseline(src, members(registry, item.vs))
        label = {n: i.what for n, i in line}.get(item.vs, item.vs)
        diffs = {b: difference(gains[b], other[b]) for b in item.budgets if b in gains and b in other}
        side = {1: "clearly above", -1: "clearly below", 0: "not clearly different from"}
        words += ", " + "; ".join(f"{'' if len(diffs) == 1 else f'at {epochs([b])} '}{side[d.side()]} the gain "
                                  f"{label} ({d.text()} per seed)" for b, d in diffs.items())
    return f"{item.what} {words}", shown


def every_budget(src, registry: dict, name: str, item: Lead) -> tuple:
    """(the item's words, its Paired gains) over every budget with 2 paired seeds: where the interval lies above 0
    (quoting the largest gain), below, and where it holds 0 (quoting the longest budget); None where none has."""
    parts = {b: p for b, p in tract_vs_baseline(src, members(registry, name)).items() if p.n >= 2}
    if not parts:
        return None, []
    by_side = {s: [b for b, p in parts.items() if p.side() == s] for s in (1, -1, 0)}
    if not by_side[1] and not by_side[-1]:
        lo, hi = min(parts), max(parts)
        return (f"{item.what} no clear difference at any budget from {lo} to {hi} epochs (at {hi}: "
                f"{parts[hi].text()})"), list(parts.values())
    words = []
    for side, word in ((1, "clearly ahead"), (-1, "clearly behind")):
        if by_side[side]:
            peak = max(by_side[side], key=lambda b: abs(parts[b].mean))
            words.append(f"{word} at {epochs(by_side[side])} ("
                         + (f"largest at {peak}: " if len(by_side[side]) > 1 else "") + f"{parts[peak].text()})")
    if by_side[0]:
        hi = max(by_side[0])
        words.append(f"no clear difference at {epochs(by_side[0])} (at {hi}: {parts[hi].text()})")
    return f"{item.what} {', '.join(words)}", list(parts.values())


def rendered(src, registry: dict, line: list, pending: list) -> tuple:
    """([each item's words], [every Paired quoted]) of one line's items; an item without data goes to `pending`."""
    texts, parts, short = [], [], []
    for name, item in line:
        text, shown = (at_budgets(src, registry, name, item, line, short) if item.budgets
                       else every_budget(src, registry, name, item))
        if text is None:
            if not item.budgets:
                short.append((item.what, name))
            continue
        texts.append(text)
        parts += shown
    if texts:
        pending += short
    elif line:  # none of the line's runs exists: the line as a whole is still to be trained
        pending.append((LINES[line[0][1].line][1], tuple(n for n, _ in line)))
    return texts, parts


def line_text(head: str, texts: list, parts: list) -> Optional[str]:
    return f"{head}: {'; '.join(texts)}; {seeds_said(parts)}." if texts else None


def mechanism(src, registry: dict, items: dict, pending: list) -> Optional[str]:
    """One line of the stem ablation's and the contrast sweep's findings, those that exist (the others to
    `pending`, with the experiments of their line that are not finished)."""
    texts, parts = [], []
    rule, found = stem_rule(src, registry), stem_finding(src, registry)
    if rule is not None:
        label = {stem: item.label for stem, (_, item) in stem_cells(registry).items()}
        texts.append(f"what of the max-pool keeps TrAct's gain at {max(WD_POOL_BUDGETS)} epochs: {found} ("
                     + "; ".join(f"{label[stem]} {gain.text()}" for stem, (_, gain, *_) in rule.items()) + ")")
        parts += [gain for _, gain, *_ in rule.values()]
    elif items.get("stems"):
        pending.append((LINES["stems"][1], unfinished(src, registry, items["stems"])))
    contrast = contrast_finding(src, registry)
    if contrast is not None:
        low, change, verdict = contrast
        texts.append(f"with training images of varied contrast, from c = 1 to c = {low:g} TrAct's gain {change}: "
                     f"{verdict}")
        parts += list(contrast_changes(src, registry)[low].values())
    elif items.get("contrast"):
        pending.append((LINES["contrast"][1], unfinished(src, registry, items["contrast"])))
    if not texts:
        return None
    return f"{NOT_IN_PAPER}: {'; '.join(texts)}; {seeds_said(parts)}."


def unfinished(src: Source, registry: dict, line: list) -> tuple:
    """The experiments of a line with a budget short of the seeds they register (all of them where none is)."""
    names = tuple(n for n, _ in line)
    short = []
    for name in names:
        (budgets, seeds), gains = registered(registry, name), tract_vs_baseline(src, name)
        if any(b not in gains or gains[b].n < max(seeds, 2) for b in budgets):
            short.append(name)
    return tuple(short) or names


def last_line(paper: tuple, line: list, pending: list) -> Optional[str]:
    """The paper's protocols (their line, or that they were not run), then what is still to be trained."""
    rest = [p for p in pending if p[0] != PAPER_REGIME]
    if paper[0]:
        text = line_text(LINES["paper"][0], *paper)[:-1]
    elif line:
        text = f"{NOT_KNOWN}: {PAPER_REGIME}, which needs a GPU and was not run"
    elif rest:
        text = NOT_KNOWN
    else:
        return None
    if rest:
        names = dict.fromkeys(n for _, got in rest for n in ((got,) if isinstance(got, str) else got))
        text += (f"; still to be trained: {and_list(dict.fromkeys(what for what, _ in rest))} "
                 f"(`{RUN} {' '.join(names)}`)")
    return text + "."
