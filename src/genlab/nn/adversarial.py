"""Pieces every adversarial family shares."""

from __future__ import annotations

import torch

from genlab.nn.noise import rand


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, noise, *args, group: int = 1) -> torch.Tensor:
    """WGAN-GP's (||grad D(x_hat)|| - 1)^2 on random interpolates (Gulrajani et al. 2017). `group` > 1: the
    critic scores packs of `group` rows (PacGAN), so the norm is taken per pack."""
    alpha = rand((real.shape[0], *([1] * (real.dim() - 1))), noise, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad = torch.autograd.grad(critic(x_hat, *args).sum(), x_hat, create_graph=True)[0]
    return (grad.reshape(real.shape[0] // group, -1).norm(dim=1) - 1).pow(2).mean()
