"""The conv VAE's stride-1 output layer: the conv form is the transposed conv's map."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sigmavae.models.conv import StrideOneTransposedConv


@pytest.mark.parametrize("out_channels", [3, 96])  # the transposed form, and the conv form
def test_same_map_gradients_and_state_dict_as_conv_transpose(out_channels):
    torch.manual_seed(0)
    ours = StrideOneTransposedConv(8, out_channels, 5, padding=2).double()
    reference = nn.ConvTranspose2d(8, out_channels, 5, stride=1, padding=2).double()
    reference.load_state_dict(ours.state_dict())  # same keys and shapes: checkpoints load
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()}
    x = torch.randn(2, 8, 7, 6, dtype=torch.float64, requires_grad=True)
    y, y_ref = ours(x), reference(x)
    torch.testing.assert_close(y, y_ref)
    upstream = torch.randn_like(y)
    grads = torch.autograd.grad((y * upstream).sum(), [x, ours.weight, ours.bias])
    grads_ref = torch.autograd.grad((y_ref * upstream).sum(),
                                    [x, reference.weight, reference.bias])
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want)
    assert (out_channels >= StrideOneTransposedConv.WIDE) == (out_channels == 96)
