"""The comparison harness without the CLI: config, the paper's lr rule, speed-up, training, resume."""
from __future__ import annotations

import json
import os
import math
from dataclasses import dataclass
from typing import Optional

import pytest
import torch

from trainact.harness.config import CompareConfig
from trainact.harness.protocol import RunSpec, best_lrs, final_runs, grid_runs, select_best_lr
from trainact.harness.env import DistEnv
from trainact.harness.results import RunResult, analyse, format_markdown, format_table, grid_edge_notes, match_budget

TINY_DATA = {"train_size": 160, "test_size": 64, "image_size": 16}
TIMING = ("seconds", "eval_seconds")


def tiny_cfg(tmp_path, **kw) -> CompareConfig:
    base = dict(synthetic=TINY_DATA, width=4, budgets=(1, 2), seeds=(0,), lrs=(0.05,), batch_size=32,
                warmup_epochs=0.5, out=str(tmp_path / "out"), device="cpu")
    base.update(kw)
    return CompareConfig(**base)


@pytest.fixture(scope="module")
def tiny_data():
    from trainact.harness.data import load_dataset

    return load_dataset(None, synthetic=TINY_DATA)


# ---------------------------------------------------------------------------------------------- config
def test_config_json_roundtrip():
    cfg = CompareConfig(lams=[0.01, 0.1, 1.0], budgets=[2, 4], seeds=[0, 1], lrs=[0.1, 0.01], optimizer="adam",
                        synthetic={"train_size": 100})
    back = CompareConfig.from_json(cfg.to_json())
    assert back == cfg
    assert back.lams == (0.01, 0.1, 1.0) and isinstance(back.budgets, tuple)


@pytest.mark.parametrize("kw, needle", [
    (dict(methods=("baseline", "sgdx")), "'sgdx'"),
    (dict(lams=(0.1, -1.0)), "-1.0"),
    (dict(budgets=(2, 0)), "0"),
    (dict(budgets=(2, 2)), "duplicates"),
    (dict(lrs=(0.1, float("nan"))), "nan"),
    (dict(optimizer="sgd", first_layer_sgd=True), "first_layer_sgd"),
    (dict(first_layer_lr=0.1), "first_layer_lr=0.1"),
    (dict(relative_lambda=True, methods=("baseline",)), "relative_lambda"),
    (dict(methods=("tract",), lrs=(0.1, 0.01)), "baseline"),
    (dict(schedule="step"), "'step'"),
    (dict(amp="fp8"), "'fp8'"),
    (dict(warmup_epochs=3.0, budgets=(3, 6)), "warmup_epochs=3.0"),
    (dict(lr_grid_seeds=3, seeds=(0, 1)), "lr_grid_seeds=3"),
    (dict(grad_accum=3, batch_size=128), "grad_accum=3"),
    (dict(data="x", synthetic={"train_size": 5}), "synthetic"),
    (dict(device="tpu"), "'tpu'"),
    (dict(first_layer_init="zca"), "'zca'"),
    (dict(first_layer_init="whiten-frozen"), "--methods baseline"),
    (dict(first_layer_init="whiten-frozen", methods=("baseline",), optimizer="adam", first_layer_sgd=True),
     "first_layer_sgd"),
])
def test_config_rejects_with_the_offending_value(kw, needle):
    with pytest.raises(ValueError, match=None) as info:
        CompareConfig(**kw)
    assert needle in str(info.value)


def test_default_warmup_is_the_papers_and_fits_a_one_epoch_budget():
    assert CompareConfig().warmup_epochs == 0.0
    assert CompareConfig(budgets=(1,)).budgets == (1,)  # was refused: a 1-epoch warm-up in a 1-epoch budget


def test_a_folder_trained_with_the_old_default_warmup_says_how_to_resume(tmp_path):
    from trainact.harness.compare import check_out_dir

    out = tmp_path / "old"
    out.mkdir()
    old = CompareConfig(warmup_epochs=1.0, out=str(out))
    (out / "config.json").write_text(json.dumps({"config": old.to_dict()}))
    with pytest.raises(ValueError, match=r"warmup_epochs: 1\.0 there, 0\.0 now.*pass --warmup-epochs 1 as it was"):
        check_out_dir(CompareConfig(out=str(out)))
    check_out_dir(CompareConfig(warmup_epochs=1.0, out=str(out)))  # resumes


def test_config_differences_ignore_extensible_fields():
    a = CompareConfig(budgets=(2,), seeds=(0,))
    assert a.differences(CompareConfig(budgets=(2, 4), seeds=(0, 1), lams=(0.1, 1.0))) == {}
    assert a.differences(CompareConfig(optimizer="adam")) == {"optimizer": ("sgd", "adam")}


def test_config_json_without_first_layer_init_loads_as_default():
    """config.json files written before the field existed: the same configuration as a new default one."""
    new = CompareConfig(budgets=(2,))
    old = new.to_dict()
    del old["first_layer_init"]
    loaded = CompareConfig.from_dict(old)
    assert loaded.first_layer_init == "default" and loaded == new and loaded.differences(new) == {}
    assert new.differences(CompareConfig(first_layer_init="whiten")) == {"first_layer_init": ("default", "whiten")}


