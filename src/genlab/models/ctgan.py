"""CTGAN (Xu et al. 2019): a conditional GAN over the encoded rows of a table. The generator takes noise and
a condition vector (one category of one categorical column), has residual layers, and ends in tanh for
normalised values and Gumbel-softmax for mode and category blocks; the critic scores packs of `pac` rows
(PacGAN, against mode collapse) and trains with WGAN-GP. With data.balance the rows come by
training-by-sampling; without it each row is conditioned on one of its own categories.

`sample(n, conditions={"col": value})` feeds that category to the generator as its condition (no hidden
rejection); a value outside the column's categories is an error."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError
from genlab.modalities.table.conditions import category_blocks, condition_width, encoded_fidelity, split_blocks
from genlab.models.base import DataSpec, GenerativeModel, Phase
from genlab.nn.adversarial import gradient_penalty
from genlab.nn.noise import rand, randint, randn


@dataclass
class CTGANConfig:
    latent_dim: int = 128
    generator_widths: list[int] = field(default_factory=lambda: [256, 256])
    discriminator_widths: list[int] = field(default_factory=lambda: [256, 256])
    pac: int = 10  # rows per critic input (PacGAN); train.batch_size must be a multiple
    gp_weight: float = 10.0
    tau: float = 0.2  # Gumbel-softmax temperature of mode and category blocks
    n_critic: int = 1


class Residual(nn.Module):
    """Linear -> BatchNorm -> ReLU, concatenated with its input (CTGAN's generator block)."""

    def __init__(self, i: int, o: int):
        super().__init__()
        self.fc, self.bn = nn.Linear(i, o), nn.BatchNorm1d(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class Critic(nn.Module):
    def __init__(self, width: int, widths: list[int], pac: int):
        super().__init__()
        layers, size = [], width * pac
        for w in widths:
            layers += [nn.Linear(size, w), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            size = w
        self.net, self.pac = nn.Sequential(*layers, nn.Linear(size, 1)), pac

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.net(rows.reshape(-1, self.pac * rows.shape[1]))


class CTGAN(GenerativeModel):
    modality = "table"
    config_class = CTGANConfig
    accepts_conditions = True

    def __init__(self, config: CTGANConfig, spec: DataSpec):
        super().__init__(config, spec)
        if not spec.spans:
            raise GenlabError("the ctgan family models tables: set data.source=table and data.path to a CSV/Parquet")
        self.width, self.cond_width = sum(w for _, w in spec.spans), condition_width(spec.spans)
        layers, size = [], config.latent_dim + self.cond_width
        for w in config.generator_widths:
            layers.append(Residual(size, w))
            size += w
        self.generator = nn.Sequential(*layers, nn.Linear(size, self.width))
        self.discriminator = Critic(self.width + self.cond_width, config.discriminator_widths, config.pac)
        self.blocks = category_blocks(spec.spans)
        self.register_buffer("frequencies", torch.tensor(spec.category_frequencies or [0.0], dtype=torch.float32))
        self.private = False  # set by make_private: the generator then conditions on public draws only

    def phases(self) -> list[Phase]:
        """The critic reads real rows (private); the generator sees only the critic's scores of its own rows,
        so under train.privacy it is post-processing of the private critic and spends no budget."""
        return [Phase("discriminator", [self.discriminator], self.config.n_critic, private=True),
                Phase("generator", [self.generator])]

    def make_private(self) -> None:
        """DP-SGD clips each row's gradient, so a critic input must be one row (model.pac=1); the generator's
        conditions come from the frequencies (uniform over the public schema's categories under privacy),
        never from real rows."""
        if self.config.pac != 1:
            raise GenlabError(f"train.privacy clips each row's gradient; the critic must score single rows: set "
                              f"model.pac=1 (now {self.config.pac})")
        self.private = True

    # -- conditions -----------------------------------------------------------------------------------
    def own_conditions(self, rows: torch.Tensor, noise) -> torch.Tensor:
        """Each row conditioned on its own category in one randomly chosen categorical column."""
        cond = torch.zeros(rows.shape[0], self.cond_width, device=rows.device)
        if not self.blocks:
            return cond
        column = randint(len(self.blocks), (rows.shape[0],), noise, device=rows.device)
        start = 0
        for c, (offset, width) in enumerate(self.blocks):
            chosen = column == c
            cond[chosen, start:start + width] = rows[chosen, offset:offset + width]
            start += width
        return cond

    def drawn_conditions(self, n: int, noise) -> torch.Tensor:
        """Conditions for unconditional sampling: a column uniformly, its category by training frequency."""
        cond = torch.zeros(n, self.cond_width, device=self.device)
        if not self.blocks:
            return cond
        column = randint(len(self.blocks), (n,), noise, device=self.device)
        u = rand((n,), noise, device=self.device)
        start = 0
        for c, (_, width) in enumerate(self.blocks):
            cdf = self.frequencies[start:start + width].cumsum(0)
            k = torch.searchsorted(cdf, (u * cdf[-1]).unsqueeze(1)).squeeze(1).clamp_max(width - 1)
            chosen = column == c
            cond[chosen, start + k[chosen]] = 1.0
            start += width
        return cond

    # -- generator ------------------------------------------------------------------------------------
    def _generate(self, cond: torch.Tensor, noise, hard: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(activated rows, raw logits) for one row per condition."""
        z = randn((cond.shape[0], self.config.latent_dim), noise, device=cond.device)
        logits = self.generator(torch.cat([z, cond], 1))
        blocks = []
        for part, block in split_blocks(logits, self.spec.spans):
            if part == "value":
                blocks.append(torch.tanh(block))
            else:
                u = rand(block.shape, noise, device=block.device).clamp(1e-10, 1 - 1e-10)
                soft = ((block - torch.log(-torch.log(u))) / self.config.tau).softmax(1)
                blocks.append(F.one_hot(soft.argmax(1), block.shape[1]).float() if hard else soft)
        return torch.cat(blocks, 1), logits

    def condition_loss(self, logits: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the conditioned column's generated category against the condition."""
        loss, start = logits.new_zeros(()), 0
        for offset, width in self.blocks:
            target = cond[:, start:start + width]
            chosen = target.sum(1) > 0
            if chosen.any():
                loss = loss + F.cross_entropy(logits[chosen, offset:offset + width], target[chosen].argmax(1),
                                              reduction="sum")
            start += width
        return loss / cond.shape[0]

    # -- training -------------------------------------------------------------------------------------
    def phase_loss(self, phase: str, batch: Batch, noise: torch.Generator):
        real = batch.x
        if real.shape[0] % self.config.pac:
            raise GenlabError(f"the batch on each process ({real.shape[0]} rows) must be a multiple of model.pac "
                              f"({self.config.pac})")
        if phase == "generator" and self.private:  # the batch holds no rows: conditions from public frequencies
            cond = self.drawn_conditions(real.shape[0], noise)
        else:
            cond = batch.cond if batch.cond is not None else self.own_conditions(real, noise)
        if phase == "discriminator":
            with torch.no_grad():
                training = self.generator.training
                self.generator.train(training and not self.private)  # DP-SGD feeds one row: BatchNorm's averages
                fake, _ = self._generate(cond, noise)
                self.generator.train(training)
            real_in, fake_in = torch.cat([real, cond], 1), torch.cat([fake, cond], 1)
            wdist = self.discriminator(real_in).mean() - self.discriminator(fake_in).mean()
            gp = gradient_penalty(self.discriminator, real_in, fake_in, noise, group=self.config.pac)
            loss = -wdist + self.config.gp_weight * gp
            return loss, {"d_loss": loss, "wasserstein": wdist, "gp": gp}
        fake, logits = self._generate(cond, noise)
        adversarial = -self.discriminator(torch.cat([fake, cond], 1)).mean()
        conditioning = self.condition_loss(logits, cond)
        loss = adversarial + conditioning
        return loss, {"g_loss": loss, "condition_ce": conditioning}

    @torch.no_grad()
    def validation_metrics(self, batch: Batch, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """Condition cross-entropy (how well the generator obeys its conditions) and the critic's gap."""
        rows = batch.x[: batch.x.shape[0] // self.config.pac * self.config.pac]
        if rows.shape[0] == 0:
            return {}
        cond = self.own_conditions(rows, noise)
        fake, logits = self._generate(cond, noise)
        wdist = self.discriminator(torch.cat([rows, cond], 1)).mean() - \
            self.discriminator(torch.cat([fake, cond], 1)).mean()
        return {"condition_ce": self.condition_loss(logits, cond), "wasserstein": wdist,
                "fidelity": encoded_fidelity(rows, self.sample(rows.shape[0], noise=noise), self.spec.spans)}

    # -- sampling -------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, labels=None, noise=None, conditions: torch.Tensor | None = None) -> torch.Tensor:
        """n encoded rows; `conditions` (one condition vector, TableDataset.condition_vector) fixes the
        category of every row, else conditions are drawn by training frequency."""
        if labels is not None:
            raise GenlabError("ctgan conditions on column values, not labels: use --condition column=value")
        if conditions is not None:
            cond = conditions.to(self.device, torch.float32).reshape(1, -1).expand(n, -1)
        else:
            cond = self.drawn_conditions(n, noise)
        return self._generate(cond, noise, hard=True)[0]
