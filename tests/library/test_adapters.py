"""The adapter table: every supported layer class has an adapter, and each adapter's geometries agree with the layer.

A new first-layer type adds its adapter to ``trainact.adapters.ADAPTERS`` and a case (layer, input shape) here.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from trainact import adapters, patches
from oracle import layer_patches

CASES = [
    (nn.Linear(6, 4), (3, 5, 6)),
    (nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 11)),
    (nn.Conv2d(3, 4, (3, 2), padding="same", dilation=(1, 2)), (2, 3, 9, 8)),
    (nn.Conv2d(2, 4, 3, padding=2, padding_mode="reflect"), (2, 2, 7, 6)),
    (nn.Conv3d(2, 3, 2, stride=(1, 2, 1), padding="valid"), (1, 2, 4, 5, 3)),
]
IDS = ["linear", "conv1d-groups", "conv2d-same-dilated", "conv2d-reflect", "conv3d"]


def test_every_supported_class_has_one_adapter_and_a_case_here():
    assert adapters.SUPPORTED == (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    for cls in adapters.SUPPORTED:
        assert [a for a in adapters.ADAPTERS if issubclass(cls, a.layers)] == [adapters.adapter_for(cls)]
        assert any(type(layer) is cls for layer, _ in CASES)
    assert adapters.adapter_for(nn.ReLU()) is None
    with pytest.raises(TypeError, match="no patch geometry for ReLU"):
        adapters.adapter_of(nn.ReLU())


class _Calls(torch.overrides.TorchFunctionMode):
    """Records the geometry of every functional call an adapter knows, as the adapter reads it from the call."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in adapters.CALLS:
            self.seen.append(adapters.CALLS[func].of_call(args[1], tuple(args), kwargs))
        return func(*args, **kwargs)


@pytest.mark.parametrize("layer, shape", CASES, ids=IDS)
def test_the_geometry_of_a_layer_is_that_of_its_call_and_its_rows_are_the_layers_patches(layer, shape):
    x = torch.randn(shape, dtype=torch.float64)
    geo = adapters.adapter_of(layer)
    with _Calls() as calls:
        layer.double()(x)
    (call,) = calls.seen
    if getattr(layer, "padding_mode", "zeros") == "zeros":
        assert call == geo
    else:  # the forward pads the input itself and then calls without padding
        assert call.pad == (0,) * len(geo.pad) and (call.n, call.kernel, call.stride) == (geo.n, geo.kernel, geo.stride)
    a = layer_patches(layer, x)  # (g, r, n) from the layer's own forward
    assert geo.count_rows(x) == a.shape[1]
    assert_close(patches.patch_matrix(x, geo, dtype=torch.float64), a, rtol=0, atol=0)
