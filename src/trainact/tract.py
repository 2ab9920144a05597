"""The TrAct formula, and nothing else.

For a first layer z = W a + bias with patches A (rows x n) and output gradient G (rows x m), the plain weight
gradient is Gᵀ A.  TrAct replaces it by the solution of a ridge regression in the space of the pre-activations
(Petersen et al., "TrAct", NeurIPS 2024, Eq. 10):

    grad_W = Gᵀ A (AᵀA / r + λ I)⁻¹                       r = rows of A, λ > 0

Everything layer-specific (how to get A for a Linear or a ConvNd, grouping) lives in ``patches.py``; this module
only sees

* ``grad``:  the plain weight gradient Gᵀ A, laid out per group as (groups, m_g, n_g),
* ``gram``:  the *sum* AᵀA per group, (groups, n_g, n_g), accumulated in the solve dtype, and ``rows`` = r,
* or, for the Woodbury form used when r < n, the patches themselves, (groups, r, n_g).

The linear algebra always runs in fp32 or fp64 (``solve_dtype``) whatever the activation dtype, uses a Cholesky
factorisation of the symmetric positive definite matrix (never an explicit inverse), and retries in fp64 if the
fp32 factorisation fails.  The result is returned in the dtype of ``grad``.  ``solve_dtype="auto"`` (the default)
is float64 when any of the tensors involved is float64 and float32 otherwise (:func:`resolve_solve_dtype`), so a
float64 model gets a float64-exact gradient and every other precision (fp32, bf16, fp16, autocast) an fp32 solve.

λ semantics: with ``relative=True`` the ridge term is λ · tr(AᵀA / r) / n, i.e. λ times the mean per-feature second
moment of the patches.  This makes the update invariant to a rescaling of the input (x -> c·x): the paper's λ
assumes standardised inputs (paper §4.5), the relative form carries the same meaning to [0, 1] or [0, 255] inputs.
"""
from __future__ import annotations

import math
from typing import Union

import torch

__all__ = [
    "precondition", "precondition_woodbury", "check_lam", "solve_dtype_of", "resolve_solve_dtype", "TrActNumericalError",
]

SolveDtype = Union[str, torch.dtype]  # "auto", torch.float32 or torch.float64


class TrActNumericalError(FloatingPointError):
    """The patch covariance of a TrAct layer is not finite, or cannot be factorised even in float64."""


def check_lam(lam: object, *, where: str = "TrAct") -> float:
    """Validate λ: a real, finite number > 0.  Returns it as a float."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) and not (
        isinstance(lam, torch.Tensor) and lam.numel() == 1 and not lam.is_complex()
    ):
        raise TypeError(f"{where}: lam must be a real number > 0, got {lam!r} of type {type(lam).__name__}")
    value = float(lam)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{where}: lam must be a finite number > 0, got {value!r}")
    return value


def _ridge(trace_over_rows: torch.Tensor, n: int, lam: float, relative: bool) -> torch.Tensor | float:
    """λ_eff per group: λ, or λ · tr(AᵀA / r) / n for the scale-invariant form.  Shape (groups, 1, 1) or float."""
    if not relative:
        return lam
    # A zero input gives tr = 0; fall back to λ itself so the matrix stays positive definite.
    scale = trace_over_rows / n  # (g,)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (lam * scale)[:, None, None]


def _status(*flags: torch.Tensor) -> list[bool]:
    """Read several device flags with a single host synchronisation."""
    return [bool(v) for v in torch.stack([f.reshape(()) for f in flags]).tolist()]


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
    solve_dtype: "auto" (float64 if ``grad`` or ``gram`` is float64, else float32), torch.float32 or torch.float64.

    Raises :class:`TrActNumericalError` if ``gram`` is not finite (the layer *input* contained inf/NaN) or if the
    matrix cannot be factorised even in float64.
    """
    solve_dtype = resolve_solve_dtype(solve_dtype_of(solve_dtype, where=name), grad.dtype, gram.dtype)
    g, m, n = grad.shape
    if gram.shape != (g, n, n):
        raise ValueError(f"{name}: gram has shape {tuple(gram.shape)}, expected {(g, n, n)} for grad {tuple(grad.shape)}")
    out_dtype = grad.dtype
    mat = gram.to(solve_dtype) / rows  # (g, n, n)  AᵀA / r  (a new tensor: gram is left alone)
    diag = mat.diagonal(dim1=-2, dim2=-1)  # (g, n) view
    ridge = _ridge(diag.sum(-1), n, lam, relative)
    finite = torch.isfinite(mat).all()
    diag += ridge if isinstance(ridge, float) else ridge[:, :, 0]  # (g, n, n)  AᵀA/r + λI, SPD for λ > 0
    chol, info = torch.linalg.cholesky_ex(mat)
    nonfinite, failed = _status(~finite, info.ne(0).any())
    if nonfinite:
        cov = gram.to(solve_dtype)
        bad = int((~torch.isfinite(cov)).sum())
        raise TrActNumericalError(
            f"{name}: the input patch covariance AᵀA/r is not finite ({bad} of {cov.numel()} entries are inf/NaN); "
            f"the layer input contains inf or NaN values"
        )
    if failed:
        if solve_dtype == torch.float64:
            raise TrActNumericalError(f"{name}: Cholesky factorisation of AᵀA/r + λI failed in float64 (λ={lam})")
        # fp32 lost positive definiteness (tiny λ against a huge covariance): redo it in float64.
        return precondition(grad, gram.double(), rows, lam, relative=relative, solve_dtype=torch.float64, name=name)
    # X · L Lᵀ = grad: two right-side triangular solves (no transposed copies of grad)
    half = torch.linalg.solve_triangular(chol.mT, grad.to(solve_dtype), upper=True, left=False)  # (g, m, n) X·L
    sol = torch.linalg.solve_triangular(chol, half, upper=False, left=False)  # (g, m, n) X
    return sol.to(out_dtype)


