"""The `ssl` feature extractor: the domain classifier's conv body trained without labels (SimCLR), so FID, KID
and precision/recall work on the user's own unlabelled images.

Two augmented views of each train image are pulled together and pushed away from the other images' views
(NT-Xent). The augmentations are label-free and run on a whole batch at once: random resized crop and flip
(one affine grid per image, one grid_sample call), brightness/contrast jitter, and for RGB saturation jitter
and greyscale. No blur or noise: the features should stay sensitive to exactly those generator defects. The
projection head is used in training only; features are the 128-d body output. Cached per dataset fingerprint.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlab.modalities.image.data import ImageDataset, images_to_unit
from genlab.modalities.image.features import (
    TrainedFeatures,
    cache_root,
    conv_features,
    fit,
    save_trained,
)


class SSLEncoder(nn.Module):
    """The shared conv body (128-d features) and a two-layer projection head for the contrastive loss."""

    feature_dim = 128

    def __init__(self, channels: int, projection_dim: int = 64):
        super().__init__()
        self.body = conv_features(channels, self.feature_dim)
        self.head = nn.Sequential(nn.Linear(self.feature_dim, self.feature_dim), nn.ReLU(),
                                  nn.Linear(self.feature_dim, projection_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, projections) for images in [0, 1]."""
        h = self.body(x * 2 - 1)
        return h, self.head(h)


def random_views(x: torch.Tensor, generator: torch.Generator | None, min_scale: float = 0.3, aspect: float = 4 / 3,
                 jitter: float = 0.4, jitter_p: float = 0.8, grey_p: float = 0.2) -> torch.Tensor:
    """x: B x C x H x W float in [0, 1] -> one augmented view per image, same shape, values in [0, 1].

    Crop: a random area fraction in [min_scale, 1] and aspect ratio in [1/aspect, aspect], placed inside the image
    and resized back (bilinear); flip with probability 1/2. With probability `jitter_p` brightness and
    contrast (and saturation for RGB) are scaled by factors in [1 - jitter, 1 + jitter]; RGB views turn grey
    with probability `grey_p`."""
    b, c = x.shape[:2]

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    area = min_scale + (1 - min_scale) * rand(b)
    ratio = torch.exp((rand(b) * 2 - 1) * math.log(aspect))
    width, height = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)  # of the side
    cx, cy = (rand(b) * 2 - 1) * (1 - width), (rand(b) * 2 - 1) * (1 - height)  # the crop stays inside
    flip = torch.where(rand(b) < 0.5, -1.0, 1.0)
    zero = torch.zeros(b)
    theta = torch.stack([torch.stack([width * flip, zero, cx], 1), torch.stack([zero, height, cy], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def factor() -> torch.Tensor:
        return (1 + (rand(b) * 2 - 1) * jitter)[:, None, None, None]

    jittered = x * factor()
    mean = jittered.mean((1, 2, 3), keepdim=True)
    jittered = (jittered - mean) * factor() + mean
    if c == 3:
        grey = luminance(jittered)
        jittered = (jittered - grey) * factor() + grey
    x = torch.where((rand(b) < jitter_p)[:, None, None, None], jittered, x).clamp(0, 1)
    if c == 3:
        x = torch.where((rand(b) < grey_p)[:, None, None, None], luminance(x).expand_as(x), x)
    return x


def luminance(x: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W -> B x 1 x H x W (ITU-R 601 weights)."""
    return (x * x.new_tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the other 2B - 1 views (cosine similarity)."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, partner)


def ssl_dir(dataset: ImageDataset) -> Path:
    return cache_root() / "ssl" / dataset.fingerprint


def train_ssl_encoder(dataset: ImageDataset, epochs: int = 6, images_per_epoch: int | None = 8192,
                      batch_size: int = 256, temperature: float = 0.3, lr: float = 3e-3, seed: int = 0,
                      quiet: bool = True) -> dict:
    """Train the encoder on the train split (labels, if any, unused) and cache it. Each epoch draws
    `images_per_epoch` train images (all when None): the defaults see 49k images whatever the dataset size:
    160 s on one core for Fashion-MNIST (docs/benchmarks.md)."""
    torch.manual_seed(seed)
    model = SSLEncoder(dataset.shape[0])
    x = dataset.split_images("train")
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        batch = images_to_unit(x[idx])
        views = torch.cat([random_views(batch, gen), random_views(batch, gen)])
        z = model(views)[1]
        return nt_xent(z[: len(idx)], z[len(idx) :], temperature)

    t0 = time.perf_counter()
    losses = fit(model, loss_of, x.shape[0], epochs, min(batch_size, x.shape[0]), images_per_epoch, lr, seed,
                 "train ssl encoder", quiet)
    tail = losses[-max(1, len(losses) // 10) :]
    info = {"dataset_fingerprint": dataset.fingerprint, "channels": dataset.shape[0], "epochs": epochs,
            "images_per_epoch": min(x.shape[0], images_per_epoch or x.shape[0]), "batch_size": batch_size,
            "temperature": temperature, "steps": len(losses), "train_seconds": round(time.perf_counter() - t0, 1),
            "first_loss": round(losses[0], 4), "final_loss": round(sum(tail) / len(tail), 4),
            "chance_loss": round(math.log(2 * min(batch_size, x.shape[0]) - 1), 4)}
    save_trained(ssl_dir(dataset), "encoder", model, info)
    return info


class SSLFeatures(TrainedFeatures):
    """128-d features of the self-supervised encoder; no class probabilities (no IS, no label agreement)."""

    kind, stem, what = "ssl", "encoder", "ssl encoder"
    hint = "run `genlab features train CONFIG --extractor ssl` with the run's config"

    folder = staticmethod(ssl_dir)

    @staticmethod
    def build(info: dict) -> nn.Module:
        return SSLEncoder(info["channels"])

    @classmethod
    def train_for(cls, dataset: ImageDataset, quiet: bool = True) -> dict:
        return train_ssl_encoder(dataset, quiet=quiet)

    def _batch(self, images):
        return self.model(images)[0], None
