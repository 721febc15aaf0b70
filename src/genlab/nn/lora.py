"""LoRA adapters through PEFT, injected in place so any genlab model (or a wrapped Hugging Face model) keeps
its class, forward and cache protocol; merging folds B A into the frozen weight and removes the adapter."""

from __future__ import annotations

import contextlib
import warnings

from torch import nn

from genlab.core.errors import GenlabError


def inject_lora(module: nn.Module, rank: int, alpha: float, dropout: float, targets: list[str]) -> list[str]:
    """Add rank-`rank` adapters to the Linear/Conv1D layers named by `targets` (suffix match) and freeze every
    other parameter. Returns the names of the parameters that now train (only adapter matrices)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise GenlabError("LoRA needs the fine-tuning extras: pip install 'genlab[finetune]'") from None

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    try:
        with warnings.catch_warnings():  # PEFT notes that GPT-2's Conv1D stores W transposed; it handles that
            warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
            inject_adapter_in_model(config, module)
    except ValueError as exc:  # PEFT: no module matched, or a target is not a supported layer type
        raise GenlabError(f"lora.targets {list(targets)}: {str(exc).splitlines()[0][:300]}") from None
    for name, p in module.named_parameters():
        p.requires_grad_("lora_" in name)
    return [name for name, p in module.named_parameters() if p.requires_grad]


def merge_lora(module: nn.Module) -> int:
    """Fold every adapter into its base layer (W <- W + scale * B A) and put the plain layer back in place.
    Returns how many layers were merged."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapted = [(name, m) for name, m in module.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, layer in adapted:
        layer.merge(safe_merge=True)  # raises on NaN/inf instead of silently corrupting the weight
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent), child, layer.get_base_layer())
    for p in module.parameters():
        p.requires_grad_(True)
    return len(adapted)


@contextlib.contextmanager
def adapters_disabled(module: nn.Module):
    """Run `module` as its frozen base: every adapter switched off inside the block (PEFT's disable_adapter for a
    model injected in place), so the starting model is at hand without a second copy in memory."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in module.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield module
    finally:
        for layer in layers:
            layer.enable_adapters(True)  # back on, their matrices trainable again
