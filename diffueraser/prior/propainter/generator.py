"""ProPainter's InpaintGenerator as DiffuEraser ships it (loads `ProPainter.pth` strictly).

Frames and masks are encoded at 1/4 resolution, features are propagated along the completed
flows with flow-guided deformable alignment (backward then forward), the sparse transformer
fills what propagation could not reach, and a small decoder returns images in [-1, 1].
The DiffuEraser variant clamps every flow-warped feature map to [-1, 1] before it is used.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .deform_conv import deform_conv2d
from .propagation import FEATURE_CLAMP, flow_consistency, flow_warp, img_propagation
from .transformer import SoftComp, SoftSplit, TemporalSparseTransformerBlock

CHANNELS = 128
"""Feature channels at 1/4 resolution."""
HIDDEN = 512
"""Transformer token width."""
PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING = (7, 7), (3, 3), (3, 3)
"""Soft split / composition of the feature map into overlapping 7x7 patches."""
DEPTHS, HEADS, WINDOW, POOL = 8, 4, (5, 9), (4, 4)
"""Transformer blocks, attention heads, attention window (tokens), pooling of global tokens."""
FFN_HIDDEN = 1960
"""Hidden width of the fusion feed-forward."""
DEFORM_GROUPS = 16
MAX_RESIDUE = 3.0
"""Learnt offsets are K·tanh(·) pixels around the flow, K = 3 in the generator's alignment."""
FEATURE_SCALE = 4
"""The encoder works at 1/4 of the image size."""


