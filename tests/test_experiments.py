"""benchmarks/experiments.py: every registered command is a valid `trainact compare` configuration, and the
runner reuses shared runs, takes an lr from another experiment's grid and collects JSON without local paths."""
from __future__ import annotations

import json

import pytest

from benchmarks import experiments, runner
from benchmarks.common import compare_config
from trainact.harness.config import CompareConfig

# a comparison that trains in a second: 96 synthetic 16-pixel images, a 4-channel ResNet, one thread
TINY = ["--synthetic", "train_size=96,test_size=32,image_size=16", "--width", "4", "--batch-size", "32",
        "--warmup-epochs", "0", "--device", "cpu", "--threads", "1"]


def _in_process(name: str, args: list, log) -> int:
    """The runner's `trainact compare`, in this process (the tiny runs take a second; a process start takes more)."""
    import contextlib

    from trainact.harness.cli import main

    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return main(["compare", *args])


@pytest.fixture
def registry(tmp_path, monkeypatch) -> dict:
    """An empty experiment registry whose experiments collect into tmp_path/collected and run in this process."""
    registered: dict = {}
    monkeypatch.setattr(experiments, "EXPERIMENTS", registered)
    monkeypatch.setattr(experiments, "COLLECTED", tmp_path / "collected")
    monkeypatch.setattr(runner, "compare", _in_process)
    return registered


@pytest.mark.parametrize("name", list(experiments.EXPERIMENTS))
def test_registered_commands_are_valid_configurations(name, monkeypatch, tmp_path):
    e = experiments.EXPERIMENTS[name]
    if e["lr_from"]:
        source = e["lr_from"][0]
        for budget in experiments.lr_budgets(e["lr_from"]):
            assert budget in compare_config(experiments.command(source)).budgets, \
                f"{source} has no {budget}-epoch budget"
        monkeypatch.setattr(experiments, "_lr_from", lambda n, root: ["--lr", "0.001"])
    cfg = compare_config(experiments.command(name, tmp_path))
    assert isinstance(cfg, CompareConfig) and cfg.data in (experiments.DATA, experiments.IMAGENET)
    assert cfg.out == f"runs/{name}"
    assert len(cfg.seeds) >= 3  # the evidence protocol: at least 3 seeds everywhere
    # the default warm-up changed (1 epoch, then 0): every experiment names its own, so its runs stay comparable
    assert "--warmup-epochs" in e["args"], f"{name} relies on the default warm-up"
    for source in e["reuse"]:
        assert not cfg.differences(compare_config(experiments.command(source))), \
            f"{name} cannot share runs with {source}"


def test_lr_from_several_budgets_needs_them_to_agree(tmp_path, registry, monkeypatch):
    experiments.experiment("grid", "grid", TINY + ["--budgets", "1,2,4", "--lr", "0.1,0.2"])
    experiments.experiment("two", "two", TINY + ["--budgets", "1,2"], lr_from=("grid", (1, 2)))
    assert "<best of grid at 1 and 2 epochs>" in experiments.command("two")
    with pytest.raises(SystemExit, match="grid's lr grid at 1 and 2 epochs"):
        experiments.command("two", tmp_path)
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "config.json").write_text("{}")
    best = {1: 0.2, 2: 0.2, 4: 0.1}
    monkeypatch.setattr(experiments, "summarize",
                        lambda folder: {"best_lr": [{"budget": b, "lr": lr} for b, lr in best.items()]})
    assert experiments.command("two", tmp_path)[-4:-2] == ["--lr", "0.2"]
    best[2] = 0.1
    with pytest.raises(SystemExit, match="different lrs at 1 and 2 epochs \\(1: 0.2, 2: 0.1\\)"):
        experiments.command("two", tmp_path)


