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
    qk_norm: bool = False  # RMS-normalise queries and keys per head before attention (no learned gain)
    mlp_activation: str = "gelu"  # gelu | relu2 (squared ReLU, as modded-nanogpt)
    tie_embeddings: bool = True  # the output head shares the token embedding's weights (false: its own matrix)
    zero_init_proj: bool = False  # attention and MLP output projections start at zero (else GPT-2's scaled init)
    logit_softcap: float | None = None  # c > 0: logits = c * tanh(logits / c) (e.g. 30); None or 0: off

    def validate(self) -> None:
        choice("model.positions", self.positions, ("learned", "rotary"))
        choice("model.mlp_activation", self.mlp_activation, ("gelu", "relu2"))
        if self.logit_softcap is not None and self.logit_softcap < 0:
            raise GenlabError(f"model.logit_softcap must be > 0 (or 0 / null: off), got {self.logit_softcap}")
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
                   config.positions, qk_norm=config.qk_norm, activation=config.mlp_activation,
                   tie_embeddings=config.tie_embeddings, zero_init_proj=config.zero_init_proj,
                   logit_softcap=config.logit_softcap)
