"""Image editing with a trained diffusion model, at the sampler level: like `samplers.py` this sees the noise
schedule and a denoiser (x_t, t) -> (x0_hat, eps_hat) only, so pixels or latents, guidance and the network are the
caller's business.

* `inpaint`: RePaint (Lugmayr et al. 2022). `mask` == 1 marks the KNOWN region (kept), 0 the region to fill. At
  every step the known region is the input noised by the forward process q(x_s | x_0) (fresh noise each step) and
  the unknown region comes from the reverse step; optional resampling jumps go back up `jump_length` steps by
  forward noising, so the two regions harmonise. `jump_n_sample` = 1 (the default) turns jumps off: the plain
  "replacement" method. The output's known region is exactly the input.
* `img2img`: SDEdit (Meng et al. 2022): noise the input to t ~ strength * T, then denoise with a sampler over the
  remaining timesteps. strength 0 returns the input unchanged, with no network call.
* `ddim_invert`: deterministic DDIM (eta 0) run backwards, x_0 -> x_T; decoding x_T with `ddim` over the same
  timesteps (and the same denoiser) gives the input back up to the approximation eps(x_s, t) ~ eps(x_t, t).
  Inverting in one model and decoding in another is DDIM image-to-image transfer.
"""

from __future__ import annotations

import math

import torch

from genlab.core.errors import GenlabError
from genlab.diffusion.samplers import SAMPLERS, Denoiser, ddim
from genlab.diffusion.schedule import NoiseSchedule
from genlab.nn.noise import randn


def _abar(schedule: NoiseSchedule, t: int) -> float:
    return 1.0 if t < 0 else float(schedule.alphas_cumprod[t])


def _randn_like(x: torch.Tensor, noise: torch.Generator | None) -> torch.Tensor:
    return randn(x.shape, noise, dtype=x.dtype, device=x.device)


def forward_noise(schedule: NoiseSchedule, x0: torch.Tensor, t: int, noise: torch.Generator | None) -> torch.Tensor:
    """A draw of q(x_t | x_0) for one timestep t (t = -1: x_0 itself)."""
    if t < 0:
        return x0
    a = _abar(schedule, t)
    return math.sqrt(a) * x0 + math.sqrt(1 - a) * _randn_like(x0, noise)


def jump_walk(levels: int, jump_length: int, jump_n_sample: int) -> list[tuple[int, int]]:
    """RePaint's schedule over positions 0..levels (position i is the i-th sampling timestep, `levels` is clean
    data) as (from, to) moves: to = from + 1 is a reverse (denoising) step, to < from a jump back up by forward
    noising. Every `jump_length`-th position (never clean data) jumps back `jump_length` positions
    `jump_n_sample` - 1 times, so each stretch is sampled `jump_n_sample` times (RePaint's r)."""
    if jump_length < 1 or jump_n_sample < 1:
        raise GenlabError("--jump-length and --jump-n-sample must be >= 1")
    left = {p: jump_n_sample - 1 for p in range(jump_length, levels, jump_length)}
    moves, p = [], 0
    while p < levels:
        moves.append((p, p + 1))
        p += 1
        if left.get(p, 0) > 0:
            left[p] -= 1
            moves.append((p, p - jump_length))
            p -= jump_length
    return moves


def inpaint(schedule: NoiseSchedule, denoise: Denoiser, known: torch.Tensor, mask: torch.Tensor, ts: torch.Tensor,
            noise: torch.Generator | None, jump_length: int = 10, jump_n_sample: int = 1,
            eta: float = 1.0) -> torch.Tensor:
    """RePaint inpainting of `known` (N x C x H x W, in the denoiser's space) where `mask` (broadcastable to it,
    1 = KNOWN, 0 = to fill; values in between blend) over the sampling timesteps `ts` (decreasing, e.g.
    `sampling_timesteps`). The reverse step is DDIM's with noise `eta` (1: DDPM's ancestral step, as in RePaint).
    Jumps (`jump_n_sample` > 1) cost extra network calls: about jump_n_sample x as many. The result equals `known`
    wherever mask == 1."""
    mask = mask.to(known.dtype)
    levels = ts.tolist() + [-1]  # position -> timestep; the last is clean data
    x = mask * forward_noise(schedule, known, levels[0], noise) + (1 - mask) * _randn_like(known, noise)
    for p, q in jump_walk(len(ts), jump_length, jump_n_sample):
        t, s = levels[p], levels[q]
        if q < p:  # jump back up: q(x_s | x_t) of the forward process, s noisier than t
            ratio = _abar(schedule, s) / _abar(schedule, t)
            x = math.sqrt(ratio) * x + math.sqrt(1 - ratio) * _randn_like(x, noise)
            continue
        x0, eps = denoise(x, t)
        if s < 0:
            x = x0
        else:
            a_t, a_s = _abar(schedule, t), _abar(schedule, s)
            sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
            x = math.sqrt(a_s) * x0 + math.sqrt(max(0.0, 1 - a_s - sigma**2)) * eps
            if sigma > 0:
                x = x + sigma * _randn_like(x, noise)
        x = mask * forward_noise(schedule, known, s, noise) + (1 - mask) * x
    return x