def precondition_woodbury(
    grad: torch.Tensor,
    patches: torch.Tensor,
    lam: float,
    *,
    relative: bool = False,
    solve_dtype: SolveDtype = "auto",
    name: str = "TrAct layer",
) -> torch.Tensor:
    """Same result as :func:`precondition`, via the Woodbury identity, for r < n.

        (AᵀA / r + λ I)⁻¹ = (1/λ) (I − Aᵀ (λ r I + A Aᵀ)⁻¹ A)

    grad: (g, m, n); patches: (g, r, n).  Costs an r x r factorisation instead of an n x n one.
    solve_dtype: "auto" (float64 if ``grad`` or ``patches`` is float64, else float32), torch.float32 or torch.float64.
    """
    solve_dtype = resolve_solve_dtype(solve_dtype_of(solve_dtype, where=name), grad.dtype, patches.dtype)
    g, r, n = patches.shape
    out_dtype = grad.dtype
    a = patches.to(solve_dtype)  # (g, r, n)
    kernel = a @ a.transpose(-1, -2)  # (g, r, r)  A Aᵀ
    trace = kernel.diagonal(dim1=-2, dim2=-1).sum(-1) / r  # tr(AᵀA)/r == tr(AAᵀ)/r
    ridge = _ridge(trace, n, lam, relative)
    eye = torch.eye(r, dtype=solve_dtype, device=a.device)
    mat = kernel + (ridge * r) * eye  # (g, r, r)  λ r I + A Aᵀ
    chol, info = torch.linalg.cholesky_ex(mat)
    nonfinite, failed = _status(~torch.isfinite(kernel).all(), info.ne(0).any())
    if nonfinite:
        raise TrActNumericalError(
            f"{name}: the input patches contain inf or NaN values, so AᵀA/r is not finite"
        )
    if failed:
        if solve_dtype == torch.float64:
            raise TrActNumericalError(f"{name}: Cholesky factorisation of λrI + AAᵀ failed in float64 (λ={lam})")
        return precondition_woodbury(grad, patches, lam, relative=relative, solve_dtype=torch.float64, name=name)
    gw = grad.to(solve_dtype)  # (g, m, n)
    proj = gw @ a.transpose(-1, -2)  # (g, m, r)  Gᵀ A Aᵀ
    proj = torch.cholesky_solve(proj.transpose(-1, -2), chol).transpose(-1, -2)  # (g, m, r)  · (λrI + AAᵀ)⁻¹
    out = (gw - proj @ a) / ridge  # (g, m, n)
    return out.to(out_dtype)


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
