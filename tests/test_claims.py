"""The claims module: paired differences, 95 % t intervals and the three-way verdict, on hand-computed cases."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import experiments, figures, report
from benchmarks.claims import core
from benchmarks.claims.contrast import ContrastCell
from benchmarks.claims.core import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, paired, verdict
from benchmarks.claims.curves import curve_claim, trend_sentence
from benchmarks.claims.lead import Lead
from benchmarks.claims.repro import Repro
from benchmarks.claims.stems import StemCell, stem_kind
from benchmarks.claims.wd_pool import WdPoolCell
from benchmarks.claims.whitening import Whitening
from benchmarks.claims.zoo import Zoo, ZooShort
from benchmarks.collected import Collected

REGISTRY = experiments.EXPERIMENTS


def test_t_table():
    assert core.t95(2) == 4.303 and core.t95(1) == 12.706
    assert core.t95(22) == 2.086  # between rows: the smaller df's value (a wider, conservative interval)
    assert core.t95(10_000) == 1.980
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=repr(bad)):
            core.t95(bad)


def test_paired_differences_mean_se_and_interval_by_hand():
    p = paired({0: 50.0, 1: 52.0, 2: 51.0}, {0: 48.0, 1: 49.0, 2: 50.0})  # diffs 2, 3, 1
    assert p.seeds == (0, 1, 2) and p.diffs == (2.0, 3.0, 1.0)
    assert p.mean == 2.0 and math.isclose(p.se, 1 / math.sqrt(3))  # sample std 1
    lo, hi = p.interval
    assert math.isclose(lo, 2 - 4.303 / math.sqrt(3)) and math.isclose(hi, 2 + 4.303 / math.sqrt(3))
    assert p.side() == 0 and verdict([p]) == INCONCLUSIVE  # +2 points, but [-0.48, +4.48] holds 0
    assert p.text() == "+2.00 [-0.48, +4.48]"


def test_a_clear_effect_is_reproduced_and_its_negative_is_not():
    up = paired({0: 52.0, 1: 52.5, 2: 53.0}, {0: 50.0, 1: 50.0, 2: 50.0})  # diffs 2, 2.5, 3: [+1.26, +3.74]
    assert up.interval[0] > 0 and verdict([up]) == REPRODUCED
    down = paired({0: 50.0, 1: 50.0, 2: 50.0}, {0: 52.0, 1: 52.5, 2: 53.0})
    assert verdict([down]) == NOT_REPRODUCED  # a negative effect
    assert verdict([down], sign=-1) == REPRODUCED  # ... is what a "lower is claimed" verdict wants
    with pytest.raises(ValueError, match="0"):
        verdict([up], sign=0)


def test_a_single_seed_is_always_inconclusive():
    p = paired({0: 60.0}, {0: 50.0})  # +10 points, one seed: no spread, no interval
    assert p.n == 1 and p.se is None and p.interval is None
    assert verdict([p]) == INCONCLUSIVE and "1 seed, no interval" in p.text()


def test_a_tie_is_inconclusive():
    p = paired({0: 50.0, 1: 51.0}, {0: 50.0, 1: 51.0})  # identical: interval [0, 0], not above 0
    assert p.interval == (0.0, 0.0) and verdict([p]) == INCONCLUSIVE


def test_a_missing_run_leaves_its_seed_out_and_says_so():
    p = paired({0: 52.0, 1: 53.0, 2: 54.0}, {0: 50.0, 1: 50.5})
    assert p.seeds == (0, 1) and p.unpaired == (2,) and "seed 2 unpaired" in p.text()
    assert paired({}, {0: 1.0}).text() == "no paired runs" and verdict([]) == INCONCLUSIVE


def test_several_parts_need_every_interval_on_the_claimed_side():
    clear = paired({0: 52.0, 1: 52.5, 2: 53.0}, {0: 50.0, 1: 50.0, 2: 50.0})
    unclear = paired({0: 50.0, 1: 52.0, 2: 51.0}, {0: 48.0, 1: 49.0, 2: 50.0})
    opposite = paired({0: 50.0, 1: 50.0, 2: 50.0}, {0: 52.0, 1: 52.5, 2: 53.0})
    assert verdict([clear, clear]) == REPRODUCED
    assert verdict([clear, unclear]) == INCONCLUSIVE
    assert verdict([clear, opposite]) == NOT_REPRODUCED
    row = core.Claim("c", "p", "m", verdict([clear, unclear]), (clear, unclear)).row()
    assert row[2] == "m (3 seeds)" and row[3] == "inconclusive (1 of 2 intervals above 0, 0 below)"


def test_the_change_of_a_gain_between_budgets_is_paired_per_seed():
    short = paired({0: 51.0, 1: 52.0, 2: 53.0}, {0: 50.0, 1: 50.0, 2: 50.0})  # gains 1, 2, 3
    long = paired({0: 71.0, 1: 70.5, 2: 71.5}, {0: 70.0, 1: 70.0, 2: 70.0})  # gains 1, 0.5, 1.5
    change = core.difference(long, short)
    assert change.diffs == (0.0, -1.5, -1.5) and core.trend(change) == "no clear change"
    fade = core.difference(paired({0: 70.0, 1: 70.0, 2: 70.0}, {0: 70.0, 1: 70.0, 2: 70.0}),
                             paired({0: 53.0, 1: 53.5, 2: 54.0}, {0: 50.0, 1: 50.0, 2: 50.0}))
    assert core.trend(fade) == "fades"  # 3, 3.5, 4 points gained at the short budget, none at the long one


def _zoo_registry(*models) -> dict:
    """A registry of the zoo experiments of `models` (zoo-M and zoo-M-two-thirds), quoting the paper as the real
    registrations do."""
    real = experiments.EXPERIMENTS["zoo-vgg11"]["report"][0]
    registry = {}
    for m in models:
        registry[f"zoo-{m}"] = {"report": (Zoo(m, real.subset, real.paper, real.short_paper),)}
        registry[f"zoo-{m}-two-thirds"] = {"report": (ZooShort(f"zoo-{m}"),)}
    return registry


class FakeSource:
    """{(experiment, budget, label): {seed: top-1}}"""

    def __init__(self, data: dict):
        self.data = data

    def top1(self, name, budget, label, key="final_top1"):
        return self.data.get((name, budget, label), {}) if key == "final_top1" else {}

    def budgets(self, name):
        return sorted({b for n, b, _ in self.data if n == name})

    def lr(self, name, budget, label):
        return 0.1 if (name, budget, label) in self.data else None

    def experiment(self, name):
        return None  # no config.json: the sections say nothing of the machine


def test_curve_claim_and_trend_sentence_from_a_source():
    base = {0: 50.0, 1: 50.0, 2: 50.0}
    src = FakeSource({
        ("e", 1, "baseline"): base, ("e", 1, "tract-l0.1"): {0: 52.0, 1: 52.5, 2: 53.0},
        ("e", 2, "baseline"): {0: 60.0, 1: 60.0, 2: 60.0}, ("e", 2, "tract-l0.1"): {0: 60.0, 1: 60.5, 2: 59.5},
    })
    c = curve_claim(src, "e", "E", "the paper")
    assert c.verdict == INCONCLUSIVE and "1 ep: +2.50 [+1.26, +3.74]" in c.measured
    assert "1@2 ep: -7.50" in c.measured  # TrAct@1 against the baseline at twice the budget
    assert trend_sentence(src, "e", "E").startswith("E: TrAct's gain fades between 1 and 2 epochs")
    assert curve_claim(src, "missing", "M", "p") is None  # nothing collected: no row


def test_trend_sentence_says_where_an_interior_peak_fades():
    base = {0: 50.0, 1: 50.0, 2: 50.0}
    src = FakeSource({  # gains 1, 1, 1 at 1 ep; 4, 4.5, 5 at 2 ep; 1, 1.5, 2 at 4 ep
        ("e", 1, "baseline"): base, ("e", 1, "tract-l0.1"): {0: 51.0, 1: 51.0, 2: 51.0},
        ("e", 2, "baseline"): base, ("e", 2, "tract-l0.1"): {0: 54.0, 1: 54.5, 2: 55.0},
        ("e", 4, "baseline"): base, ("e", 4, "tract-l0.1"): {0: 51.0, 1: 51.5, 2: 52.0},
    })
    s = trend_sentence(src, "e", "E")
    # 1 -> 4: changes 0, 0.5, 1 (mean +0.5, t interval +0.5 ± 4.303 * 0.2887 holds 0); 2 -> 4: -3 on every seed
    assert s.startswith("E: TrAct's gain shows no clear change between 1 and 4 epochs (+1.00 [+1.00, +1.00] → "
                        "+1.50 [+0.26, +2.74] points; change +0.50 [-0.74, +1.74])")
    assert s.endswith("; it is largest at 2 epochs and fades between 2 and 4 epochs (+4.50 [+3.26, +5.74] → "
                      "+1.50 [+0.26, +2.74] points; change -3.00 [-3.00, -3.00]).")
    # the peak at an end of the budgets adds nothing
    assert "largest" not in trend_sentence(FakeSource({k: v for k, v in src.data.items() if k[1] != 2}),
                                                  "e", "E")


def test_trend_sentence_leaves_a_budget_short_of_seeds_out_of_the_trend():
    base = {0: 50.0, 1: 50.0, 2: 50.0}
    src = FakeSource({  # gains 1, 2, 3 at 1 ep; 3, 3, 3 at 2 ep; only seed 0 paired at 4 ep (gain -5)
        ("e", 1, "baseline"): base, ("e", 1, "tract-l0.1"): {0: 51.0, 1: 52.0, 2: 53.0},
        ("e", 2, "baseline"): base, ("e", 2, "tract-l0.1"): {0: 53.0, 1: 53.0, 2: 53.0},
        ("e", 4, "baseline"): base, ("e", 4, "tract-l0.1"): {0: 45.0},
    })
    s = trend_sentence(src, "e", "E")
    # 1 -> 2: changes 2, 1, 0 (mean +1, t interval +1 ± 4.303 * 0.5774 holds 0)
    assert s == ("E: TrAct's gain shows no clear change between 1 and 2 epochs (+2.00 [-0.48, +4.48] → "
                 "+3.00 [+3.00, +3.00] points; change +1.00 [-1.48, +3.48]); at 4 epochs 1 paired seed so far "
                 "(-5.00 (1 seed, no interval) (seeds 1, 2 unpaired, left out)).")
    # a single budget with an interval is no trend
    assert trend_sentence(FakeSource({k: v for k, v in src.data.items() if k[1] != 1}), "e", "E") is None


def test_collected_reads_each_seed_of_the_selected_lr(tmp_path):
    exp = tmp_path / "e"
    result = {"method": "tract", "label": "tract-l0.1", "lam": 0.1, "budget": 2, "lr": 0.08, "seeds": [0, 1]}
    exp.mkdir()
    (exp / "summary.json").write_text(json.dumps({"results": [result]}))
    for seed, acc in ((0, 51.5), (1, 52.25)):
        run = exp / "b2" / "tract-l0.1" / "lr0.08" / f"s{seed}"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"final_top1": acc}))
    src = Collected(str(tmp_path))
    assert src.budgets("e") == [2] and src.top1("e", 2, "tract-l0.1") == {0: 51.5, 1: 52.25}
    assert src.top1("e", 2, "baseline") == {} and src.budgets("absent") == []


def test_the_collected_claims_quote_the_paper_right():
    src = Collected(str(Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "experiments"))
    text = "\n".join(core.markdown(report.all_claims(src, REGISTRY, titles={})))
    assert "λ = 1 recommended" not in text and "recommended" not in text.lower()
    assert "Fig. 3" in text and "Fig. 8" in text and "not the paper's λ" in text


def test_the_reproducibility_section_compares_each_seed_then_and_again():
    then_b, then_t = {0: 50.0, 1: 51.0}, {0: 53.0, 1: 54.0}
    src = FakeSource({("fig3-sgd", 2, "baseline"): then_b, ("fig3-sgd", 2, "tract-l0.1"): then_t,
                      ("repro-fig3-sgd", 2, "baseline"): {0: 51.0, 1: 50.0},
                      ("repro-fig3-sgd", 2, "tract-l0.1"): {0: 54.5, 1: 52.5}})
    text = "\n".join(Repro.section(src, REGISTRY))
    assert "| 0 | 50.00 | 51.00 | 53.00 | 54.50 | +3.00 | +3.50 |" in text
    assert "the largest single change 1.50 points" in text
    assert Repro.section(FakeSource({}), REGISTRY) == []


def test_the_whitening_section_pairs_every_variant_with_the_fig3_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "FIGURES", str(tmp_path))
    three = lambda a, b, c: {0: a, 1: b, 2: c}  # noqa: E731
    src = FakeSource({("fig3-sgd", 2, "baseline"): three(50, 51, 52), ("fig3-sgd", 2, "tract-l0.1"): three(53, 54, 55),
                      ("whiten-frozen-sgd", 2, "baseline"): three(48, 49, 50),
                      ("whiten-sgd", 2, "baseline"): three(52, 52, 52),
                      ("whiten-sgd", 2, "tract-l0.1"): three(54, 55, 56)})
    text = "\n".join(Whitening.section(src, REGISTRY))
    assert "| 2 | 51.00 ± 1.00 (n = 3) | 54.00 ± 1.00 (n = 3) | 49.00 ± 1.00 (n = 3) |" in text
    assert "TrAct − whitened, frozen: +5.00 [+5.00, +5.00]" in text  # the same +5 for every seed
    assert "whitened + TrAct − TrAct: +1.00 [+1.00, +1.00]" in text
    assert (tmp_path / "whitening.png").is_file()
    rows = Whitening.claims(src, REGISTRY)
    assert len(rows) == 5 and all(r.claim.startswith("not in the paper") for r in rows)
    # no claim to reproduce: the verdict names the better variant where the interval excludes 0
    assert [r.verdict for r in rows] == ["TrAct better", "no clear difference", "whitened + TrAct better",
                                         "whitened + TrAct better", "baseline better"]
    (sentence,) = Whitening.sentences(src, REGISTRY)
    assert report.findings(src, REGISTRY) == [f"- {sentence}", ""]  # the README's bullet, then a blank line
    assert sentence.startswith("Not in the paper")
    assert sentence.endswith("at 2 epochs TrAct − whitened, frozen +5.00 [+5.00, +5.00], TrAct − whitened, trained "
                             "+2.00 [-0.48, +4.48], whitened + TrAct − TrAct +1.00 [+1.00, +1.00] (clear: TrAct over "
                             "whitened, frozen, whitened + TrAct over TrAct).")
    assert Whitening.sentences(FakeSource({}), REGISTRY) == []
    assert Whitening.section(FakeSource({}), REGISTRY) == []


def test_the_zoo_section_and_claims_count_wins_and_the_two_thirds_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "FIGURES", str(tmp_path))
    three = lambda a, b, c: {0: a, 1: b, 2: c}  # noqa: E731
    src = FakeSource({("zoo-a", 9, "baseline"): three(50, 51, 52), ("zoo-a", 9, "tract-l0.1"): three(52, 53, 54),
                      ("zoo-a-two-thirds", 6, "tract-l0.1"): three(50, 51, 52),
                      ("zoo-b", 9, "baseline"): three(60, 60, 60), ("zoo-b", 9, "tract-l0.1"): three(59, 60, 58)})
    text = "\n".join(Zoo.section(src, _zoo_registry("a", "b")))
    assert "| a | 9 | 0.1 | 51.00 ± 1.00 | 53.00 ± 1.00 | +2.00 [+2.00, +2.00] | — | +0.00 [+0.00, +0.00] (6 ep) |" in text
    assert "| b | 9 | 0.1 | 60.00 ± 0.00 | 59.00 ± 1.00 | -1.00 [" in text
    assert (tmp_path / "zoo.png").is_file() and "![zoo](benchmarks/results/figures/zoo.png)" in text
    first, short = Zoo.claims(src, _zoo_registry("a", "b", "absent"))
    # the verdict takes the models' mean gains (+2, -1) as the sample: +0.50 ± 12.706 * 1.5
    assert "TrAct better on 1/2 (top-1); mean top-1 gain +0.50 [-18.56, +19.56] points over the models" in first.measured
    assert first.verdict == "inconclusive"
    assert first.row()[3] == "inconclusive (1 of 2 intervals above 0, 0 below)"  # b: -1, 0, -2 holds 0
    one, _ = Zoo.claims(src, _zoo_registry("a"))
    assert "mean top-1 gain +2.00 (1 model, no interval)" in one.measured and one.verdict == "inconclusive"
    up = FakeSource({("zoo-a", 9, "baseline"): three(50, 51, 52), ("zoo-a", 9, "tract-l0.1"): three(52, 53, 54),
                     ("zoo-b", 9, "baseline"): three(60, 60, 60), ("zoo-b", 9, "tract-l0.1"): three(62, 63, 61)})
    assert Zoo.claims(up, _zoo_registry("a", "b"))[0].verdict == "reproduced"  # gains +2, +2: interval [+2, +2]
    assert "33/36" in first.paper and short.measured.endswith("mean over 1 model: +0.00 (1 model, no interval) points")
    assert Zoo.section(FakeSource({}), REGISTRY) == []
    # the 2/3 row's verdict, too, takes the models' means as the sample: a is 0 at 2/3, b's interval lies below 0
    # (-3, -2.5, -2), yet over the two models (0, -2.5) the interval holds 0
    src.data[("zoo-b-two-thirds", 6, "tract-l0.1")] = three(57, 57.5, 58)
    short = Zoo.claims(src, _zoo_registry("a", "b"))[1]
    assert "mean over 2 models: -1.25 [-17.13, +14.63] points" in short.measured
    assert short.row()[3] == "inconclusive (0 of 2 intervals above 0, 1 below)"


def test_the_zoo_sentence_counts_wins_and_intervals_and_names_models_under_twice_chance():
    three = lambda a, b, c: {0: a, 1: b, 2: c}  # noqa: E731
    src = FakeSource({("zoo-a", 9, "baseline"): three(50, 51, 52), ("zoo-a", 9, "tract-l0.1"): three(52, 53, 54),
                      ("zoo-a-two-thirds", 6, "tract-l0.1"): three(50, 51, 55),
                      ("zoo-b", 9, "baseline"): three(15, 16, 17), ("zoo-b", 9, "tract-l0.1"): three(14, 15, 16)})
    (text,) = Zoo.sentences(src, _zoo_registry("a", "b", "c"))
    assert report.findings(src, _zoo_registry("a", "b", "c")) == [f"- {text}", ""]  # a bullet, then a blank line
    assert "2 of the 3 models so far" in text and "9 epochs" in text
    assert "TrAct better on 1/2 models (top-1; 1 with the 95 % t interval above 0, 1 below)" in text
    assert "mean top-1 gain +0.50 [-18.56, +19.56] points" in text and "33/36, +0.49" in text
    assert "+1.00 (1 model, no interval) points on average over 1 model " in text
    assert text.endswith("under twice chance (20 %), so their gain says little: b.")
    assert Zoo.sentences(FakeSource({}), REGISTRY) == []


def test_titles_and_curve_rows_name_the_cifar_protocol():
    ours, authors = experiments.OUR_VARIANT_LONG, experiments.AUTHORS_PROTOCOL_LONG
    assert ours == "our CIFAR variant: no max-pool, weight decay 5e-4"
    assert authors == "authors' protocol: max-pool stem, no weight decay"
    for name in ("fig3-sgd", "fig3-adam", "gpu-resnet18"):
        title = experiments.EXPERIMENTS[name]["title"]
        assert ours in title and "authors" not in title
    for name in ("fig3-sgd-authors", "fig3-sgd-authors-32", "fig3-adam-authors"):
        assert authors in experiments.EXPERIMENTS[name]["title"]
    three = lambda a, b, c: {0: a, 1: b, 2: c}  # noqa: E731
    src = FakeSource({("fig3-sgd-authors", 16, "baseline"): three(70, 70, 70),
                      ("fig3-sgd-authors", 16, "tract-l0.1"): three(72, 72.5, 73),
                      ("fig3-sgd-authors-32", 32, "baseline"): three(71, 71, 71),
                      ("fig3-sgd-authors-32", 32, "tract-l0.1"): three(71, 71.5, 72),
                      ("fig3-adam-authors", 1, "baseline"): three(40, 40, 40),
                      ("fig3-adam-authors", 1, "tract-l0.1"): three(41, 41, 41)})
    titles = {"fig3-sgd-authors": "SGD, authors", "fig3-adam-authors": "Adam, authors"}
    sgd, adam = report.all_claims(src, REGISTRY, titles=titles)
    assert (sgd.claim, sgd.paper, adam.claim, adam.paper) == ("SGD, authors", experiments.FIG3_SGD,
                                                              "Adam, authors", experiments.FIG3_ADAM)
    # gains 2, 2.5, 3 at 16 ep and 0, 0.5, 1 at 32 ep; TrAct@16 − baseline@32 (the 32-epoch experiment's): 1, 1.5, 2
    assert "16 ep: +2.50 [+1.26, +3.74]; 32 ep: +0.50 [-0.74, +1.74]." in sgd.measured
    assert "TrAct (λ = 0.1)@B − baseline@kB: 16@32 ep: +1.50 [+0.26, +2.74]." in sgd.measured
    assert adam.row()[2].endswith("λ = 0.1: 1 ep: +1.00 [+1.00, +1.00]. (3 seeds)") and adam.verdict == REPRODUCED
    assert report.all_claims(FakeSource({}), REGISTRY, titles=titles) == []


def _wd_pool_source(cells: dict) -> FakeSource:
    """{(pool, wd): (baseline@4, TrAct@4, baseline@16, TrAct@16)}, each a tuple of seed 0, 1, 2's top-1."""
    data = {}
    for (pool, wd), runs in cells.items():
        keys = ((4, "baseline"), (4, "tract-l0.1"), (16, "baseline"), (16, "tract-l0.1"))
        for (budget, label), acc in zip(keys, runs):
            data[(f"wd-pool-{pool}-wd{wd}", budget, label)] = dict(enumerate(acc))
    return FakeSource(data)


