"""`trainact compare` / `trainact report` end to end, in-process through `main`, and under torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainact.harness.cli import main
from trainact.harness.config import CompareConfig
from trainact.harness.plots import PLOT_FILES

TINY = ["--synthetic", "train_size=160,test_size=64,image_size=16", "--width", "4", "--batch-size", "32",
        "--warmup-epochs", "0.5", "--device", "cpu"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _compare(out, *extra):
    return main(["compare", *TINY, "--out", str(out), *extra])


def _summaries(out: Path) -> dict:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text()) for p in out.glob("b*/*/*/*/summary.json")}


def _assert_pngs(out: Path):
    for name in PLOT_FILES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name


def test_compare_end_to_end_then_report_and_rerun(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert _compare(out, "--budgets", "1,2", "--lr", "0.05") == 0
    printed = capsys.readouterr().out

    config = json.loads((out / "config.json").read_text())
    assert config["config"]["budgets"] == [1, 2] and config["config"]["width"] == 4
    env = config["environment"]
    assert {"git_sha", "torch_version", "device"} <= set(env) and env["loader_images_per_second"] > 0
    runs = _summaries(out)
    assert set(runs) == {"b1/baseline/lr0.05/s0", "b1/tract-l0.1/lr0.05/s0", "b2/baseline/lr0.05/s0",
                         "b2/tract-l0.1/lr0.05/s0"}
    for run_id, s in runs.items():
        assert s["completed"] is True and s["epochs"] == s["run"]["budget"]
        rows = [json.loads(line) for line in (out / run_id / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == list(range(1, s["epochs"] + 1))
        assert set(rows[0]) == {"epoch", "train_loss", "train_acc", "test_top1", "test_top5", "lr", "seconds",
                                "eval_seconds"}
        assert 0 <= rows[-1]["test_top1"] <= rows[-1]["test_top5"] <= 100
        assert rows[-1]["test_top1"] == s["final_top1"]
        assert not (out / run_id / "checkpoint.pt").exists()
    top = json.loads((out / "summary.json").read_text())
    assert top["completed"] is True and top["missing"] == []
    assert {(r["label"], r["budget"]) for r in top["results"]} == {
        ("baseline", 1), ("baseline", 2), ("tract-l0.1", 1), ("tract-l0.1", 2)}
    assert [s["tract_budget"] for s in top["speedups"]] == [1, 2]
    assert top["throughput"]["loader_images_per_second"] > 0
    _assert_pngs(out)
    assert not (out / ".trainact.lock").exists()  # released at the end
    assert "tract-l0.1" in printed and "speed-up" in printed
    table = printed.split("\nloader ")[0].strip()

    # report rebuilds the table and plots from JSON alone
    for name in PLOT_FILES:
        (out / name).unlink()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.startswith(table)
    _assert_pngs(out)
    assert main(["report", "--no-plots", "--markdown", str(out)]) == 0
    md = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    for r in summary["results"]:  # every row of the table, with the mean top-1 from the JSON
        assert f"| {r['budget']} | {r['label']} |" in md and f"{r['top1']['mean']:.2f}" in md

    # rerunning skips finished runs (no new epochs)
    before = {p: p.read_text() for p in out.glob("b*/*/*/*/metrics.jsonl")}
    assert _compare(out, "--budgets", "1,2", "--lr", "0.05") == 0
    assert {p: p.read_text() for p in out.glob("b*/*/*/*/metrics.jsonl")} == before
    assert "skipped" in capsys.readouterr().err

    # a different configuration in the same directory is refused, naming the field
    assert _compare(out, "--budgets", "1,2", "--lr", "0.05", "--optimizer", "adam") == 2
    assert "optimizer" in capsys.readouterr().err


def test_compare_lr_grid_tract_uses_the_baselines_best_lr(tmp_path, capsys):
    from trainact.harness.protocol import select_best_lr

    out = tmp_path / "grid"
    assert _compare(out, "--budgets", "1", "--lr", "0.001,0.5", "--no-augment") == 0
    runs = _summaries(out)
    base = {s["run"]["lr"]: s["final_top1"] for s in runs.values() if s["run"]["method"] == "baseline"}
    assert set(base) == {0.001, 0.5}
    best = select_best_lr({lr: [a] for lr, a in base.items()})
    tract = [s for s in runs.values() if s["run"]["method"] == "tract"]
    assert len(tract) == 1 and tract[0]["run"]["lr"] == best
    top = json.loads((out / "summary.json").read_text())
    assert top["best_lr"] == [{"budget": 1, "lr": best}]
    assert "lr grid" in capsys.readouterr().out
    assert main(["report", "--no-plots", "--markdown", str(out)]) == 0
    grid_line = capsys.readouterr().out.splitlines()[0]
    assert grid_line.startswith("Baseline lr grid")
    for lr, acc in base.items():  # every grid point, the selected one in bold
        text = f"{lr:g} → {acc:.2f}"
        assert (f"**{text}**" if lr == best else text) in grid_line


@pytest.mark.parametrize("extra", [
    ["--optimizer", "adam", "--lr", "0.002", "--first-layer-sgd", "--first-layer-lr", "0.05", "--methods", "tract"],
    ["--schedule", "multistep", "--amp", "bf16", "--eval-every", "2", "--label-smoothing", "0.1", "--nesterov"],
    ["--model", "vit", "--patch-size", "4", "--dim", "32", "--depth", "1", "--heads", "2", "--optimizer", "adamw",
     "--lr", "0.001", "--lam", "0.1,1", "--relative-lambda", "--input-range", "unit"],
    ["--first-layer-init", "whiten-frozen", "--methods", "baseline"],
], ids=["first-layer-sgd", "multistep-bf16", "vit", "whiten-frozen"])
def test_compare_option_paths(tmp_path, capsys, extra):
    out = tmp_path / "opt"
    assert _compare(out, "--budgets", "2", *extra) == 0
    top = json.loads((out / "summary.json").read_text())
    assert top["completed"] is True and top["results"]
    for s in _summaries(out).values():
        assert s["completed"] and s["epochs"] == 2 and s["final_top1"] is not None
    if "--eval-every" in extra:
        rows = [json.loads(l) for l in (out / "b2/baseline/lr0.08/s0/metrics.jsonl").read_text().splitlines()]
        assert [r["test_top1"] is None for r in rows] == [True, False]
    if "--lam" in extra:
        assert {r["label"] for r in top["results"]} == {"baseline", "tract-l0.1", "tract-l1"}


def test_help_everywhere(capsys):
    for argv in (["--help"], ["compare", "--help"], ["report", "--help"]):
        assert main(argv) == 0
    text = capsys.readouterr().out
    assert "--first-layer-sgd" in text and "(default: 128)" in text and "runs/compare" in text


@pytest.mark.parametrize("argv, code, needle", [
    (["--data", "/nonexistent/cifar"], 1, "/nonexistent/cifar"),
    (["--model", "resnet19"], 2, "resnet19"),
    (["--first-layer-sgd", "--optimizer", "sgd"], 2, "first_layer_sgd"),
    (["--first-layer-sgd", "--optimizer", "adam", "--first-layer-lr", "0.1"], None, None),
    (["--amp", "fp16"], 2, "fp16"),
    (["--relative-lambda", "--methods", "baseline"], 2, "relative_lambda"),
    (["--budgets", "2,x"], 2, "'x'"),
    (["--lam", "0.1,-1"], 2, "-1"),
    (["--lr", "0.1,,0.2"], 2, "0.1,,0.2"),
    (["--methods", "baseline,tracts"], 2, "tracts"),
    (["--synthetic", "train_size=10,bogus=3"], 1, "bogus"),
    (["--batch-size", "0"], 2, "'0'"),
    (["--warmup-epochs", "1"], 2, "warmup_epochs=1.0"),
    (["--first-layer-init", "whiten-frozen"], 2, "--methods baseline"),
    (["--first-layer-init", "zca"], 2, "'zca'"),
    (["--first-layer-init", "whiten", "--model", "vit"], 1, "needs a convolution"),
])
def test_bad_input_fails_clearly_and_marks_nothing_complete(tmp_path, capsys, argv, code, needle):
    if code is None:  # a valid combination: only check that it is accepted by the config
        from trainact.harness.cli import build_parser, config_from_args

        cfg = config_from_args(build_parser().parse_args(["compare", *argv]))
        assert cfg.first_layer_sgd and cfg.effective_first_layer_lr == 0.1
        return
    out = tmp_path / "bad"
    base = ["--width", "4", "--device", "cpu", "--budgets", "1"]
    if not {"--data", "--synthetic"} & set(argv):
        base += TINY[:2]
    if "--warmup-epochs" not in argv:
        base += ["--warmup-epochs", "0"]
    assert main(["compare", *base, "--out", str(out), *argv]) == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3  # a message, not a dump
    assert not list(out.rglob("summary.json"))


def test_options_parse_into_the_config_by_their_declarations():
    from trainact.harness.cli import build_parser, config_from_args

    args = build_parser().parse_args(["compare", "--budgets", "4,8", "--lr", "0.04,0.08", "--lam", "0.01,0.1",
                                      "--no-augment", "--data", "d", "--image-size", "224", "--memory-budget", "1GiB"])
    cfg = config_from_args(args)
    assert cfg.budgets == (4, 8) and cfg.lrs == (0.04, 0.08) and cfg.lams == (0.01, 0.1) and not cfg.augment
    assert cfg.image_size == 224 and cfg.memory_budget == 2**30
    assert config_from_args(build_parser().parse_args(["compare"])) == CompareConfig()  # the same defaults


@pytest.mark.parametrize("argv, needle", [
    (["--momentum", "1.5"], "argument --momentum: '1.5' must be < 1"),
    (["--seeds", "1,1"], "argument --seeds: '1,1' has duplicates: [1, 1]"),
    (["--budgets", "0"], "argument --budgets: budget must be an integer >= 1, got 0"),
    (["--device", "tpu"], "argument --device: 'tpu' must be auto, cpu, cuda or cuda:N"),
])
def test_a_value_the_options_own_check_refuses_names_the_flag_and_the_text(capsys, argv, needle):
    assert main(["compare", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_config_json_markers_are_the_ones_existing_folders_were_written_with():
    """Which fields config.json may leave out, and which may change when a folder is resumed: changing either
    would stop existing output folders from loading or resuming as they did."""
    from trainact.harness.config import EXTENSIBLE_FIELDS, OPTIONAL_FIELDS

    assert set(OPTIONAL_FIELDS) == {"image_size", "val_fraction", "loader", "workers", "memory_budget", "milestones",
                                    "gamma", "channels_last", "compile", "jobs", "contrast_spread"}
    assert set(EXTENSIBLE_FIELDS) == {"methods", "lams", "budgets", "seeds", "lrs", "lr_grid_seeds", "out", "device",
                                      "threads", "channels_last", "compile", "jobs", "workers", "cache_dir"}
    assert set(json.loads(CompareConfig().to_json())) == {f for f in CompareConfig.__dataclass_fields__
                                                          if f not in OPTIONAL_FIELDS}


def test_failure_during_training_leaves_nothing_complete(tmp_path, capsys, monkeypatch):
    from trainact.harness import train

    calls = []

    def failing_evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("disk on fire")
        return real(*args, **kwargs)

    real = train.evaluate
    monkeypatch.setattr(train, "evaluate", failing_evaluate)
    out = tmp_path / "fail"
    assert _compare(out, "--budgets", "1") == 1
    assert "disk on fire" in capsys.readouterr().err
    assert not (out / "summary.json").exists()
    done = _summaries(out)
    assert list(done) == ["b1/baseline/lr0.08/s0"]  # the first run finished, the second did not
    assert not (out / "b1/tract-l0.1/lr0.08/s0/summary.json").exists()
    assert not (out / ".trainact.lock").exists()  # a failed comparison frees its folder


@pytest.mark.parametrize("hidden, argv, needle", [
    (["torchvision"], ["--model", "tv:resnet18"],
     'trainact compare --model tv:resnet18 needs torchvision, which is not installed: pip install "trainact[vision]"'),
    (["timm"], ["--model", "timm:resnet18"], 'needs timm, which is not installed: pip install "trainact[vision]"'),
    (["matplotlib"], [], 'trainact compare needs matplotlib, which is not installed: pip install "trainact[harness]"'),
    (["tqdm", "matplotlib"], [], 'needs tqdm and matplotlib, which are not installed: pip install "trainact[harness]"'),
    (["PIL"], ["--data", "/nonexistent/images.tar"], 'needs Pillow, which is not installed: pip install "trainact[harness]"'),
    (["tqdm", "timm"], ["--model", "timm:vit_tiny_patch16_224"], 'pip install "trainact[harness,vision]"'),
    (["torchvision"], ["--model", "cifar:tv:mobilenet_v2"],
     'trainact compare --model cifar:tv:mobilenet_v2 needs torchvision, which is not installed'),
], ids=["torchvision", "timm", "matplotlib", "two-missing", "pillow", "two-extras", "cifar-variant"])
def test_a_missing_optional_package_is_one_line_and_exit_2_before_anything_runs(tmp_path, capsys, monkeypatch,
                                                                                   hidden, argv, needle):
    from trainact.harness import compare

    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    monkeypatch.setattr(compare, "load_data", lambda *a, **k: pytest.fail("data loaded before the check"))
    monkeypatch.setattr(compare, "run_one", lambda *a, **k: pytest.fail("trained before the check"))
    out = tmp_path / "out"
    base = [] if "--data" in argv else TINY[:2]
    assert main(["compare", *base, "--budgets", "1", "--out", str(out), *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainact compare: error: ") and needle in lines[0]
    assert not out.exists()


def test_report_without_matplotlib_needs_no_plots(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(tmp_path)]) == 2
    assert 'needs matplotlib, which is not installed: pip install "trainact[harness]"' in capsys.readouterr().err
    assert main(["report", "--no-plots", str(tmp_path)]) == 1  # gets past the check: no config.json here
    assert "config.json" in capsys.readouterr().err


def test_one_epoch_budget_with_default_warmup_and_five_classes(tmp_path, capsys):
    """`--budgets 1` works with the default (no) warm-up; with 5 classes top-5 is neither stored nor shown."""
    out = tmp_path / "five"
    argv = ["compare", "--synthetic", "train_size=160,test_size=64,image_size=16,num_classes=5", "--width", "4",
            "--batch-size", "32", "--device", "cpu", "--budgets", "1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["config"]["warmup_epochs"] == 0.0
    for run_id, s in _summaries(out).items():
        assert s["completed"] and "final_top5" not in s and "best_top5" not in s
        rows = [json.loads(line) for line in (out / run_id / "metrics.jsonl").read_text().splitlines()]
        assert all("test_top5" not in r for r in rows) and rows[-1]["test_top1"] == s["final_top1"]
    top = json.loads((out / "summary.json").read_text())
    assert top["completed"] and len(top["results"]) == 2 and all("top5" not in r for r in top["results"])
    assert "top-1 %" in printed and "top-5" not in printed
    _assert_pngs(out)
    assert main(["report", "--markdown", str(out)]) == 0
    assert "top-5" not in capsys.readouterr().out


def test_a_plotting_failure_keeps_a_complete_summary(tmp_path, capsys, monkeypatch):
    from trainact.harness import plots

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(plots, "make_plots", broken)
    out = tmp_path / "plotfail"
    assert _compare(out, "--budgets", "1", "--methods", "baseline") == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the training log: one line
    assert last.startswith(f"trainact compare: error: the results are complete in {out}/summary.json, but drawing "
                           "the plots failed (RuntimeError: no fonts)") and f"`trainact report {out}`" in last
    top = json.loads((out / "summary.json").read_text())
    assert top["completed"] is True and top["missing"] == [] and len(top["results"]) == 1
    assert top["throughput"]["loader_images_per_second"] > 0
    assert not (out / ".trainact.lock").exists()
    monkeypatch.undo()
    assert main(["report", str(out)]) == 0  # the plots, drawn again from the JSON
    _assert_pngs(out)


def test_a_second_compare_on_a_folder_in_use_names_the_holder(tmp_path, capsys, monkeypatch):
    import socket

    from trainact.harness import compare

    proc = subprocess.Popen(["sleep", "30"])
    try:
        out = tmp_path / "busy"
        out.mkdir()
        (out / ".trainact.lock").write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname(),
                                                         "command": "trainact compare --out busy"}))
        monkeypatch.setattr(compare, "load_data", lambda *a, **k: pytest.fail("data loaded despite the lock"))
        assert _compare(out, "--budgets", "1") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"output folder {out} is in use by pid {proc.pid}" in err[0]
    finally:
        proc.kill()
        proc.wait()


def test_report_on_a_non_output_dir_fails(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "config.json" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "trainact", "compare", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--budgets" in r.stdout


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainact", "compare", *TINY, "--budgets", "1,2", "--out", str(out)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"torchrun did not finish in 180 s: {err.stderr!r}")
    assert r.returncode == 0, r.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["environment"]["world_size"] == 2
    top = json.loads((out / "summary.json").read_text())
    assert top["completed"] is True and len(top["results"]) == 4
    runs = _summaries(out)
    assert len(runs) == 4 and all(s["completed"] for s in runs.values())
    rows = [json.loads(line) for line in (out / "b2/tract-l0.1/lr0.08/s0/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # rank 0 alone wrote: no duplicated lines
    assert r.stdout.count("speed-up =") == 1  # one table, from rank 0
    # gradient accumulation under DDP: no_sync micro-batches, TrAct statistics pooled over both ranks
    cmd = [*cmd[: cmd.index("--budgets")], "--budgets", "1", "--grad-accum", "2", "--out", str(tmp_path / "acc")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert all(s["completed"] for s in _summaries(tmp_path / "acc").values())


@pytest.mark.slow
@pytest.mark.distributed
def test_a_killed_rank_ends_the_job_at_once_and_a_rerun_resumes_to_the_same_result(tmp_path):
    """kill -9 of rank 1 mid-epoch: rank 0 says in one line that it lost rank 1 and the job ends within a minute
    (no 30-minute collective timeout); the same command then resumes from the last checkpoint, and its results
    equal those of an uninterrupted run."""
    import glob
    import signal
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(out):
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                "trainact", "compare", "--synthetic", "train_size=1024,test_size=64,image_size=16", "--width", "8",
                "--batch-size", "32", "--warmup-epochs", "0", "--device", "cpu", "--threads", "1", "--budgets", "3",
                "--methods", "baseline", "--out", str(out)]

    whole = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True, timeout=300, env=env)
    assert whole.returncode == 0, whole.stderr[-2000:]
    job = subprocess.Popen(command(tmp_path / "cut"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=env)
    start = time.monotonic()
    while not glob.glob(str(tmp_path / "cut/b3/*/*/s0/checkpoint.pt")):  # epoch 1 is saved: epoch 2 is running
        assert job.poll() is None and time.monotonic() - start < 240, "the job ended before its first checkpoint"
        time.sleep(0.1)
    time.sleep(0.5)
    ranks = {}
    for pid in subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split():
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        ranks[int(environ[b"RANK"])] = int(pid)
    os.kill(ranks[1], signal.SIGKILL)
    killed = time.monotonic()
    output, _ = job.communicate(timeout=120)
    assert time.monotonic() - killed < 60 and job.returncode != 0
    assert "rank 0 lost contact with rank 1 of this 2-process job" in output, output[-3000:]
    assert "Rerun the same command to resume" in output
    resumed = subprocess.run(command(tmp_path / "cut"), capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch" in resumed.stdout + resumed.stderr
    for run in ("b3/baseline/lr0.08/s0",):
        rows = [[{k: v for k, v in json.loads(line).items() if k not in ("seconds", "eval_seconds")}
                 for line in (tmp_path / folder / run / "metrics.jsonl").read_text().splitlines()]
                for folder in ("whole", "cut")]
        assert rows[0] == rows[1] and len(rows[0]) == 3


def test_version_is_the_packages():
    import trainact

    r = subprocess.run([sys.executable, "-m", "trainact", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"trainact {trainact.__version__}"


def test_out_naming_a_file_and_a_subset_larger_than_the_set(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    assert main(["compare", *TINY, "--budgets", "1", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"--out {target} is an existing file, not a folder" in err and target.read_text() == "keep me"
    assert main(["compare", *TINY, "--budgets", "1", "--methods", "baseline", "--train-subset", "5000",
                 "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr()
    assert "--train-subset 5000 is more than the 160 training images there are: training on all 160" in (
        printed.out + printed.err)


def test_out_holding_runs_on_other_data_is_refused_and_kept(tmp_path, capsys, monkeypatch):
    """Same config, other data (a changed folder, a changed synthetic set): no run is mixed in, nothing is lost."""
    out = tmp_path / "o"
    args = ["compare", *TINY, "--budgets", "1", "--methods", "baseline", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    before = sorted(p.name for p in out.rglob("*"))
    from trainact.harness.data import synthetic

    monkeypatch.setitem(synthetic._DIFFICULTY, "contrast", (0.5, 1.0))  # the same options now make other images
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--out {out} holds results on other data (mean:" in err and "choose another --out" in err
    assert sorted(p.name for p in out.rglob("*")) == before


def test_argument_errors_name_the_subcommand_with_its_usage(capsys):
    for argv, message in ((["compare", "--lam", "-1"], "argument --lam: lam must be a positive number, got -1.0"),
                          (["compare", "--bogus"], "unrecognized arguments: --bogus"),
                          (["report", "--bogus", "dir"], "unrecognized arguments: --bogus")):
        assert main(argv) == 2
        lines = capsys.readouterr().err.splitlines()
        assert lines[0].startswith(f"usage: trainact {argv[0]} ") and "{compare,report}" not in "".join(lines)
        assert lines[1] == f"trainact {argv[0]}: error: {message}"


def test_a_finished_folder_resumes_with_another_cache_and_shows_its_results_read_only(tmp_path, capsys, monkeypatch):
    """The cache folder cannot change results; a folder this process may not write still shows its results."""
    import errno

    from trainact.harness.lock import OutDirLock

    out = tmp_path / "o"
    args = ["compare", *TINY, "--budgets", "1", "--methods", "baseline", "--out", str(out)]
    assert main(args + ["--cache-dir", str(tmp_path / "c1")]) == 0
    table = capsys.readouterr().out.split("\n\nloader")[0]
    assert main(args + ["--cache-dir", str(tmp_path / "c2")]) == 0  # resumes: nothing left to train
    assert "complete, skipped" in capsys.readouterr().err

    def refuse(cls, folder):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))

    monkeypatch.setattr(OutDirLock, "acquire", classmethod(refuse))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert table in printed and f"{out} is read-only: nothing was trained or written" in printed
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert main(args[:-4] + ["--budgets", "1,2", "--methods", "baseline", "--out", str(out)]) == 1
    assert f"--out {out} is read-only and 1 run(s) are still to train (b2/baseline" in capsys.readouterr().err


def test_a_subset_smaller_than_the_classes_is_refused(tmp_path, capsys):
    assert main(["compare", *TINY, "--budgets", "1", "--train-subset", "5", "--out", str(tmp_path / "o")]) == 1
    assert ("--train-subset 5 is fewer images than the 10 classes: a class-balanced subset needs at least one image "
            "of each class") in capsys.readouterr().err
