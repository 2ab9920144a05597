"""The benchmark scripts run (tiny settings; their figures come from the full runs in BENCHMARKS.md) and refuse
bad input clearly; the report says what was never measured rather than leaving it out."""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    return importlib.import_module(f"benchmarks.{name}")


def _results_in(folder: Path, monkeypatch) -> None:
    """Point the report (loaded with `_load`) at result files under `folder`."""
    monkeypatch.setattr(sys.modules["benchmarks.common"], "RESULTS", str(folder))
    monkeypatch.setattr(sys.modules["benchmarks.experiments"], "COLLECTED", str(folder / "experiments"))


def test_overhead_benchmark_runs_and_refuses_bad_cases_and_a_missing_gpu(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch_tract")
    bench = _load("bench_overhead")
    out = tmp_path / "overhead.json"
    assert bench.main(["--cases", "cifar-stem", "--reps", "1", "--warmup", "0", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    (case,) = r["results"]
    assert r["device"] == case["device"] == "cpu" and case["case"] == "cifar-stem"
    assert all(len(t) == 5 for t in case["times_ms"].values())  # cifar-stem runs 5x the repetitions
    assert case["extra_over_plain"]["plain"] == 0.0

    with pytest.raises(SystemExit) as e:
        bench.main(["--cases", "stem,bogus", "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and "bogus" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            bench.main(["--device", "cuda", "--out", str(tmp_path / "x.json")])
        assert e.value.code == 2 and "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()

    # a GPU session's result file becomes the report's GPU section (the figures relabelled here as if from CUDA)
    report = _load("report")
    _results_in(tmp_path, monkeypatch)
    r.update(device="cuda:0", device_name="NVIDIA H100 80GB HBM3")
    (tmp_path / "overhead-cuda.json").write_text(json.dumps(r))
    text = "\n".join(report.gpu_section())
    assert "## GPU time overhead" in text and "NVIDIA H100 80GB HBM3 (cuda:0;" in text
    assert (tmp_path / "overhead-cuda.png").is_file() and "Nothing on this page" not in text


def test_report_states_the_gpu_evidence_is_missing_and_how_to_measure_it(tmp_path, monkeypatch):
    report = _load("report")
    _results_in(tmp_path, monkeypatch)
    text = "\n".join(report.gpu_section())
    assert "Nothing on this page was measured on a GPU" in text
    for command in ("-m benchmarks.bench_overhead --device cuda", "-m benchmarks.experiments run gpu-resnet18",
                    "tests/library/test_gpu.py"):
        assert command in text


@pytest.mark.parametrize("script,case", [("bench_sync", "resnet18"), ("bench_gram", "cifar-stem")])
def test_gpu_benchmarks_run_on_cpu_and_refuse_bad_input(script, case, tmp_path, capsys):
    bench = _load(script)
    out = tmp_path / "r.json"
    assert bench.main(["--device", "cpu", "--cases", case, "--reps", "1", "--warmup", "0", "--out", str(out)]
                      + (["--steps", "1"] if script == "bench_sync" else [])) == 0
    (r,) = json.loads(out.read_text())["results"]
    assert r["case"] == case and r["device"] == "cpu"
    if script == "bench_sync":  # today's format renders (no "without the read" columns any more)
        tables = _load("bench_tables")
        text = "\n".join(tables.sync_section(json.loads(out.read_text())))
        assert f"{r['extra_over_plain']:+.1%}" in text and "without the read" not in text
    with pytest.raises(SystemExit) as e:
        bench.main(["--device", "cpu", "--cases", "stem,deit-s" if script == "bench_sync" else "vit",
                    "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and "unknown case" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bench.main(["--device", "cpu", "--reps", "0", "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and "--reps must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_report_renders_the_gpu_gram_and_sync_results(tmp_path, monkeypatch):
    report = _load("report")
    _results_in(tmp_path, monkeypatch)
    for name in ("gram-cuda.json", "sync-cuda.json", "tests-cuda.json"):
        (tmp_path / name).write_text((ROOT / "benchmarks" / "results" / name).read_text())
    text = "\n".join(report.gpu_section())
    assert "## GPU: which Gram algorithm" in text and "## GPU: host synchronisations and the pipelined step" in text
    assert "## GPU: tests" in text and "Nothing on this page" not in text
    sync = json.loads((tmp_path / "sync-cuda.json").read_text())["results"][0]
    assert f"{sync['sync_cost']:+.1%}" in text  # the figure comes from the JSON


@pytest.mark.slow
def test_stream_memory_benchmark_on_a_tiny_folder(tmp_path, capsys):
    pytest.importorskip("PIL")
    bench = _load("bench_stream_memory")
    out = tmp_path / "stream-memory.json"
    args = ["--train", "24", "--test", "6", "--min-side", "20", "--max-side", "40", "--image-size", "16",
            "--workers", "1", "--batch", "8", "--out", str(out)]
    assert bench.main(args + ["--budget", "4KiB"]) == 0
    r = json.loads(out.read_text())
    assert r["folder"]["decoded_bytes"] == 3 * (24 * 18 * 18 + 6 * 16 * 16) and r["budget_bytes"] == 4096
    stream, memory = r["results"]["stream"], r["results"]["memory"]
    assert stream["chosen"] == "stream" and "--memory-budget" in stream["note"] and memory["chosen"] == "memory"
    assert stream["images"] == memory["images"] == 24
    assert all(v["peak_rss_bytes"] >= v["floor_rss_bytes"] > 0 for v in (stream, memory))
    assert stream["workers_peak_rss_bytes"] > 0  # the decoding worker was measured
    with pytest.raises(SystemExit) as e:
        bench.main(args + ["--budget", "1GiB", "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and "auto would not stream" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bench.main(args + ["--variants", "stream,disk", "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and "unknown ['disk']" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_report_renders_the_streaming_memory_result(tmp_path, monkeypatch):
    report = _load("report")
    _results_in(tmp_path, monkeypatch)
    mib = 2**20
    child = dict(peak_rss_bytes=900 * mib, floor_rss_bytes=500 * mib, growth_bytes=400 * mib,
                 workers_peak_rss_bytes=300 * mib, epoch_seconds=12.5, images=5000)
    r = {"command": "benchmarks/bench_stream_memory.py", "date": "2026-11-27", "git_sha": "abc1234",
         "torch_version": "2.13.0+cpu", "python": "3.11.7", "device": "cpu", "device_name": "AMD EPYC",
         "world_size": 1, "torch_threads": 2, "cpu_count": 2,
         "folder": {"train": 5000, "test": 500, "min_side": 128, "max_side": 224, "seed": 0, "decoded_bytes": 1050 * mib},
         "image_size": 224, "budget_bytes": 256 * mib, "workers": 2, "batch": 64,
         "results": {"stream": child, "memory": {**child, "growth_bytes": 1200 * mib}}}
    lines = report.stream_memory_section(r)
    text = "\n".join(lines)
    assert "1050 MiB decoded at --image-size 224, against a 256 MiB budget" in text
    assert "| stream | 900 | 400 | 300 | 12.5 | 5000 |" in text and "| memory | 900 | 1200 |" in text


@pytest.mark.slow
def test_kernel_counts_stay_within_their_goals(tmp_path):
    """The operations TrAct adds to a first layer's forward + backward on the accelerator path (each at least one
    kernel launch on a GPU): at most 12, and 20 for the 7x7/2 stem whose patches span 4 memory blocks."""
    bench = _load("bench_kernels")
    out = tmp_path / "kernels.json"
    assert bench.main(["--out", str(out)]) == 0
    added = {r["case"]: r for r in json.loads(out.read_text())["results"]}
    assert set(added) == {"cifar-stem", "stem", "deit-s", "vit-cifar"}
    for case, r in added.items():
        assert 0 < r["added"] <= (20 if case == "stem" else 12), (case, r["added_ops"])
        assert r["added_ops"].get("linalg_cholesky_ex") == 1  # the count is of TrAct's real work
    assert added["stem"]["added_ops"]["baddbmm_"] == 3  # 4 blocks: one GEMM each, nothing per block besides


def test_compile_benchmark_refuses_bad_input(capsys):
    bench = _load("bench_compile")
    with pytest.raises(SystemExit) as e:
        bench.main(["--cases", "nope"])
    assert e.value.code == 2 and "unknown case(s) ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--reps", "0"])
    assert "--reps must be at least 1, got 0" in capsys.readouterr().err


def test_stored_commands_are_shown_in_the_form_that_runs_today():
    runnable = _load("bench_tables").runnable
    assert runnable("benchmarks/bench_overhead.py --reps 15") == "python -m benchmarks.bench_overhead --reps 15"
    assert runnable("python benchmarks/bench_gram.py") == "python -m benchmarks.bench_gram"
    assert runnable("python -m benchmarks.bench_sync --reps 3") == "python -m benchmarks.bench_sync --reps 3"