WD_POOL = {  # TrAct − baseline per seed: 4 ep / 16 ep / change
    ("maxpool", "0"): ((50,) * 3, (53, 54, 55), (70,) * 3, (72, 72.5, 73)),  # 3, 4, 5 / 2, 2.5, 3 / -1, -1.5, -2
    ("maxpool", "5e-4"): ((52,) * 3, (53, 53.5, 54), (75,) * 3, (75, 75.5, 76)),  # 1, 1.5, 2 / 0, 0.5, 1 / -1, -1, -1
    ("nopool", "0"): ((48,) * 3, (50, 51, 52), (68,) * 3, (69,) * 3),  # 2, 3, 4 / 1, 1, 1 / -1, -2, -3
    ("nopool", "5e-4"): ((51,) * 3, (52,) * 3, (74,) * 3, (74, 74.5, 75)),  # 1, 1, 1 / 0, 0.5, 1 / -1, -0.5, 0
}


def test_the_weight_decay_pool_claims_pair_every_difference_by_seed():
    rows = {r.claim: r for r in WdPoolCell.claims(_wd_pool_source(WD_POOL), REGISTRY)}
    assert len(rows) == 4 + 4 + 4
    setting = "(ResNet, SGD lr 0.08, λ = 0.1)"
    cell = rows[f"weight decay × max-pool: max-pool stem, no weight decay (authors' protocol) {setting}"]
    # gains 3, 4, 5 (± 4.303 / √3) and 2, 2.5, 3; their change -1, -1.5, -2 lies below 0
    assert cell.measured == ("TrAct − baseline, points [95 % CI]: 4 ep: +4.00 [+1.52, +6.48]; 16 ep: +2.50 "
                             "[+1.26, +3.74]; change from 4 to 16 ep: -1.50 [-2.74, -0.26] (the gain fades)")
    assert cell.verdict == REPRODUCED and cell.paper == experiments.FIG3_SGD_LR and len(cell.parts) == 2
    # weight decay's effect with the max-pool, per seed: 4 ep (3 − 1, 4 − 1.5, 5 − 2) = 2, 2.5, 3;
    # 16 ep (2 − 0, 2.5 − 0.5, 3 − 1) = 2, 2, 2; change (−1 − −1, −1.5 − −1, −2 − −1) = 0, −0.5, −1
    wd = rows[f"not in the paper: weight decay's effect on TrAct's gain, max-pool stem {setting}"]
    assert wd.measured == ("gain without − gain with weight decay, points [95 % CI]: 4 ep: +2.50 [+1.26, +3.74]; "
                           "16 ep: +2.00 [+2.00, +2.00]; change from 4 to 16 ep: -0.50 [-1.74, +0.74]")
    assert wd.row()[3] == ("4 ep: larger without weight decay, 16 ep: larger without weight decay, change: no clear "
                           "difference (2 of 3 intervals above 0, 0 below)")
    # the max-pool's effect without weight decay: 4 ep (3 − 2, 4 − 3, 5 − 4) = 1, 1, 1; 16 ep 1, 1.5, 2
    pool = rows[f"not in the paper: the max-pool's effect on TrAct's gain, no weight decay {setting}"]
    assert "4 ep: +1.00 [+1.00, +1.00]; 16 ep: +1.50 [+0.26, +2.74]; change from 4 to 16 ep: +0.50 [-0.74, +1.74]" \
        in pool.measured
    # TrAct without weight decay − the baseline with it (max-pool): 4 ep 1, 2, 3; 16 ep −3, −2.5, −2
    user = rows[f"not in the paper: TrAct without weight decay vs baseline with weight decay, max-pool stem {setting}"]
    assert user.measured.endswith("4 ep: +2.00 [-0.48, +4.48]; 16 ep: -2.50 [-3.74, -1.26]")
    assert user.verdict == "4 ep: no clear difference, 16 ep: baseline with weight decay better"
    own = rows[f"not in the paper: TrAct with weight decay vs TrAct without weight decay, max-pool stem {setting}"]
    assert own.measured.endswith("4 ep: -0.50 [-1.74, +0.74]; 16 ep: +3.00 [+3.00, +3.00]")  # 0, −.5, −1 / 3, 3, 3
    # a cell with one budget only: its gain, no change, and no effect on the change
    partial = {k: v[:2] for k, v in WD_POOL.items() if k[0] == "maxpool"}
    rows = WdPoolCell.claims(_wd_pool_source(partial), REGISTRY)
    assert [r.claim.split(" (")[0] for r in rows] == [
        "weight decay × max-pool: max-pool stem, no weight decay", "weight decay × max-pool: max-pool stem, weight "
        "decay 5e-4", "not in the paper: weight decay's effect on TrAct's gain, max-pool stem",
        "not in the paper: TrAct without weight decay vs baseline with weight decay, max-pool stem",
        "not in the paper: TrAct with weight decay vs TrAct without weight decay, max-pool stem"]
    assert "change" not in rows[2].measured and rows[2].measured.endswith("4 ep: +2.50 [+1.26, +3.74]")
    assert WdPoolCell.claims(FakeSource({}), REGISTRY) == []