def test_run_reuses_takes_the_lr_and_collects_without_local_paths(tmp_path, registry):
    tiny = TINY + ["--budgets", "1"]
    experiments.experiment("grid", "grid", tiny + ["--lr", "0.001,0.2"])
    experiments.experiment("lams", "lams", tiny + ["--lam", "0.1,1"], reuse=("grid",), lr_from=("grid", 1))
    root = tmp_path / "runs"

    with pytest.raises(SystemExit, match="grid's lr grid"):  # the lr source has not run yet
        experiments.command("lams", root)
    assert runner.run(["grid", "lams"], root) == 0

    best = json.loads((root / "grid" / "summary.json").read_text())["best_lr"][0]["lr"]
    lams = json.loads((root / "lams" / "summary.json").read_text())
    assert lams["config"]["lrs"] == [best] and lams["complete"]
    for run_id in (f"b1/baseline/lr{best:g}/s0", f"b1/tract-l0.1/lr{best:g}/s0"):  # copied, not trained again
        assert (root / "lams" / run_id / "metrics.jsonl").read_bytes() == \
            (root / "grid" / run_id / "metrics.jsonl").read_bytes()
    assert "complete, skipped" in (root / "lams.log").read_text()

    for name in ("grid", "lams"):
        folder = tmp_path / "collected" / name
        top = json.loads((folder / "config.json").read_text())
        assert top["command"].startswith("trainact compare ") and top["config"]["out"] == f"runs/{name}"
        assert (folder / "accuracy_vs_budget.png").is_file()
        assert not list(folder.rglob("checkpoint.pt"))
        for file in folder.rglob("*.json*"):
            assert str(tmp_path) not in file.read_text(), file
    assert json.loads((tmp_path / "collected" / "lams" / "summary.json").read_text())["complete"]


def test_an_experiment_spans_sessions_through_the_collected_runs(tmp_path, registry, capsys):
    tiny = TINY + ["--budgets", "1,2", "--lr", "0.05"]
    experiments.experiment("long", "long", tiny)
    experiments.experiment("unstarted", "unstarted", tiny)
    with pytest.raises(SystemExit, match="budgets are 1,2"):
        runner.run(["long"], tmp_path / "runs", budgets="4")

    # session 1 trains the 1-epoch budget only; collect keeps it and reports the rest as missing
    assert runner.run(["long"], tmp_path / "runs", budgets="1") == 0
    part = json.loads((tmp_path / "collected" / "long" / "summary.json").read_text())
    assert not part["complete"] and {r["budget"] for r in part["results"]} == {1}
    assert json.loads((tmp_path / "collected" / "long" / "config.json").read_text())["config"]["budgets"] == [1, 2]
    first = (tmp_path / "collected" / "long" / "b1" / "tract-l0.1" / "lr0.05" / "s0" / "metrics.jsonl").read_bytes()
    runner.status(["long"], tmp_path / "fresh")
    assert "long: 2 runs at the selected lrs, missing 2: b2/baseline/lr0.05/s0" in capsys.readouterr().out

    # session 2 starts from a fresh runs folder: what was collected is not trained again, nor lost
    runner.collect(["long"], tmp_path / "fresh")  # nothing there yet: the collected runs stay
    assert (tmp_path / "collected" / "long" / "b1").is_dir()
    assert runner.run(["long"], tmp_path / "fresh") == 0
    assert "complete, skipped" in (tmp_path / "fresh" / "long.log").read_text()
    whole = json.loads((tmp_path / "collected" / "long" / "summary.json").read_text())
    assert whole["complete"] and {r["budget"] for r in whole["results"]} == {1, 2}
    assert (tmp_path / "collected" / "long" / "b1" / "tract-l0.1" / "lr0.05" / "s0" / "metrics.jsonl").read_bytes() \
        == first
    capsys.readouterr()
    runner.status(["long", "unstarted"], tmp_path / "fresh")
    assert capsys.readouterr().out.splitlines() == ["long: complete", "unstarted: not started"]


def test_a_changed_lr_grid_trains_only_the_new_lr_and_keeps_the_old_runs_as_data(tmp_path, registry, monkeypatch):
    tiny = TINY + ["--budgets", "1"]
    experiments.experiment("g", "g", tiny + ["--lr", "0.2,0.05"])
    assert runner.run(["g"], tmp_path / "runs") == 0
    kept = (tmp_path / "collected" / "g" / "b1" / "baseline" / "lr0.05" / "s0" / "metrics.jsonl").read_bytes()
    first_best = json.loads((tmp_path / "collected" / "g" / "summary.json").read_text())["best_lr"][0]["lr"]

    # the next session shifts the grid: 0.2 out, 0.01 in; only 0.01 (and the finals if the best moved) train
    registry.clear()
    experiments.experiment("g", "g", tiny + ["--lr", "0.05,0.01"])
    assert runner.run(["g"], tmp_path / "fresh") == 0
    folder = tmp_path / "collected" / "g"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] and sorted(g["lr"] for g in summary["lr_grid"]) == [0.01, 0.05]
    assert (folder / "b1" / "baseline" / "lr0.05" / "s0" / "metrics.jsonl").read_bytes() == kept
    assert (folder / "b1" / "baseline" / "lr0.2" / "s0" / "summary.json").is_file()  # kept as data

    # the report names the runs it does not use
    from benchmarks.claims.curves import unused_runs
    from benchmarks.collected import Collected

    src = Collected(tmp_path / "collected")
    top, summary = src.experiment("g")
    note = unused_runs(src, "g", top, summary)
    new_best = summary["best_lr"][0]["lr"]
    def top1(label, lr):
        run = folder / "b1" / label / f"lr{lr:g}" / "s0" / "summary.json"
        return f"{label} at lr {lr:g} (1 ep: {json.loads(run.read_text())['final_top1']:.2f})"

    expected = [top1("baseline", 0.2)] + ([top1("tract-l0.1", first_best)] if first_best != new_best else [])
    assert note.endswith(": " + "; ".join(expected) + "."), note