# ---------------------------------------------------------------------------------------------- lr rule
def test_select_best_lr_highest_mean_ties_to_smaller():
    assert select_best_lr({0.1: [50.0, 60.0], 0.01: [56.0, 56.0]}) == 0.01  # 55 < 56
    assert select_best_lr({0.1: [50.0, 62.0], 0.01: [56.0, 56.0]}) == 0.01  # tie at 56: the smaller lr
    assert select_best_lr({0.1: [50.0, 64.0], 0.01: [56.0, 56.0]}) == 0.1
    with pytest.raises(ValueError):
        select_best_lr({})


def test_tract_runs_only_at_the_baselines_best_lr_per_budget():
    cfg = CompareConfig(budgets=(2, 4), seeds=(0, 1, 2), lrs=(0.1, 0.01), lams=(0.1, 1.0), lr_grid_seeds=2)
    grid = grid_runs(cfg)
    assert {(r.budget, r.lr, r.seed) for r in grid} == {(b, lr, s) for b in (2, 4) for lr in (0.1, 0.01) for s in (0, 1)}
    assert all(r.method == "baseline" for r in grid)
    # hand-made results: lr 0.1 wins at budget 2, lr 0.01 at budget 4 (seed 2 is not in the grid)
    acc = {(2, 0.1): [70, 72], (2, 0.01): [60, 61], (4, 0.1): [75, 75], (4, 0.01): [80, 70.1]}
    results = {RunSpec(b, "baseline", lr, s): acc[(b, lr)][s] for b, lr in acc for s in (0, 1)}
    best = best_lrs(cfg, results)
    assert best == {2: 0.1, 4: 0.01}
    final = final_runs(cfg, best)
    tract = [r for r in final if r.method == "tract"]
    assert {(r.budget, r.lr) for r in tract} == {(2, 0.1), (4, 0.01)}
    assert len(tract) == 2 * 3 * 2  # budgets x seeds x lambdas
    assert {r.run_id for r in final if r.method == "baseline" and r.seed == 2} == {
        "b2/baseline/lr0.1/s2", "b4/baseline/lr0.01/s2"}
    assert RunSpec(4, "tract", 0.01, 2, lam=1.0).run_id == "b4/tract-l1/lr0.01/s2"


def test_single_lr_has_no_grid():
    cfg = CompareConfig(budgets=(2, 4), lrs=(0.08,))
    assert grid_runs(cfg) == []
    assert best_lrs(cfg, {}) == {2: 0.08, 4: 0.08}


# ---------------------------------------------------------------------------------------------- speed-up
CURVE = [(1, 50.0), (2, 60.0), (4, 70.0)]


def test_speedup_exact_interpolation():
    s = match_budget(CURVE, 65.0, 1)
    assert s["kind"] == "interpolated"
    assert s["matched_baseline_epochs"] == 3.0 and s["ratio"] == 3.0 and s["display"] == "3.00x"
    s = match_budget(CURVE, 60.0, 2)  # exactly a measured point
    assert s["matched_baseline_epochs"] == 2.0 and s["ratio"] == 1.0
    s = match_budget(CURVE, 50.0, 1)
    assert s["matched_baseline_epochs"] == 1.0
    assert match_budget(CURVE, 52.5, 1)["matched_baseline_epochs"] == pytest.approx(1.25, abs=1e-12)


def test_speedup_beyond_longest_is_a_lower_bound():
    s = match_budget(CURVE, 75.0, 2)
    assert s["kind"] == "at_least" and s["ratio"] is None and s["matched_baseline_epochs"] is None
    assert s["bound"] == 2.0 and s["display"] == "≥ 2.00x"
    assert "4 epochs" in s["note"]


def test_speedup_below_shortest_is_not_extrapolated():
    s = match_budget(CURVE, 45.0, 2)
    assert s["kind"] == "below" and s["ratio"] is None and s["matched_baseline_epochs"] is None
    assert s["bound"] == 0.5 and s["display"] == "< 0.50x"
    s = match_budget(CURVE, 49.0, 1)
    assert s["display"] == "< 1.00x"


def test_speedup_non_monotone_curve_uses_first_crossing():
    curve = [(1, 50.0), (2, 70.0), (4, 65.0)]
    assert match_budget(curve, 68.0, 1)["matched_baseline_epochs"] == pytest.approx(1.9)
    assert match_budget(curve, 66.0, 4)["matched_baseline_epochs"] == pytest.approx(1.8)
    assert match_budget(curve, 71.0, 1)["kind"] == "at_least"


def _fake(budget, method, lr, seed, top1, lam=None):
    spec = RunSpec(budget, method, lr, seed, lam=lam)
    summary = {"run": spec.to_dict(), "final_top1": top1, "final_top5": top1 + 20, "best_top1": top1,
               "seconds_per_epoch": 1.0, "train_images_per_second": 100.0, "completed": True}
    return RunResult(spec, summary, [{"epoch": budget, "test_top1": top1}])