def test_the_weight_decay_pool_sentence_waits_for_two_seeds_in_every_cell():
    (s,) = WdPoolCell.sentences(_wd_pool_source(WD_POOL), REGISTRY)
    assert s == ("Not in the paper — weight decay × max-pool (ResNet, SGD lr 0.08, λ = 0.1; points [95 % t interval], "
                 "paired per seed): weight decay changes TrAct's gain, not clearly its change from 4 to 16 epochs "
                 "(TrAct's gain without − with weight decay: with the max-pool 4 ep +2.50 [+1.26, +3.74], 16 ep +2.00 "
                 "[+2.00, +2.00], change -0.50 [-1.74, +0.74]; without the max-pool 4 ep +2.00 [-0.48, +4.48], 16 ep "
                 "+0.50 [-0.74, +1.74], change -1.50 [-5.23, +2.23]); the max-pool changes TrAct's gain, not clearly "
                 "its change from 4 to 16 epochs (TrAct's gain with − without the max-pool: without weight decay "
                 "4 ep +1.00 [+1.00, +1.00], 16 ep +1.50 [+0.26, +2.74], change +0.50 [-0.74, +1.74]; with weight "
                 "decay 5e-4 4 ep +0.50 [-0.74, +1.74], 16 ep +0.00 [+0.00, +0.00], change -0.50 [-1.74, +0.74]).")
    same = _wd_pool_source({k: WD_POOL[("maxpool", "0")] for k in WD_POOL})  # every cell alike: no effect at all
    assert WdPoolCell.sentences(same, REGISTRY)[0].count(
        "changes neither TrAct's gain nor its change from 4 to 16 epochs clearly") == 2
    missing_cell = {k: v for k, v in WD_POOL.items() if k != ("nopool", "0")}
    missing_budget = {**WD_POOL, ("nopool", "0"): WD_POOL[("nopool", "0")][:2]}
    one_seed = _wd_pool_source(WD_POOL)
    one_seed.data[("wd-pool-maxpool-wd5e-4", 16, "tract-l0.1")] = {0: 75.0}
    for src in (_wd_pool_source(missing_cell), _wd_pool_source(missing_budget), one_seed, FakeSource({})):
        assert WdPoolCell.sentences(src, REGISTRY) == []