class DeformableAlignment(nn.Module):
    """Flow-guided modulated deformable 3x3 convolution (offsets = flow + learnt residue)."""

    def __init__(self, channels: int, deform_groups: int = DEFORM_GROUPS, max_residue: float = MAX_RESIDUE):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.max_residue = max_residue
        # condition: current feature, warped feature, flow (2), validity (1), masks (2)
        self.conv_offset = nn.Sequential(
            nn.Conv2d(2 * channels + 5, channels, 3, 1, 1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(channels, 27 * deform_groups, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset(cond), 3, dim=1)
        # Offsets are sampling positions: float32 even when the network runs in half precision.
        offset = self.max_residue * torch.tanh(torch.cat((o1, o2), dim=1).float())
        offset = offset + flow.float().flip(1).repeat(1, offset.shape[1] // 2, 1, 1)
        return deform_conv2d(x, offset, self.weight, self.bias, padding=1, mask=torch.sigmoid(mask))


def _refine_block(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2 * channels + 2, channels, 3, 1, 1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(channels, channels, 3, 1, 1),
    )


class FeaturePropagation(nn.Module):
    """Learnable bidirectional propagation of the local frames' features (backward, then forward)."""

    DIRECTIONS = ("backward_1", "forward_1")

    def __init__(self, channels: int = CHANNELS):
        super().__init__()
        self.deform_align = nn.ModuleDict({d: DeformableAlignment(channels) for d in self.DIRECTIONS})
        self.backbone = nn.ModuleDict({d: _refine_block(channels) for d in self.DIRECTIONS})
        self.fuse = _refine_block(channels)

    def _sweep(self, name: str, feats: list[torch.Tensor], masks: list[torch.Tensor],
               flows_prop: torch.Tensor, flows_check: torch.Tensor, backward: bool) -> list[torch.Tensor]:
        t = len(feats)
        order = range(t - 1, -1, -1) if backward else range(t)
        out: list[torch.Tensor] = list(feats)
        prop = None
        for i, idx in enumerate(order):
            cur, mask = feats[idx], masks[idx]
            if i == 0:
                prop = cur
            else:
                k = idx if backward else idx - 1
                flow = flows_prop[:, k]
                valid = flow_consistency(flow, flows_check[:, k]).to(cur)
                warped = flow_warp(prop, flow).clamp(-FEATURE_CLAMP, FEATURE_CLAMP)
                cond = torch.cat([cur, warped, flow.to(cur), valid, mask], dim=1)
                prop = self.deform_align[name](prop, cond, flow)
            prop = prop + self.backbone[name](torch.cat([cur, prop, mask], dim=1))
            out[idx] = prop
        return out

    def forward(self, x: torch.Tensor, flows_forward: torch.Tensor, flows_backward: torch.Tensor,
                masks: torch.Tensor) -> torch.Tensor:
        """x [B, T, C, h, w]; flows [B, T-1, 2, h, w]; masks [B, T, 2, h, w] (input and updated holes)."""
        b, t, c, h, w = x.shape
        feats, mask_list = list(x.unbind(1)), list(masks.unbind(1))
        back = self._sweep("backward_1", feats, mask_list, flows_forward, flows_backward, backward=True)
        fwd = self._sweep("forward_1", back, mask_list, flows_backward, flows_forward, backward=False)
        fused = torch.cat([torch.stack(back, 1).view(-1, c, h, w), torch.stack(fwd, 1).view(-1, c, h, w),
                           masks.reshape(-1, 2, h, w)], dim=1)
        return (self.fuse(fused) + x.reshape(-1, c, h, w)).view(b, t, c, h, w)


class Encoder(nn.Module):
    """Strided convs to 1/4 size, then grouped convs that each see the first grouped input again."""

    GROUPS = (1, 2, 4, 8, 1)

    def __init__(self):
        super().__init__()
        convs = [
            nn.Conv2d(5, 64, 3, 2, 1), nn.Conv2d(64, 64, 3, 1, 1), nn.Conv2d(64, 128, 3, 2, 1),
            nn.Conv2d(128, 256, 3, 1, 1), nn.Conv2d(256, 384, 3, 1, 1),
            nn.Conv2d(640, 512, 3, 1, 1, groups=2), nn.Conv2d(768, 384, 3, 1, 1, groups=4),
            nn.Conv2d(640, 256, 3, 1, 1, groups=8), nn.Conv2d(512, 128, 3, 1, 1),
        ]
        layers: list[nn.Module] = []
        for conv in convs:
            layers += [conv, nn.LeakyReLU(0.2, inplace=True)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bt = x.shape[0]
        out = x
        for i, layer in enumerate(self.layers):
            if i == 8:
                x0 = out
                h, w = x0.shape[-2:]
            if i > 8 and i % 2 == 0:
                g = self.GROUPS[(i - 8) // 2]
                out = torch.cat([x0.view(bt, g, -1, h, w), out.view(bt, g, -1, h, w)], 2).view(bt, -1, h, w)
            out = layer(out)
        return out


class UpConv(nn.Module):
    """Bilinear ×2 upsampling (corners aligned), then a 3x3 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


class InpaintGenerator(nn.Module):
    """ProPainter's generator; `forward` fills one window of local (+ reference) frames."""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = nn.Sequential(
            UpConv(CHANNELS, 128), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(128, 64, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
            UpConv(64, 64), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, 3, 3, 1, 1),
        )
        self.ss = SoftSplit(CHANNELS, HIDDEN, PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING)
        self.sc = SoftComp(CHANNELS, HIDDEN, PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING)
        self.max_pool = nn.MaxPool2d(PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING)
        self.feat_prop_module = FeaturePropagation(CHANNELS)
        self.transformers = TemporalSparseTransformerBlock(
            HIDDEN, HEADS, WINDOW, POOL, DEPTHS, FFN_HIDDEN, PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING
        )

    @staticmethod
    def img_propagation(masked_frames: torch.Tensor, flows_forward: torch.Tensor, flows_backward: torch.Tensor,
                        masks: torch.Tensor, mode: str = "nearest") -> tuple[torch.Tensor, torch.Tensor]:
        """Image propagation (no weights); see `propagation.img_propagation`."""
        return img_propagation(masked_frames, flows_forward, flows_backward, masks, mode)

    def forward(self, frames: torch.Tensor, flows_forward: torch.Tensor, flows_backward: torch.Tensor,
                masks_in: torch.Tensor, masks_updated: torch.Tensor, num_local_frames: int,
                t_dilation: int = 2) -> torch.Tensor:
        """Fill the local frames of one window.

        frames [B, T, 3, H, W] in [-1, 1] (local frames first, then reference frames); flows
        [B, L-1, 2, H, W] between the L = `num_local_frames` local frames (float32 flows keep the
        alignment's positions exact when the network runs in half precision); masks_in (dilated
        holes) and masks_updated (holes left after image propagation) [B, T, 1, H, W].
        Returns [B, L, 3, H, W] in [-1, 1]. H and W must be multiples of 4.
        """
        l_t = num_local_frames
        b, t, _, ori_h, ori_w = frames.shape
        enc = self.encoder(torch.cat([frames.reshape(b * t, 3, ori_h, ori_w),
                                      masks_in.reshape(b * t, 1, ori_h, ori_w),
                                      masks_updated.reshape(b * t, 1, ori_h, ori_w)], dim=1))
        _, c, h, w = enc.shape
        enc = enc.view(b, t, c, h, w)

        def down_flow(f: torch.Tensor) -> torch.Tensor:
            f = F.interpolate(f.reshape(-1, 2, ori_h, ori_w), scale_factor=1 / FEATURE_SCALE, mode="bilinear",
                              align_corners=False)
            return f.view(b, l_t - 1, 2, h, w) / FEATURE_SCALE

        def down_mask(m: torch.Tensor) -> torch.Tensor:
            m = F.interpolate(m.reshape(-1, 1, ori_h, ori_w), scale_factor=1 / FEATURE_SCALE, mode="nearest")
            return m.view(b, -1, 1, h, w)

        mask_local = down_mask(masks_in[:, :l_t])
        mask_updated_local = down_mask(masks_updated[:, :l_t])
        token_mask = self.max_pool(mask_local.view(-1, 1, h, w))
        token_mask = token_mask.view(b, l_t, 1, *token_mask.shape[-2:]).permute(0, 1, 3, 4, 2)

        local = self.feat_prop_module(enc[:, :l_t], down_flow(flows_forward), down_flow(flows_backward),
                                      torch.cat([mask_local, mask_updated_local], dim=2))
        enc = torch.cat((local, enc[:, l_t:]), dim=1)

        tokens = self.ss(enc.reshape(-1, c, h, w), b, (h, w))
        tokens = self.transformers(tokens, (h, w), token_mask, t_dilation=t_dilation)
        enc = enc + self.sc(tokens, t, (h, w)).view(b, t, -1, h, w)

        out = self.decoder(enc[:, :l_t].reshape(-1, c, h, w))
        return torch.tanh(out).view(b, l_t, 3, ori_h, ori_w)
