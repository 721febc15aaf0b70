"""Exponential moving average of a model's weights, used for validation and sampling when enabled.

Both work on the tensors a run stores (`saved_state`): under LoRA only the adapters are averaged and swapped."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from genlab.models.base import GenerativeModel


class EMA:
    def __init__(self, model: GenerativeModel, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.saved_state().items()}
        self._float_keys = [k for k, v in self.shadow.items() if v.is_floating_point()]

    @torch.no_grad()
    def update(self, model: GenerativeModel, step: int) -> None:
        """Shadow <- d * shadow + (1 - d) * weights, with the usual warm-up d = min(decay, (1+t)/(10+t))."""
        decay = min(self.decay, (1 + step) / (10 + step))
        current = model.saved_state()
        torch._foreach_lerp_([self.shadow[k] for k in self._float_keys],
                             [current[k].detach() for k in self._float_keys], 1.0 - decay)
        for k, v in current.items():
            if not v.is_floating_point():
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)


@contextmanager
def weights_swapped(model: GenerativeModel, weights: dict[str, torch.Tensor] | None):
    """Run a block with `weights` loaded into `model`, then put the training weights back."""
    if weights is None:
        yield model
        return
    saved = {k: v.detach().clone() for k, v in model.saved_state().items()}
    model.load_saved_state(weights)
    try:
        yield model
    finally:
        model.load_saved_state(saved)
