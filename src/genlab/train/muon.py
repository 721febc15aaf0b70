"""Muon (Jordan et al. 2024, modded-nanogpt) with an AdamW partner, as one torch optimizer (`train.optimizer: muon`).

Muon is SGD with Nesterov momentum whose update for each weight matrix is replaced by its nearest semi-orthogonal
matrix, approximated by five steps of a quintic Newton-Schulz iteration (coefficients 3.4445, -4.7750, 2.0315 on the
Frobenius-normalised matrix, worked on the wide orientation). Every parameter Muon does not take is trained by AdamW
in the same optimizer (groups flagged `use_muon`), so the trainer keeps one optimizer per phase, its schedule, and its
checkpoint layout (all state is tensors: exact resume).

Which tensors Muon takes (`muon_split`): every trainable parameter of two or more dimensions, except those owned by
an `nn.Embedding` (a lookup table, not a linear map of dense inputs) and those of modules the family names in
`muon_exclude` (module-name suffixes: a language model's output head, whose rows are per-token scores). Conv
filters (out, in, k, k) are orthogonalised as the (out, in*k*k) matrix they act as (as in Keller Jordan's CIFAR-10
speedruns: Muon on every flattened filter bank); a ConvTranspose weight (in, out, k, k) the same way, as
(in, out*k*k). Biases, norm gains and every other 1-D or scalar tensor go to AdamW.

Scale: the orthogonalised update O (singular values ~1) is applied as `lr * 0.2 * sqrt(max(rows, cols)) * O`
(Liu et al. 2025, "Muon is Scalable for LLM Training"): that gives the update an RMS of 0.2 * lr, about what AdamW's
update has, so a Muon learning rate is on the same scale as an AdamW one and the same decoupled weight decay
(p <- p * (1 - lr * weight_decay)) applies to both groups.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from genlab.train.distributed import native_bf16

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
RMS_MATCH = 0.2  # the update's RMS as a fraction of lr (AdamW's typical update RMS)


def ns_dtype_for(device: torch.device, precision: str) -> torch.dtype:
    """train.muon_ns_precision -> the dtype Newton-Schulz runs in: auto picks bf16 on CUDA and on CPUs with native
    bf16 products (as modded-nanogpt, which runs it in bf16), else float32."""
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    return torch.bfloat16 if precision == "bf16" else torch.float32


def newton_schulz(g: torch.Tensor, steps: int = 5, eps: float = 1e-7,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An approximately semi-orthogonal matrix with g's singular vectors: U V^T of g = U S V^T, each singular value
    mapped into roughly [0.7, 1.2] by the quintic iteration (it trades exactness for speed: it never converges to 1,
    but every value leaves zero quickly). `g`: 2-D; computed in `dtype` (normalised in float32 first)."""
    a, b, c = NS_COEFFICIENTS
    x = g.float()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T  # iterate on the orientation with fewer rows: X X^T is the smaller Gram matrix
    x = (x / (x.norm() + eps)).to(dtype)  # spectral norm <= Frobenius norm <= 1: inside the iteration's basin
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """The 2-D view Muon orthogonalises: a conv filter bank (out, in, k, k) as (out, in*k*k)."""
    return t if t.dim() == 2 else t.reshape(t.shape[0], -1)


def muon_split(model: nn.Module, modules: Iterable[nn.Module],
               exclude: Iterable[str] = ()) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(Muon's parameters, AdamW's) among the trainable parameters of `modules` (submodules of `model`), by the rule
    in this module's docstring; `exclude`: module-name suffixes (whole dotted components) left to AdamW. A tensor
    shared by several modules (tied embeddings) goes to AdamW if any owner excludes it. Order follows `modules`."""
    exclude = tuple(exclude)
    names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    owned: list[nn.Parameter] = []
    seen: set[int] = set()
    adam_only: set[int] = set()
    for root in modules:
        prefix = names.get(id(root), "")
        for name, module in root.named_modules(prefix=prefix, remove_duplicate=False):
            excluded = isinstance(module, nn.Embedding) or any(
                name == s or name.endswith("." + s) for s in exclude)
            for p in module.parameters(recurse=False):
                if not p.requires_grad:
                    continue
                if excluded or p.dim() < 2:
                    adam_only.add(id(p))
                if id(p) not in seen:
                    seen.add(id(p))
                    owned.append(p)
    muon = [p for p in owned if id(p) not in adam_only]
    adam = [p for p in owned if id(p) in adam_only]
    return muon, adam


class Muon(torch.optim.Optimizer):
    """Muon for the groups flagged `use_muon=True`, AdamW for the others (their own lr, betas, eps, weight_decay).

    Muon group options: lr, momentum (Nesterov), ns_steps, ns_precision (auto | fp32 | bf16: ns_dtype_for),
    weight_decay (decoupled, like AdamW's).
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.95, ns_steps: int = 5,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 ns_precision: str = "fp32"):
        defaults = {"lr": lr, "momentum": momentum, "ns_steps": ns_steps, "betas": tuple(betas), "eps": eps,
                    "weight_decay": weight_decay, "use_muon": False, "ns_precision": ns_precision}
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["use_muon"] and any(p.dim() < 2 for p in group["params"]):
                raise ValueError("Muon takes matrices (2-D) and conv filters only; give the rest to its AdamW groups")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["use_muon"]:
                self._muon(group)
            else:
                self._adamw(group)
        return loss

    def _muon(self, group: dict) -> None:
        lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.mul_(m).add_(g)
            update = g.add(buf, alpha=m)  # Nesterov: the gradient plus the momentum it is about to join
            mat = as_matrix(update)
            ortho = newton_schulz(mat, group["ns_steps"], dtype=ns_dtype_for(p.device, group["ns_precision"]))
            ortho = ortho.to(p.dtype)
            scale = RMS_MATCH * math.sqrt(max(mat.shape))
            if wd:
                p.mul_(1 - lr * wd)
            p.add_(ortho.view_as(p), alpha=-lr * scale)

    def _adamw(self, group: dict) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = float(state["step"])
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(g, 1 - b1)
            exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
            if wd:
                p.mul_(1 - lr * wd)
            denom = (exp_avg_sq / (1 - b2**t)).sqrt_().add_(eps)
            p.addcdiv_(exp_avg, denom, value=-lr / (1 - b1**t))
