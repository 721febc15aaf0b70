"""Family `hf`: a pretrained Hugging Face causal language model loaded from a local directory (no hub), with
its own tokenizer; fine-tuned in full or through LoRA (`genlab finetune`), evaluated and sampled like any
genlab language model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from genlab.core.errors import GenlabError
from genlab.core.spec import DataSpec
from genlab.models.language import LanguageModel


@dataclass
class HFCausalLMConfig:
    path: str = ""  # a local directory written by save_pretrained: config.json, *.safetensors, tokenizer.json

    def validate(self) -> None:
        if not self.path:
            raise GenlabError("model.path must name a local Hugging Face model directory (config.json + safetensors)")


class HFCache:
    """The transformers key/value cache behind genlab's decoding protocol (which counts cached tokens)."""

    def __init__(self):
        self.past = None
        self.length = 0


class HFCausalLMNet(nn.Module):
    """forward(idx, cache) -> logits, new_cache(batch): what genlab.nn.decoding needs from a language model."""

    def __init__(self, model: nn.Module, block_size: int):
        super().__init__()
        self.model, self.block_size = model, block_size

    def new_cache(self, batch: int, max_len: int | None = None) -> HFCache:
        return HFCache()

    def forward(self, idx: torch.Tensor, cache: HFCache | None = None) -> torch.Tensor:
        out = self.model(input_ids=idx, past_key_values=None if cache is None else cache.past,
                         use_cache=cache is not None)
        if cache is not None:
            cache.past, cache.length = out.past_key_values, cache.length + idx.shape[1]
        return out.logits


def load_pretrained(path: str | Path) -> nn.Module:
    """`AutoModelForCausalLM.from_pretrained` on a local folder: safetensors only (never a pickle), float32."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise GenlabError(f"{folder} is not a Hugging Face model directory (no config.json)")
    if not any(folder.glob("*.safetensors")):
        raise GenlabError(f"{folder} has no .safetensors weights (pickled .bin checkpoints are refused; convert "
                          "them with save_pretrained(safe_serialization=True))")
    try:
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging
    except ImportError:
        raise GenlabError("the hf family needs the fine-tuning extras: pip install 'genlab[finetune]'") from None

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        return AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                    dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise GenlabError(f"cannot load the model in {folder}: {str(exc).splitlines()[0][:300]}") from None


def _context_length(config) -> int | None:
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    return None


class HFCausalLM(LanguageModel):
    config_class = HFCausalLMConfig

    @classmethod
    def pretrained_dir(cls, config: HFCausalLMConfig) -> str:
        return config.path

    def build_net(self, config: HFCausalLMConfig, spec: DataSpec) -> HFCausalLMNet:
        model = load_pretrained(config.path)
        limit = _context_length(model.config)
        if limit is not None and spec.block_size > limit:
            raise GenlabError(f"data.block_size={spec.block_size} exceeds the model's context of {limit} tokens")
        if spec.vocab_size > model.get_output_embeddings().weight.shape[0]:
            raise GenlabError(f"the tokenizer in {config.path} has {spec.vocab_size} tokens, more than the model's "
                              f"{model.get_output_embeddings().weight.shape[0]} outputs")
        return HFCausalLMNet(model, spec.block_size)

    def default_lora_targets(self) -> list[str]:
        """PEFT's per-architecture defaults (e.g. GPT-2: the fused attention projection c_attn)."""
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        model_type = self.net.model.config.model_type
        if model_type not in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
            raise GenlabError(f"no default LoRA targets for model type {model_type!r}; set lora.targets")
        return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])
