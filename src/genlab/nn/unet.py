"""A compact U-Net noise predictor (Ho et al. 2020 layout): residual blocks with group norm, a sinusoidal
time embedding added in every block, self-attention on small feature maps, optional class conditioning.

Sizes need not be powers of two: each upsampling returns to the size of its skip connection (28 -> 14 -> 7).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sin/cos features of (integer or real) timesteps, B -> B x dim."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    """GN-SiLU-conv, add the projected embedding, GN-SiLU-dropout-conv, plus a (1x1 when needed) skip.

    `emb_dim` 0: no embedding (a plain residual block, as in the autoencoder family)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout) if emb_dim else None
        self.norm2, self.conv2 = _norm(cout, groups), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None:
            h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, residual, through SDPA."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.heads = math.gcd(heads, channels)
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # b x heads x hw x d
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UpsampleTo(nn.Module):
    """Nearest-neighbour upsampling to the size of the matching skip connection (28 -> 14 -> 7 -> 14 -> 28)."""

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="nearest")


class UNet(nn.Module):
    """eps/v predictor f(x_t, t, y). `num_classes` > 0 adds a class embedding with one extra "no label" row
    (index num_classes) used for classifier-free guidance."""

    def __init__(self, channels: int, base: int = 32, mults: tuple[int, ...] = (1, 2, 2), blocks: int = 1,
                 attention_max_size: int = 8, size: int = 28, heads: int = 4, groups: int = 8,
                 dropout: float = 0.0, num_classes: int = 0, patch: int = 1):
        super().__init__()
        self.patch = patch
        channels, size = channels * patch * patch, -(-size // patch)
        emb_dim = 4 * base
        self.base = base
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.conv_in = nn.Conv2d(channels, base, 3, padding=1)

        widths = [base * m for m in mults]
        sizes = [size]
        for _ in widths[1:]:
            sizes.append((sizes[-1] + 1) // 2)

        def block(cin: int, cout: int, side: int) -> nn.ModuleList:
            parts = [ResBlock(cin, cout, emb_dim, groups, dropout)]
            if side <= attention_max_size:
                parts.append(SelfAttention(cout, heads, groups))
            return nn.ModuleList(parts)

        self.down = nn.ModuleList()
        skip_widths, ch = [base], base
        for level, (width, side) in enumerate(zip(widths, sizes, strict=True)):
            for _ in range(blocks):
                self.down.append(block(ch, width, side))
                ch = width
                skip_widths.append(ch)
            if level < len(widths) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skip_widths.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, groups, dropout), SelfAttention(ch, heads, groups),
                                  ResBlock(ch, ch, emb_dim, groups, dropout)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(blocks + 1):
                self.up.append(block(ch + skip_widths.pop(), widths[level], sizes[level]))
                ch = widths[level]
            if level > 0:
                self.up.append(nn.ModuleList([UpsampleTo()]))  # the next block's convs smooth it
        self.norm_out = _norm(ch, groups)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(sinusoidal_embedding(t, self.base))
        if self.class_embed is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.class_embed.num_embeddings - 1, dtype=torch.long, device=x.device)
            emb = emb + self.class_embed(y)
        if self.patch > 1:  # space-to-depth: the network runs at 1/patch resolution, as in "simple diffusion"
            x = F.pixel_unshuffle(x, self.patch)
        h = self.conv_in(x)
        skips = [h]
        for parts in self.down:
            h = self._run(parts, h, emb)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for parts in self.up:
            if isinstance(parts[0], ResBlock):
                h = self._run(parts, torch.cat([h, skips.pop()], 1), emb)
            else:
                h = parts[0](h, skips[-1].shape[-2:])
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out

    @staticmethod
    def _run(parts: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in parts:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h