def test_the_trend_sentences_say_which_protocol_each_used():
    three = lambda a, b, c: {0: a, 1: b, 2: c}  # noqa: E731
    base, gains = three(50, 50, 50), three(52, 52.5, 53)
    src = _wd_pool_source(WD_POOL)
    for name, budget in (("fig3-sgd", 1), ("fig3-sgd", 2), ("fig3-sgd-authors", 16), ("fig3-sgd-authors-32", 32),
                         ("fig3-adam-authors", 1), ("fig3-adam-authors", 2)):
        src.data[(name, budget, "baseline")], src.data[(name, budget, "tract-l0.1")] = base, gains
    lines = report.trend_sentences(src, REGISTRY)
    bullets = [line for line in lines if line.startswith("- ")]
    assert [b.split(": TrAct's gain")[0] for b in bullets[:3]] == [
        "- ResNet, SGD (our CIFAR variant: no max-pool, weight decay 5e-4)",
        "- ResNet, SGD (authors' protocol: max-pool stem, no weight decay)",
        "- ResNet, Adam (authors' protocol: max-pool stem, no weight decay)"]
    assert "between 16 and 32 epochs" in bullets[1]  # the 32-epoch budget comes from fig3-sgd-authors-32
    assert bullets[3].startswith("- Not in the paper — weight decay × max-pool") and len(bullets) == 4
    assert report.trend_sentences(FakeSource({}), REGISTRY) == []