def test_analyse_mean_std_and_speedup_from_hand_made_runs():
    cfg = CompareConfig(budgets=(1, 2, 4), seeds=(0, 1), lrs=(0.1,), lams=(0.1,), warmup_epochs=0)
    runs = [_fake(b, "baseline", 0.1, s, a + d) for b, a in ((1, 50), (2, 60), (4, 70)) for s, d in ((0, -1), (1, 1))]
    runs += [_fake(b, "tract", 0.1, s, a + d, lam=0.1) for b, a in ((1, 65), (2, 75), (4, 66)) for s, d in ((0, -2), (1, 2))]
    out = analyse(cfg, runs)
    assert out["complete"] and out["missing"] == []
    rows = {(r["label"], r["budget"]): r for r in out["results"]}
    assert rows[("baseline", 2)]["top1"]["mean"] == 60.0
    assert rows[("baseline", 2)]["top1"]["std"] == pytest.approx(math.sqrt(2))
    assert rows[("tract-l0.1", 1)]["top1"]["std"] == pytest.approx(math.sqrt(8))
    sp = {s["tract_budget"]: s for s in out["speedups"]}
    assert sp[1]["ratio"] == 3.0
    assert sp[2]["kind"] == "at_least" and sp[2]["bound"] == 2.0
    assert sp[4]["matched_baseline_epochs"] == pytest.approx(3.2) and sp[4]["ratio"] == pytest.approx(0.8)
    table = format_table(out)
    assert "3.00x" in table and "≥ 2.00x" in table and "0.80x" in table
    # a missing run is listed, not silently averaged away
    partial = analyse(cfg, runs[1:])
    assert not partial["complete"] and "b1/baseline/lr0.1/s0" in partial["missing"]


def test_a_lambda_with_many_digits_finds_its_own_runs():
    lam = 0.1234567  # its label is rounded (tract-l0.123457); the analysis must not parse λ back from it
    cfg = CompareConfig(budgets=(1,), seeds=(0, 1), lrs=(0.1,), lams=(lam,), warmup_epochs=0)
    runs = [_fake(1, "baseline", 0.1, s, 50.0 + s) for s in (0, 1)] + [_fake(1, "tract", 0.1, s, 55.0 + s, lam=lam)
                                                                        for s in (0, 1)]
    out = analyse(cfg, runs)
    assert out["complete"] and out["missing"] == []
    (tract,) = [r for r in out["results"] if r["method"] == "tract"]
    assert tract["lam"] == lam and tract["label"] == "tract-l0.123457" and tract["top1"]["mean"] == 55.5


def test_a_selected_lr_at_the_grids_edge_is_flagged():
    cfg = CompareConfig(budgets=(1, 2), seeds=(0,), lrs=(0.01, 0.1, 1.0), lams=(0.1,), warmup_epochs=0)
    accs = {(1, 0.01): 40, (1, 0.1): 50, (1, 1.0): 45, (2, 0.01): 30, (2, 0.1): 50, (2, 1.0): 60}
    runs = [_fake(b, "baseline", lr, 0, a) for (b, lr), a in accs.items()]
    out = analyse(cfg, runs)
    assert [(r["budget"], r["lr"]) for r in out["best_lr"]] == [(1, 0.1), (2, 1.0)]
    notes = grid_edge_notes(out)
    assert notes == ["2 epochs: the selected lr 1 is the largest of the grid; the baseline's best lr may lie "
                     "outside it"]
    assert notes[0] in format_table(out) and notes[0] in format_markdown(out)
    # one epoch is singular
    accs = {(1, 0.01): 60, (1, 0.1): 50, (1, 1.0): 45}
    out = analyse(CompareConfig(budgets=(1,), seeds=(0,), lrs=(0.01, 0.1, 1.0), lams=(0.1,), warmup_epochs=0),
                  [_fake(b, "baseline", lr, 0, a) for (b, lr), a in accs.items()])
    assert grid_edge_notes(out) == ["1 epoch: the selected lr 0.01 is the smallest of the grid; the baseline's "
                                    "best lr may lie outside it"]


def test_five_classes_or_fewer_have_no_top5_anywhere():
    """Top-5 of 5 classes is 100 % by construction: runs without it give rows and tables without it."""
    cfg = CompareConfig(budgets=(1, 2), seeds=(0,), lrs=(0.1,), lams=(0.1,), warmup_epochs=0)
    runs = [_fake(b, m, 0.1, 0, a, lam=0.1 if m == "tract" else None) for b, m, a in
            ((1, "baseline", 50), (2, "baseline", 60), (1, "tract", 55), (2, "tract", 61))]
    with_top5 = analyse(cfg, runs)
    for r in runs:
        del r.summary["final_top5"]
    out = analyse(cfg, runs)
    assert all("top5" not in r for r in out["results"]) and all("top5" in r for r in with_top5["results"])
    assert [r["top1"] for r in out["results"]] == [r["top1"] for r in with_top5["results"]]
    table, md = format_table(out), format_markdown(out)
    assert "top-5" not in table and "top-5" not in md and "top-5 %" in format_table(with_top5)
    assert "55.00" in table and "| 1 | tract-l0.1 | 0.1 | 1 | 55.00 | 1.0 | 1.50x |" in md


