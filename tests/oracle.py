"""Independent oracles for the TrAct gradient, all in float64.

* ``ridge_oracle``: the paper's Eq. 4 solved literally: take the step Z* = Z − η r G on the pre-activations and
  find the weight change that best reaches it, min ‖Z* − A(W+ΔW)ᵀ‖² + λ r ‖ΔW‖², by least squares
  (``torch.linalg.lstsq``) on the stacked system [A; √(λr) I].  TrAct's gradient is −ΔW*/η.
  Patches come from the layer's *own* convolution run with one-hot kernels, so padding modes, 'same', dilation
  and groups are whatever PyTorch does — not a re-implementation of trainact's unfolding.
* ``substitution_grad``: the paper's second formulation for a Linear layer,
  ``z = embed(x @ inv(xᵀx/b + λI)); z.data = embed(x)``.
"""
from __future__ import annotations

import torch
from torch import nn


def conv_patches(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(g, r, n_g) patch rows of a ConvNd, via the layer's own conv with one-hot kernels, in float64."""
    g = conv.groups
    cg = conv.in_channels // g
    k = tuple(conv.kernel_size)
    n = cg * int(torch.Size(k).numel())
    eye = torch.eye(n, dtype=torch.float64).reshape(n, cg, *k)  # (n, Cg, *k): output j picks patch element j
    weight = eye.repeat(g, *([1] * (1 + len(k))))  # (g*n, Cg, *k): same one-hot set for every group
    xd = x.detach().to(torch.float64)
    if xd.dim() == len(k) + 1:
        xd = xd.unsqueeze(0)
    out = conv._conv_forward(xd, weight, None)  # (B, g*n, *out)
    out = out.flatten(2).transpose(1, 2)  # (B, L, g*n)
    out = out.reshape(-1, g, n).transpose(0, 1)  # (g, r, n)
    return out.contiguous()


def layer_patches(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return x.detach().to(torch.float64).reshape(1, -1, layer.in_features)  # (1, r, n)
    return conv_patches(layer, x)


def output_rows(layer: nn.Module, grad_out: torch.Tensor) -> torch.Tensor:
    """(g, r, m_g) per-row output gradients G, rows ordered like ``layer_patches``."""
    if isinstance(layer, nn.Linear):
        return grad_out.to(torch.float64).reshape(1, -1, layer.out_features)
    go = grad_out.to(torch.float64)
    if go.dim() == len(layer.kernel_size) + 1:
        go = go.unsqueeze(0)
    g = layer.groups
    rows = go.flatten(2).transpose(1, 2).reshape(-1, layer.out_channels)  # (r, m)
    return rows.reshape(-1, g, layer.out_channels // g).transpose(0, 1)  # (g, r, m_g)


def ridge_oracle(layer: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, lam: float, eta: float = 1.0) -> torch.Tensor:
    """TrAct weight gradient (weight's shape, float64) from the ridge problem of the paper, by lstsq."""
    a = layer_patches(layer, x)  # (g, r, n)
    gr = output_rows(layer, grad_out)  # (g, r, m)
    g, r, n = a.shape
    out = []
    for gi in range(g):
        target = -eta * r * gr[gi]  # Z* − Z = −η r G   (r, m)
        lhs = torch.cat([a[gi], (lam * r) ** 0.5 * torch.eye(n, dtype=torch.float64)])  # (r+n, n)
        rhs = torch.cat([target, torch.zeros(n, target.shape[1], dtype=torch.float64)])  # (r+n, m)
        delta_t = torch.linalg.lstsq(lhs, rhs, driver="gelsd").solution  # (n, m) = ΔWᵀ
        out.append(-delta_t.T / eta)  # (m, n)
    return torch.cat(out).reshape(layer.weight.shape)


def plain_grad(layer: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """Gᵀ A in float64, from the oracle patches."""
    a = layer_patches(layer, x)
    gr = output_rows(layer, grad_out)
    return (gr.transpose(1, 2) @ a).reshape(layer.weight.shape)


def substitution_grad(linear: nn.Linear, x: torch.Tensor, grad_out: torch.Tensor, lam: float) -> torch.Tensor:
    """The paper's input-substitution form of TrAct for a Linear layer (float64)."""
    lin = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None).double()
    with torch.no_grad():
        lin.weight.copy_(linear.weight)
        if linear.bias is not None:
            lin.bias.copy_(linear.bias)
    xd = x.detach().double().reshape(-1, linear.in_features)  # (b, n)
    b, n = xd.shape
    z = lin(xd @ torch.linalg.inv(xd.T @ xd / b + lam * torch.eye(n, dtype=torch.float64)))
    z.data = lin(xd).data  # forward values are the original ones; the gradient sees the whitened input
    z.backward(grad_out.double().reshape(b, -1))
    return lin.weight.grad
