"""KL-regularised convolutional autoencoder (the first stage of latent diffusion, Rombach et al. 2022).

Images (in [-1, 1] inside, [0, 1] outside like every family) go through residual conv blocks and log2(downsample)
stride-2 convolutions to a `latent_channels` x H/downsample x W/downsample posterior N(mean, exp(logvar)); the
decoder mirrors it with nearest-neighbour upsampling. The loss is the L1 or L2 reconstruction error summed over
pixels plus `kl_weight` times KL(q(z|x) || N(0, I)) summed over latent elements (both per image, as in the
latent-diffusion code), so a small weight (1e-6..1e-4) keeps the latents close to unit scale without blurring.

`encode(x) -> (mean, logvar)` and `decode(z)` are what latent diffusion (model.latent_from on the diffusion family)
uses. `sample(n)` decodes N(0, I) latents: with so small a KL weight the aggregate posterior is far from N(0, I),
so those samples are poor; the family is for reconstruction (and as a latent space), not for sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError
from genlab.core.validate import choice, positive
from genlab.models.base import DataSpec, GenerativeModel, Phase
from genlab.nn.noise import randn
from genlab.nn.unet import ResBlock
from genlab.nn.unet import _norm as group_norm

GROUPS = 8


def stage_mults(config: AutoencoderConfig) -> list[int]:
    """Channel multipliers, one per resolution (log2(downsample) + 1 of them)."""
    stages = int(math.log2(config.downsample)) + 1
    return list(config.channel_mults) if config.channel_mults else [1, 2, 2, 4][:stages]


@dataclass
class AutoencoderConfig:
    downsample: int = 4  # 4 | 8: spatial reduction of the latent (64 px -> 16 or 8)
    latent_channels: int = 4  # channels of the latent maps (what latent diffusion's U-Net denoises)
    base_channels: int = 32  # channels at full resolution (times channel_mults at the lower ones)
    # one multiplier of base_channels per resolution, log2(downsample) + 1 of them; None: [1, 2, 2] or [1, 2, 2, 4]
    channel_mults: list[int] | None = None
    blocks_per_level: int = 1  # residual blocks per resolution (encoder and decoder each)
    reconstruction: str = "l1"  # l1 | l2: the error summed over pixels of [-1, 1] images
    kl_weight: float = 1e-6  # weight of KL(q(z|x) || N(0, I)) against the summed reconstruction error

    def validate(self) -> None:
        if self.downsample not in (4, 8):
            raise GenlabError(f"config key 'model.downsample' is {self.downsample!r}; choose one of: 4, 8")
        choice("model.reconstruction", self.reconstruction, ("l1", "l2"))
        positive("model", {"latent_channels": self.latent_channels, "base_channels": self.base_channels,
                           "blocks_per_level": self.blocks_per_level})
        if self.kl_weight < 0:
            raise GenlabError("config key 'model.kl_weight' must be >= 0")
        stages = int(math.log2(self.downsample)) + 1
        if self.channel_mults is not None and (len(self.channel_mults) != stages or min(self.channel_mults) <= 0):
            raise GenlabError(f"config key 'model.channel_mults' must list {stages} positive integers for "
                              f"model.downsample={self.downsample} (one per resolution), or be left out")


class Encoder(nn.Module):
    def __init__(self, channels: int, config: AutoencoderConfig):
        super().__init__()
        widths = [config.base_channels * m for m in stage_mults(config)]
        self.conv_in = nn.Conv2d(channels, widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        ch = widths[0]
        for level, width in enumerate(widths):
            for _ in range(config.blocks_per_level):
                layers.append(ResBlock(ch, width, 0, GROUPS))
                ch = width
            if level < len(widths) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        layers.append(ResBlock(ch, ch, 0, GROUPS))  # the middle
        self.body = nn.Sequential(*layers)
        self.norm_out = group_norm(ch, GROUPS)
        self.conv_out = nn.Conv2d(ch, 2 * config.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.body(self.conv_in(x)))))


class Decoder(nn.Module):
    def __init__(self, channels: int, config: AutoencoderConfig):
        super().__init__()
        widths = [config.base_channels * m for m in stage_mults(config)]
        ch = widths[-1]
        self.conv_in = nn.Conv2d(config.latent_channels, ch, 3, padding=1)
        layers: list[nn.Module] = [ResBlock(ch, ch, 0, GROUPS)]  # the middle
        for level in reversed(range(len(widths))):
            for _ in range(config.blocks_per_level):
                layers.append(ResBlock(ch, widths[level], 0, GROUPS))
                ch = widths[level]
            if level > 0:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.norm_out = group_norm(ch, GROUPS)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.body(self.conv_in(z)))))


class Autoencoder(GenerativeModel):
    modality = "image"
    config_class = AutoencoderConfig

    def __init__(self, config: AutoencoderConfig, spec: DataSpec):
        super().__init__(config, spec)
        ds = config.downsample
        if spec.height % ds or spec.width % ds:
            raise GenlabError(f"model.downsample={ds} must divide the image size {spec.height}x{spec.width}")
        self.encoder = Encoder(spec.channels, config)
        self.decoder = Decoder(spec.channels, config)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        ds = self.config.downsample
        return self.config.latent_channels, self.spec.height // ds, self.spec.width // ds

    def phases(self) -> list[Phase]:
        return [Phase("autoencoder", [self])]

    # -- the model's math (x in [-1, 1]) ---------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z|x) = N(mean, exp(logvar)) of images x in [-1, 1]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in (about) [-1, 1] from latents; callers clamp."""
        return self.decoder(z)

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] decoded from the posterior means of `x01` (in [0, 1])."""
        mean, _ = self.encode(x01 * 2 - 1)
        return ((self.decode(mean).clamp(-1, 1) + 1) / 2).float()

    def loss_terms(self, batch: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        x = batch.x * 2 - 1
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * randn(mean.shape, noise, dtype=mean.dtype, device=mean.device)
        error = self.decode(z) - x
        error = error.abs() if self.config.reconstruction == "l1" else error.pow(2)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
        return {"reconstruction": error.flatten(1).sum(1), "kl": kl}

    # -- protocol -----------------------------------------------------------------------------------
    def phase_loss(self, phase: str, batch: Batch, noise: torch.Generator):
        terms = self.loss_terms(batch, noise)
        loss = (terms["reconstruction"] + self.config.kl_weight * terms["kl"]).mean()
        pixels = batch.x[0].numel()
        return loss, {"loss": loss, "reconstruction_per_pixel": terms["reconstruction"].mean() / pixels,
                      "kl": terms["kl"].mean()}

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator):
        """Reconstruction MSE and PSNR (dB) of [0, 1] images decoded from the posterior mean, and the KL."""
        mse, psnr = reconstruction_errors(self.reconstruct(batch.x), batch.x)
        mean, logvar = self.encode(batch.x * 2 - 1)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
        return {"mse": mse.mean(), "psnr": psnr.mean(), "kl": kl.mean()}

    @torch.no_grad()
    def sample(self, n: int, labels=None, noise=None) -> torch.Tensor:
        """Decoded N(0, I) latents: poor images (the KL weight is small, so the latents are not N(0, I))."""
        self.sample_labels(n, labels, noise)  # an error when a label is given: the family is unconditional
        z = randn((n, *self.latent_shape), noise, device=self.device)
        return ((self.decode(z).clamp(-1, 1) + 1) / 2).float()

    @torch.no_grad()
    def family_metrics(self, dataset, ec, quiet: bool = True) -> dict:
        """Test reconstruction: PSNR in dB of [0, 1] images (mean over the test images) and MSE."""
        total_mse = total_psnr = 0.0
        n = 0
        for batch in dataset.batches("test", 250):
            x = batch.x.to(self.device)
            mse, psnr = reconstruction_errors(self.reconstruct(x), x)
            total_mse, total_psnr, n = total_mse + float(mse.sum()), total_psnr + float(psnr.sum()), n + x.shape[0]
        if not n:
            return {"reconstruction": {"error": "the test split is empty"}}
        found = {"test_psnr_db": total_psnr / n, "test_mse": total_mse / n, "images": n}
        return {"reconstruction": found,
                "headline": {"test reconstruction PSNR (dB)": round(found["test_psnr_db"], 3),
                             "test reconstruction MSE": round(found["test_mse"], 6)}}


def reconstruction_errors(recon: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image MSE and PSNR = 10 log10(1 / MSE) of [0, 1] images (MSE floored at 1e-10: 100 dB at most)."""
    mse = (recon.float() - x.float()).pow(2).flatten(1).mean(1)
    return mse, 10 * torch.log10(1.0 / mse.clamp(min=1e-10))