def test_run_summary_without_top5():
    from trainact.harness.train import has_top5, summarize_run

    assert not has_top5(5) and has_top5(6)
    rows = [{"epoch": e, "train_loss": 1.0, "train_acc": 50.0, "test_top1": a, "lr": 0.1, "seconds": 1.0,
             "eval_seconds": 0.1} for e, a in ((1, 40.0), (2, 45.0))]
    summary = summarize_run(RunSpec(2, "baseline", 0.1, 0), rows, images_per_epoch=10, first_layer="conv1")
    assert "final_top5" not in summary and "best_top5" not in summary
    assert summary["final_top1"] == 45.0 and summary["best_epoch"] == 2
    rows = [{**r, "test_top5": t} for r, t in zip(rows, (80.0, 79.0))]
    summary = summarize_run(RunSpec(2, "baseline", 0.1, 0), rows, images_per_epoch=10, first_layer="conv1")
    assert list(summary)[3:7] == ["final_top1", "final_top5", "best_top1", "best_top5"]  # the layout of before
    assert summary["final_top5"] == 79.0 and summary["best_top5"] == 80.0


# ---------------------------------------------------------------------------------------------- output lock
def _write_lock(folder, **info):
    import socket

    from trainact.harness.lock import LOCK_NAME

    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), **info}))
    return folder / LOCK_NAME


@pytest.fixture
def live_pid():
    import subprocess

    proc = subprocess.Popen(["sleep", "30"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_folder_locked_by_a_live_process_is_refused_naming_its_pid(tmp_path, live_pid):
    from trainact.harness.lock import OutDirLock, OutDirLocked

    path = _write_lock(tmp_path / "out", pid=live_pid, command="trainact compare --out out")
    with pytest.raises(OutDirLocked, match=rf"in use by pid {live_pid} on .*\(trainact compare --out out\)"):
        OutDirLock.acquire(tmp_path / "out")
    assert json.loads(path.read_text())["pid"] == live_pid  # left alone


def test_a_lock_left_by_a_dead_process_is_taken_over_and_released(tmp_path, capsys):
    import os
    import subprocess

    from trainact.harness.lock import OutDirLock

    proc = subprocess.Popen(["true"])
    proc.wait()  # its pid no longer runs
    path = _write_lock(tmp_path / "out", pid=proc.pid)
    lock = OutDirLock.acquire(tmp_path / "out")
    err = capsys.readouterr().err
    assert f"taking over the lock of {tmp_path / 'out'}: pid {proc.pid} on " in err and "no longer runs" in err
    info = json.loads(path.read_text())
    assert info["pid"] == os.getpid() and info["command"]
    lock.release()
    assert not path.exists() and (tmp_path / "out").is_dir()  # the folder existed before: it stays


def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path, live_pid):
    from trainact.harness.lock import OutDirLock, process_start_time

    if process_start_time(live_pid) in (None, "1"):
        pytest.skip("no /proc: process start times unavailable")
    path = _write_lock(tmp_path / "out", pid=live_pid, start="1")  # the recorded process started at tick 1
    OutDirLock.acquire(tmp_path / "out").release()
    assert not path.exists()


def test_foreign_hosts_and_garbage_locks_are_refused(tmp_path):
    from trainact.harness.lock import LOCK_NAME, OutDirLock, OutDirLocked

    _write_lock(tmp_path / "a", pid=1, host="elsewhere")
    with pytest.raises(OutDirLocked, match=r"pid 1 on elsewhere.*cannot be checked .*delete .*\.trainact\.lock"):
        OutDirLock.acquire(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / LOCK_NAME).write_text("{not json")
    with pytest.raises(OutDirLocked, match="is not a trainact lock file"):
        OutDirLock.acquire(tmp_path / "b")


def test_a_lock_that_created_the_folder_removes_it_when_nothing_was_written(tmp_path):
    from trainact.harness.lock import OutDirLock

    OutDirLock.acquire(tmp_path / "new").release()
    assert not (tmp_path / "new").exists()
    lock = OutDirLock.acquire(tmp_path / "kept")
    (tmp_path / "kept" / "config.json").write_text("{}")
    lock.release()
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["config.json"]


@dataclass(frozen=True)
class _Rank1(DistEnv):
    """Rank 1 of a two-process job, with rank 0's broadcast answer given."""

    answer: Optional[str] = None
    rank: int = 1
    world_size: int = 2

    def broadcast(self, obj):
        assert obj is None  # rank 1 contributes nothing: only rank 0 takes the lock
        return self.answer

    def barrier(self):
        pass


def test_only_rank_0_takes_the_lock_and_every_rank_hears_its_answer(tmp_path, live_pid, monkeypatch):
    from trainact.harness import compare
    from trainact.harness.lock import OutDirLocked

    out = tmp_path / "out"
    path = _write_lock(out, pid=live_pid)  # the lock of rank 0 of the same job, say
    ran = []
    monkeypatch.setattr(compare, "_run_compare", lambda cfg, **kw: ran.append(kw["dist"].rank) or {"ok": True})
    cfg = tiny_cfg(tmp_path, out=str(out))
    assert compare.run_compare(cfg, dist=_Rank1(answer=None)) == {"ok": True} and ran == [1]  # shares the folder
    assert json.loads(path.read_text())["pid"] == live_pid  # rank 1 neither took nor released it
    with pytest.raises(OutDirLocked, match="in use by pid 4242"):  # rank 0 was refused: so is rank 1
        compare.run_compare(cfg, dist=_Rank1(answer="output folder x is in use by pid 4242"))
    assert ran == [1]


# ---------------------------------------------------------------------------------------------- training
def test_lr_schedules():
    from trainact.harness.train import lr_factor

    cfg = CompareConfig(budgets=(10,), warmup_epochs=0)
    assert lr_factor(0, 5, 10, cfg) == 1.0
    assert lr_factor(25, 5, 10, cfg) == pytest.approx(0.5)
    assert 0 < lr_factor(49, 5, 10, cfg) < 0.001
    warm = CompareConfig(budgets=(10,), warmup_epochs=1.0)
    assert [lr_factor(i, 4, 10, warm) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 10, warm) == 1.0
    ms = CompareConfig(budgets=(200,), schedule="multistep", warmup_epochs=0)
    f = [lr_factor(e * 3, 3, 200, ms) for e in (0, 59, 60, 119, 120, 160, 199)]
    assert f == pytest.approx([1, 1, 0.2, 0.2, 0.04, 0.008, 0.008])


def test_baseline_and_tract_start_from_identical_weights(tiny_data):
    import trainact
    from trainact.harness.train import build_run_model

    cfg = CompareConfig(width=4, synthetic=TINY_DATA)
    x = torch.randn(2, 3, 16, 16)
    base, first = build_run_model(RunSpec(2, "baseline", 0.1, 3), cfg, tiny_data, torch.device("cpu"), x)
    tract, first_t = build_run_model(RunSpec(2, "tract", 0.1, 3, lam=0.1), cfg, tiny_data, torch.device("cpu"), x)
    other, _ = build_run_model(RunSpec(2, "baseline", 0.1, 4), cfg, tiny_data, torch.device("cpu"), x)
    assert first == first_t == "conv1"
    assert trainact.is_tract(tract.get_submodule(first)) and not trainact.is_tract(base.get_submodule(first))
    sa, sb = base.state_dict(), tract.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert not torch.equal(sa["conv1.weight"], other.state_dict()["conv1.weight"])


def _rows(path):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in open(path)]


class Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted_and_finished_runs_are_skipped(tmp_path, tiny_data):
    from trainact.harness.train import run_one

    cfg = tiny_cfg(tmp_path, budgets=(3,), lrs=(0.05,))
    run = RunSpec(3, "tract", 0.05, 0, lam=0.1)
    dev = torch.device("cpu")
    whole = run_one(run, cfg, tiny_data, tmp_path / "a", dev, log=lambda m: None)
    ref = _rows(tmp_path / "a" / run.run_id / "metrics.jsonl")
    assert [r["epoch"] for r in ref] == [1, 2, 3]
    assert whole["completed"] is True and whole["final_top1"] == ref[-1]["test_top1"]
    assert not (tmp_path / "a" / run.run_id / "checkpoint.pt").exists()

    def stop_after_1(epoch, row):
        if epoch == 1:
            raise Interrupt

    run_dir = tmp_path / "b" / run.run_id
    with pytest.raises(Interrupt):
        run_one(run, cfg, tiny_data, tmp_path / "b", dev, on_epoch_end=stop_after_1, log=lambda m: None)
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "summary.json").exists()
    assert _rows(run_dir / "metrics.jsonl") == ref[:1]
    # a crash between the metrics line and the next checkpoint leaves an extra epoch: it must not survive
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({**ref[1], "seconds": 0.0, "eval_seconds": 0.0}) + "\n")
    resumed = run_one(run, cfg, tiny_data, tmp_path / "b", dev, log=lambda m: None)
    assert _rows(run_dir / "metrics.jsonl") == ref  # == on every float: bitwise equal
    for k in ("final_top1", "final_top5", "best_top1", "best_top5", "best_epoch", "epochs"):
        assert resumed[k] == whole[k], k
    assert not (run_dir / "checkpoint.pt").exists()

    # a finished run is skipped: no new epochs, the same summary
    before = (run_dir / "metrics.jsonl").read_text()
    again = run_one(run, cfg, tiny_data, tmp_path / "b", dev, log=lambda m: None)
    assert again == resumed and (run_dir / "metrics.jsonl").read_text() == before


def test_run_summary_is_written_only_at_the_end(tmp_path, tiny_data):
    from trainact.harness.train import run_one

    cfg = tiny_cfg(tmp_path, budgets=(2,))
    run = RunSpec(2, "baseline", 0.05, 0)

    def boom(epoch, row):
        raise Interrupt

    with pytest.raises(Interrupt):
        run_one(run, cfg, tiny_data, tmp_path, torch.device("cpu"), on_epoch_end=boom, log=lambda m: None)
    assert not (tmp_path / run.run_id / "summary.json").exists()
    config = json.loads((tmp_path / run.run_id / "config.json").read_text())
    assert config["run"]["run_id"] == run.run_id and config["environment"]["torch_version"] == torch.__version__
    assert CompareConfig.from_dict(config["config"]) == cfg


def test_the_progress_bar_on_a_terminal_shows_the_epoch_it_is_in(tmp_path, tiny_data, monkeypatch, capsys):
    """The bar's text is drawn only on a terminal, which no other test has: every epoch, its loss and accuracy."""
    import sys

    from trainact.harness.train import run_one

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    run = RunSpec(2, "baseline", 0.05, 0)
    run_one(run, tiny_cfg(tmp_path, budgets=(2,)), tiny_data, tmp_path, torch.device("cpu"), log=lambda m: None)
    bar = capsys.readouterr().err
    assert "epoch=1/2" in bar and "epoch=2/2" in bar and "loss=" in bar and "acc=" in bar