def test_the_paper_protocol_rows_compare_tract_at_100_with_the_baseline_at_200():
    """paper-fig3-sgd's row: TrAct@100 against the baseline at 100 and (paper-fig3-sgd-200) at 200 epochs; with one
    seed so far it says so and stays inconclusive."""
    src = FakeSource({("paper-fig3-sgd", 100, "baseline"): {0: 90.0}, ("paper-fig3-sgd", 100, "tract-l0.1"): {0: 91.0},
                      ("paper-fig3-sgd-200", 200, "baseline"): {0: 91.5}})
    (row,) = report.all_claims(src, REGISTRY, titles={"paper-fig3-sgd": "paper SGD"})
    assert row.claim == "paper SGD" and row.paper == experiments.FIG3_SGD and row.verdict == INCONCLUSIVE
    assert "100 ep: +1.00 (1 seed, no interval)" in row.measured and "100@200 ep: -0.50" in row.measured


# ----------------------------------------------------------------------------------------------------
# the stem ablation and the contrast sweep: against the no-weight-decay cells of WD_POOL (max-pool 16 ep gains
# 2, 2.5, 3; no pool 1, 1, 1)


def _with_gains(src: FakeSource, name: str, gains: dict) -> FakeSource:
    """`src` plus experiment `name`'s runs: {budget: TrAct − baseline of seeds 0, 1, 2} over a baseline of 60."""
    for budget, diffs in gains.items():
        src.data[(name, budget, "baseline")] = dict(enumerate((60.0,) * 3))
        src.data[(name, budget, "tract-l0.1")] = dict(enumerate(60.0 + d for d in diffs))
    return src


def _stems(s2_16: tuple, avg_16: tuple) -> FakeSource:
    """The wd-pool cells, and the two new stems with these 16-epoch gains (4 ep: 3, 4, 5 for both)."""
    src = _with_gains(_wd_pool_source(WD_POOL), "pool-s2", {4: (3, 4, 5), 16: s2_16})
    return _with_gains(src, "pool-avg", {4: (3, 4, 5), 16: avg_16})


def test_stem_kind_says_how_a_new_stem_stands_between_the_references():
    assert [stem_kind(vs_max, vs_none) for vs_max, vs_none in
            ((0, 1), (1, 1), (-1, 0), (-1, -1), (-1, 1), (0, 0), (1, 0), (0, -1))] == [
        "keeps", "keeps", "loses", "loses", "between", "unclear", "neither", "neither"]


