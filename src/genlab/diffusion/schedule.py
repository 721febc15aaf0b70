"""Noise schedules: the forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), t = 0..T-1.

Everything is kept in float64 (1 - abar_t is tiny at small t) and cast when applied to a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genlab.core.errors import GenlabError


@dataclass
class NoiseSchedule:
    alphas_cumprod: torch.Tensor  # float64, abar_t for t = 0..T-1 (decreasing)

    @classmethod
    def make(cls, kind: str, timesteps: int) -> NoiseSchedule:
        if timesteps < 2:
            raise GenlabError("model.timesteps must be at least 2")
        if kind == "linear":  # Ho et al. 2020, betas 1e-4..0.02 at T=1000, scaled for other T
            scale = 1000 / timesteps
            betas = torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
            return cls(torch.cumprod(1 - betas.clamp(max=0.999), 0))
        if kind == "cosine":  # Nichol & Dhariwal 2021, s = 0.008, betas clipped at 0.999
            steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
            f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
            return cls(torch.cumprod(1 - betas, 0))
        raise GenlabError(f"unknown noise schedule {kind!r}; choose linear or cosine")

    def _on(self, device: torch.device) -> torch.Tensor:
        """The table on `device` (kept on the CPU; a GPU batch indexes a copy made there)."""
        table = self.alphas_cumprod
        return table if table.device == device else table.to(device)

    @property
    def timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def alpha_sigma(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(abar_t) and sqrt(1 - abar_t) for a batch of timesteps, shaped to broadcast against `like`."""
        abar = self._on(t.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
        return abar.sqrt(), (1 - abar).sqrt()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.alpha_sigma(t, x0)
        return alpha * x0 + sigma * noise

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        abar = self._on(t.device)[t]
        return (abar / (1 - abar)).float()


def sampling_timesteps(total: int, steps: int) -> torch.Tensor:
    """`steps` timesteps from T-1 down, evenly spaced and "trailing" (Lin et al. 2024): the first is always
    T-1 (pure noise) and the last step jumps to clean data, so every step costs exactly one network call."""
    if not 1 <= steps <= total:
        raise GenlabError(f"--steps must be between 1 and the model's {total} timesteps, got {steps}")
    return (torch.arange(steps, 0, -1, dtype=torch.float64) * (total / steps)).round().long() - 1
