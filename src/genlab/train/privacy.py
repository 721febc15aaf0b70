"""DP-SGD (Abadi et al. 2016) for the phases of a model that read training rows.

The trainer hands every phase a family declares `private=True` to `PrivacyEngine.step`: each row of a Poisson-sampled
batch gets its own gradient, clipped to `max_grad_norm`, the clipped gradients are summed, Gaussian noise of standard
deviation `noise_multiplier * max_grad_norm` is added and the sum is divided by the expected batch size. Phases that
are not private never see a training row (they get `public_batch`, zeros of the right shape), so whatever they learn
is post-processing of the private phases' noisy outputs and costs no budget: for CTGAN the critic reads rows and is
private; the generator only ever sees the critic and conditions drawn from the public schema.

Opacus supplies the calibration (the noise multiplier solved from the target epsilon for the planned steps and the
sampling rate) and the accountant (RDP or PRV), whose history is stored in checkpoints so a resumed run spends
exactly what an uninterrupted one does. Per-row gradients come from one backward pass per row rather than Opacus's
layer hooks: that is exact for any loss, including CTGAN's gradient penalty (a double backward the hooks cannot split
per row) and TVAE's free per-column scales, at the price of speed on large batches.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from genlab.core.batch import Batch
from genlab.core.errors import GenlabError


def noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The smallest noise (in units of the clipping norm) whose `steps` Poisson-sampled steps spend `epsilon`."""
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound is still valid
        warnings.simplefilter("ignore", UserWarning)
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                          steps=steps, accountant=accountant))


class PrivacyEngine:
    """Per-row clipping, calibrated noise and the accountant of one private run (train.privacy)."""

    def __init__(self, cfg, sample_rate: float, steps: int, expected_batch: float, seed: int):
        from opacus.accountants import create_accountant

        if not 0 < sample_rate <= 1:
            raise GenlabError(f"train.privacy needs a sampling rate in (0, 1]; got {sample_rate}")
        self.cfg, self.sample_rate, self.planned_steps = cfg, sample_rate, steps
        self.expected_batch = expected_batch
        self.noise_multiplier = noise_multiplier(cfg.epsilon, cfg.delta, sample_rate, steps, cfg.accountant)
        self.accountant = create_accountant(cfg.accountant)
        self.generator = torch.Generator().manual_seed(seed)  # the DP noise: its own stream, saved in checkpoints

    @staticmethod
    def check_modules(phase) -> None:
        """A private phase may not keep batch statistics: BatchNorm's running means are computed from rows
        without noise (and need more than one row per forward)."""
        for module in phase.modules:
            for sub in module.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    raise GenlabError(f"phase {phase.name!r} is private but uses {type(sub).__name__}, whose running "
                                      "statistics read rows without noise; this family cannot train under "
                                      "train.privacy")

    def step(self, params: list[nn.Parameter], batch: Batch, loss_of) -> dict[str, torch.Tensor]:
        """Set each parameter's .grad to the noisy mean of per-row clipped gradients; `loss_of(rows)` returns
        (loss, terms) for a batch of rows. Returns the phase's terms averaged over the rows."""
        clip = self.cfg.max_grad_norm
        summed = [torch.zeros_like(p) for p in params]
        sums: dict[str, torch.Tensor] = {}
        n = batch.x.shape[0]
        for i in range(n):
            loss, terms = loss_of(batch.rows(i, i + 1))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params, strict=True)]
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
            factor = (clip / (norm + 1e-6)).clamp(max=1.0)
            for s, g in zip(summed, grads, strict=True):
                s.add_(g * factor)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
        std = self.noise_multiplier * clip
        for p, s in zip(params, summed, strict=True):
            noise = torch.normal(0.0, std, s.shape, generator=self.generator).to(s.device)
            p.grad = (s + noise) / self.expected_batch
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        return {k: v / n for k, v in sums.items()} if n else {}

    def spent(self) -> float:
        """Epsilon spent so far at the configured delta (0 before the first private step)."""
        if not self.accountant.history:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return float(self.accountant.get_epsilon(delta=self.cfg.delta))

    def summary(self) -> dict:
        return {"epsilon": round(self.spent(), 4), "delta": self.cfg.delta, "target_epsilon": self.cfg.epsilon,
                "noise_multiplier": self.noise_multiplier, "max_grad_norm": self.cfg.max_grad_norm,
                "sample_rate": self.sample_rate, "private_steps": self.steps_taken(),
                "planned_private_steps": self.planned_steps, "accountant": self.cfg.accountant}

    def steps_taken(self) -> int:
        return sum(int(n) for _, _, n in self.accountant.history)

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"history": [[float(s), float(q), int(n)] for s, q, n in self.accountant.history],
                "noise_multiplier": self.noise_multiplier}

    def load_state(self, state: dict) -> None:
        self.accountant.history = [tuple(h) for h in state["history"]]
        self.noise_multiplier = float(state["noise_multiplier"])