def test_an_experiment_reuses_another_experiments_collected_runs(tmp_path, registry):
    tiny = TINY + ["--budgets", "1", "--lr", "0.05"]
    experiments.experiment("base", "base", tiny)
    experiments.experiment("lams", "lams", tiny + ["--lam", "0.1,1"], reuse=("base",), lr_from=("base", 1))
    assert runner.run(["base"], tmp_path / "session1") == 0
    # another session: its runs folder is empty, the shared runs come from the repository's collected copy
    assert runner.run(["lams"], tmp_path / "session2") == 0
    for run_id in ("b1/baseline/lr0.05/s0", "b1/tract-l0.1/lr0.05/s0"):
        assert (tmp_path / "session2" / "lams" / run_id / "metrics.jsonl").read_bytes() == \
            (tmp_path / "collected" / "base" / run_id / "metrics.jsonl").read_bytes()
    summary = json.loads((tmp_path / "collected" / "lams" / "summary.json").read_text())
    assert summary["complete"] and {r["label"] for r in summary["results"]} == {"baseline", "tract-l0.1", "tract-l1"}


IMAGENET_PROTOCOLS = {"imagenet-resnet50-30": (30, 0.141, 0.1), "imagenet-resnet50-60": (60, 0.1, 0.1),
                      "imagenet-resnet50-90": (90, 0.1, 0.1), "imagenet-deit3-s-400": (400, 0.002, 0.1),
                      "imagenet-deit3-s-800": (800, 0.002, 0.2)}


@pytest.mark.parametrize("name", list(IMAGENET_PROTOCOLS))
def test_the_papers_imagenet_protocols_are_registered(name):
    budget, lr, lam = IMAGENET_PROTOCOLS[name]
    cfg = compare_config(experiments.command(name))
    assert cfg.data == experiments.IMAGENET and cfg.budgets == (budget,) and cfg.lrs == (lr,) and cfg.lams == (lam,)
    assert (cfg.image_size, cfg.loader, cfg.amp, cfg.device) == (224, "stream", "bf16", "cuda")
    e = experiments.EXPERIMENTS[name]
    assert e["nproc_per_node"] == 8 and e["epoch_time"] == "to be measured"
    if "resnet50" in name:  # Table 2
        assert (cfg.model, cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.batch_size) == \
            ("tv:resnet50", "sgd", 0.9, 1e-4, 256)
        assert (cfg.schedule, cfg.milestones, cfg.gamma, cfg.warmup_epochs) == ("step", (0.333, 0.667), 0.1, 0.0)
    else:  # Table 3
        assert (cfg.model, cfg.batch_size, cfg.schedule) == ("timm:deit3_small_patch16_224", 2048, "cosine")


def test_list_prints_the_torchrun_launch_and_run_stops_without_the_data(tmp_path, capsys, monkeypatch):
    assert runner.main(["list", "imagenet-resnet50-30", "fig3-sgd"]) == 0
    out = capsys.readouterr().out
    assert "  torchrun --nproc_per_node 8 -m trainact compare --data ../shared/data/imagenet " in out
    assert "wall time per epoch on one GPU: to be measured" in out
    assert "  trainact compare --data ../shared/data/cifar10-jpeg.tar.gz" in out
    assert experiments.launcher("imagenet-deit3-s-400")[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "8"]
    monkeypatch.chdir(tmp_path)  # no ../shared/data/imagenet from here
    calls = []
    monkeypatch.setattr(runner.subprocess, "call", lambda *a, **k: calls.append(a) or 0)
    with pytest.raises(SystemExit, match=r"imagenet-resnet50-30: its data ../shared/data/imagenet is missing .* "
                                         r"train/<wnid>/\*.JPEG and val/<wnid>/\*.JPEG"):
        runner.main(["run", "imagenet-resnet50-30", "--runs", str(tmp_path / "runs")])
    assert not calls and not (tmp_path / "runs").exists()  # nothing started, nothing written


