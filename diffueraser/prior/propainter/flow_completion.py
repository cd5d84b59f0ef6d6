"""ProPainter's recurrent flow completion network: fills optical flow inside the holes.

A pseudo-3D convolutional encoder takes the masked flows and their masks down to 1/8
resolution, a second-order recurrent propagation (deformable alignment, backward then forward
in time) spreads features along the clip, and a decoder brings the flow back to full
resolution. Module names follow the released `recurrent_flow_completion.pth` (loaded strictly).

Conventions: flows [B, T-1, 2, H, W] in pixels (channel 0 = x); masks [B, T, 1, H, W] with 1 =
hole; forward flow k maps frame k → k+1 (valid where frame k is known), backward flow k maps
frame k+1 → k (valid where frame k+1 is known).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .deform_conv import deform_conv2d

Flows = tuple[torch.Tensor, torch.Tensor]

FEATURES = 128
STRIDE = 8
ENCODER_SLOPE = 0.2
PROPAGATION_SLOPE = 0.1
EDGE_SLOPE = 0.01
DEFORM_GROUPS = 16
MAX_OFFSET = 5.0  # released max_residue_magnitude of SecondOrderDeformableAlignment
KERNEL_TAPS = 9
PIECE_FLOWS = 50  # released subvideo_length: flows completed in one pass
PIECE_PADDING = 5  # released: extra flows on each side of a piece, for context


def _lrelu(slope: float) -> nn.LeakyReLU:
    return nn.LeakyReLU(slope)


class P3DBlock(nn.Module):
    """Pseudo-3D conv: a spatial (1, k, k) conv + LeakyReLU, then a temporal (3, 1, 1) conv dilated by 2."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1)),
            _lrelu(ENCODER_SLOPE),
        )
        self.conv2 = nn.Sequential(
            nn.Conv3d(out_channels, out_channels, (3, 1, 1), padding=(2, 0, 0), dilation=(2, 1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class SecondOrderDeformableAlignment(nn.Module):
    """Modulated deformable 3x3 conv whose offsets (≤ 5 px) and masks come from the conditioning features."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight)
        self.conv_offset = nn.Sequential(
            nn.Conv2d(3 * out_channels, out_channels, 3, 1, 1),
            _lrelu(PROPAGATION_SLOPE),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
            _lrelu(PROPAGATION_SLOPE),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
            _lrelu(PROPAGATION_SLOPE),
            nn.Conv2d(out_channels, 3 * KERNEL_TAPS * DEFORM_GROUPS, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset(cond), 3, dim=1)
        offset = MAX_OFFSET * torch.tanh(torch.cat([o1, o2], dim=1).float())  # positions: float32
        return deform_conv2d(x, offset, self.weight, self.bias, stride=1, padding=1, dilation=1, mask=torch.sigmoid(mask))


class BidirectionalPropagation(nn.Module):
    """Second-order recurrent propagation over time, backward pass then forward pass, then a 1x1 fusion."""

    DIRECTIONS = ("backward_", "forward_")

    def __init__(self, channels: int = FEATURES) -> None:
        super().__init__()
        self.channels = channels
        self.deform_align = nn.ModuleDict()
        self.backbone = nn.ModuleDict()
        for i, name in enumerate(self.DIRECTIONS):
            self.deform_align[name] = SecondOrderDeformableAlignment(2 * channels, channels)
            # the forward pass also sees the backward pass's features: 2 + i inputs
            self.backbone[name] = nn.Sequential(
                nn.Conv2d((2 + i) * channels, channels, 3, 1, 1),
                _lrelu(PROPAGATION_SLOPE),
                nn.Conv2d(channels, channels, 3, 1, 1),
            )
        self.fusion = nn.Conv2d(2 * channels, channels, 1, 1, 0)

    def _propagate(self, name: str, spatial: list[torch.Tensor], earlier: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """One pass in time order (reversed for `backward_`); returns features in time order."""
        t = len(spatial)
        order = range(t - 1, -1, -1) if name == "backward_" else range(t)
        props: list[torch.Tensor] = []
        prop = torch.zeros_like(spatial[0])
        for step, idx in enumerate(order):
            current = spatial[idx]
            if step > 0:
                second = props[-2] if step > 1 else torch.zeros_like(prop)
                cond = torch.cat([prop, current, second], dim=1)
                prop = self.deform_align[name](torch.cat([prop, second], dim=1), cond)
            feat = torch.cat([current] + [feats[idx] for feats in earlier] + [prop], dim=1)
            prop = prop + self.backbone[name](feat)
            props.append(prop)
        return props[::-1] if name == "backward_" else props

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, C, h, w] → [B, T, C, h, w] (residual)."""
        spatial = list(x.unbind(dim=1))
        passes: list[list[torch.Tensor]] = []
        for name in self.DIRECTIONS:
            passes.append(self._propagate(name, spatial, passes))
        fused = [self.fusion(torch.cat(feats, dim=1)) for feats in zip(*passes)]
        return torch.stack(fused, dim=1) + x


class Upconv(nn.Module):
    """Bilinear x2 upsampling (align_corners) then a 3x3 conv (the released `deconv`)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


class EdgeDetection(nn.Module):
    """Flow-edge head used as a training loss by the release; kept so the checkpoint loads strictly."""

    def __init__(self, in_channels: int = 2, out_channels: int = 1, mid_channels: int = 16) -> None:
        super().__init__()
        self.projection = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 3, 1, 1), _lrelu(ENCODER_SLOPE))
        self.mid_layer_1 = nn.Sequential(nn.Conv2d(mid_channels, mid_channels, 3, 1, 1), _lrelu(ENCODER_SLOPE))
        self.mid_layer_2 = nn.Sequential(nn.Conv2d(mid_channels, mid_channels, 3, 1, 1))
        self.out_layer = nn.Conv2d(mid_channels, out_channels, 1, 1, 0)

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        """Edge probability [N, 1, H, W] of flows [N, 2, H, W]."""
        x = self.projection(flow)
        edge = F.leaky_relu(x + self.mid_layer_2(self.mid_layer_1(x)), EDGE_SLOPE)
        return torch.sigmoid(self.out_layer(edge))


class RecurrentFlowCompleteNet(nn.Module):
    """The released flow completion network (`recurrent_flow_completion.pth`)."""

    def __init__(self) -> None:
        super().__init__()
        self.downsample = nn.Sequential(
            nn.Conv3d(3, 32, (1, 5, 5), stride=(1, 2, 2), padding=(0, 2, 2), padding_mode="replicate"),
            _lrelu(ENCODER_SLOPE),
        )
        self.encoder1 = nn.Sequential(
            P3DBlock(32, 32, 1), _lrelu(ENCODER_SLOPE), P3DBlock(32, 64, 2), _lrelu(ENCODER_SLOPE)
        )  # 1/4
        self.encoder2 = nn.Sequential(
            P3DBlock(64, 64, 1), _lrelu(ENCODER_SLOPE), P3DBlock(64, FEATURES, 2), _lrelu(ENCODER_SLOPE)
        )  # 1/8
        layers: list[nn.Module] = []
        for dilation in (3, 2, 1):
            layers += [
                nn.Conv3d(FEATURES, FEATURES, (1, 3, 3), padding=(0, dilation, dilation), dilation=(1, dilation, dilation)),
                _lrelu(ENCODER_SLOPE),
            ]
        self.mid_dilation = nn.Sequential(*layers)
        self.feat_prop_module = BidirectionalPropagation(FEATURES)
        self.decoder2 = nn.Sequential(
            nn.Conv2d(FEATURES, FEATURES, 3, 1, 1), _lrelu(ENCODER_SLOPE), Upconv(FEATURES, 64), _lrelu(ENCODER_SLOPE)
        )  # 1/4
        self.decoder1 = nn.Sequential(
            nn.Conv2d(64, 64, 3, 1, 1), _lrelu(ENCODER_SLOPE), Upconv(64, 32), _lrelu(ENCODER_SLOPE)
        )  # 1/2
        self.upsample = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), _lrelu(ENCODER_SLOPE), Upconv(32, 2))
        self.edgeDetector = EdgeDetection()

    def forward(self, masked_flows: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Completed flows [B, N, 2, H, W] from masked flows [B, N, 2, H, W] and their masks [B, N, 1, H, W].

        Sizes that are not multiples of 8 are padded (edge replicate) and cropped back.
        """
        b, n, _, h, w = masked_flows.shape
        pad_h, pad_w = -h % STRIDE, -w % STRIDE
        x = torch.cat([masked_flows, masks.to(masked_flows.dtype)], dim=2)
        if pad_h or pad_w:
            x = F.pad(x.flatten(0, 1), (0, pad_w, 0, pad_h), mode="replicate").unflatten(0, (b, n))
        x = self.downsample(x.transpose(1, 2))  # [B, C, N, H, W] for the 3-D convs
        feat_e1 = self.encoder1(x)
        feat_mid = self.mid_dilation(self.encoder2(feat_e1))
        feat_prop = self.feat_prop_module(feat_mid.transpose(1, 2))
        feat_e1 = feat_e1.transpose(1, 2).flatten(0, 1)
        feat_d2 = self.decoder2(feat_prop.flatten(0, 1)) + feat_e1
        flow = self.upsample(self.decoder1(feat_d2))
        return flow[..., :h, :w].unflatten(0, (b, n))

    def forward_bidirect_flow(self, flows: Flows, masks: torch.Tensor) -> Flows:
        """Raw completion of both directions (the released `forward_bidirect_flow`, edges left out).

        Forward flows are masked by frames 0..T-2, backward flows by frames 1..T-1; the backward
        sequence is completed in reversed time order, so both passes see flows pointing forward
        in their own timeline.
        """
        masks_fwd, masks_bwd = masks[:, :-1], masks[:, 1:]
        pred_fwd = self(flows[0] * (1 - masks_fwd), masks_fwd)
        flipped = self((flows[1] * (1 - masks_bwd)).flip(1), masks_bwd.flip(1))
        return pred_fwd, flipped.flip(1)

    @staticmethod
    def combine_flow(flows: Flows, pred_flows: Flows, masks: torch.Tensor) -> Flows:
        """RAFT flow where the source frame is known, completed flow inside its hole."""
        masks_fwd, masks_bwd = masks[:, :-1], masks[:, 1:]
        fwd = pred_flows[0] * masks_fwd + flows[0] * (1 - masks_fwd)
        bwd = pred_flows[1] * masks_bwd + flows[1] * (1 - masks_bwd)
        return fwd, bwd


@torch.no_grad()
def complete_flows(
    net: RecurrentFlowCompleteNet,
    flows: Flows,
    masks: torch.Tensor,
    piece_flows: int = PIECE_FLOWS,
    piece_padding: int = PIECE_PADDING,
) -> Flows:
    """Completed and combined flows of a whole clip, as the released runner computes them.

    flows: (forward, backward) [B, T-1, 2, H, W]; masks [B, T, 1, H, W] (1 = hole). Clips with
    more than `piece_flows` flows are completed in pieces of that many flows, each seen with
    `piece_padding` extra flows on both sides whose results are discarded.
    """
    n = flows[0].shape[1]
    if n <= piece_flows:
        return net.combine_flow(flows, net.forward_bidirect_flow(flows, masks), masks)
    pieces_fwd, pieces_bwd = [], []
    for start in range(0, n, piece_flows):
        stop = min(n, start + piece_flows)
        lo, hi = max(0, start - piece_padding), min(n, stop + piece_padding)
        sub = (flows[0][:, lo:hi], flows[1][:, lo:hi])
        sub_masks = masks[:, lo : hi + 1]
        fwd, bwd = net.combine_flow(sub, net.forward_bidirect_flow(sub, sub_masks), sub_masks)
        pieces_fwd.append(fwd[:, start - lo : stop - lo])
        pieces_bwd.append(bwd[:, start - lo : stop - lo])
    return torch.cat(pieces_fwd, dim=1), torch.cat(pieces_bwd, dim=1)
