"""The TrAct formula, and nothing else.

For a first layer z = W a + bias with patches A (rows x n) and output gradient G (rows x m), the plain weight
gradient is Gᵀ A.  TrAct replaces it by the solution of a ridge regression in the space of the pre-activations
(Petersen et al., "TrAct", NeurIPS 2024, Eq. 10):

    grad_W = Gᵀ A (AᵀA / r + λ I)⁻¹                       r = rows of A, λ > 0

Everything layer-specific (how to get A for a Linear or a ConvNd, grouping) lives in ``adapters.py``; this module
only sees

* ``grad``:  the plain weight gradient Gᵀ A, laid out per group as (groups, m_g, n_g),
* ``gram``:  the *sum* AᵀA per group, (groups, n_g, n_g), accumulated in the solve dtype, and ``rows`` = r,
* or, for the Woodbury form used when r < n, the output-gradient rows G (groups, r, m_g) and the patches A
  (groups, r, n_g) themselves.

The statistics and the triangular solves run in fp32 or fp64 (``solve_dtype``) whatever the activation dtype; the
symmetric positive definite n x n matrix is always factorised (Cholesky, never an explicit inverse) in float64,
where it cannot fail for λ > 0 unless the input was not finite.  The result is returned in the dtype of ``grad``.
``solve_dtype="auto"`` (the default) is float64 when any of the tensors involved is float64 and float32 otherwise
(:func:`resolve_solve_dtype`), so a float64 model gets a float64-exact gradient and every other precision (fp32,
bf16, fp16, autocast) fp32 statistics.  :func:`solve` never reads a device value on the host: a failure makes the
gradient NaN and is returned as a status tensor, which the layers check off the step's path.

λ semantics: with ``relative=True`` the ridge term is λ · tr(AᵀA / r) / n, i.e. λ times the mean per-feature second
moment of the patches.  This makes the update invariant to a rescaling of the input (x -> c·x): the paper's λ
assumes standardised inputs (paper §4.5), the relative form carries the same meaning to [0, 1] or [0, 255] inputs.
"""
from __future__ import annotations

import math
import numbers
from typing import Union

import torch

__all__ = [
    "precondition", "precondition_woodbury", "system", "solve", "solve_woodbury", "raise_if_failed", "check_lam",
    "solve_dtype_of", "resolve_solve_dtype", "TrActNumericalError",
]

SolveDtype = Union[str, torch.dtype]  # "auto", torch.float32 or torch.float64


class TrActNumericalError(FloatingPointError):
    """The patch covariance of a TrAct layer is not finite, or cannot be factorised even in float64."""


def check_lam(lam: object, *, where: str = "TrAct") -> float:
    """Validate λ: a real, finite number > 0 (Python, NumPy or a one-element tensor).  Returns it as a float."""
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) and not (
        isinstance(lam, torch.Tensor) and lam.numel() == 1 and not lam.is_complex()
    ):
        raise TypeError(f"{where}: lam must be a real number > 0, got {lam!r} of type {type(lam).__name__}")
    value = float(lam)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{where}: lam must be a finite number > 0, got {value!r}")
    return value


def system(gram: torch.Tensor, rows: int | float | torch.Tensor, lam: float, *, relative: bool = False) -> torch.Tensor:
    """AᵀA/r + λ_eff I (g, n, n) in float64 (λ added exactly), from the summed statistics Σ aᵀa (g, n, n) and r
    (r = 0, no rows at all: AᵀA is 0 and the system λI)."""
    mat = gram.to(torch.float64) / (rows.clamp(min=1) if isinstance(rows, torch.Tensor) else max(rows, 1))
    diag = mat.diagonal(dim1=-2, dim2=-1)  # (g, n) view
    if relative:  # λ · tr(AᵀA/r)/n; a zero input keeps λ so that the matrix stays positive definite
        trace = diag.sum(-1, keepdim=True) / gram.shape[-1]  # (g, 1)
        diag += lam * torch.where(trace > 0, trace, 1.0)
    else:
        diag += lam
    return mat


