"""Patch-whitening initialisation (trainact.harness.whiten) against explicit float64 oracles: F.unfold for the
patches, the eigen-decomposition identity Wᵀ Σ W = diag(e / (e + eps)) for the filters."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainact.harness.whiten import DEFAULT_EPS, patch_covariance, whiten_
from trainact.patches import adapter_of, patch_matrix


def _images(*shape, seed=0):
    """Correlated images (smoothed noise plus a per-channel offset), so Σ's eigenvalues spread over decades."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # (N, C, H, W)
    return x + torch.linspace(-0.5, 0.5, shape[1], dtype=torch.float64).view(1, -1, 1, 1)


def _unfold_covariance(x, conv):
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    a = cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (N * L, n)
    return a.T @ a / a.shape[0], a


@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 2)),
    dict(kernel_size=2, stride=2, dilation=(1, 2)),
], ids=["3x3-pad1", "3x2-stride2-pad", "2x2-stride2-dilated"])
def test_covariance_is_that_of_the_layers_own_patches(kw):
    conv = nn.Conv2d(2, 7, bias=True, dtype=torch.float64, **kw)
    x = _images(6, 2, 9, 8)
    sigma, rows = patch_covariance(conv, x)
    ref, a = _unfold_covariance(x, conv)
    assert rows == a.shape[0]
    torch.testing.assert_close(sigma, ref, rtol=1e-12, atol=1e-12)

    e = whiten_(conv, x, eps=1e-3)
    e_ref = torch.linalg.eigvalsh(ref).flip(0)
    torch.testing.assert_close(e, e_ref, rtol=1e-10, atol=1e-12)
    w = conv.weight.detach().reshape(7, -1)  # (out, n)
    for j in range(7):  # each channel is ± an eigenvector of Σ, of norm 1 / sqrt(e + eps)
        k = j // 2
        torch.testing.assert_close(ref @ w[j], e_ref[k] * w[j], rtol=0, atol=1e-10 * float(e_ref[0] * w[j].norm()))
        torch.testing.assert_close(w[j].norm(), (e_ref[k] + 1e-3) ** -0.5, rtol=1e-10, atol=0)
    assert torch.equal(conv.bias, torch.zeros(7, dtype=torch.float64))


def test_whitened_outputs_have_covariance_diag_e_over_e_plus_eps():
    eps = DEFAULT_EPS
    conv = nn.Conv2d(3, 64, 3, padding=1, bias=False, dtype=torch.float64)  # a 3x3 RGB stem, n = 27
    x = _images(40, 3, 12, 12)
    e = whiten_(conv, x, eps=eps, num_images=40)  # the whole set: the sample is every image
    a = patch_matrix(x, adapter_of(conv), dtype=torch.float64)[0]  # (r, n)
    w = conv.weight.detach().reshape(64, 27)[0:54:2]  # the n eigen-filters, + sign
    z = a @ w.T  # (r, n): the filters' outputs
    cov = z.T @ z / a.shape[0]
    torch.testing.assert_close(cov, torch.diag(e / (e + eps)), rtol=0, atol=1e-8)
    # identity up to eps: 1 − e/(e + eps) = eps/(e + eps) per direction, 0 off the diagonal
    assert e.min() < 50 * eps < e.max()  # the data spans both regimes
    gap = (cov - torch.eye(27, dtype=torch.float64)).diagonal().abs()
    assert torch.all(gap <= eps / (e + eps) + 1e-8)
    assert torch.all(gap[e > 100 * eps] < 0.01)


