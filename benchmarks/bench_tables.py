"""BENCHMARKS.md sections for the benchmark scripts' results (benchmarks/results/*.json): overhead, memory, DDP,
and the GPU's Gram-algorithm, synchronisation and test results."""
from __future__ import annotations

import json
import os
import re

from . import common
from .common import describe
from .figures import bar_plot


def runnable(command: str) -> str:
    """A stored command as it runs today: results recorded as `benchmarks/X.py ARGS` become `python -m benchmarks.X
    ARGS` (the scripts are package modules)."""
    return re.sub(r"^(?:python3? )?benchmarks/(\w+)\.py", r"python -m benchmarks.\1", command)


TARGETS = {  # the project's speed targets, shown beside the measurements
    "stem": "trainact extra <= 1/2 of torch-tract's extra",
    "deit-s": "trainact extra <= 1/2 of torch-tract's extra",
    "resnet18": "trainact <= +0.5 % per training step",
}


CASE_TEXT = {
    "stem": "7x7/2 stem, Conv2d(3, 64, padding 3), batch 32, 224 px, forward + backward",
    "deit-s": "DeiT-S patch embedding, Conv2d(3, 384, 16, stride 16), batch 64, 224 px, forward + backward",
    "resnet18": "CIFAR ResNet-18 training step (forward, backward, SGD), batch 128, 32 px",
    "cifar-stem": "its first layer alone, Conv2d(3, 64, 3, padding 1), batch 128, 32 px, forward + backward",
    "vit": "ViT-CIFAR training step (8x8 patches, hidden size 384, 7 layers; forward, backward, Adam), batch 128, 32 px",
}