def test_the_stem_claims_pair_each_new_stem_with_both_references():
    rows = {r.claim: r for r in StemCell.claims(_stems((2, 2.5, 3), (1, 1, 1)), REGISTRY)}
    setting = "(ResNet-18, no weight decay, SGD lr 0.08, λ = 0.1)"
    assert len(rows) == 2 + 4
    s2 = rows[f"stem ablation: the stride-2 stem {setting}"]
    assert s2.measured == "TrAct − baseline, points [95 % CI]: 4 ep: +4.00 [+1.52, +6.48]; 16 ep: +2.50 [+1.26, +3.74]"
    assert s2.verdict == REPRODUCED and s2.paper == experiments.FIG3_SGD_LR
    # 16 ep, per seed: 2 − 2, 2.5 − 2.5, 3 − 3 against the max-pool; 2 − 1, 2.5 − 1, 3 − 1 against no pool
    vs_max = rows[f"not in the paper: TrAct's gain with the stride-2 stem vs with the max-pool stem {setting}"]
    assert vs_max.measured == ("gain with the stride-2 stem − gain with the max-pool stem, points [95 % CI]: 4 ep: "
                               "+0.00 [+0.00, +0.00]; 16 ep: +0.00 [+0.00, +0.00]")
    assert vs_max.verdict == "4 ep: no clear difference, 16 ep: no clear difference"
    vs_none = rows[f"not in the paper: TrAct's gain with the stride-2 stem vs with no pool {setting}"]
    assert vs_none.measured.endswith("4 ep: +1.00 [+1.00, +1.00]; 16 ep: +1.50 [+0.26, +2.74]")  # 4 ep: 3−2, 4−3, 5−4
    assert vs_none.verdict == "4 ep: larger with the stride-2 stem, 16 ep: larger with the stride-2 stem"
    avg = rows[f"not in the paper: TrAct's gain with the 2x2 average pool vs with the max-pool stem {setting}"]
    assert avg.row()[3].startswith("4 ep: no clear difference, 16 ep: larger with the max-pool stem")  # -1, -1.5, -2
    assert StemCell.claims(_wd_pool_source(WD_POOL), REGISTRY) == []  # the new stems not run yet: no rows


def test_the_stem_sentence_states_the_rule_the_intervals_support():
    head = ("Not in the paper — what of the max-pool keeps TrAct's gain (ResNet-18, no weight decay, SGD lr 0.08, "
            "λ = 0.1; TrAct − baseline at 16 epochs, points [95 % t interval], paired per seed): ")
    refs = "; the max-pool stem +2.50 [+1.26, +3.74]; no pool +1.00 [+1.00, +1.00])."
    # both new stems as the max-pool (16 ep 2, 2.5, 3 and 2.5, 2.5, 3.5): the resolution is what matters
    (s,) = StemCell.sentences(_stems((2, 2.5, 3), (2.5, 2.5, 3.5)), REGISTRY)
    assert s == head + (
        "the stride-2 stem and the 2x2 average pool keep it as the max-pool stem does (clearly above no pool, not "
        "clearly below the max-pool stem), so the resolution after the stem is what keeps it, not the max (the "
        "stride-2 stem +2.50 [+1.26, +3.74], − the max-pool stem +0.00 [+0.00, +0.00], − no pool +1.50 [+0.26, "
        "+2.74]; the 2x2 average pool +2.83 [+1.40, +4.27], − the max-pool stem +0.33 [-0.38, +1.05], − no pool "
        "+1.83 [+0.40, +3.27]" + refs)
    # both as no pool (1, 1, 1 and 0.5, 1, 1): the max's routing
    (s,) = StemCell.sentences(_stems((1, 1, 1), (0.5, 1, 1)), REGISTRY)
    assert s.startswith(head + "the stride-2 stem and the 2x2 average pool lose it as with no pool (clearly below "
                        "the max-pool stem, not clearly above no pool), so the max's sparse gradient routing is what "
                        "keeps it, not the resolution (the stride-2 stem +1.00 [+1.00, +1.00], − the max-pool stem "
                        "-1.50 [-2.74, -0.26], − no pool +0.00 [+0.00, +0.00]; ") and s.endswith(refs)
    # one each way, and one wide: what the data show, stem by stem
    assert StemCell.sentences(_stems((2, 2.5, 3), (1, 1, 1)), REGISTRY)[0].startswith(
        head + "neither rule fits alone: the stride-2 stem keeps it as the max-pool stem does, the 2x2 average pool "
        "loses it as with no pool (")
    assert StemCell.sentences(_stems((2, 2.5, 3), (0, 2, 4)), REGISTRY)[0].startswith(
        head + "the data do not decide between the resolution and the max's gradient routing: the stride-2 stem keeps "
        "it as the max-pool stem does, the 2x2 average pool is not clearly different from either (")
    # both wide: one clause for the two
    assert StemCell.sentences(_stems((0, 2, 4), (0, 2.5, 5)), REGISTRY)[0].startswith(
        head + "the data do not decide between the resolution and the max's gradient routing: neither the stride-2 "
        "stem nor the 2x2 average pool is clearly different from the max-pool stem or from no pool (")
    # before every stem has 2 paired seeds at both budgets there is no sentence, and the README's list has none
    one_seed = _stems((2, 2.5, 3), (1, 1, 1))
    one_seed.data[("pool-avg", 16, "tract-l0.1")] = {0: 61.0}
    for src in (one_seed, _wd_pool_source(WD_POOL), FakeSource({})):
        assert StemCell.sentences(src, REGISTRY) == []
    assert not any("what of the max-pool" in line for line in report.trend_sentences(one_seed, REGISTRY))


def _contrast(c03: dict, c01: dict) -> FakeSource:
    """c = 1: the wd-pool max-pool cell without weight decay (gains 3, 4, 5 at 4 ep; 2, 2.5, 3 at 16 ep)."""
    return _with_gains(_with_gains(_wd_pool_source(WD_POOL), "contrast-0.3", c03), "contrast-0.1", c01)


def test_the_contrast_claims_pair_each_spread_with_the_images_as_they_are():
    rows = ContrastCell.claims(_contrast({4: (4, 5, 6), 16: (3, 3.5, 4)}, {4: (5, 6, 7), 16: (1, 1.5, 2)}), REGISTRY)
    setting = "(the authors' ResNet-18, no weight decay, SGD lr 0.08, λ = 0.1)"
    assert [r.claim for r in rows] == [
        f"contrast spread c = 0.3 {setting}", f"contrast spread c = 0.1 {setting}",
        f"not in the paper: TrAct's gain at contrast spread c = 0.3 vs c = 1 {setting}",
        f"not in the paper: TrAct's gain at contrast spread c = 0.1 vs c = 1 {setting}"]
    assert rows[0].measured.endswith("4 ep: +5.00 [+2.52, +7.48]; 16 ep: +3.50 [+2.26, +4.74]")
    assert rows[0].verdict == REPRODUCED and rows[0].paper == experiments.FIG3_SGD_LR
    # c = 0.1 − c = 1, per seed: 4 ep 5 − 3, 6 − 4, 7 − 5 = 2, 2, 2; 16 ep 1 − 2, 1.5 − 2.5, 2 − 3 = -1, -1, -1
    assert rows[3].measured == ("gain at c = 0.1 − gain at c = 1, points [95 % CI]: 4 ep: +2.00 [+2.00, +2.00]; "
                                "16 ep: -1.00 [-1.00, -1.00]")
    assert rows[3].verdict == "4 ep: larger at c = 0.1, as predicted, 16 ep: smaller at c = 0.1, against the prediction"
    assert "predicts a larger gain at smaller c" in rows[3].paper
    assert ContrastCell.claims(_wd_pool_source(WD_POOL), REGISTRY) == []  # c = 1 alone: no rows


