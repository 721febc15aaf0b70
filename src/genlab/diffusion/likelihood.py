"""The variational bound of a diffusion model on 8-bit images (Ho et al. 2020, eq. 5), in nats per image.

The bound is computed exactly over the chain of `steps` timesteps that the samplers use (all T when
steps = T): the prior term, one KL term per step (each at one x_t drawn from q), and a discretised-Gaussian
decoder term. Fewer steps give a valid but looser bound for the respaced model. The reverse variances are
fixed, so both classical choices are reported: beta_tilde ("small") and beta ("large").
"""

from __future__ import annotations

import math

import torch

from genlab.diffusion.samplers import Denoiser
from genlab.diffusion.schedule import NoiseSchedule, sampling_timesteps
from genlab.nn.likelihoods import discretized_gaussian_log_prob
from genlab.nn.noise import randn


@torch.no_grad()
def variational_bound(schedule: NoiseSchedule, denoise: Denoiser,
                      x_unit: torch.Tensor, steps: int, noise: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-image lower bounds on log p(x) (nats) for images `x_unit` in [0, 1] (multiples of 1/255)."""
    x0 = x_unit * 2 - 1
    ts = sampling_timesteps(schedule.timesteps, steps).flip(0).tolist()  # ascending s_1 < ... < s_K
    abar = [float(schedule.alphas_cumprod[t]) for t in ts]
    flat = x0.flatten(1)
    a_k = abar[-1]
    prior = 0.5 * (a_k * flat.pow(2) - a_k - math.log(1 - a_k)).sum(1)  # KL(q(x_K | x0) || N(0, I))
    kl_small = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
    kl_large = torch.zeros_like(kl_small)
    for k in range(len(ts) - 1, 0, -1):
        a_t, a_s = abar[k], abar[k - 1]
        eps = randn(x0.shape, noise, device=x0.device)
        x_t = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * eps
        x0_hat = denoise(x_t, ts[k])[0]
        beta = 1 - a_t / a_s
        post_var = (1 - a_s) / (1 - a_t) * beta
        sq = ((math.sqrt(a_s) * beta / (1 - a_t)) * (x0 - x0_hat)).flatten(1).pow(2).sum(1).double()
        dims = flat.shape[1]
        kl_small += sq / (2 * post_var)
        kl_large += 0.5 * (dims * (math.log(beta / post_var) + post_var / beta - 1) + sq / beta)
    a_1 = abar[0]
    eps = randn(x0.shape, noise, device=x0.device)
    x0_hat = denoise(math.sqrt(a_1) * x0 + math.sqrt(1 - a_1) * eps, ts[0])[0]
    log_scale = torch.full_like(x0_hat, 0.5 * math.log(1 - a_1))  # decoder variance beta_1 = 1 - abar_1
    decoder = discretized_gaussian_log_prob(x0_hat, log_scale, x_unit).double()
    prior = prior.double()
    return {"vlb_small": decoder - prior - kl_small, "vlb_large": decoder - prior - kl_large,
            "prior_kl": prior, "decoder": decoder}