def load(name: str):
    path = os.path.join(common.RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def overhead_section(r: dict, *, png: str = "overhead-cpu.png", title: str = "Time overhead") -> list[str]:
    lines = [
        f"## {title}: plain layer vs `torch-tract` vs trainact (" + ", ".join(c["case"] for c in r["results"]) + ")",
        "",
        f"Command: `{runnable(r['command'])}` (seed {r['seed']}); {describe(r)}.",
        "Each repetition runs every variant once in rotating order; overhead = median over the repetitions of "
        "(variant time / plain time of the same repetition) − 1, with its interquartile range.",
        "",
        "| case | reps | plain (ms, median) | torch-tract | trainact (IQR) | trainact extra / torch-tract extra | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in r["results"]:
        e = c["extra_over_plain"]
        ratio = c["trainact_extra_over_reference_extra"]
        iqr = c["extra_over_plain_iqr"]["trainact"]
        lines.append(
            f"| {CASE_TEXT.get(c['case'], c['case'])} | {c['reps']} | {c['median_ms']['plain']:.1f} | "
            f"{e['torch-tract']:+.2%} | {e['trainact']:+.2%} ({iqr[0]:+.2%}..{iqr[1]:+.2%}) | "
            f"{'—' if ratio is None else f'{ratio:.2f}'} | {TARGETS.get(c['case'], '')} |"
        )
        est = c.get("extra_estimated_from_first_layer")
        if est:
            lines.append(
                f"| ↳ the same step, overhead estimated as (first layer's extra time) / (step time) | | | "
                f"{est['torch-tract']:+.2%} | {est['trainact']:+.2%} | "
                f"{est['trainact'] / est['torch-tract'] if est['torch-tract'] > 0 else float('nan'):.2f} | "
                f"{TARGETS['resnet18']} |"
            )
    return lines + ["", overhead_plot(r, png), ""]


def overhead_plot(r: dict, png: str = "overhead-cpu.png") -> str:
    cases = [c["case"] for c in r["results"]]
    values = {(c["case"], v): c["extra_over_plain"][v] for c in r["results"] for v in ("torch-tract", "trainact")}
    bar_plot(os.path.join(common.RESULTS, png), cases, ["torch-tract", "trainact"], values, percent=True,
             ylabel="extra time over the plain layer", title="forward + backward, median of paired repetitions")
    return f"![overhead](benchmarks/results/{png})"


def memory_section(r: dict) -> list[str]:
    extra = r["extra_over_plain_MiB"]
    lines = [
        "## Peak extra memory",
        "",
        f"Command: `{runnable(r['command'])}`; {r['case']}, device {r['device']}; {describe(r)}.",
        "Growth of the peak resident set during one forward + backward, each variant in fresh processes "
        "(minimum over repeats), minus the plain layer's growth.",
        "",
        "| variant | extra peak memory over the plain layer (MiB) |",
        "|---|---:|",
    ]
    for v, mib in extra.items():
        if v != "plain":
            lines.append(f"| {v} | {mib:.1f} |")
    variants = [v for v in extra if v != "plain"]
    png = f"memory-{r['device']}.png"
    bar_plot(os.path.join(common.RESULTS, png), ["extra peak memory"], variants,
             {("extra peak memory", v): extra[v] for v in variants}, ylabel="MiB over the plain layer",
             title=r["case"])
    return lines + ["", "Target: trainact <= 64 MiB beyond the plain layer.", "",
                    f"![memory](benchmarks/results/{png})", ""]


def allreduce_section(r: dict) -> list[str]:
    lines = [
        "## DDP: the cost of the global covariance",
        "",
        f"Command: `{runnable(r['command'])}`; {describe(r)}.",
        f"{r['case']}. Median step time over {r['steps']} steps after warm-up, 2 processes (gloo), "
        "each process 1 thread.",
        "",
        "| mode | median step (ms) | vs local statistics |",
        "|---|---:|---:|",
    ]
    base = r["median_ms"]["local"]
    for mode, ms in r["median_ms"].items():
        lines.append(f"| {mode} | {ms:.1f} | {ms / base - 1:+.1%} |")
    return lines + [""]


def gram_section(r: dict) -> list[str]:
    lines = [
        f"## {'GPU' if str(r['device']).startswith('cuda') else 'CPU'}: which Gram algorithm (band vs one dense "
        "GEMM per block)",
        "",
        f"Command: `{runnable(r['command'])}` (seed {r['seed']}); {describe(r)}.",
        "The same TrAct layer with the band algorithm forced on and off, each repetition running plain, band and "
        "dense once in rotating order; extra = median of the paired ratios to plain − 1. The library uses the band "
        "algorithm on the CPU only (`patches.band_applies`).",
        "",
        "| case | reps | plain (ms, median) | band | dense | band / dense − 1 (IQR) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in r["results"]:
        iqr = c["band_over_dense_iqr"]
        lines.append(f"| {CASE_TEXT.get(c['case'], c['case'])} | {c['reps']} | {c['median_ms']['plain']:.2f} | "
                     f"{c['band_extra_over_plain']:+.1%} | {c['dense_extra_over_plain']:+.1%} | "
                     f"{c['band_over_dense']:+.1%} ({iqr[0]:+.1%}..{iqr[1]:+.1%}) |")
    return lines + [""]


def sync_section(r: dict) -> list[str]:
    old = "sync_cost" in r["results"][0]  # measured when the backward still read its status on the host
    lines = [
        "## GPU: host synchronisations and the pipelined step",
        "",
        f"Command: `{runnable(r['command'])}` (seed {r['seed']}); {describe(r)}.",
        "Each timing queues several whole training steps back to back (one synchronisation before and after), so "
        "the CPU's running ahead of the GPU, which a host read stops, is part of the time. Synchronising calls per "
        "step were counted with `torch.cuda.set_sync_debug_mode(\"warn\")` after a warm-up step. The paper reports "
        "+9.7 % training time for its CIFAR-10 ViT (1091 s → 1197 s per 100 epochs).",
    ]
    if old:
        lines.append("These figures were measured with an earlier backward that read two status flags on the host "
                     "(one synchronisation per TrAct layer per step); `without the read` replaced the read by \"all "
                     "fine\" (measurement only). Today's backward reads nothing on the host; re-measure with the "
                     "command above on a GPU.")
    lines += ["", "| case | steps per timing × reps | plain (ms/step) | TrAct (IQR) | "
              + ("TrAct without the read | the synchronisation (IQR) | " if old else "")
              + "synchronising calls per step: plain / TrAct |",
              "|---|---:|---:|---:|" + ("---:|---:|" if old else "") + "---:|"]
    for c in r["results"]:
        n = c["syncs_per_step"]
        iqr = c.get("extra_over_plain_iqr")
        row = (f"| {CASE_TEXT.get(c['case'], c['case'])} | {c['steps_per_timing']} × {c['reps']} | "
               f"{c['median_ms_per_step']['plain']:.2f} | {c['extra_over_plain']:+.1%}"
               + (f" ({iqr[0]:+.1%}..{iqr[1]:+.1%})" if iqr else "") + " | ")
        if old:
            si = c["sync_cost_iqr"]
            row += f"{c['nosync_extra_over_plain']:+.1%} | {c['sync_cost']:+.1%} ({si[0]:+.1%}..{si[1]:+.1%}) | "
        lines.append(row + f"{n['plain']} / {n['trainact']} |")
    return lines + [""]


def kernels_section(r: dict) -> list[str]:
    lines = [
        "## Operations TrAct adds to a first layer on the accelerator path",
        "",
        "Command: `python -m benchmarks.bench_kernels`; " + describe(r["machine"]) + ". Non-view aten operations of "
        "one forward + backward (each at least one kernel launch on a GPU), counted on the CPU with the accelerator "
        "code path forced (64 MiB blocks, one dense GEMM per block, no status read), steady state. Goal: at most 12 "
        "added, 20 for the 7x7/2 stem whose patches span 4 blocks (`tests/test_benchmarks.py` asserts it).",
        "",
        "| case | plain | with TrAct | added | the added operations |",
        "|---|---:|---:|---:|---|",
    ]
    text = {"cifar-stem": "CIFAR ResNet-18's first layer, Conv2d(3, 64, 3, padding 1), batch 128, 32 px, forward + "
                          "backward", "stem": CASE_TEXT["stem"], "deit-s": CASE_TEXT["deit-s"],
            "vit-cifar": "ViT-CIFAR patch embedding, Linear(192, 384) on (128, 16, 192), forward + backward"}
    for c in r["results"]:
        ops = ", ".join(f"{k} ×{v}" if v > 1 else k for k, v in c["added_ops"].items())
        lines.append(f"| {text.get(c['case'], c['case'])} | {c['plain_ops']} | {c['tract_ops']} | {c['added']} | {ops} |")
    return lines + [""]


def compile_section(r: dict) -> list[str]:
    lines = [
        "## TrAct under torch.compile against eager",
        "",
        f"Command: `{runnable(r['command'])}` (seed {r['seed']}); {describe(r)}.",
        "One training step (forward, backward, SGD) per variant, interleaved in rotating order; compiled = "
        "`torch.compile(model, fullgraph=True)` (TrAct's backward inside the compiled backward graph). TrAct's extra "
        "time = median over repetitions of the paired ratio TrAct / plain − 1 within the same mode.",
        "",
        "| case | reps | plain eager (ms) | plain compiled (ms) | TrAct's extra, eager (IQR) | TrAct's extra, compiled (IQR) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    text = {"cnn": "small CNN (2 convolutions with BN, pool, Linear), batch 128, 32 px",
            "vit": "ViT-CIFAR at hidden 192, 2 layers (Linear patch embedding), batch 128, 32 px"}
    for c in r["results"]:
        ms, ie, ic = c["median_ms"], c["extra_eager_iqr"], c["extra_compiled_iqr"]
        lines.append(f"| {text.get(c['case'], c['case'])} | {c['reps']} | {ms['plain-eager']:.1f} | "
                     f"{ms['plain-compiled']:.1f} | {c['extra_eager']:+.1%} ({ie[0]:+.1%}..{ie[1]:+.1%}) | "
                     f"{c['extra_compiled']:+.1%} ({ic[0]:+.1%}..{ic[1]:+.1%}) |")
    return lines + [""]


def autocast_section(r: dict) -> list[str]:
    """bf16 autocast: the gradient's error against float64 (this code and the code before it formed Gᵀ A in fp32),
    and what that costs (bench_compile --amp bf16, before and after)."""
    before = load("autocast-error-cpu-before.json")
    old = {(x["case"], x["amp"], x["method"]): x["relative_error"] for x in (before or {}).get("results", [])}
    text = {"cifar-stem": "CIFAR stem, Conv2d(3, 64, 3, padding 1)", "patch4": "4x4 patch embedding, Conv2d(3, 192, 4, "
            "stride 4)", "vit-cifar": "ViT-CIFAR patch embedding, Linear(192, 384) on 8x8x3 patches"}
    lines = ["## bf16 autocast: the first layer's gradient against float64", "",
             f"Command: `{runnable(r['command'])}` (seed {r['seed']}; {r['images']}); {describe(r)}"
             + (f"; before: `{before['command']}` at git {before['git_sha'][:7]}" if before else "") + ".",
             "The same output gradient G (bf16, as autocast's backward hands it to the layer) and the same fp32 input; "
             "relative error ‖g − g₆₄‖/‖g₆₄‖ against the float64 answer for that G (Gᵀ A plain, Gᵀ A (AᵀA/r + λI)⁻¹ "
             "with TrAct, λ 0.1). Target: TrAct at most 2x the plain gradient's error.", "",
             "| layer | plain, bf16 | TrAct, bf16, before | TrAct, bf16 | plain, fp32 | TrAct, fp32 |",
             "|---|---:|---:|---:|---:|---:|"]
    err = {(x["case"], x["amp"], x["method"]): x["relative_error"] for x in r["results"]}
    for case in dict.fromkeys(x["case"] for x in r["results"]):
        was = old.get((case, "bf16", "tract"))
        lines.append(f"| {text.get(case, case)} | {err[case, 'bf16', 'plain']:.1e} | "
                     f"{'—' if was is None else f'{was:.1e}'} | {err[case, 'bf16', 'tract']:.1e} | "
                     f"{err[case, 'off', 'plain']:.1e} | {err[case, 'off', 'tract']:.1e} |")
    cost, cost_before = load("compile-cpu-bf16.json"), load("compile-cpu-bf16-before.json")
    if cost:
        lines += ["", "What forming Gᵀ A in fp32 costs under bf16 autocast (TrAct's extra time over the plain step, "
                  f"`{runnable(cost['command'])}`"
                  + (f", before: `{cost_before['command']}`" if cost_before else "") + f"; {describe(cost)}):", "",
                  "| case | eager, before | eager | compiled, before | compiled |", "|---|---:|---:|---:|---:|"]
        was = {c["case"]: c for c in (cost_before or {}).get("results", [])}
        for c in cost["results"]:
            b = was.get(c["case"], {})
            lines.append(f"| {c['case']} | {b.get('extra_eager', float('nan')):+.1%} | {c['extra_eager']:+.1%} | "
                         f"{b.get('extra_compiled', float('nan')):+.1%} | {c['extra_compiled']:+.1%} |")
    return lines + [""]


def gpu_tests_line(r: dict) -> list[str]:
    note = f" Note: {r['note']}." if r.get("note") else ""
    return ["## GPU: tests", "",
            f"`{runnable(r['command'])}`: {r['outcome']} ({r['device_name']}, torch {r['torch_version']}, {r['date']}).{note}", ""]


def stream_memory_section(r: dict) -> list[str]:
    """The streaming loader's peak memory on a folder several times its budget, against the in-memory loader."""
    mib, f = 2**20, r["folder"]
    lines = [
        "## Streaming loader: peak memory on data larger than its budget",
        "",
        f"Command: `{runnable(r['command'])}`; {describe(r)}.",
        f"A generated folder of {f['train']} train and {f['test']} test JPEGs ({f['min_side']}–{f['max_side']} px, "
        f"seed {f['seed']}), {f['decoded_bytes'] / mib:.0f} MiB decoded at --image-size {r['image_size']}, against a "
        f"{r['budget_bytes'] / mib:.0f} MiB budget (`--loader auto --memory-budget`, which must choose to stream); one "
        f"training epoch, batch {r['batch']}, {r['workers']} decoding workers; each variant in a fresh process. Growth "
        "= peak resident set − the resident set after importing torch and trainact.",
        "",
        "| loader | peak RSS (MiB) | growth (MiB) | workers' peak (MiB) | epoch (s) | images |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in r["results"].items():
        lines.append(f"| {name} | {v['peak_rss_bytes'] / mib:.0f} | {v['growth_bytes'] / mib:.0f} | "
                     f"{v['workers_peak_rss_bytes'] / mib:.0f} | {v['epoch_seconds']:.1f} | {v['images']} |")
    return lines + [""]

