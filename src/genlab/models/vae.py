"""Variational autoencoder: Gaussian latent, Bernoulli or discretised-logistic pixels, ELBO and IWAE bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from genlab.core.batch import Batch
from genlab.core.validate import choice, positive
from genlab.models.base import DataSpec, GenerativeModel, Phase, class_embedding
from genlab.nn.blocks import MLP, ConvDecoder, ConvEncoder
from genlab.nn.likelihoods import (
    bernoulli_log_prob,
    diagonal_normal_log_prob,
    discretized_logistic_log_prob,
    standard_normal_log_prob,
)
from genlab.nn.noise import randn


@dataclass
class VAEEval:
    """What `genlab eval` computes for a VAE beyond its modality's metrics."""

    iwae_k: int = 100  # importance samples per image for the IWAE bound (tighter with more; the cost is linear)
    iwae_images: int | None = 1000  # test images used for IWAE; None: the whole test split

    def validate(self) -> None:
        positive("eval", {"iwae_k": self.iwae_k, "iwae_images": self.iwae_images})


@dataclass
class VAEConfig:
    latent_dim: int = 32
    architecture: str = "conv"  # conv | mlp
    widths: list[int] = field(default_factory=lambda: [32, 64])  # conv channels per stride-2 stage
    hidden: list[int] = field(default_factory=lambda: [512])  # mlp hidden sizes (and conv head width)
    likelihood: str = "bernoulli"  # bernoulli | logistic (discretised, 8-bit)
    beta: float = 1.0  # weight of the KL term in the training loss (validation always reports beta=1)
    conditional: bool = False
    embed_dim: int = 16
    iwae_chunk: int = 8192  # decoder batch size when estimating IWAE

    def validate(self) -> None:
        choice("model.architecture", self.architecture, ("conv", "mlp"))
        choice("model.likelihood", self.likelihood, ("bernoulli", "logistic"))


class VAE(GenerativeModel):
    modality = "image"
    eval_options = VAEEval
    config_class = VAEConfig
    supports_likelihood = True

    def __init__(self, config: VAEConfig, spec: DataSpec):
        super().__init__(config, spec)
        size = (spec.height, spec.width)
        pixels = spec.channels * spec.height * spec.width
        self.embed = class_embedding(config, spec, config.embed_dim)
        cond = config.embed_dim if self.embed is not None else 0
        out_channels = spec.channels * (2 if config.likelihood == "logistic" else 1)
        if config.architecture == "conv":
            self.encoder_body = ConvEncoder(spec.channels, size, config.widths)
            feat = self.encoder_body.out_features
            self.decoder = ConvDecoder(config.latent_dim + cond, out_channels, size, config.widths)
        else:
            self.encoder_body = nn.Sequential(nn.Flatten(), MLP([pixels, *config.hidden]), nn.ReLU())
            feat = config.hidden[-1]
            self.decoder = _MLPDecoder(config.latent_dim + cond, config.hidden, out_channels, size)
        self.encoder_head = nn.Linear(feat + cond, 2 * config.latent_dim)

    def phases(self) -> list[Phase]:
        return [Phase("vae", [self])]

    # -- the model's math -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder_body(x)
        if self.embed is not None:
            h = torch.cat([h, self.embed(y)], 1)
        mu, logvar = self.encoder_head(h).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        return self.decoder(z)

    def log_px_given_z(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.config.likelihood == "bernoulli":
            return bernoulli_log_prob(out, x)
        mean, log_scale = out.chunk(2, dim=-3)
        return discretized_logistic_log_prob(torch.tanh(mean), log_scale, x)

    def elbo_terms(self, batch: Batch, noise: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image reconstruction log-likelihood and KL(q(z|x) || p(z)), single-sample estimate."""
        mu, logvar = self.encode(batch.x, batch.y)
        eps = randn(mu.shape, noise, dtype=mu.dtype, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        rec = self.log_px_given_z(self.decode(z, batch.y), batch.x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        return rec, kl

    # -- protocol -----------------------------------------------------------------------------------
    def phase_loss(self, phase: str, batch: Batch, noise: torch.Generator):
        rec, kl = self.elbo_terms(batch, noise)
        loss = (-rec + self.config.beta * kl).mean()
        return loss, {"neg_elbo": (kl - rec).mean(), "reconstruction": -rec.mean(), "kl": kl.mean()}

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator):
        rec, kl = self.elbo_terms(batch, noise)
        return {"neg_elbo": (kl - rec).mean(), "kl": kl.mean()}

    @torch.no_grad()
    def sample(self, n: int, labels=None, noise=None) -> torch.Tensor:
        y = self.sample_labels(n, labels, noise)
        z = randn((n, self.config.latent_dim), noise, device=self.device)
        out = self.decode(z, y)
        if self.config.likelihood == "bernoulli":
            return torch.sigmoid(out)
        mean = out.chunk(2, dim=1)[0]
        return (torch.tanh(mean) + 1) / 2

    def test_likelihood(self, dataset, ec, binarize: bool, quiet: bool = True) -> dict:
        """ELBO over the test split and IWAE over its first `ec.iwae_images` images."""
        from genlab.metrics.likelihood import test_log_likelihood

        return test_log_likelihood(self, dataset, ec.iwae_k, ec.iwae_images, ec.seed, binarize, quiet)

    @torch.no_grad()
    def log_likelihood(self, batch: Batch, k: int, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """ELBO and the importance-weighted bound log (1/K) sum_k p(x,z_k)/q(z_k|x) (Burda et al. 2016)."""
        x, y = batch.x, batch.y
        mu, logvar = self.encode(x, y)
        b = x.shape[0]
        per_chunk = max(1, self.config.iwae_chunk // b)
        log_w = []
        for start in range(0, k, per_chunk):
            kc = min(per_chunk, k - start)
            eps = randn((kc, b, mu.shape[1]), noise, device=mu.device)
            z = mu + torch.exp(0.5 * logvar) * eps  # kc x b x d
            yf = None if y is None else y.repeat(kc)
            out = self.decode(z.reshape(kc * b, -1), yf)
            log_px = self.log_px_given_z(out.view(kc, b, *out.shape[1:]), x)  # x broadcasts over the K axis
            log_w.append(log_px + standard_normal_log_prob(z) - diagonal_normal_log_prob(z, mu, logvar))
        log_w = torch.cat(log_w)
        iwae = torch.logsumexp(log_w, 0) - math.log(k)
        return {"elbo": log_w[0], "iwae": iwae}


class _MLPDecoder(nn.Module):
    def __init__(self, in_features: int, hidden: list[int], out_channels: int, size: tuple[int, int]):
        super().__init__()
        self.shape = (out_channels, *size)
        self.net = MLP([in_features, *reversed(hidden), out_channels * size[0] * size[1]])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.shape)
