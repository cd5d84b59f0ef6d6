"""The plain-torch modulated deformable convolution computes torchvision's deform_conv2d."""
import pytest
import torch
import torch.nn.functional as F

from diffueraser.prior.propainter import deform_conv
from diffueraser.prior.propainter.deform_conv import deform_conv2d, deform_conv2d_torch
from reference import assert_close_rel, load_npz


def test_deform_conv_matches_torchvision_fixture():
    a, _ = load_npz("deform_conv")
    t = {k: torch.from_numpy(v) for k, v in a.items()}
    out = deform_conv2d_torch(t["deform_x"], t["deform_offset"], t["deform_weight"], t["deform_bias"],
                              stride=1, padding=1, dilation=1, mask=t["deform_mask"])
    assert_close_rel(out.numpy(), a["deform_out"], 1e-5, "deform_out")


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 0, 1, 1), (1, 2, 2, 1), (2, 1, 1, 2)])
def test_zero_offsets_give_the_ordinary_convolution(stride, padding, dilation, groups):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 11, 13, generator=g)
    weight = torch.randn(6, 4 // groups, 3, 3, generator=g)
    bias = torch.randn(6, generator=g)
    ref = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    offset = torch.zeros(2, 2 * 2 * 9, *ref.shape[-2:])  # 2 offset groups
    out = deform_conv2d_torch(x, offset, weight, bias, stride, padding, dilation)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_offsets_are_dy_dx_pairs_and_read_zeros_outside():
    x = torch.arange(5 * 6, dtype=torch.float32).view(1, 1, 5, 6)
    weight = torch.ones(1, 1, 1, 1)
    offset = torch.zeros(1, 2, 5, 6)
    offset[:, 0] = 1.0  # one row down
    down = deform_conv2d_torch(x, offset, weight)
    expected = torch.cat([x[..., 1:, :], torch.zeros(1, 1, 1, 6)], dim=2)
    torch.testing.assert_close(down, expected)
    offset = torch.zeros(1, 2, 5, 6)
    offset[:, 1] = -0.5  # half a column left: bilinear mix, zero beyond the border
    left = deform_conv2d_torch(x, offset, weight)
    shifted = torch.cat([torch.zeros(1, 1, 5, 1), x[..., :-1]], dim=3)
    torch.testing.assert_close(left, 0.5 * (x + shifted))


def test_modulation_mask_scales_each_tap():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 7, 7, generator=g)
    weight = torch.randn(3, 2, 3, 3, generator=g)
    offset = torch.randn(1, 18, 7, 7, generator=g)
    full = deform_conv2d_torch(x, offset, weight, padding=1)
    half = deform_conv2d_torch(x, offset, weight, padding=1, mask=torch.full((1, 9, 7, 7), 0.5))
    torch.testing.assert_close(half, 0.5 * full)


def test_dispatch_uses_torchvision_kernel_only_when_available(monkeypatch):
    calls = []

    def fake_kernel(*args, **kwargs):
        calls.append(kwargs)
        return torch.zeros(1)

    monkeypatch.setattr(deform_conv, "_torchvision_deform_conv2d", fake_kernel)
    monkeypatch.setattr(deform_conv, "USE_TORCHVISION", True)
    x, w = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 3, 3)
    off = torch.zeros(1, 18, 2, 2)
    assert deform_conv2d(x, off, w).shape == (1,) and calls == [dict(stride=1, padding=0, dilation=1, mask=None)]
    monkeypatch.setattr(deform_conv, "USE_TORCHVISION", False)
    torch.testing.assert_close(deform_conv2d(x, off, w), F.conv2d(x, w))


def test_bad_offset_channels_are_refused():
    with pytest.raises(ValueError, match="offset has 5 channels"):
        deform_conv2d_torch(torch.zeros(1, 2, 4, 4), torch.zeros(1, 5, 2, 2), torch.zeros(1, 2, 3, 3))