def img2img_timesteps(total: int, strength: float, steps: int) -> torch.Tensor:
    """SDEdit's timesteps: the first is t0 = round(strength * T) - 1 (at least 0), then evenly spaced and trailing
    down to clean data; round(strength * steps) of them (at least 1, at most t0 + 1), so `steps` is the number of
    network calls a full-strength edit would make."""
    if not 0 < strength <= 1:
        raise GenlabError(f"--strength must be in [0, 1], got {strength}")
    if steps < 1:
        raise GenlabError(f"--steps must be >= 1, got {steps}")
    start = max(0, round(strength * total) - 1)
    k = min(start + 1, max(1, round(strength * steps)))
    return (torch.arange(k, 0, -1, dtype=torch.float64) * ((start + 1) / k)).round().long() - 1


def img2img(schedule: NoiseSchedule, denoise: Denoiser, x0: torch.Tensor, strength: float, steps: int,
            noise: torch.Generator | None, sampler: str = "ddim", eta: float = 0.0) -> torch.Tensor:
    """SDEdit: x_t0 ~ q(x_t0 | x0) with t0 ~ strength * T, then `sampler` from t0 to clean data (see
    `img2img_timesteps`). strength 0 returns `x0` itself (no network call); strength 1 starts from almost pure
    noise, i.e. ordinary sampling that ignores the input."""
    if strength == 0:
        return x0.clone()
    if sampler not in SAMPLERS:
        raise GenlabError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    ts = img2img_timesteps(schedule.timesteps, strength, steps)
    x = forward_noise(schedule, x0, int(ts[0]), noise)
    return SAMPLERS[sampler](schedule, denoise, x, ts, noise, eta)


MIN_INVERSION_ABAR = 1e-3  # inversion stops at the noisiest timestep with abar_t >= this (SNR >= ~1/1000)


def inversion_timesteps(schedule: NoiseSchedule, steps: int) -> torch.Tensor:
    """The decreasing timesteps of DDIM inversion and its decoding: like `sampling_timesteps` (evenly spaced,
    trailing, `steps` of them, at most all the timesteps up to there) but starting at the noisiest t with
    abar_t >= MIN_INVERSION_ABAR rather than T - 1. At the very end of a cosine schedule abar_t is ~1e-6: the first
    decoding step divides by sqrt(abar_t), which turns float32 rounding and the inversion's eps approximation into
    large errors, and the fixed-point refinement no longer converges there. Stopping at abar ~1e-3 keeps x_T
    essentially noise (its signal scale is ~0.03) and the round trip close (tests/test_editing.py measures it)."""
    from genlab.diffusion.schedule import sampling_timesteps

    abar = schedule.alphas_cumprod
    top = int((abar >= MIN_INVERSION_ABAR).nonzero().max()) if bool(abar[0] >= MIN_INVERSION_ABAR) else 0
    if steps < 1:
        raise GenlabError(f"--steps must be >= 1, got {steps}")
    return sampling_timesteps(top + 1, min(steps, top + 1))  # more steps than timesteps: every one of them


def ddim_invert(schedule: NoiseSchedule, denoise: Denoiser, x0: torch.Tensor, ts: torch.Tensor,
                refine: int = 0) -> torch.Tensor:
    """Deterministic DDIM inversion: x_0 -> x_T at ts[0], over the decreasing timesteps `ts` walked upwards.
    Plain DDIM inversion (`refine` = 0, one network call per step) uses the denoiser's eps at the current, less
    noisy point with the next timestep t, an approximation of the eps(x_t, t) that decoding will see; `refine` > 0
    repeats each step that many times with eps taken at the latest estimate of x_t (a fixed-point iteration, as in
    Pan et al. 2023 / ReNoise), so decoding retraces the path more exactly at one more call per repeat.
    `ddim(schedule, denoise, x_T, ts, None, eta=0)` (`ddim_decode`) maps the result back to about x_0. Pass a
    denoiser that does not clip x0_hat (clipping changes eps and breaks the round trip)."""
    if refine < 0:
        raise GenlabError("the inversion's refine count must be >= 0")
    levels = [-1] + ts.flip(0).tolist()  # clean, then increasing noise
    x = x0
    for s, t in zip(levels[:-1], levels[1:], strict=True):
        a_s, a_t = _abar(schedule, s), _abar(schedule, t)
        guess = x
        for _ in range(refine + 1):
            _, eps = denoise(guess, t)
            clean = (x - math.sqrt(1 - a_s) * eps) / math.sqrt(a_s)
            guess = math.sqrt(a_t) * clean + math.sqrt(1 - a_t) * eps
        x = guess
    return x


def ddim_decode(schedule: NoiseSchedule, denoise: Denoiser, x_t: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """The inverse of `ddim_invert`: deterministic DDIM (eta 0) from x_T at ts[0] to clean data."""
    return ddim(schedule, denoise, x_t, ts, None, 0.0)
