"""The benchmark scripts run (tiny settings; their figures come from the full runs in BENCHMARKS.md) and refuse
bad input clearly; the report says what was never measured rather than leaving it out."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


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
    monkeypatch.setattr(report, "RESULTS", str(tmp_path))
    monkeypatch.setattr(report, "COLLECTED", str(tmp_path / "experiments"))
    r.update(device="cuda:0", cuda="NVIDIA H100 80GB HBM3")
    (tmp_path / "overhead-cuda.json").write_text(json.dumps(r))
    text = "\n".join(report.gpu_section())
    assert "## GPU time overhead" in text and "NVIDIA H100 80GB HBM3 (CUDA)" in text
    assert (tmp_path / "overhead-cuda.png").is_file() and "Nothing on this page" not in text


def test_report_states_the_gpu_evidence_is_missing_and_how_to_measure_it(tmp_path, monkeypatch):
    report = _load("report")
    monkeypatch.setattr(report, "RESULTS", str(tmp_path))
    monkeypatch.setattr(report, "COLLECTED", str(tmp_path / "experiments"))
    text = "\n".join(report.gpu_section())
    assert "Nothing on this page was measured on a GPU" in text
    for command in ("bench_overhead.py --device cuda", "experiments.py run gpu-resnet18", "tests/test_gpu.py"):
        assert command in text
