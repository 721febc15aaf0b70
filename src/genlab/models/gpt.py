"""GPT family: a decoder-only transformer language model (see genlab.nn.gpt)."""

from __future__ import annotations

from dataclasses import dataclass

from genlab.core.errors import GenlabError
from genlab.core.spec import DataSpec
from genlab.core.validate import choice, fraction, positive
from genlab.models.language import LanguageModel
from genlab.nn.gpt import GPT


@dataclass
class GPTConfig:
    layers: int = 4
    heads: int = 4
    width: int = 128
    dropout: float = 0.0
    positions: str = "learned"  # learned | rotary

    def validate(self) -> None:
        choice("model.positions", self.positions, ("learned", "rotary"))
        positive("model", {"layers": self.layers, "heads": self.heads, "width": self.width})
        if self.width % self.heads:
            raise GenlabError(f"model.width={self.width} must be divisible by model.heads={self.heads}")
        fraction("model", {"dropout": self.dropout})


class GPTLanguageModel(LanguageModel):
    config_class = GPTConfig
    lora_targets = ("attn.qkv", "attn.proj")  # the attention projections, as in the LoRA paper
    supports_packing = True

    def shard_units(self) -> list:
        return [*self.net.blocks, self.net]

    def build_net(self, config: GPTConfig, spec: DataSpec) -> GPT:
        return GPT(spec.vocab_size, spec.block_size, config.layers, config.heads, config.width, config.dropout,
                   config.positions)
