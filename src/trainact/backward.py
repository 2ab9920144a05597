"""TrAct's backward: an identity on the weight whose backward turns the plain weight gradient into the TrAct one.

    z = conv(x, Precondition(W; x), bias)      # forward value: exactly conv(x, W, bias)

The layer's own forward and backward kernels (cuDNN, oneDNN, autocast casts, bias and input gradients) are
untouched.  The backward reads nothing on the host and calls no Python of the layer: what it needs is fixed at
forward in a `Spec`, and its side results (the solve status, deferred statistics) leave as the gradients of the
layer's `Sinks`, so torch.compile traces it into the model's backward graph and torch.func.grad can run it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from . import distributed, patches
from .adapters import Adapter
from .tract import raise_if_failed, solve, solve_woodbury, system

__all__ = ["Spec", "Sinks", "Precondition"]


@dataclass(frozen=True)
class Spec:
    """What one backward needs, fixed at forward: the options, the call's geometry, the solve dtype, and whether
    statistics are all-reduced (several ranks) or the status is checked at once (eager on the CPU, where it is free)."""

    lam: float
    relative: bool
    woodbury: bool
    defer: bool
    block_bytes: Optional[int]
    dtype: torch.dtype
    geo: Adapter
    label: str
    all_reduce: bool
    check_now: bool


class Sinks:
    """Per-layer leaves that receive a backward's side results as their *gradients*, accumulated by autograd with no
    host read and traceable by torch.compile: ``status`` (g,) the solve status of every per-step backward since the
    last check (finite: solved), ``gram`` (g, n, n) and ``rows`` () the deferred statistics.  ``eye``: the identity
    for the ridge, made once."""

    def __init__(self, layer, device: torch.device, dtype: torch.dtype, old: Optional["Sinks"] = None):
        geo = layer.tract_geometry
        g, n = geo.groups, geo.n
        self.device, self.dtype = device, dtype
        leaf = dict(device=device, requires_grad=True)
        self.status = torch.zeros(g, dtype=torch.float64, **leaf)
        self.eye = torch.eye(n, dtype=dtype, device=device)
        self.gram = torch.zeros(g, n, n, dtype=dtype, **leaf) if layer.tract.defer else None
        self.rows = torch.zeros((), dtype=torch.float64, **leaf) if layer.tract.defer else None
        self.inflight: list = []  # (host copy of a status, CUDA event) not yet read
        if old is not None:  # carry what the old sinks hold (a move to another device, a wider dtype)
            for name in ("status", "gram", "rows"):
                new, prev = getattr(self, name), getattr(old, name)
                if new is not None and prev is not None and prev.grad is not None:
                    new.grad = prev.grad.to(device=device, dtype=new.dtype)
            self.inflight = old.inflight


class Precondition(torch.autograd.Function):
    """Identity on the weight; backward turns the plain weight gradient into the TrAct gradient.  Its side results
    leave as the gradients of the sinks (see Sinks), so backward reads nothing on the host."""

    @staticmethod
    def forward(weight, x, status, gram, rows, eye, spec):  # type: ignore[override]
        return weight.view_as(weight)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        _, x, _, _, _, eye, spec = inputs
        ctx.spec = spec
        ctx.save_for_backward(x, eye)  # the layer's own backward keeps x alive anyway: no extra memory

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        spec: Spec = ctx.spec
        # torch.func.grad runs backward with grad mode on (for nested transforms): that is not a double backward
        if torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active():
            raise RuntimeError(
                f"{spec.label}: double backward (create_graph=True) through a TrAct layer is not supported; "
                f"the TrAct gradient is a preconditioned first-order gradient"
            )
        x, eye = ctx.saved_tensors
        with torch.autocast(device_type=x.device.type, enabled=False):
            if spec.defer:  # statistics now, preconditioning once per step (precondition_grads)
                gram, rows = patches.gram(x, spec.geo, dtype=spec.dtype, block_bytes=spec.block_bytes)
                rows_t = torch.full((), rows, dtype=torch.float64, device=x.device)
                return grad, None, None, gram, rows_t, None, None
            new, status = _tract_gradient(grad, x, eye, spec)
        if spec.check_now and not torch._C._are_functorch_transforms_active():
            raise_if_failed(status, spec.label, spec.lam)
        return new, None, status, None, None, None, None


def _tract_gradient(grad: torch.Tensor, x: torch.Tensor, eye: torch.Tensor, spec: Spec):
    """(the TrAct weight gradient, its solve status) from the plain gradient and the layer input."""
    geo = spec.geo
    g = geo.groups
    rows = geo.count_rows(x)
    grad3 = grad.reshape(g, grad.shape[0] // g, geo.n)  # (g, m_g, n_g)
    if spec.all_reduce:  # the global batch's covariance: one all-reduce of n² + 1 numbers
        gram, rows = patches.gram(x, geo, dtype=spec.dtype, block_bytes=spec.block_bytes)
        gram, rows = distributed.all_reduce_stats(gram, rows)
        out, status = solve(grad3, system(gram, rows, spec.lam, relative=spec.relative), spec.dtype)
    elif rows == 0:
        return grad, torch.zeros(g, dtype=torch.float64, device=grad.device)
    elif spec.woodbury and rows < geo.n:
        a = patches.patch_matrix(x, geo, dtype=spec.dtype)  # (g, r, n_g)
        out, status = solve_woodbury(grad3, a, spec.lam, relative=spec.relative)
    elif spec.relative:
        gram, rows = patches.gram(x, geo, dtype=spec.dtype, block_bytes=spec.block_bytes)
        out, status = solve(grad3, system(gram, rows, spec.lam, relative=True), spec.dtype)
    else:  # AᵀA/r + λI formed inside the Gram GEMMs
        mat, _ = patches.gram(x, geo, dtype=spec.dtype, block_bytes=spec.block_bytes, ridge=(spec.lam, eye))
        out, status = solve(grad3, mat, spec.dtype)
    return out.reshape(grad.shape), status
