"""The paper's claims, checked against the collected runs with paired statistics.

Baseline and TrAct runs of one seed share the initial weights and the data order, so every comparison here is
*paired*: per seed, the difference of the two final test top-1 accuracies; then their mean, its standard error
(sample std / √n) and a two-sided 95 % t interval with n − 1 degrees of freedom.

A claim's verdict comes from its intervals alone:
  *reproduced*      every part's interval lies entirely on the claimed side of 0,
  *not reproduced*  some part's interval lies entirely on the other side,
  *inconclusive*    otherwise; a part with fewer than 2 seeds has no interval and is always inconclusive.
A "part" is one comparison a claim makes (one budget of "TrAct better at every budget", one λ of a sweep).

Which claims are checked comes from the experiments' registrations (benchmarks/evidence.py): `all_claims` runs
each claim kind over the registry, in the order of the paper; the quotes are the registrations' (from
../shared/PAPER-NUMBERS.md, figure or table named). Everything else is computed from the JSON under
benchmarks/results/experiments/ by `Collected`, or from any object with the same methods.
"""
from __future__ import annotations

from typing import Optional

from .ablations import (
    WHITENING_COLUMNS, ablation_claims, first_layer_sgd_claims, whitening_claims, whitening_comparisons,
    whitening_setting, whitening_variants,
)
from .core import (
    INCONCLUSIVE, NOT_REPRODUCED, PAPER_LAMS, REPRODUCED, T95, TREND_VERB, Claim, Collected, Paired, Source,
    across_models, difference, markdown, paired, t95, trend, verdict,
)
from .contrast import (
    CONTRAST_PREDICTION, CONTRAST_SETTING, contrast_cells, contrast_changes, contrast_claims, contrast_gains,
)
from .curves import (
    curve_claim, curve_claims, lam_one_claims, lam_sweep_claims, lam_trend_claims, longer_baseline,
    tract_vs_baseline, trend_sentence, trend_sentences,
)
from .wd_pool import (
    WD_POOL_BUDGETS, WD_POOL_SETTING, weight_decay_pool_claims, weight_decay_pool_effects, weight_decay_pool_gains,
    wd_pool_cells,
)
from .stems import (
    BETWEEN, KEEPS, LOSES, MAXPOOL, NEITHER, NOPOOL, STEM_SETTING, UNCLEAR, new_stems, stem_cells, stem_claims,
    stem_differences, stem_gains, stem_kind, stem_rule,
)
from .zoo import zoo_claims, zoo_comparisons, zoo_models

# the claim kinds, in the order of the paper; each takes (source, registry, titles) and returns claim rows
CLAIM_KINDS = (curve_claims, lam_sweep_claims, lam_trend_claims, lam_one_claims, ablation_claims,
               first_layer_sgd_claims, weight_decay_pool_claims, stem_claims, contrast_claims, whitening_claims,
               zoo_claims)


def all_claims(src: Source, *, titles: dict, registry: Optional[dict] = None) -> list:
    """Every claim row that the collected runs support, in the order of the paper (`titles`: the heading of each
    experiment's row, by name; the name where it has none)."""
    from .. import experiments

    registry = experiments.EXPERIMENTS if registry is None else registry
    rows = [row for kind in CLAIM_KINDS for row in kind(src, registry, titles)]
    return [r for r in rows if r is not None]


__all__ = [
    "BETWEEN", "CLAIM_KINDS", "CONTRAST_PREDICTION", "CONTRAST_SETTING", "INCONCLUSIVE", "KEEPS", "LOSES", "MAXPOOL", "NEITHER", "NOPOOL",
    "NOT_REPRODUCED",
    "PAPER_LAMS", "REPRODUCED", "STEM_SETTING", "T95", "TREND_VERB", "UNCLEAR", "WD_POOL_BUDGETS", "WD_POOL_SETTING",
    "WHITENING_COLUMNS", "Claim", "Collected", "Paired", "Source", "ablation_claims", "across_models", "all_claims",
    "contrast_cells", "contrast_changes", "contrast_claims", "contrast_gains", "curve_claim", "curve_claims",
    "difference", "first_layer_sgd_claims", "lam_one_claims", "lam_sweep_claims", "lam_trend_claims",
    "longer_baseline", "markdown", "new_stems", "paired", "stem_cells", "stem_claims", "stem_differences",
    "stem_gains", "stem_kind", "stem_rule", "t95", "tract_vs_baseline", "trend", "trend_sentence", "trend_sentences", "verdict",
    "wd_pool_cells", "weight_decay_pool_claims", "weight_decay_pool_effects", "weight_decay_pool_gains",
    "whitening_claims", "whitening_comparisons", "whitening_setting", "whitening_variants", "zoo_claims",
    "zoo_comparisons", "zoo_models",
]
