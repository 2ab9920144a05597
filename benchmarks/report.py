"""Write BENCHMARKS.md and the README's results section from the JSON in benchmarks/results/ (no number is typed
by hand).

    python -m benchmarks.report            # rewrites BENCHMARKS.md and the README's results section

The sections come from bench_tables.py (benchmark scripts), experiment_tables.py (training experiments) and
claims/ (the paper's claims, with paired statistics); figures.py draws the plots. Which experiment feeds which
section is said by its registration in experiments.py, never here.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file, its relative imports would fail obscurely
    sys.exit(f"run it as a module from the repository root: {' '.join(['python -m benchmarks.report', *sys.argv[1:]])}")

from .bench_tables import (
    allreduce_section, autocast_section, compile_section, gpu_tests_line, gram_section, kernels_section, load, memory_section,
    overhead_section, stream_memory_section, sync_section,
)
from .evidence import ReadmeFigure, entries
from .experiment_tables import (
    ablation_section, claims_table, contrast_section, contrast_sentence, curve_section, curves, first_layer_sgd_section,
    lam_sections, load_experiment, reproducibility_section, scale_note, stem_section, trend_sentences,
    wall_time_section, whitening_section, whitening_sentence, zoo_section, zoo_sentence,
)
from .experiments import EXPERIMENTS

HERE = os.path.dirname(os.path.abspath(__file__))
README_START, README_END = "<!-- results:start (written by benchmarks/report.py) -->", "<!-- results:end -->"


def gpu_section() -> list[str]:
    """The GPU evidence where it was measured, else what to run when a GPU is at hand."""
    out = []
    for name, fn in (("gpu-tests.json", gpu_tests_line), ("overhead-cuda.json", None), ("gram-cuda.json", gram_section),
                     ("sync-cuda.json", sync_section)):
        r = load(name)
        if r is not None:
            out += fn(r) if fn else overhead_section(r, png="overhead-cuda.png", title="GPU time overhead")
    gpu = curves("gpu")
    for name in gpu:
        loaded = load_experiment(name)
        if loaded is not None:
            out += curve_section(name, loaded)
    if out or not gpu:
        return out
    return ["## GPU", "",
            "Nothing on this page was measured on a GPU, so the GPU part of the evidence and `tests/library/test_gpu.py` "
            "(CUDA autocast, GradScaler, CPU/GPU agreement) have not run. On a GPU machine, from the repository root "
            "with the data at `" + EXPERIMENTS[gpu[0]]["args"][1] + "`:", "",
            "    python -m pytest tests/library/test_gpu.py",
            "    python -m benchmarks.bench_overhead --device cuda --cases stem,deit-s,resnet18,cifar-stem,vit",
            "    python -m benchmarks.bench_gram --device cuda && python -m benchmarks.bench_sync --device cuda",
            *(f"    python -m benchmarks.experiments run {name:<15}# {EXPERIMENTS[name]['title']}" for name in gpu),
            "    python -m benchmarks.report", ""]


def experiments_sections() -> list[str]:
    out = ["## Training experiments: the paper's claims at CPU scale", "",
           "Every table is computed from the JSON in `benchmarks/results/experiments/` (copied from the run folders "
           "by `python -m benchmarks.experiments collect`); `python -m benchmarks.experiments list` prints every "
           "command. Accuracies are the final test top-1 after the last epoch, mean ± std over seeds; `s/epoch` is "
           "the training wall time per epoch (evaluation excluded).", "", scale_note(), "",
           "### The paper's claims, checked", ""] + claims_table()
    for name in curves("experiments"):
        loaded = load_experiment(name)
        if loaded is not None:
            out += curve_section(name, loaded)
    out += lam_sections()
    out += ablation_section()
    out += first_layer_sgd_section()
    out += stem_section()
    out += contrast_section()
    out += whitening_section()
    out += zoo_section()
    out += reproducibility_section()
    out += wall_time_section()
    return out


def readme_block() -> list[str]:
    """The README's results section: plain sentences, each with its interval, and one figure; every table (the
    per-budget accuracies, the paper's claims one by one) is in BENCHMARKS.md."""
    lines = [README_START, "", "## What we found", "", scale_note(), ""]
    lines += trend_sentences()
    for sentence in (contrast_sentence(), whitening_sentence(), zoo_sentence()):
        lines += [("- " + line if line else line) for line in sentence]  # beyond the paper
    for name, figure in entries(EXPERIMENTS, ReadmeFigure):
        if load_experiment(name) is not None:
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
    sections = [("overhead.json", overhead_section), ("kernels.json", kernels_section),
                ("compile-cpu.json", compile_section), ("autocast-error.json", autocast_section),
                ("gram-cpu.json", gram_section),
                ("memory.json", memory_section), ("allreduce.json", allreduce_section),
                ("stream-memory.json", stream_memory_section)]
    for name, fn in sections:
        r = load(name)
        if r is not None:
            out += fn(r)
    extra = os.path.join(HERE, "NOTES.md")
    if os.path.exists(extra):
        with open(extra) as f:
            out += [f.read()]
    out += gpu_section()
    out += experiments_sections()
    path = os.path.join(os.path.dirname(HERE), "BENCHMARKS.md")
    with open(path, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    print(f"wrote {path}")
    write_readme(readme_block())
    return 0


if __name__ == "__main__":
    sys.exit(main())