def test_the_contrast_sentence_says_whether_the_gain_grows_as_contrast_varies_more(tmp_path, monkeypatch):
    grows = _contrast({4: (4, 5, 6), 16: (3, 3.5, 4)}, {4: (5, 6, 7), 16: (3, 4, 5)})
    (sentence,) = ContrastCell.sentences(grows, REGISTRY)
    assert report.findings(grows, REGISTRY) == [f"- {sentence}", ""]  # the README's bullet, then a blank line
    assert sentence == (
        "Not in the paper — training images of varied contrast (the authors' ResNet-18, no weight decay, SGD lr 0.08, "
        "λ = 0.1; each training image's contrast scaled around its mean brightness by its own log-uniform factor in "
        "[c, 1]; points [95 % t interval], paired per seed): TrAct's gain at 4 epochs c = 1 +4.00 [+1.52, +6.48], "
        "c = 0.3 +5.00 [+2.52, +7.48], c = 0.1 +6.00 [+3.52, +8.48]; at 16 epochs c = 1 +2.50 [+1.26, +3.74], "
        "c = 0.3 +3.50 [+2.26, +4.74], c = 0.1 +4.00 [+1.52, +6.48]; from c = 1 to c = 0.1 it grows at 4 epochs "
        "(change +2.00 [+2.00, +2.00]) and grows at 16 epochs (change +1.50 [+0.26, +2.74]): as the paper's argument "
        "predicts.")
    fades = _contrast({4: (4, 5, 6), 16: (3, 3.5, 4)}, {4: (5, 6, 7), 16: (1, 1.5, 2)})
    assert ContrastCell.sentences(fades, REGISTRY)[0].endswith(
        "fades at 16 epochs (change -1.00 [-1.00, -1.00]): against the paper's argument, which predicts it to grow.")
    same = _contrast({4: (3, 4, 5), 16: (2, 2.5, 3)}, {4: (3, 4, 5), 16: (2, 2.5, 3)})
    assert ContrastCell.sentences(same, REGISTRY)[0].endswith(
        "the paper's argument predicts growth, which these runs do not show clearly.")
    assert ContrastCell.sentences(_contrast({4: (4, 5, 6)}, {}), REGISTRY) == []  # not every c and budget yet
    # the section: every c, the change from c = 1, the plot; a c not yet collected says how to train it
    monkeypatch.setattr(figures, "FIGURES", str(tmp_path))
    text = "\n".join(ContrastCell.section(grows, REGISTRY))
    assert "| 0.1 | 16 | 3 | 60.00 ± 0.00 | 64.00 ± 1.00 | +4.00 [+1.52, +6.48] |" in text
    assert "- c = 0.1: 4 ep +2.00 [+2.00, +2.00]; 16 ep +1.50 [+0.26, +2.74]" in text
    assert (tmp_path / "contrast.png").is_file()
    waiting = "\n".join(ContrastCell.section(_wd_pool_source(WD_POOL), REGISTRY))
    assert "| 0.3 | — | 0 | not yet run: `python -m benchmarks.experiments run contrast-0.3` | | |" in waiting
    assert "contrast.png" not in waiting


def test_the_stem_section_shows_every_stem_and_the_paired_differences(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "FIGURES", str(tmp_path))
    text = "\n".join(StemCell.section(_stems((2, 2.5, 3), (1, 1, 1)), REGISTRY))
    assert "| the stride-2 stem | 16 | 3 | 60.00 ± 0.00 | 62.50 ± 0.50 | +2.50 [+1.26, +3.74] |" in text
    assert "- the 2x2 average pool − no pool: 4 ep +1.00 [+1.00, +1.00]; 16 ep +0.00 [+0.00, +0.00]" in text
    assert (tmp_path / "stems.png").is_file()
    waiting = "\n".join(StemCell.section(_wd_pool_source(WD_POOL), REGISTRY))
    assert "| the 2x2 average pool | — | 0 | not yet run: `python -m benchmarks.experiments run pool-avg` | | |" in waiting
    assert "stems.png" not in waiting and "| the max-pool stem | 16 | 3 |" in waiting


# ----------------------------------------------------------------------------------------------------
# the README's short answer (claims/lead.py): made-up gains on every experiment registered with a Lead


def _lead(seeds_32: int = 3, stems: bool = False, contrast: bool = False) -> FakeSource:
    """TrAct − baseline per seed (over a baseline of 60) on the lead's experiments; the 32-epoch budget with its
    first `seeds_32` of 8 registered seeds; the stem ablation and the contrast sweep (on WD_POOL) when asked."""
    src = _stems((2, 2.5, 3), (2.5, 2.5, 3.5)) if stems else _wd_pool_source(WD_POOL)  # no pool at 16 ep: 1, 1, 1
    _with_gains(src, "fig3-sgd", {1: (1, 2, 3), 2: (3, 3.5, 4)})
    _with_gains(src, "fig3-sgd-authors", {1: (2, 2.5, 3), 2: (2, 2.5, 3), 16: (2, 2.5, 3)})
    if seeds_32:
        diffs = (0, 0.5, 1, 0.5, 0, 1, 0.5, 0.5)[:seeds_32]
        src.data[("fig3-sgd-authors-32", 32, "baseline")] = dict(enumerate((60.0,) * seeds_32))
        src.data[("fig3-sgd-authors-32", 32, "tract-l0.1")] = dict(enumerate(60.0 + d for d in diffs))
    _with_gains(src, "fig3-adam", {1: (-1, 0, 1.5), 8: (-1, 0, 0.4)})
    _with_gains(src, "fig3-adam-authors", {1: (-1, 0, 1), 16: (-0.5, 0.5, 1)})
    _with_gains(src, "fig4-vit", {1: (-0.5, 0, 0.5), 4: (1, 1.5, 2), 8: (2, 2.5, 3), 32: (-0.5, 0, 0.5)})
    if contrast:
        _with_gains(src, "contrast-0.3", {4: (4, 5, 6), 16: (3, 3.5, 4)})
        _with_gains(src, "contrast-0.1", {4: (5, 6, 7), 16: (3, 4, 5)})
    return src


LEAD_SHORT = (  # fig3-sgd: 1, 2, 3 (holds 0) and 3, 3.5, 4; the authors': 2, 2.5, 3 at both budgets
    "**Short training with SGD** (CIFAR ResNet, λ = 0.1): in our CIFAR variant ahead but not clearly at 1 epoch (+2.00 "
    "[-0.48, +4.48]) and clearly ahead at 2 epochs (+3.50 [+2.26, +4.74]); in the authors' protocol clearly ahead at 1 "
    "and 2 epochs (+2.50 [+1.26, +3.74], +2.50 [+1.26, +3.74]); 3 paired seeds each.")
