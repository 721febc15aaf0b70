"""Per-image log-likelihoods of pixels in nats, for decoders that output distribution parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum over pixels (the last 3 dims) of log Bernoulli(x | sigmoid(logits)) = x*l - softplus(l).

    x in [0, 1] (grey levels act as soft targets) and broadcasts against logits, so K importance samples
    of a batch need no copies of x.
    """
    return (x * logits - F.softplus(logits)).flatten(-3).sum(-1)


def discretized_logistic_log_prob(mean: torch.Tensor, log_scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum over pixels (last 3 dims) of log P(x), 8-bit pixels, logistic discretised into 256 bins (PixelCNN++).

    `x` is in [0, 1] with values k/255; `mean` lives in [-1, 1] space. The result is an exact discrete
    likelihood in nats, comparable across models on the same 8-bit data.
    """
    x = x * 2 - 1
    log_scale = log_scale.clamp(min=-7.0)
    centered = x - mean
    inv_s = torch.exp(-log_scale)
    plus_in = inv_s * (centered + 1.0 / 255.0)
    min_in = inv_s * (centered - 1.0 / 255.0)
    log_cdf_plus = plus_in - F.softplus(plus_in)
    log_one_minus_cdf_min = -F.softplus(min_in)
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    mid_in = inv_s * centered
    log_pdf_mid = mid_in - log_scale - 2.0 * F.softplus(mid_in)
    log_mid = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)),
                          log_pdf_mid - torch.log(torch.tensor(127.5)))
    log_p = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_mid))
    return log_p.flatten(-3).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return (-0.5 * (z.pow(2) + torch.log(torch.tensor(2 * torch.pi)))).sum(-1)


def diagonal_normal_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + torch.log(torch.tensor(2 * torch.pi)))).sum(-1)


def _log_diff_ndtr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails (mirrored where the bin lies above zero)."""
    upper = (a + b) > 0
    a, b = torch.where(upper, -b, a), torch.where(upper, -a, b)
    log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
    return log_b + torch.log1p(-torch.exp((log_a - log_b).clamp(max=-1e-12)))


def discretized_gaussian_log_prob(mean: torch.Tensor, log_scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum over pixels (last 3 dims) of log P(x) for 8-bit pixels under a Gaussian discretised into 256 bins
    (the DDPM decoder, Ho et al. 2020); `x` in [0, 1] with values k/255, `mean` in [-1, 1] space."""
    x = x * 2 - 1
    inv_s = torch.exp(-log_scale)
    lo, hi = inv_s * (x - mean - 1.0 / 255.0), inv_s * (x - mean + 1.0 / 255.0)
    log_p = torch.where(x < -0.999, torch.special.log_ndtr(hi),
                        torch.where(x > 0.999, torch.special.log_ndtr(-lo), _log_diff_ndtr(lo, hi)))
    return log_p.flatten(-3).sum(-1)
