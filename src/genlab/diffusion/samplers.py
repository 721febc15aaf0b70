"""Samplers: turn pure noise into data with a denoiser (x_t, t) -> (x0_hat, eps_hat), on any subset of the
training timesteps. They see the schedule and the denoiser only, so guidance, the network and the
prediction type are the caller's business.

The last step of every sampler jumps from the smallest chosen timestep to clean data (x = x0_hat), so
`steps` network calls are exactly `steps` denoiser calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from genlab.core.errors import GenlabError
from genlab.diffusion.schedule import NoiseSchedule, sampling_timesteps
from genlab.nn.noise import randn

Denoiser = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def _abar(schedule: NoiseSchedule, t: int) -> float:
    return 1.0 if t < 0 else float(schedule.alphas_cumprod[t])


def _pairs(ts: torch.Tensor):
    """(t, s) pairs: s is the next, less noisy timestep; -1 stands for clean data."""
    ts = ts.tolist()
    return zip(ts, ts[1:] + [-1], strict=True)


def ddim(schedule: NoiseSchedule, denoise: Denoiser, x: torch.Tensor, ts: torch.Tensor,
         noise: torch.Generator | None, eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al. 2021): deterministic for eta = 0; eta = 1 is DDPM's ancestral sampler."""
    for t, s in _pairs(ts):
        x0, eps = denoise(x, t)
        if s < 0:
            return x0
        a_t, a_s = _abar(schedule, t), _abar(schedule, s)
        sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
        x = math.sqrt(a_s) * x0 + math.sqrt(max(0.0, 1 - a_s - sigma**2)) * eps
        if sigma > 0:
            x = x + sigma * randn(x.shape, noise, dtype=x.dtype, device=x.device)
    return x


def ddpm(schedule: NoiseSchedule, denoise: Denoiser, x: torch.Tensor, ts: torch.Tensor,
         noise: torch.Generator | None, eta: float = 1.0) -> torch.Tensor:
    """Ancestral sampling from the posterior q(x_s | x_t, x0_hat) of the (respaced) chain (Ho et al. 2020),
    with the posterior variance beta_tilde. `eta` is only there for the common signature (this is DDIM at
    eta = 1, which tests/test_diffusion.py checks)."""
    for t, s in _pairs(ts):
        x0, _ = denoise(x, t)
        if s < 0:
            return x0
        a_t, a_s = _abar(schedule, t), _abar(schedule, s)
        beta = 1 - a_t / a_s
        mean = (math.sqrt(a_s) * beta / (1 - a_t)) * x0 + (math.sqrt(1 - beta) * (1 - a_s) / (1 - a_t)) * x
        var = (1 - a_s) / (1 - a_t) * beta
        x = mean + math.sqrt(var) * randn(x.shape, noise, dtype=x.dtype, device=x.device)
    return x


def dpm_solver_2m(schedule: NoiseSchedule, denoise: Denoiser, x: torch.Tensor, ts: torch.Tensor,
                  noise: torch.Generator | None, eta: float = 0.0) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): second-order multistep in log-SNR time on the data prediction;
    first order on the first step and on the final jump to clean data."""
    prev_x0, prev_h = None, None
    for t, s in _pairs(ts):
        x0, _ = denoise(x, t)
        if s < 0:
            return x0
        a_t, a_s = _abar(schedule, t), _abar(schedule, s)
        alpha_s, sigma_t, sigma_s = math.sqrt(a_s), math.sqrt(1 - a_t), math.sqrt(1 - a_s)
        h = 0.5 * (math.log(a_s / (1 - a_s)) - math.log(a_t / (1 - a_t)))  # lambda = log(alpha / sigma)
        if prev_x0 is None:
            d = x0
        else:
            r = prev_h / h
            d = (1 + 0.5 / r) * x0 - (0.5 / r) * prev_x0
        x = (sigma_s / sigma_t) * x - alpha_s * math.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x


SAMPLERS = {"ddpm": ddpm, "ddim": ddim, "dpm++2m": dpm_solver_2m}


def sample_loop(sampler: str, schedule: NoiseSchedule, denoise: Denoiser, x_t: torch.Tensor, steps: int,
                noise: torch.Generator | None, eta: float = 0.0) -> torch.Tensor:
    """Run `sampler` from x_T = `x_t` with `steps` network calls."""
    if sampler not in SAMPLERS:
        raise GenlabError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[sampler](schedule, denoise, x_t, sampling_timesteps(schedule.timesteps, steps), noise, eta)
