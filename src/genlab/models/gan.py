"""DCGAN-style GAN: non-saturating, hinge or WGAN-GP losses; spectral norm; projection class conditioning."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError
from genlab.core.validate import choice
from genlab.models.base import DataSpec, GenerativeModel, Phase, class_embedding
from genlab.nn.adversarial import gradient_penalty
from genlab.nn.blocks import ConvDecoder, ConvEncoder
from genlab.nn.noise import randn


@dataclass
class GANConfig:
    latent_dim: int = 64
    generator_widths: list[int] = field(default_factory=lambda: [64, 128])
    discriminator_widths: list[int] = field(default_factory=lambda: [64, 128])
    loss: str = "ns"  # ns (non-saturating) | hinge | wgan-gp
    gp_weight: float = 10.0
    spectral_norm: bool = False
    discriminator_norm: str = "none"  # none | batch (DCGAN paper) | group; wgan-gp needs none or group
    n_critic: int = 1  # discriminator steps per generator step
    conditional: bool = False
    embed_dim: int = 32

    def validate(self) -> None:
        choice("model.loss", self.loss, ("ns", "hinge", "wgan-gp"))
        choice("model.discriminator_norm", self.discriminator_norm, ("none", "batch", "group"))
        if self.loss == "wgan-gp" and self.discriminator_norm == "batch":
            raise GenlabError("model.discriminator_norm=batch breaks the per-sample gradient penalty of wgan-gp; "
                              "use none or group")


class Generator(nn.Module):
    def __init__(self, config: GANConfig, spec: DataSpec):
        super().__init__()
        self.embed = class_embedding(config, spec, config.embed_dim)
        cond = config.embed_dim if self.embed is not None else 0
        self.body = ConvDecoder(config.latent_dim + cond, spec.channels, (spec.height, spec.width),
                                config.generator_widths, norm="batch")

    def forward(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        return torch.tanh(self.body(z))  # in [-1, 1]


class Discriminator(nn.Module):
    """Conv features -> a score; conditional models add <embed(y), features> (projection discriminator)."""

    def __init__(self, config: GANConfig, spec: DataSpec):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if config.spectral_norm else (lambda m: m)
        self.body = ConvEncoder(spec.channels, (spec.height, spec.width), config.discriminator_widths,
                                norm=config.discriminator_norm, activation="leaky_relu",
                                spectral_norm=config.spectral_norm)
        self.head = sn(nn.Linear(self.body.out_features, 1))
        self.embed = class_embedding(config, spec, self.body.out_features)
        if self.embed is not None and config.spectral_norm:
            self.embed = sn(self.embed)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.body(x)
        score = self.head(h).squeeze(1)
        if self.embed is not None:
            score = score + (self.embed(y) * h).sum(1)
        return score


class GAN(GenerativeModel):
    modality = "image"
    config_class = GANConfig

    def __init__(self, config: GANConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.generator = Generator(config, spec)
        self.discriminator = Discriminator(config, spec)

    def phases(self) -> list[Phase]:
        return [Phase("discriminator", [self.discriminator], self.config.n_critic),
                Phase("generator", [self.generator])]

    def _fake(self, batch: Batch, noise: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = batch.x.shape[0]
        z = randn((n, self.config.latent_dim), noise, device=self.device)
        y = batch.y if self.conditional else None
        return self.generator(z, y), y

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor, y, noise) -> dict[str, torch.Tensor]:
        d_real, d_fake = self.discriminator(real, y), self.discriminator(fake, y)
        loss = self.config.loss
        if loss == "ns":
            terms = {"d_loss": (F.softplus(-d_real) + F.softplus(d_fake)).mean()}
        elif loss == "hinge":
            terms = {"d_loss": (F.relu(1 - d_real) + F.relu(1 + d_fake)).mean()}
        else:
            wdist = (d_real - d_fake).mean()
            gp = gradient_penalty(self.discriminator, real, fake, noise, y)
            terms = {"d_loss": -wdist + self.config.gp_weight * gp, "wasserstein": wdist, "gp": gp}
        terms["d_real"], terms["d_fake"] = d_real.mean(), d_fake.mean()
        return terms

    def generator_loss(self, fake: torch.Tensor, y) -> torch.Tensor:
        d_fake = self.discriminator(fake, y)
        return F.softplus(-d_fake).mean() if self.config.loss == "ns" else -d_fake.mean()

    def phase_loss(self, phase: str, batch: Batch, noise: torch.Generator):
        if phase == "discriminator":
            with torch.no_grad():
                fake, y = self._fake(batch, noise)
            terms = self.discriminator_loss(batch.x * 2 - 1, fake, y, noise)
            return terms["d_loss"], terms
        fake, y = self._fake(batch, noise)
        g_loss = self.generator_loss(fake, y)
        return g_loss, {"g_loss": g_loss}

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator):
        fake, y = self._fake(batch, noise)
        with torch.enable_grad():
            terms = self.discriminator_loss(batch.x * 2 - 1, fake, y, noise)
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def sample(self, n: int, labels=None, noise=None) -> torch.Tensor:
        y = self.sample_labels(n, labels, noise)
        z = randn((n, self.config.latent_dim), noise, device=self.device)
        return (self.generator(z, y) + 1) / 2
