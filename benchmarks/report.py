"""Write BENCHMARKS.md and the README's results section from the JSON in benchmarks/results/ (no number is typed
by hand).

    python -m benchmarks.report            # rewrites BENCHMARKS.md and the README's results section

The sections come from bench_tables.py (benchmark scripts) and from the report kinds (`KINDS`, one module each in
claims/: its claims, its section, its README sentences) over the collected runs, which collected.py reads;
experiment_tables.py holds what the kinds share, figures.py draws. Which experiment feeds which kind is said by its
registration in experiments.py, never here.

Names: results/<measure>-<device>[-<variant>].json|.png, results/experiments/<name>/, results/figures/<section>.png
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file, its relative imports would fail obscurely
    sys.exit(f"run it as a module from the repository root: {' '.join(['python -m benchmarks.report', *sys.argv[1:]])}")

from . import experiments
from .bench_tables import (
    allreduce_section, autocast_section, compile_section, gpu_tests_line, gram_section, kernels_section, load, memory_section,
    overhead_section, stream_memory_section, sync_section,
)
from .claims.ablations import Ablation, FirstLayerSgd
from .claims.contrast import ContrastCell
from .claims.core import markdown
from .claims.curves import Curve, curves, sections
from .claims.lam import LamOne, LamSweep, LamTable, LamTrend
from .claims.lead import Lead
from .claims.repro import Repro
from .claims.stems import StemCell
from .claims.wd_pool import WdPoolCell
from .claims.whitening import Whitening
from .claims.zoo import Zoo
from .collected import Collected
from .evidence import ReadmeFigure, entries
from .experiment_tables import scale_note, wall_time_section

# the report kinds, in the order of the paper: their claims, sections and sentences appear in this order (Lead's
# sentences, the short answer, open the README's results)
KINDS = (Curve, LamTable, LamSweep, LamTrend, LamOne, Ablation, FirstLayerSgd, WdPoolCell, StemCell, ContrastCell,
         Whitening, Zoo, Repro, Lead)

HERE = os.path.dirname(os.path.abspath(__file__))
README_START, README_END = "<!-- results:start (written by benchmarks/report.py) -->", "<!-- results:end -->"


def all_claims(src, registry: dict, titles: dict) -> list:
    """Every claim row the collected runs support, in the order of the paper (`titles`: the heading of an
    experiment's row, by name; the name where it has none)."""
    return [row for kind in KINDS for row in kind.claims(src, registry, titles) if row is not None]


def lead_sentences(src, registry: dict) -> list[str]:
    """The short answer that opens the README's results: the sentences of the kinds that give it (`leads`), one
    bullet each, under a line saying how to read the numbers; nothing before any has one."""
    found = [s for kind in KINDS if kind.leads for s in kind.sentences(src, registry)]
    if not found:
        return []
    return (["In short (TrAct against the baseline: final test top-1, points, mean [95 % t interval] over paired "
             "seeds; \"clearly\" where the interval excludes 0):", ""] + [f"- {s}" for s in found] + [""])


def trend_sentences(src, registry: dict) -> list[str]:
    """The README's list "Does the gain last?": the sentences of the kinds that answer it (`lasting`), one bullet
    each, under its heading; nothing before any has one."""
    found = [s for kind in KINDS if kind.lasting for s in kind.sentences(src, registry)]
    if not found:
        return []
    return (["Does the gain last with longer training? (λ = 0.1; points [95 % t interval] over paired seeds; the "
             "change is per seed, the later budget's gain minus the earlier's)", ""] + [f"- {s}" for s in found]
            + [""])


def findings(src, registry: dict) -> list[str]:
    """The README's findings beyond that list: each kind's sentences, one bullet each, a blank line after each."""
    return [line for kind in KINDS if not kind.lasting and not kind.leads for s in kind.sentences(src, registry)
            for line in (f"- {s}", "")]


def gpu_section() -> list[str]:
    """The GPU evidence where it was measured, else what to run when a GPU is at hand."""
    out = []
    for name, fn in (("tests-cuda.json", gpu_tests_line), ("overhead-cuda.json", None), ("gram-cuda.json", gram_section),
                     ("sync-cuda.json", sync_section)):
        r = load(name)
        if r is not None:
            out += fn(r) if fn else overhead_section(r, png="overhead-cuda.png", title="GPU time overhead")
    registry = experiments.EXPERIMENTS
    out += sections(Collected(experiments.COLLECTED), registry, "gpu")
    gpu = curves(registry, "gpu")
    if out or not gpu:
        return out
    return ["## GPU", "",
            "Nothing on this page was measured on a GPU, so the GPU part of the evidence and `tests/library/test_gpu.py` "
            "(CUDA autocast, GradScaler, CPU/GPU agreement) have not run. On a GPU machine, from the repository root "
            "with the data at `" + registry[gpu[0]]["args"][1] + "`:", "",
            "    python -m pytest tests/library/test_gpu.py",
            "    python -m benchmarks.bench_overhead --device cuda --cases stem,deit-s,resnet18,cifar-stem,vit",
            "    python -m benchmarks.bench_gram --device cuda && python -m benchmarks.bench_sync --device cuda",
            *(f"    python -m benchmarks.experiments run {name:<15}# {registry[name]['title']}" for name in gpu),
            "    python -m benchmarks.report", ""]


def experiments_sections(src, registry: dict) -> list[str]:
    titles = {name: e["title"] for name, e in registry.items()}
    out = ["## Training experiments: the paper's claims at CPU scale", "",
           "Every table is computed from the JSON in `benchmarks/results/experiments/` (copied from the run folders "
           "by `python -m benchmarks.experiments collect`); `python -m benchmarks.experiments list` prints every "
           "command. Accuracies are the final test top-1 after the last epoch, mean ± std over seeds; `s/epoch` is "
           "the training wall time per epoch (evaluation excluded).", "", scale_note(src, registry), "",
           "### The paper's claims, checked", ""] + markdown(all_claims(src, registry, titles))
    for kind in KINDS:
        out += kind.section(src, registry)
    return out + wall_time_section(src, registry)


def readme_block(src, registry: dict) -> list[str]:
    """The README's results section: plain sentences, each with its interval, and one figure; every table (the
    per-budget accuracies, the paper's claims one by one) is in BENCHMARKS.md."""
    lines = [README_START, "", "## What we found", "", *lead_sentences(src, registry), scale_note(src, registry), ""]
    lines += trend_sentences(src, registry) + findings(src, registry)
    for name, figure in entries(registry, ReadmeFigure):
        if src.experiment(name) is not None:
            lines += [f"![{figure.alt}](benchmarks/results/experiments/{name}/{figure.file})", ""]
    lines += ["Every table — accuracy per budget and seed, the speed-ups, the paper's claims checked one by one with "
              "their verdicts, the overhead and memory benchmarks — with its command, seeds and hardware is in "
              "[BENCHMARKS.md](BENCHMARKS.md)."]
    return lines + ["", README_END]


def write_readme(block: list[str]) -> None:
    path = os.path.join(os.path.dirname(HERE), "README.md")
    with open(path) as f:
        text = f.read()
    new = "\n".join(block)
    if README_START in text:
        head, _, rest = text.partition(README_START)
        _, _, tail = rest.partition(README_END)
        text = head + new + tail
    else:
        anchor = "## Usage"
        if anchor not in text:
            raise SystemExit(f"README.md has neither the results markers nor a {anchor!r} heading to place them before")
        text = text.replace(anchor, new + "\n\n" + anchor, 1)
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote the results section of {path}")


def main() -> int:
    out = ["# Benchmarks", "",
           "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json`; every figure below comes "
           "from the command printed beside it. Timings are from a shared 2-core VM: ratios measured in one "
           "interleaved run are what to compare, absolute milliseconds drift between runs.", ""]
    sections = [("overhead-cpu.json", overhead_section), ("kernels-cpu.json", kernels_section),
                ("compile-cpu.json", compile_section), ("autocast-error-cpu.json", autocast_section),
                ("gram-cpu.json", gram_section),
                ("memory-cpu.json", memory_section), ("allreduce-cpu.json", allreduce_section),
                ("stream-memory-cpu.json", stream_memory_section)]
    for name, fn in sections:
        r = load(name)
        if r is not None:
            out += fn(r)
    extra = os.path.join(HERE, "NOTES.md")
    if os.path.exists(extra):
        with open(extra) as f:
            out += [f.read()]
    src, registry = Collected(experiments.COLLECTED), experiments.EXPERIMENTS
    out += gpu_section()
    out += experiments_sections(src, registry)
    path = os.path.join(os.path.dirname(HERE), "BENCHMARKS.md")
    with open(path, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    print(f"wrote {path}")
    write_readme(readme_block(src, registry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
