"""Convolutional and MLP bodies used by the families: one definition, reused by VAE encoders, GAN critics, etc."""

from __future__ import annotations

import math

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


def _act(kind: str) -> nn.Module:
    return nn.LeakyReLU(0.2) if kind == "leaky_relu" else nn.SiLU() if kind == "silu" else nn.ReLU()


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions, one per width, halving the resolution each time; returns flat features."""

    def __init__(self, in_channels: int, size: tuple[int, int], widths: list[int], norm: str = "none",
                 activation: str = "relu", spectral_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            conv = nn.Conv2d(c, w, 4, 2, 1, bias=norm == "none")
            layers += [nn.utils.parametrizations.spectral_norm(conv) if spectral_norm else conv,
                       _norm(norm if i > 0 else "none", w), _act(activation)]
            c = w
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            self.out_features = int(self.net(torch.zeros(1, in_channels, *size)).numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ConvDecoder(nn.Module):
    """Linear to a small feature map, then stride-2 transposed convolutions up to (at least) the image size.

    Works for any image size: it starts at ceil(size / 2**len(widths)) and crops the centre at the end.
    """

    def __init__(self, in_features: int, out_channels: int, size: tuple[int, int], widths: list[int],
                 norm: str = "none", activation: str = "relu"):
        super().__init__()
        self.size = size
        up = len(widths)
        self.base = (math.ceil(size[0] / 2**up), math.ceil(size[1] / 2**up))
        top = widths[-1]
        self.project = nn.Sequential(nn.Linear(in_features, top * self.base[0] * self.base[1]))
        self.top = top
        layers: list[nn.Module] = [_norm(norm, top), _act(activation)]
        chans = list(reversed(widths)) + [out_channels]
        for i in range(up):
            last = i == up - 1
            layers.append(nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1, bias=last or norm == "none"))
            if not last:
                layers += [_norm(norm, chans[i + 1]), _act(activation)]
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.project(h).view(h.shape[0], self.top, *self.base)
        x = self.net(x)
        dh, dw = (x.shape[2] - self.size[0]) // 2, (x.shape[3] - self.size[1]) // 2
        return x[:, :, dh : dh + self.size[0], dw : dw + self.size[1]]


class MLP(nn.Sequential):
    """Linear layers with activations between them (none after the last)."""

    def __init__(self, sizes: list[int], activation: str = "relu"):
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(_act(activation))
        super().__init__(*layers)