def solve(grad: torch.Tensor, mat: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``grad · mat⁻¹`` per group for the SPD ``mat`` = AᵀA/r + λI (g, n, n), with no host synchronisation.

    The n x n system is always factorised in float64 (small, and for λ > 0 it fails only when AᵀA is not
    finite); the two triangular solves run in ``dtype`` (float32 or float64).  Returns ``(out, status)``:
    ``out`` in grad's dtype; ``status`` (g,) float64, the trace of mat (> 0) where the group was solved, below 0
    where mat was not positive definite, inf/NaN where it was not finite.  A failed group's gradient is NaN, so a bad
    update is never silent (an AMP GradScaler skips the step), and ``status`` can be checked off the step's path.
    """
    mat64 = mat.to(torch.float64)
    chol, info = torch.linalg.cholesky_ex(mat64)  # (g, n, n) L, (g,) 0 where it succeeded
    status = _status(mat64, info)
    chol = chol.add(status.sqrt()[:, None, None], alpha=0).to(dtype)  # + 0 · √status: all NaN where it failed
    # L Lᵀ Xᵀ = Gᵀ: two left triangular solves on the transposed gradient (views); LAPACK/cuBLAS write column-major,
    # so Xᵀ comes out as the row-major X, the layout of the weight (no copy when the gradient is accumulated)
    half = torch.linalg.solve_triangular(chol, grad.to(dtype).mT, upper=False)  # (g, n, m) L⁻¹ Gᵀ
    sol = torch.linalg.solve_triangular(chol.mT, half, upper=True).mT  # (g, m, n) X
    return sol.to(grad.dtype), status


_FAILED = 1e308  # subtracted per failed pivot: a status below 0 marks a matrix that was not positive definite


def _status(mat: torch.Tensor, info: torch.Tensor) -> torch.Tensor:
    """(g,) float64 status of factorising ``mat`` (g, k, k), in two operations: its trace (> 0) where it was
    factorised, below 0 where it was not positive definite, +inf or NaN where it was not finite (the diagonal of
    AᵀA of an input holding inf or NaN is).  ``status.sqrt()`` is NaN for every failure."""
    return mat.diagonal(dim1=-2, dim2=-1).sum(-1).sub(info, alpha=_FAILED)


def raise_if_failed(status: torch.Tensor, name: str, lam: float) -> None:
    """Raise :class:`TrActNumericalError` naming the layer if ``status`` (from :func:`solve`) marks a failure.
    Reads ``status`` on the host: call it where a synchronisation costs nothing (the CPU) or off the step's path."""
    solved = status.isfinite() & (status > 0)
    if bool(solved.all()):
        return
    if not bool((status[~solved] < 0).all()):
        why = "the input patch covariance AᵀA/r is not finite (the layer input contains inf or NaN values)"
    else:
        why = (f"AᵀA/r + λI could not be factorised even in float64 (λ={lam}): λ is below the rounding error of the "
               f"statistics; use a larger λ or solve_dtype=torch.float64")
    raise TrActNumericalError(f"{name}: {why}; this step's gradient of the layer is NaN")


def precondition(
    grad: torch.Tensor,
    gram: torch.Tensor,
    rows: int | float | torch.Tensor,
    lam: float,
    *,
    relative: bool = False,
    solve_dtype: SolveDtype = "auto",
    name: str = "TrAct layer",
) -> torch.Tensor:
    """Return ``grad · (gram / rows + λ I)⁻¹`` per group.

    grad: (g, m, n) plain weight gradient Gᵀ A (any float dtype; inf/NaN in it propagate, which is what an AMP
    GradScaler needs to detect an overflow step).
    gram: (g, n, n) sum of aᵀa over all rows, in ``solve_dtype`` (or any float dtype; it is cast).
    rows: r, the number of patch rows that went into ``gram`` (> 0).
    solve_dtype: "auto" (float64 if ``grad`` or ``gram`` is float64, else float32), torch.float32 or torch.float64:
    the dtype of the triangular solves; the factorisation is always float64.

    Raises :class:`TrActNumericalError` if ``gram`` is not finite (the layer *input* contained inf/NaN) or if the
    matrix cannot be factorised even in float64.  This reads a flag on the host; TrAct layers use the
    synchronisation-free :func:`solve` and report failures later (see ``trainact.check_numerics``).
    """
    solve_dtype = resolve_solve_dtype(solve_dtype_of(solve_dtype, where=name), grad.dtype, gram.dtype)
    g, m, n = grad.shape
    if gram.shape != (g, n, n):
        raise ValueError(f"{name}: gram has shape {tuple(gram.shape)}, expected {(g, n, n)} for grad {tuple(grad.shape)}")
    out, status = solve(grad, system(gram, rows, lam, relative=relative), solve_dtype)
    raise_if_failed(status, name, lam)
    return out


def solve_woodbury(
    out_rows: torch.Tensor, patches: torch.Tensor, lam: float, *, relative: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The TrAct gradient for r < n from the output-gradient rows G (g, r, m) and the patches A (g, r, n), by the
    push-through identity A (AᵀA/r + λI)⁻¹ = (AAᵀ/r + λI)⁻¹ A:

        grad_W = Gᵀ A (AᵀA/r + λI)⁻¹ = r Gᵀ (A Aᵀ + λ r I)⁻¹ A

    An r x r factorisation instead of an n x n one, all in float64 (r < n is small), and no subtraction that a
    small λ would amplify: exact for any λ > 0.  Returns ``(out, status)`` as :func:`solve`, out in A's dtype."""
    g, r, n = patches.shape
    a = patches.to(torch.float64)
    mat = a @ a.mT  # (g, r, r)  A Aᵀ
    trace = mat.diagonal(dim1=-2, dim2=-1).sum(-1)  # (g,)  tr(AAᵀ) = tr(AᵀA)
    ridge = torch.where(trace > 0, trace * (lam / n), lam * r) if relative else torch.full_like(trace, lam * r)
    mat.diagonal(dim1=-2, dim2=-1).add_(ridge[:, None])  # A Aᵀ + λ_eff r I
    chol, info = torch.linalg.cholesky_ex(mat)
    status = _status(mat, info)
    sol = torch.cholesky_solve(out_rows.to(torch.float64), chol)  # (g, r, m)  (AAᵀ + λrI)⁻¹ G
    out = (r * sol.mT @ a).add(status.sqrt()[:, None, None], alpha=0)  # (g, m, n), NaN where not solved
    return out.to(patches.dtype), status


def precondition_woodbury(
    out_rows: torch.Tensor,
    patches: torch.Tensor,
    lam: float,
    *,
    relative: bool = False,
    name: str = "TrAct layer",
) -> torch.Tensor:
    """Same result as :func:`precondition` for r < n, from the output-gradient rows G (g, r, m) and the patches
    A (g, r, n) rather than from Gᵀ A: ``r Gᵀ (A Aᵀ + λ r I)⁻¹ A`` (see :func:`solve_woodbury`), in float64, returned
    in the dtype of ``out_rows``."""
    out, status = solve_woodbury(out_rows, patches, lam, relative=relative)
    raise_if_failed(status, name, lam)
    return out.to(out_rows.dtype)


def solve_dtype_of(value: object, *, where: str = "TrAct") -> SolveDtype:
    """Validate a ``solve_dtype`` option: "auto", torch.float32 or torch.float64 (returned unchanged)."""
    if isinstance(value, str) and value == "auto":
        return value
    if isinstance(value, torch.dtype) and value in (torch.float32, torch.float64):
        return value
    raise ValueError(
        f"{where}: solve_dtype must be 'auto', torch.float32 or torch.float64, got {value!r}"
        + ("" if isinstance(value, (str, torch.dtype)) else f" of type {type(value).__name__}")
    )


def resolve_solve_dtype(option: SolveDtype, *dtypes: torch.dtype) -> torch.dtype:
    """The dtype a solve runs in: an explicit option as given; "auto": float64 if any of ``dtypes`` is, else float32.

    A layer passes the dtypes of its input and of its weight (whose gradient has the weight's dtype): both are the
    same on every rank of a DDP job, so every rank accumulates and all-reduces its statistics in the same dtype.
    """
    if option != "auto":
        return option  # type: ignore[return-value]
    return torch.float64 if torch.float64 in dtypes else torch.float32