LEAD_NONE = (
    "**Adam and the ViT** (λ = 0.1): with Adam in our CIFAR variant no clear difference at any budget from 1 to 8 epochs "
    "(at 8: -0.20 [-1.99, +1.59]); with Adam in the authors' protocol no clear difference at any budget from 1 to 16 "
    "epochs (at 16: +0.33 [-1.56, +2.23]); in the ViT clearly ahead at 4 and 8 epochs (largest at 8: +2.50 [+1.26, "
    "+3.74]), no clear difference at 1 and 32 epochs (at 32: +0.00 [-1.24, +1.24]); 3 paired seeds each.")
LEAD_GPU = ("**Not known here**: the paper's regime (100–800 epochs on all 50 000 CIFAR training images), which needs "
            "a GPU and was not run")


def test_the_lead_answers_in_five_lines_each_with_its_intervals_and_seeds():
    lines = Lead.sentences(_lead(seeds_32=8, stems=True, contrast=True), REGISTRY)
    assert len(lines) == 5 and lines[0] == LEAD_SHORT and lines[3] == LEAD_NONE
    # 32 ep, 8 seeds: 0, .5, 1, .5, 0, 1, .5, .5 (sd 0.378, t(7) 2.365), 2 less than at 16 ep on the 3 seeds both
    # have; no pool − the max-pool at 16 ep: -1, -1.5, -2
    assert lines[1] == (
        "**Longer training with SGD** (CIFAR ResNet, lr 0.08, no weight decay, λ = 0.1): with the authors' max-pool stem "
        "clearly ahead at 16 and 32 epochs (+2.50 [+1.26, +3.74], +0.50 [+0.18, +0.82]), change per seed from 16 to 32 "
        "epochs -2.00 [-2.00, -2.00] (seeds 3, 4, 5, 6, 7 unpaired, left out); without the max-pool clearly "
        "ahead at 16 epochs (+1.00 [+1.00, +1.00]), clearly below the gain with the authors' max-pool stem (-1.50 "
        "[-2.74, -0.26] per seed); 3–8 paired seeds.")
    assert lines[2] == (
        "**Not in the paper** (CIFAR ResNet, SGD lr 0.08, no weight decay, λ = 0.1): what of the max-pool keeps TrAct's "
        "gain at 16 epochs: the stride-2 stem and the 2x2 average pool keep it as the max-pool stem does (clearly "
        "above no pool, not clearly below the max-pool stem), so the resolution after the stem is what keeps it, not "
        "the max (the stride-2 stem +2.50 [+1.26, +3.74]; the 2x2 average pool +2.83 [+1.40, +4.27]); with training "
        "images of varied contrast, from c = 1 to c = 0.1 TrAct's gain grows at 4 epochs (change +2.00 [+2.00, "
        "+2.00]) and grows at 16 epochs (change +1.50 [+0.26, +2.74]): as the paper's argument predicts; 3 paired "
        "seeds each.")
    assert lines[4] == LEAD_GPU + "."  # nothing left to train on the CPU
    # the README: the short answer first, under the line that says how to read it, then the rest as before
    src = _lead(seeds_32=8, stems=True, contrast=True)
    block = report.readme_block(src, REGISTRY)
    start = block.index("## What we found") + 2
    assert block[start].startswith("In short (TrAct against the baseline: final test top-1, points, mean [95 % t "
                                   "interval] over paired seeds; \"clearly\" where the interval excludes 0)")
    assert block[start + 2:start + 8] == [f"- {line}" for line in lines] + [""]
    assert not any(line in "\n".join(report.findings(src, REGISTRY) + report.trend_sentences(src, REGISTRY))
                   for line in lines)


def test_the_lead_says_what_is_not_yet_run_and_which_budgets_have_fewer_seeds():
    lines = Lead.sentences(_lead(seeds_32=3), REGISTRY)
    assert len(lines) == 4 and lines[0] == LEAD_SHORT and lines[2] == LEAD_NONE  # no stem or contrast line yet
    assert ("with the authors' max-pool stem clearly ahead at 16 epochs (+2.50 [+1.26, +3.74]) and ahead but not "
            "clearly at 32 epochs (+0.50 [-0.74, +1.74], 3 of the 8 registered seeds so far), change per seed from 16 "
            "to 32 epochs -2.00 [-2.00, -2.00];") in lines[1]
    assert lines[3] == LEAD_GPU + (
        "; still to be trained: 5 more seeds of the 32-epoch runs with the authors' max-pool stem, which part of the "
        "max-pool stem keeps the gain and whether training images of varied contrast enlarge it (`python -m "
        "benchmarks.experiments run fig3-sgd-authors-32 pool-s2 pool-avg contrast-0.3 contrast-0.1`).")
    # no 32-epoch run at all: the line quotes 16 epochs only, and the last one names the 32-epoch runs
    none_32 = Lead.sentences(_lead(seeds_32=0), REGISTRY)
    assert "max-pool stem clearly ahead at 16 epochs (+2.50 [+1.26, +3.74]); without" in none_32[1]
    assert "still to be trained: the 32-epoch runs with the authors' max-pool stem, which" in none_32[3]
    # one new stem finished: only the other is still to be trained
    src = _with_gains(_lead(seeds_32=8, contrast=True), "pool-s2", {4: (3, 4, 5), 16: (2, 2.5, 3)})
    assert Lead.sentences(src, REGISTRY)[-1] == LEAD_GPU + (
        "; still to be trained: which part of the max-pool stem keeps the gain (`python -m benchmarks.experiments run "
        "pool-avg`).")
    # the contrast sweep finished, the stems not: its finding alone, and the stems still to be trained
    contrast_only = Lead.sentences(_lead(seeds_32=8, contrast=True), REGISTRY)
    assert contrast_only[2].startswith("**Not in the paper** (CIFAR ResNet, SGD lr 0.08, no weight decay, λ = 0.1): "
                                       "with training images of varied contrast, from c = 1 to c = 0.1 TrAct's gain "
                                       "grows at 4 epochs")
    assert contrast_only[-1].endswith("still to be trained: which part of the max-pool stem keeps the gain (`python -m "
                                      "benchmarks.experiments run pool-s2 pool-avg`).")
    # the paper's protocol collected: its line takes the place of "not known", and the rest is still to be trained
    _with_gains(src, "paper-fig3-sgd", {100: (1, 1.5, 2)})
    assert Lead.sentences(src, REGISTRY)[-1] == (
        "**The paper's protocols on a GPU** (all of CIFAR-10): with the authors' ResNet-18 and SGD clearly ahead at 100 "
        "epochs (+1.50 [+0.26, +2.74]); 3 paired seeds; still to be trained: the 100-epoch runs with ViT-CIFAR and "
        "Adam and which part of the max-pool stem keeps the gain (`python -m benchmarks.experiments run paper-fig4-vit "
        "pool-avg`).")
    # nothing collected: no short answer, and the README's section starts as before
    assert Lead.sentences(FakeSource({}), REGISTRY) == [] and report.lead_sentences(FakeSource({}), REGISTRY) == []
    with pytest.raises(ValueError, match="'longest'"):
        Lead("longest")