def test_first_layer_sgd_uses_two_optimizers(tiny_data):
    from trainact.harness.train import build_run_model, make_optimizers

    cfg = CompareConfig(width=4, optimizer="adam", first_layer_sgd=True, first_layer_lr=0.05)
    model, first = build_run_model(RunSpec(1, "tract", 0.001, 0, lam=0.1), cfg, tiny_data, torch.device("cpu"),
                                   torch.randn(2, 3, 16, 16))
    main, sgd = make_optimizers(model, first, 0.001, cfg)
    assert isinstance(main, torch.optim.Adam) and isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["params"] == [model.get_submodule(first).weight]
    assert sgd.param_groups[0]["lr"] == 0.05 and sgd.param_groups[0]["momentum"] == 0.9
    n_main = sum(len(g["params"]) for g in main.param_groups)
    assert n_main + 1 == len(list(model.parameters()))


def test_grad_accum_reproduces_the_large_batch_run(tmp_path, tiny_data):
    """--grad-accum 2 on a model without BatchNorm gives the same training as one batch (TrAct deferred)."""
    from trainact.harness.train import run_one

    rows = {}
    for k in (1, 2):
        cfg = tiny_cfg(tmp_path, model="vit", patch_size=8, dim=16, depth=1, heads=2, budgets=(2,), lrs=(0.003,),
                       optimizer="adam", warmup_epochs=0, grad_accum=k, out=str(tmp_path / f"k{k}"))
        run = RunSpec(2, "tract", 0.003, 0, lam=0.1)
        run_one(run, cfg, tiny_data, tmp_path / f"k{k}", torch.device("cpu"), log=lambda m: None)
        rows[k] = _rows(tmp_path / f"k{k}" / run.run_id / "metrics.jsonl")
    for a, b in zip(rows[1], rows[2]):
        assert a["test_top1"] == b["test_top1"]
        # equal up to float summation order (~1e-8); preconditioning each micro-batch alone differs by ~1e-5
        assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=1e-6)


# ---------------------------------------------------------------------------------------------- first-layer init
def _loader_train_images(cfg, data):
    """The training images exactly as the (unaugmented) loader feeds them, in order."""
    from trainact.harness.data import BatchLoader

    loader = BatchLoader(data.train_images, data.train_labels, batch_size=64, train=False, augment=False,
                         mean=data.mean, std=data.std, input_range=cfg.input_range)
    return torch.cat([x for x, _ in loader.epoch(0)])  # (N, C, H, W)


@pytest.mark.parametrize("init", ["whiten", "whiten-frozen"])
def test_whitened_first_layer_is_the_same_for_baseline_and_tract(tiny_data, init):
    import trainact
    from trainact.harness.train import build_run_model
    from trainact.harness.whiten import whiten_

    cfg = CompareConfig(width=4, synthetic=TINY_DATA, first_layer_init=init,
                        methods=("baseline", "tract") if init == "whiten" else ("baseline",))
    x, cpu = torch.randn(2, 3, 16, 16), torch.device("cpu")
    plain, _ = build_run_model(RunSpec(2, "baseline", 0.1, 3), CompareConfig(width=4), tiny_data, cpu, x)
    after_plain = torch.get_rng_state()
    base, first = build_run_model(RunSpec(2, "baseline", 0.1, 3), cfg, tiny_data, cpu, x)
    assert torch.equal(torch.get_rng_state(), after_plain)  # whitening draws nothing from the global RNG
    # oracle: whiten_ on the loader's standardised images (all 160: fewer than the 5000 sampled)
    ref = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    whiten_(ref, _loader_train_images(cfg, tiny_data))
    assert torch.equal(base.get_submodule(first).weight, ref.weight)
    assert base.get_submodule(first).weight.requires_grad == (init == "whiten")
    sa, sp = base.state_dict(), plain.state_dict()  # every other parameter is the default init's
    assert [k for k in sa if not torch.equal(sa[k], sp[k])] == ["conv1.weight"]
    if init == "whiten":
        tract, _ = build_run_model(RunSpec(2, "tract", 0.1, 3, lam=0.1), cfg, tiny_data, cpu, x)
        assert trainact.is_tract(tract.get_submodule(first))
        for k, v in tract.state_dict().items():
            assert torch.equal(v, sa[k]), k


def test_whiten_frozen_trains_only_the_first_layers_bias(tiny_data):
    from trainact.harness.train import make_optimizers
    from trainact.harness.whiten import whiten_first_layer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1, bias=True), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(6 * 16 * 16, 10))
    cfg = CompareConfig(first_layer_init="whiten-frozen", methods=("baseline",))
    whiten_first_layer(model, "0", cfg, tiny_data, seed=0)
    opts = make_optimizers(model, "0", 0.05, cfg)
    assert len(opts) == 1
    params = [p for g in opts[0].param_groups for p in g["params"]]
    assert all(p is not model[0].weight for p in params) and len(params) == 3
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _loader_train_images(cfg, tiny_data)[:32]
    torch.nn.functional.cross_entropy(model(x), tiny_data.train_labels[:32]).backward()
    assert model[0].weight.grad is None
    opts[0].step()
    after = model.state_dict()
    assert torch.equal(after["0.weight"], before["0.weight"])  # frozen (and no weight decay on it)
    for k in ("0.bias", "3.weight", "3.bias"):
        assert not torch.equal(after[k], before[k]), k


