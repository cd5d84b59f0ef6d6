"""The convolutional parts of RAFT ("things" variant): feature/context encoders and update block.

Module and attribute names follow the released `raft-things.pth` keys (`fnet.layer2.0.conv1`,
`update_block.gru.convz1`, ...), so the checkpoint loads strictly.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Norm = Literal["batch", "instance"]

STEM_CHANNELS = 64
STAGE_CHANNELS = (64, 96, 128)
CORR_LEVELS = 4
CORR_RADIUS = 4
CORR_CHANNELS = CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
HIDDEN_DIM = 128
CONTEXT_DIM = 128
UPSAMPLE_FACTOR = 8
UPSAMPLE_TAPS = 9  # the 3x3 coarse neighbours a fine pixel is a convex combination of
UPSAMPLE_MASK_SCALE = 0.25  # released: the mask logits are scaled by 1/4 ("to balance gradients")


def _norm(kind: Norm, channels: int) -> nn.Module:
    # InstanceNorm2d has no parameters by default: the fnet keys carry no norm entries.
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.InstanceNorm2d(channels)


class ResidualBlock(nn.Module):
    """Two 3x3 convs with norm and ReLU, plus a (strided 1x1 conv + norm) shortcut when strided."""

    def __init__(self, in_channels: int, channels: int, norm: Norm, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = _norm(norm, channels)
        self.norm2 = _norm(norm, channels)
        self.downsample = None
        if stride != 1:
            self.norm3 = _norm(norm, channels)
            # Released quirk: the shortcut's norm is norm3 itself, so it is also saved as downsample.1.
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride), self.norm3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + y)


class BasicEncoder(nn.Module):
    """7x7/2 stem, three stages of two residual blocks (the last two strided), 1x1 projection: 1/8 resolution."""

    def __init__(self, output_dim: int, norm: Norm) -> None:
        super().__init__()
        self.norm1 = _norm(norm, STEM_CHANNELS)
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 7, stride=2, padding=3)
        stages, in_channels = [], STEM_CHANNELS
        for i, channels in enumerate(STAGE_CHANNELS):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(
                    ResidualBlock(in_channels, channels, norm, stride),
                    ResidualBlock(channels, channels, norm, 1),
                )
            )
            in_channels = channels
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = nn.Conv2d(in_channels, output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.conv2(x)


class MotionEncoder(nn.Module):
    """Encodes the correlation lookup and the current flow into 126 features (+ the flow itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(CORR_CHANNELS, 256, 1)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(192 + 64, HIDDEN_DIM - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        out = F.relu(self.conv(torch.cat([cor, flo], dim=1)))
        return torch.cat([out, flow], dim=1)


class SepConvGRU(nn.Module):
    """A convolutional GRU applied twice: with 1x5 kernels (horizontal), then 5x1 (vertical)."""

    def __init__(self, hidden_dim: int = HIDDEN_DIM, input_dim: int = CONTEXT_DIM + HIDDEN_DIM) -> None:
        super().__init__()
        both = hidden_dim + input_dim
        self.convz1 = nn.Conv2d(both, hidden_dim, (1, 5), padding=(0, 2))
        self.convr1 = nn.Conv2d(both, hidden_dim, (1, 5), padding=(0, 2))
        self.convq1 = nn.Conv2d(both, hidden_dim, (1, 5), padding=(0, 2))
        self.convz2 = nn.Conv2d(both, hidden_dim, (5, 1), padding=(2, 0))
        self.convr2 = nn.Conv2d(both, hidden_dim, (5, 1), padding=(2, 0))
        self.convq2 = nn.Conv2d(both, hidden_dim, (5, 1), padding=(2, 0))

    @staticmethod
    def _step(h: torch.Tensor, x: torch.Tensor, convz: nn.Conv2d, convr: nn.Conv2d, convq: nn.Conv2d) -> torch.Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(convz(hx))
        r = torch.sigmoid(convr(hx))
        q = torch.tanh(convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self._step(h, x, self.convz1, self.convr1, self.convq1)
        return self._step(h, x, self.convz2, self.convr2, self.convq2)


class FlowHead(nn.Module):
    """Two 3x3 convs from the hidden state to a flow increment."""

    def __init__(self, input_dim: int = HIDDEN_DIM, hidden_dim: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim, hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_dim, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    """One refinement step: motion features → GRU → flow increment; the upsampling mask on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = MotionEncoder()
        self.gru = SepConvGRU()
        self.flow_head = FlowHead()
        self.mask = nn.Sequential(
            nn.Conv2d(HIDDEN_DIM, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, UPSAMPLE_FACTOR**2 * UPSAMPLE_TAPS, 1),
        )

    def forward(
        self, net: torch.Tensor, inp: torch.Tensor, corr: torch.Tensor, flow: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """New hidden state and flow increment (the upsampling mask is `upsample_mask(net)`)."""
        motion = self.encoder(flow, corr)
        net = self.gru(net, torch.cat([inp, motion], dim=1))
        return net, self.flow_head(net)

    def upsample_mask(self, net: torch.Tensor) -> torch.Tensor:
        """Logits of the convex upsampling weights, [N, 64·9, h, w]."""
        return UPSAMPLE_MASK_SCALE * self.mask(net)