def test_run_on_another_device_replaces_the_experiments_own(tmp_path, registry, monkeypatch, capsys):
    experiments.experiment("cpu-one", "cpu-one", TINY + ["--budgets", "1", "--lr", "0.05"])
    experiments.experiment("no-device", "no-device",
                           [a for a in TINY if a not in ("--device", "cpu")] + ["--budgets", "1"])
    seen = {}
    monkeypatch.setattr(runner, "compare", lambda name, args, log: seen.setdefault(name, args) and 0)
    assert runner.run(["cpu-one", "no-device"], tmp_path / "runs", device="cuda:1") == 0
    for name in ("cpu-one", "no-device"):
        args = seen[name]
        assert args.count("--device") == 1 and args[args.index("--device") + 1] == "cuda:1", args
    assert experiments.with_device(["--device", "cpu", "--seeds", "0"], None) == ["--device", "cpu", "--seeds", "0"]
    with pytest.raises(SystemExit):
        runner.main(["collect", "cpu-one", "--device", "cuda", "--runs", str(tmp_path / "runs")])
    assert "--device 'cuda' applies to run only, not to collect" in capsys.readouterr().err


def test_paper_protocols_are_the_authors_and_plan_fills_a_window_with_whole_seeds(tmp_path, capsys):
    fig3 = compare_config(experiments.command("paper-fig3-sgd"))
    assert (fig3.model, fig3.width, fig3.weight_decay, fig3.lrs, fig3.lams, fig3.budgets, fig3.batch_size) == (
        "resnet18-maxpool", 64, 0.0, (0.08,), (0.1,), (100,), 128)
    assert fig3.compile and fig3.channels_last and fig3.amp == "bf16"
    long = compare_config(experiments.command("paper-fig3-sgd-200"))
    assert long.methods == ("baseline",) and long.budgets == (200,) and not long.differences(fig3)
    vit = compare_config(experiments.command("paper-fig4-vit"))
    assert (vit.dim, vit.depth, vit.heads, vit.lrs, vit.label_smoothing, vit.budgets) == (384, 7, 12, (0.001,), 0.1, (100,))

    times = tmp_path / "epoch-cuda.json"
    with pytest.raises(SystemExit, match="no GPU epoch times"):
        runner.plan(["paper-fig3-sgd"], tmp_path / "runs", 9, times=times)
    rows = [{"case": "resnet18-authors", "variant": "compiled", "method": m, "jobs": 1, "first_epoch_seconds": 30.0,
             "seconds_per_epoch": s} for m, s in (("baseline", 0.9), ("tract", 0.93))]
    times.write_text(json.dumps({"results": rows}))
    # one seed: 30 + 99 * 0.9 + 30 + 99 * 0.93 = 241.17 s = 4.02 min; two fit in 9 minutes, the third does not
    chosen = runner.plan(["paper-fig3-sgd"], tmp_path / "runs", 9, times=times)
    assert [(n, s) for n, s, _ in chosen] == [("paper-fig3-sgd", 0), ("paper-fig3-sgd", 1)]
    assert abs(chosen[0][2] - 241.17 / 60) < 1e-9
    assert "seed 2: 4.0 min, does not fit" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="paper-fig4-vit trains as vit-cifar/compiled, which bench_epoch.py has not"):
        runner.plan(["paper-fig4-vit"], tmp_path / "runs", 9, times=times)
    with pytest.raises(SystemExit):
        runner.main(["plan"])  # --minutes missing


@pytest.mark.slow
def test_bench_epoch_smoke_on_the_cpu(tmp_path):
    from benchmarks import bench_epoch

    out = tmp_path / "epoch.json"
    assert bench_epoch.main(["--device", "cpu", "--tiny", "--cases", "resnet18-authors", "--variants", "eager",
                       "--jobs", "1,2", "--epochs", "2", "--train-size", "64", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["method"], r["jobs"]) for r in results] == [("baseline", 1), ("tract", 1), ("baseline", 2), ("tract", 2)]
    for r in results:
        assert len(r["epoch_seconds"]) == 2 and r["seconds_per_epoch"] > 0
        assert r["aggregate_epochs_per_second"] == pytest.approx(r["jobs"] / r["seconds_per_epoch"])


def test_run_as_a_file_it_says_how_to_run_it():
    """`python benchmarks/experiments.py status` stops with the module form of the same command line."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(experiments.__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "benchmarks/experiments.py", "status"], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1
    assert "python -m benchmarks.experiments status" in out.stderr
    # run as a module, the registry hands its command line to the runner
    out = subprocess.run([sys.executable, "-m", "benchmarks.experiments", "list", "fig3-sgd"], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("fig3-sgd: "), out.stderr
