"""TrAct's backward: autograd nodes that give a first layer's weight the TrAct gradient.

    z = conv(x, Precondition(W; x), bias)                  # forward value: exactly conv(x, W, bias)

``Precondition`` is an identity on the weight whose backward turns the plain gradient Gᵀ A, as the layer's own
kernels computed it, into the TrAct gradient: the layer's forward and backward kernels are untouched.  Where that
Gᵀ A is not good enough, a ``Capture`` node on the layer's output makes the TrAct gradient from the output gradient
G and hands it to ``Precondition`` through its second output (the "carrier"): when the layer computes in 16 bits
(its Gᵀ A is rounded to 16 bits, which the ill-conditioned solve would amplify 8-20x: Capture forms it in fp32), and
for the Woodbury form (r < n: ``r Gᵀ (AAᵀ + λrI)⁻¹ A`` needs G).  The backward reads nothing on the host and calls
no Python of the layer: what it needs is fixed at forward in a ``Spec``, its side results (the solve status,
deferred statistics) leave as the gradients of the layer's sinks (``steps.State``), so torch.compile traces it into
the model's backward graph and torch.func.grad runs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from . import patches
from .adapters import Adapter
from .parallel import all_reduce_stats
from .tract import raise_if_failed, solve, solve_woodbury, system

__all__ = ["Spec", "Precondition", "Capture", "tract_gradient"]


@dataclass(frozen=True)
class Spec:
    """What one backward needs, fixed at forward; ``check_now``: raise at once (eager on the CPU, where reading the
    status is free); ``capture``: the output side (Capture) makes the gradient."""

    lam: float
    relative: bool
    woodbury: bool
    defer: bool
    block_bytes: int
    dtype: torch.dtype
    adapter: Adapter
    label: str
    all_reduce: bool
    check_now: bool
    capture: bool


def _functorch() -> bool:
    return torch._C._are_functorch_transforms_active()


def _backward(spec: Spec, x: torch.Tensor, eye, plain=None, grad_out=None):
    """The gradients of the sinks and the weight's: (weight's, status, gram, rows), from the plain gradient
    Gᵀ A or from the output gradient G."""
    # torch.func.grad runs backward with grad mode on (for nested transforms): that is not a double backward
    if torch.is_grad_enabled() and not _functorch():
        raise RuntimeError(f"{spec.label}: double backward (create_graph=True) through a TrAct layer is not "
                           f"supported; the TrAct gradient is a preconditioned first-order gradient")
    with torch.autocast(device_type=x.device.type, enabled=False):
        if spec.defer:  # the plain gradient and the statistics now, preconditioning once per step
            if plain is None:
                plain = spec.adapter.weight_grad(x, grad_out, spec.dtype, spec.block_bytes)
            gram, rows = patches.gram(x, spec.adapter, dtype=spec.dtype, block_bytes=spec.block_bytes)
            return plain, None, gram, torch.full((), rows, dtype=torch.float64, device=x.device)
        new, status = tract_gradient(spec, x, eye, plain=plain, grad_out=grad_out)
    if spec.check_now and not _functorch():
        raise_if_failed(status, spec.label, spec.lam)
    return new, status, None, None


class Precondition(torch.autograd.Function):
    """Identity on the weight (and a carrier: see the module docstring); backward gives the weight the TrAct
    gradient, made here from the layer's own Gᵀ A, or carried from ``Capture``."""

    @staticmethod
    def forward(weight, x, status, gram, rows, eye, spec):  # type: ignore[override]
        return (weight.view_as(weight), torch.empty_like(weight)) if spec.capture else weight.view_as(weight)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        _, x, _, _, _, eye, spec = inputs
        ctx.spec = spec
        ctx.set_materialize_grads(False)
        if not spec.capture:
            ctx.save_for_backward(x, eye)  # the layer's own backward keeps x alive anyway: no extra memory

    @staticmethod
    def backward(ctx, grad: Optional[torch.Tensor], carried: Optional[torch.Tensor] = None):  # type: ignore[override]
        spec: Spec = ctx.spec
        if spec.capture:
            return carried, None, None, None, None, None, None
        x, eye = ctx.saved_tensors
        new, status, gram, rows = _backward(spec, x, eye, plain=grad)
        return new.reshape(grad.shape).to(grad.dtype), None, status, gram, rows, None, None


class Capture(torch.autograd.Function):
    """Identity on the layer output z; backward passes G on to the layer's own backward and returns, as the
    carrier's gradient, the weight's TrAct gradient made from G (or, deferred, its plain gradient)."""

    @staticmethod
    def forward(out, carrier, x, status, gram, rows, eye, spec):  # type: ignore[override]
        return out.view_as(out)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        _, carrier, x, _, _, _, eye, spec = inputs
        ctx.spec, ctx.carrier = spec, (carrier.shape, carrier.dtype)
        ctx.save_for_backward(x, eye)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, eye = ctx.saved_tensors
        new, status, gram, rows = _backward(ctx.spec, x, eye, grad_out=grad)
        shape, dtype = ctx.carrier
        return grad, new.reshape(shape).to(dtype), None, status, gram, rows, None, None


def tract_gradient(spec: Spec, x: torch.Tensor, eye: Optional[torch.Tensor], *, plain=None, grad_out=None):
    """(the TrAct weight gradient (g, m_g, n), its solve status) of one call, from the plain gradient Gᵀ A
    (``plain``, any layout of the weight) or from the output gradient (``grad_out``)."""
    adapter, dtype = spec.adapter, spec.dtype
    g, rows = adapter.groups, adapter.count_rows(x)
    if grad_out is not None and spec.woodbury and 0 < rows < adapter.n and not spec.all_reduce:  # r x r, from G
        return solve_woodbury(adapter.output_rows(grad_out, dtype), patches.patch_matrix(x, adapter, dtype=dtype),
                              spec.lam, relative=spec.relative)
    if plain is None:
        plain = adapter.weight_grad(x, grad_out, dtype, spec.block_bytes)
    plain = plain.reshape(g, -1, adapter.n)  # (g, m_g, n_g)
    if spec.all_reduce or spec.relative:
        gram, rows = patches.gram(x, adapter, dtype=dtype, block_bytes=spec.block_bytes)
        if spec.all_reduce:  # the global batch's covariance: one all-reduce of n² + 1 numbers
            gram, rows = all_reduce_stats(gram, rows)
        return solve(plain, system(gram, rows, spec.lam, relative=spec.relative), dtype)
    if rows == 0:
        return plain, torch.ones(g, dtype=torch.float64, device=x.device)  # nothing to solve: solved
    mat, _ = patches.gram(x, adapter, dtype=dtype, block_bytes=spec.block_bytes, ridge=(spec.lam, eye))  # AᵀA/r + λI
    return solve(plain, mat, dtype)
