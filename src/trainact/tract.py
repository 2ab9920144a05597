"""The TrAct formula, and nothing else.

For a first layer z = W a + bias with patches A (r rows x n) and output gradient G (r x m), the plain weight gradient
is Gᵀ A; TrAct replaces it by the solution of a ridge regression in the space of the pre-activations (Petersen et
al., NeurIPS 2024, Eq. 10):  grad_W = Gᵀ A (AᵀA / r + λ I)⁻¹.  This module sees, per group, the plain gradient
(g, m_g, n_g), the summed statistics AᵀA (g, n_g, n_g) and r, or for the Woodbury form (r < n) the rows of G and A;
how a layer gives them is ``adapters.py``'s.  The n x n system is always factorised (Cholesky) in float64; the
triangular solves run in the solve dtype ("auto": float64 if any tensor involved is, else float32).  Nothing here
reads a device value on the host except :func:`raise_if_failed`: a failure makes the gradient NaN and shows in a
status tensor.  ``relative=True``: the ridge term is λ · tr(AᵀA/r)/n, invariant to a rescaling of the input (the
paper's λ assumes standardised inputs, §4.5).
"""
from __future__ import annotations

import math
import numbers
from typing import Union

import torch

__all__ = ["precondition", "system", "solve", "solve_woodbury", "raise_if_failed",
           "check_lam", "solve_dtype_of", "resolve_solve_dtype", "TrActNumericalError"]

SolveDtype = Union[str, torch.dtype]  # "auto", torch.float32 or torch.float64


class TrActNumericalError(FloatingPointError):
    """The patch covariance of a TrAct layer is not finite, or cannot be factorised even in float64."""


def check_lam(lam: object, *, where: str = "TrAct") -> float:
    """Validate λ: a real, finite number > 0 (Python, NumPy or a one-element tensor).  Returns it as a float."""
    tensor = isinstance(lam, torch.Tensor) and lam.numel() == 1 and not lam.is_complex()
    if isinstance(lam, bool) or not (isinstance(lam, numbers.Real) or tensor):
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
    trace = diag.sum(-1, keepdim=True) / gram.shape[-1] if relative else None  # (g, 1): λ · tr(AᵀA/r)/n
    diag += lam * torch.where(trace > 0, trace, 1.0) if relative else lam  # a zero input keeps λ: still SPD
    return mat


def solve(grad: torch.Tensor, mat: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(``grad · mat⁻¹`` per group in grad's dtype, its status) for the SPD ``mat`` = AᵀA/r + λI (g, n, n): a float64
    factorisation, two triangular solves in ``dtype``; a failed group's gradient is NaN (a GradScaler skips it)."""
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


def precondition(grad: torch.Tensor, gram: torch.Tensor, rows: int | float | torch.Tensor, lam: float, *,
                 relative: bool = False, solve_dtype: SolveDtype = "auto", name: str = "TrAct layer") -> torch.Tensor:
    """``grad · (gram / rows + λ I)⁻¹`` per group: grad (g, m, n) the plain gradient Gᵀ A, gram (g, n, n) the sum of
    aᵀa over the ``rows`` patch rows.  Raises :class:`TrActNumericalError` on a failure (a host read)."""
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


def solve_dtype_of(value: object, *, where: str = "TrAct") -> SolveDtype:
    """Validate a ``solve_dtype`` option: "auto", torch.float32 or torch.float64 (returned unchanged)."""
    if isinstance(value, str) and value == "auto":
        return value
    if isinstance(value, torch.dtype) and value in (torch.float32, torch.float64):
        return value
    raise ValueError(f"{where}: solve_dtype must be 'auto', torch.float32 or torch.float64, got {value!r}"
                     + ("" if isinstance(value, (str, torch.dtype)) else f" of type {type(value).__name__}"))


def resolve_solve_dtype(option: SolveDtype, *dtypes: torch.dtype) -> torch.dtype:
    """The dtype a solve runs in: an explicit option as given; "auto": float64 if any of ``dtypes`` (a layer's input
    and weight: the same on every rank) is, else float32."""
    if option != "auto":
        return option  # type: ignore[return-value]
    return torch.float64 if torch.float64 in dtypes else torch.float32
