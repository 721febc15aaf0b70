"""LSTM family: a multi-layer recurrent language model (see genlab.nn.lstm)."""

from __future__ import annotations

from dataclasses import dataclass

from genlab.core.spec import DataSpec
from genlab.core.validate import fraction, positive
from genlab.models.language import LanguageModel
from genlab.nn.lstm import LSTMLanguageModel


@dataclass
class LSTMConfig:
    layers: int = 2
    width: int = 256
    dropout: float = 0.0
    tie_weights: bool = True

    def validate(self) -> None:
        positive("model", {"layers": self.layers, "width": self.width})
        fraction("model", {"dropout": self.dropout})


class LSTMFamily(LanguageModel):
    config_class = LSTMConfig
    muon_exclude = ("head",)  # its output head (genlab.nn.lstm)

    def build_net(self, config: LSTMConfig, spec: DataSpec) -> LSTMLanguageModel:
        return LSTMLanguageModel(spec.vocab_size, config.width, config.layers, config.dropout, config.tie_weights)