def test_whiten_needs_a_convolutional_first_layer(tiny_data):
    from trainact.harness.train import build_run_model

    cfg = CompareConfig(model="vit", patch_size=8, dim=16, depth=1, heads=2, first_layer_init="whiten")
    with pytest.raises(ValueError, match="'whiten' needs a convolution"):
        build_run_model(RunSpec(1, "baseline", 0.1, 0), cfg, tiny_data, torch.device("cpu"), torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize("init", ["default", "whiten", "whiten-frozen"])
def test_tiny_run_with_each_first_layer_init(tmp_path, tiny_data, init):
    """Two epochs: after the first, the checkpoint's first layer is the whitened one (frozen) or has moved
    away from it (trained); the run completes."""
    from trainact.harness.train import build_run_model, run_one

    method = dict(method="baseline") if init == "whiten-frozen" else dict(method="tract", lam=0.1)
    cfg = tiny_cfg(tmp_path, budgets=(2,), first_layer_init=init, methods=("baseline", "tract") if
                   init != "whiten-frozen" else ("baseline",))
    run = RunSpec(2, lr=0.05, seed=0, **method)
    start, first = build_run_model(run, cfg, tiny_data, torch.device("cpu"), torch.randn(2, 3, 16, 16))
    w0 = start.get_submodule(first).weight.detach().clone()
    seen = {}

    def grab(epoch, row):
        if epoch == 1:
            state = torch.load(tmp_path / "out" / run.run_id / "checkpoint.pt", weights_only=True)
            seen["w"] = state["model"][f"{first}.weight"]

    summary = run_one(run, cfg, tiny_data, tmp_path / "out", torch.device("cpu"), on_epoch_end=grab,
                      log=lambda m: None)
    assert summary["completed"] and summary["epochs"] == 2
    assert torch.equal(seen["w"], w0) == (init == "whiten-frozen")
    config = json.loads((tmp_path / "out" / run.run_id / "config.json").read_text())
    assert config["config"]["first_layer_init"] == init


class _RecordingScaler:
    """A GradScaler stand-in (scale 1) that records the order of the calls optimizer_step makes."""

    def __init__(self, calls: list):
        self.calls = calls

    def scale(self, loss):
        self.calls.append("backward")
        return loss

    def unscale_(self, opt):
        self.calls.append("unscale")

    def step(self, opt):
        self.calls.append("step")
        opt.step()

    def update(self):
        self.calls.append("update")


@pytest.mark.parametrize("grad_accum", [1, 4])
def test_optimizer_step_order_and_exactness_without_files(grad_accum, monkeypatch):
    import contextlib

    import trainact
    from trainact.harness.train import Training, optimizer_step

    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                   torch.nn.Linear(4 * 6 * 6, 3)).double()

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g)
    calls = []
    model = net()
    trainact.apply(model, 0.1, layer="0", defer=grad_accum > 1)
    real = trainact.precondition_grads
    monkeypatch.setattr(trainact, "precondition_grads", lambda m: calls.append("precondition") or real(m))
    opt = torch.optim.SGD(model.parameters(), lr=0.4)
    t = Training(model, model, "0", [opt], [[0.4]], _RecordingScaler(calls), torch.nn.CrossEntropyLoss(),
                 contextlib.nullcontext())
    sums = optimizer_step(t, x, y, 0.25, grad_accum)
    assert calls == ["backward"] * grad_accum + (["unscale", "precondition"] if grad_accum > 1 else []) + [
        "step", "update"]
    assert opt.param_groups[0]["lr"] == 0.1  # the schedule's factor applied to the base lr

    ref = net()  # one TrAct step on the whole batch
    trainact.apply(ref, 0.1, layer="0")
    loss = torch.nn.functional.cross_entropy(ref(x), y)
    loss.backward()
    torch.optim.SGD(ref.parameters(), lr=0.1).step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    assert sums[0].item() == pytest.approx(loss.item() * 8, rel=1e-12)  # the loss sum over the batch


@pytest.mark.slow
def test_compile_and_channels_last_train_what_eager_trains(tmp_path, tiny_data):
    """--compile --channels-last: the same data order and metrics as eager within float tolerance, and the
    model really ran compiled (dynamo compiled graphs for it, with TrAct's backward inside, and broke none)."""
    from torch._dynamo.utils import counters

    from trainact.harness.train import compile_counts, run_one

    torch._dynamo.reset()
    counters.clear()
    run = RunSpec(1, "tract", 0.05, 0, lam=0.1)
    dev = torch.device("cpu")
    logs: list = []
    eager = run_one(run, tiny_cfg(tmp_path, budgets=(1,)), tiny_data, tmp_path / "eager", dev, log=lambda m: None)
    assert compile_counts() == (0, 0)
    cfg = tiny_cfg(tmp_path, budgets=(1,), compile=True, channels_last=True)
    fast = run_one(run, cfg, tiny_data, tmp_path / "compiled", dev, log=logs.append)
    graphs, breaks = compile_counts()
    assert graphs >= 1 and breaks == 0, (graphs, dict(counters["graph_break"]))
    assert any("torch.compile:" in m and "0 graph break(s)" in m for m in logs), logs
    assert abs(fast["final_top1"] - eager["final_top1"]) <= 100 / 64 * 2  # at most 2 of 64 test images differ
    a, b = (_rows(tmp_path / d / run.run_id / "metrics.jsonl")[0] for d in ("eager", "compiled"))
    assert abs(a["train_loss"] - b["train_loss"]) < 1e-3 * a["train_loss"]
    saved = json.loads((tmp_path / "compiled" / run.run_id / "config.json").read_text())["config"]
    assert saved["compile"] is True and saved["channels_last"] is True


