"""What an experiment's registration says it feeds in the report: `experiments.experiment(..., report=(Curve(...),
Whitening(...)))` stores report kinds, each a `Kind` (benchmarks/claims/, one file per kind) that owns its claims,
its BENCHMARKS.md section and its README sentences, computed over every registration of the kind (`entries`, in
registration order) from the collected runs; no kind names an experiment. A new experiment of an existing kind needs
only its registration; a new kind is one file in claims/ and its place in report.KINDS. The items below are not
kinds: they mark what other kinds and the report read. Texts quoted from the paper (`paper=`) name their figure or
table.
"""
from __future__ import annotations

from dataclasses import dataclass


class Kind:
    """A report kind. Every hook takes the collected runs (`src`, claims.core.Source) and the registry, and returns
    nothing where the kind has no registration or no data yet."""

    lasting = False  # its README sentences answer "Does the gain last with longer training?" (one list); else each
    # is a finding of its own
    leads = False  # its README sentences are the short answer that opens the results (then neither of the above)

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        """Rows of the claims table (claims.core.Claim; `titles`: an experiment's heading by name)."""
        return []

    @classmethod
    def section(cls, src, registry: dict) -> list[str]:
        """Lines of BENCHMARKS.md."""
        return []

    @classmethod
    def sentences(cls, src, registry: dict) -> list[str]:
        """Sentences for the README's results."""
        return []


@dataclass(frozen=True)
class Joins:
    """This experiment's runs complete experiment `of`'s comparison (more λ, a longer baseline budget)."""

    of: str


@dataclass(frozen=True)
class ReadmeFigure:
    """One of the experiment's plots, shown in the README's results section."""

    alt: str
    file: str


@dataclass(frozen=True)
class Scale:
    """The collected configuration that the report's note on scale quotes: `role` "resnet" or "vit"."""

    role: str


def entries(registry: dict, kind: type) -> list:
    """[(experiment name, item)] of every item of type `kind` in the registry, in registration order."""
    return [(name, item) for name, e in registry.items() for item in e.get("report", ()) if isinstance(item, kind)]


def members(registry: dict, name: str) -> tuple:
    """`name` and the experiments that join its comparison (`Joins(name)`), in registration order."""
    return (name,) + tuple(n for n, item in entries(registry, Joins) if item.of == name)
