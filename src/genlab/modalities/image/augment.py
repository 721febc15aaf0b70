"""Image augmentation: flips, shifts, rotations, zooms and pixel noise, for a whole batch at once (one
affine grid per image, one grid_sample call), drawn from a given generator so runs stay reproducible.
`suggest_augmentation` picks per-dataset defaults from the data itself: flips only when the classes look
mirror-symmetric (Fashion-MNIST's clothes do, digits do not)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genlab.config import AugmentConfig


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    """x: B x C x H x W float in [0, 1] -> augmented copy, same shape and range."""
    if not cfg.active:
        return x
    b = x.shape[0]

    def uniform(*shape: int) -> torch.Tensor:  # in [-1, 1)
        return torch.rand(*shape, generator=generator) * 2 - 1

    if cfg.flip:
        flipped = torch.rand(b, generator=generator) < cfg.flip
        x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
    if cfg.translate or cfg.rotate or cfg.scale:
        angle = uniform(b) * math.radians(cfg.rotate)
        zoom = 1 + uniform(b) * cfg.scale
        shift = uniform(b, 2) * 2 * cfg.translate  # affine_grid's coordinates span 2 per side
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.noise:
        x = (x + torch.randn(x.shape, generator=generator) * cfg.noise).clamp(0, 1)
    return x


def mirror_symmetry(images: torch.Tensor, labels: torch.Tensor | None) -> float:
    """Median over classes of the correlation between a class's mean image and its mirror image."""
    groups = [images] if labels is None else [images[labels == c] for c in labels.unique()]
    scores = []
    for g in groups:
        mean = g.float().mean(0)
        scores.append(float(torch.corrcoef(torch.stack([mean.flatten(), mean.flip(-1).flatten()]))[0, 1]))
    return float(torch.tensor(scores).nan_to_num(0.0).median())


def suggest_augmentation(images: torch.Tensor, labels: torch.Tensor | None) -> tuple[AugmentConfig, dict]:
    """Mild geometry for any image data (shifts of ~7% of the side, 10 degrees, 10% zoom); horizontal flips
    only when the class means are mirror-symmetric (median correlation >= 0.9). Returns the config and why."""
    symmetry = mirror_symmetry(images, labels)
    cfg = AugmentConfig(flip=0.5 if symmetry >= 0.9 else 0.0, translate=0.07, rotate=10.0, scale=0.1)
    return cfg, {"mirror_symmetry": round(symmetry, 4), "flip": "on" if cfg.flip else "off (classes are handed)"}