@pytest.mark.slow
def test_two_jobs_train_what_one_job_trains(tmp_path):
    """--jobs 2: the same runs, bitwise the same metrics as one after the other (one thread each), TrAct at the lr
    the baseline's grid chose, and a rerun skips everything."""
    from trainact.harness.compare import run_compare

    logs: list = []
    kw = dict(budgets=(1, 2), lrs=(0.05, 0.1), seeds=(0,), threads=1)
    run_compare(tiny_cfg(tmp_path, **kw, out=str(tmp_path / "seq")), log=lambda m: None, out=open(os.devnull, "w"))
    run_compare(tiny_cfg(tmp_path, **kw, jobs=2, out=str(tmp_path / "par")), log=logs.append,
                out=open(os.devnull, "w"))
    assert any("2 runs at a time" in m for m in logs)
    seq = sorted(p.relative_to(tmp_path / "seq") for p in (tmp_path / "seq").glob("b*/*/lr*/s*/metrics.jsonl"))
    par = sorted(p.relative_to(tmp_path / "par") for p in (tmp_path / "par").glob("b*/*/lr*/s*/metrics.jsonl"))
    assert seq == par and len(seq) == 6  # 2 budgets x (2 grid lrs + TrAct at the chosen one)
    for rel in seq:
        assert _rows(tmp_path / "seq" / rel) == _rows(tmp_path / "par" / rel), rel
    summary = json.loads((tmp_path / "par" / "summary.json").read_text())
    assert summary["complete"]


def test_no_speed_up_against_a_baseline_at_chance_and_a_closing_sentence():
    """The demo's old failure: a baseline still at chance (10 classes: 10 %) at 4 epochs made TrAct@4 look 1.32x
    faster. That speed-up is withdrawn with its reason; the closing sentence says what was reached, when, and on
    how many seeds."""
    cfg = CompareConfig(budgets=(4, 8), seeds=(0,), lrs=(0.1,), lams=(0.1,), warmup_epochs=0)
    runs = [_fake(4, "baseline", 0.1, 0, 9.0), _fake(8, "baseline", 0.1, 0, 84.5),
            _fake(4, "tract", 0.1, 0, 33.4, lam=0.1), _fake(8, "tract", 0.1, 0, 85.3, lam=0.1)]
    out = analyse(cfg, runs, classes=10)
    sp = {s["tract_budget"]: s for s in out["speedups"]}
    assert sp[4]["kind"] == "baseline_at_chance" and sp[4]["display"] == "n/a" and sp[4]["ratio"] is None
    assert "baseline@4 is at chance (9.00% with chance 10.0%)" in sp[4]["note"]
    assert sp[8]["kind"] == "at_least"  # brackets no chance-level point: kept
    assert out["conclusion"] == ("TrAct (tract-l0.1) reached 33.4% in 4 epochs; the baseline needed 8 epochs (84.5%) "
                                 "(below 3x chance, 30%: baseline@4) — 1 seed: indicative only, run more seeds "
                                 "(--seeds 0,1,2).")
    table = format_table(out)
    assert " n/a" in table and out["conclusion"] in table
    assert analyse(cfg, runs)["speedups"][0]["display"] == "1.32x"  # without the class count: as before


def test_onednn_guard_caps_only_avx2_cpus_with_channels_last_convolutions(monkeypatch):
    """oneDNN's AVX2 1x1 channels-last backward-weights kernel corrupts memory (upstream oneDNN issue 6035):
    `trainact compare --channels-last/--compile` caps oneDNN at AVX on such a CPU, keeps a user's own setting, and
    the cap is recorded in the provenance."""
    from trainact.harness import env

    cpu = torch.device("cpu")
    monkeypatch.delenv(env.ONEDNN_ISA, raising=False)
    for capability in ("AVX512", "DEFAULT"):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert env.onednn_channels_last_guard(cpu, True) is None and env.ONEDNN_ISA not in os.environ
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert env.onednn_channels_last_guard(cpu, False) is None  # no channels-last convolutions: nothing to avoid
    assert env.onednn_channels_last_guard(torch.device("cuda"), True) is None
    assert "onednn_max_cpu_isa" not in env.environment(cpu)
    note = env.onednn_channels_last_guard(cpu, True)
    assert "ONEDNN_MAX_CPU_ISA=AVX" in note and "6035" in note and os.environ[env.ONEDNN_ISA] == "AVX"
    assert env.environment(cpu)["onednn_max_cpu_isa"] == "AVX"
    monkeypatch.setenv(env.ONEDNN_ISA, "AVX2")  # the user's own choice is kept
    assert env.onednn_channels_last_guard(cpu, True) is None and os.environ[env.ONEDNN_ISA] == "AVX2"