def test_pm_pairs_leading_first_and_cycling():
    x = _images(10, 1, 6, 6)
    n = 4  # a 2x2 kernel on one channel
    conv = nn.Conv2d(1, 2 * n + 3, 2, bias=False, dtype=torch.float64)  # more channels than 2n: cycle
    e = whiten_(conv, x, eps=1e-3)
    assert torch.all(e[:-1] >= e[1:])
    w = conv.weight.detach().reshape(2 * n + 3, n)
    for k in range(n):
        torch.testing.assert_close(w[2 * k + 1], -w[2 * k], rtol=0, atol=0)
    norms = w[0 : 2 * n : 2].norm(dim=1)
    assert torch.all(norms[:-1] <= norms[1:])  # 1/sqrt(e + eps): the leading (largest e) filter is the shortest
    torch.testing.assert_close(w[2 * n :], w[:3], rtol=0, atol=0)  # w_0, −w_0, w_1 again

    few = nn.Conv2d(1, 3, 2, bias=False, dtype=torch.float64)  # fewer than 2n: the first ones
    whiten_(few, x, eps=1e-3)
    torch.testing.assert_close(few.weight.detach().reshape(3, n), w[:3], rtol=0, atol=0)
    # each eigenvector's largest-magnitude entry is positive in the + filter
    lead = w[0 : 2 * n : 2].abs().argmax(dim=1)
    assert torch.all(w[0 : 2 * n : 2].gather(1, lead[:, None]) > 0)


def test_the_sample_is_seeded_and_leaves_the_global_rng_alone():
    x = _images(30, 2, 5, 5)
    conv = nn.Conv2d(2, 8, 3, padding=1)  # float32 weight, as in a model
    torch.manual_seed(123)
    state = torch.get_rng_state()
    e1 = whiten_(conv, x, num_images=10, seed=1)
    w1 = conv.weight.detach().clone()
    assert torch.equal(torch.get_rng_state(), state)
    assert conv.weight.dtype == torch.float32 and torch.equal(conv.bias, torch.zeros(8))
    e2 = whiten_(conv, x, num_images=10, seed=1)
    assert torch.equal(e1, e2) and torch.equal(conv.weight, w1)
    e3 = whiten_(conv, x, num_images=10, seed=2)
    assert not torch.equal(e1, e3)
    # the sample is 10 of the images: its Σ is a covariance over 10 * 25 patch rows
    _, rows = patch_covariance(conv, x, num_images=10, seed=1)
    assert rows == 10 * 25
    # a transform (here: the uint8 -> standardised step of a loader) is applied before the patches are cut
    u8 = torch.randint(0, 256, (12, 2, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sigma_t, _ = patch_covariance(conv, u8, transform=lambda b: (b.float() / 255 - 0.5) / 0.25)
    sigma_ref, _ = patch_covariance(conv, (u8.float() / 255 - 0.5) / 0.25)
    torch.testing.assert_close(sigma_t, sigma_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer, images, kw, exc, needle", [
    (nn.Conv2d(4, 8, 3, groups=2), torch.randn(2, 4, 6, 6), {}, ValueError, "groups=2"),
    (nn.Linear(12, 8), torch.randn(2, 12), {}, TypeError, "Linear"),
    (nn.Conv2d(3, 8, 3), torch.zeros(0, 3, 8, 8), {}, ValueError, "(0, 3, 8, 8)"),
    (nn.Conv2d(3, 8, 3), torch.randn(2, 3, 8, 8), dict(eps=0.0), ValueError, "0.0"),
    (nn.Conv2d(3, 8, 3), torch.randn(2, 3, 8, 8), dict(eps=-1e-3), ValueError, "-0.001"),
    (nn.Conv2d(3, 8, 3), torch.randn(2, 3, 8, 8), dict(num_images=0), ValueError, "num_images"),
    (nn.Conv2d(3, 8, 3), torch.randn(2, 4, 8, 8), {}, ValueError, "4 channels"),
    (nn.Conv2d(3, 8, 3), torch.randn(3, 8, 8), {}, ValueError, "(3, 8, 8)"),
    (nn.Conv2d(3, 8, 5), torch.randn(2, 3, 4, 4), {}, ValueError, "no patches"),
])
def test_bad_input_is_refused_naming_the_value(layer, images, kw, exc, needle):
    before = [p.detach().clone() for p in layer.parameters()]
    with pytest.raises(exc) as info:
        whiten_(layer, images, **kw)
    assert needle in str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))  # nothing written
