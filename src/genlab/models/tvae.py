"""TVAE (Xu et al. 2019): a VAE over the encoded rows of a table. Normalised values are reconstructed with a
Gaussian whose scale is learned per column, modes and categories with a cross-entropy per block; sampling
decodes a prior draw, squashes values with tanh and draws each categorical block from its softmax."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError
from genlab.modalities.table.conditions import encoded_fidelity, split_blocks
from genlab.models.base import DataSpec, GenerativeModel, Phase
from genlab.nn.blocks import MLP
from genlab.nn.noise import rand, randn


@dataclass
class TVAEConfig:
    latent_dim: int = 128
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    loss_factor: float = 2.0  # weight of the reconstruction term against the KL term (TVAE's default)


class TVAE(GenerativeModel):
    modality = "table"
    config_class = TVAEConfig

    def __init__(self, config: TVAEConfig, spec: DataSpec):
        super().__init__(config, spec)
        if not spec.spans:
            raise GenlabError("the tvae family models tables: set data.source=table and data.path to a CSV/Parquet")
        width = sum(w for _, w in spec.spans)
        self.encoder = nn.Sequential(MLP([width, *config.hidden]), nn.ReLU(),
                                     nn.Linear(config.hidden[-1], 2 * config.latent_dim))
        self.decoder = nn.Sequential(MLP([config.latent_dim, *reversed(config.hidden)]), nn.ReLU(),
                                     nn.Linear(config.hidden[0], width))
        self.log_sigma = nn.Parameter(torch.full((width,), -2.3))  # per encoded column; used by value blocks

    def phases(self) -> list[Phase]:
        return [Phase("vae", [self], private=True)]  # its one phase reads the rows

    def _terms(self, x: torch.Tensor, noise) -> dict[str, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + (0.5 * logvar).exp() * randn(mu.shape, noise, device=mu.device) if noise is not None else mu
        out = self.decoder(z)
        rec = torch.zeros(x.shape[0], device=x.device)
        sigmas = self.log_sigma.split([w for _, w in self.spec.spans])
        for (part, target), (_, logits), log_sigma in zip(split_blocks(x, self.spec.spans),
                                                          split_blocks(out, self.spec.spans), sigmas, strict=True):
            if part == "value":
                rec = rec + (((target - torch.tanh(logits)) ** 2) / (2 * (2 * log_sigma).exp()) + log_sigma).sum(1)
            else:
                rec = rec + F.cross_entropy(logits, target.argmax(1), reduction="none")
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return {"reconstruction": rec.mean(), "kl": kl.mean(),
                "loss": self.config.loss_factor * rec.mean() + kl.mean()}

    def phase_loss(self, phase: str, batch: Batch, noise: torch.Generator):
        terms = self._terms(batch.x, noise)
        return terms["loss"], terms

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        fidelity = encoded_fidelity(batch.x, self.sample(batch.x.shape[0], noise=noise), self.spec.spans)
        return {**self._terms(batch.x, noise), "fidelity": fidelity}

    @torch.no_grad()
    def sample(self, n: int, labels=None, noise=None) -> torch.Tensor:
        """n encoded rows: tanh values and one-hot blocks drawn from each softmax (Gumbel-max)."""
        if labels is not None:
            raise GenlabError("tvae samples are unconditional; drop --label")
        out = self.decoder(randn((n, self.config.latent_dim), noise, device=self.device))
        blocks = []
        for part, logits in split_blocks(out, self.spec.spans):
            if part == "value":
                blocks.append(torch.tanh(logits))
            else:
                gumbel = -torch.log(-torch.log(rand(logits.shape, noise, device=logits.device).clamp_min(1e-12)))
                blocks.append(F.one_hot((logits + gumbel).argmax(1), logits.shape[1]).float())
        return torch.cat(blocks, 1)
