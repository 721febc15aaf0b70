"""A multi-layer LSTM language model with the same decoding interface as the GPT: its "cache" is the
recurrent state, so generation costs one step per token however long the text grows."""

from __future__ import annotations

import torch
from torch import nn


class LSTMState:
    def __init__(self):
        self.hc: tuple[torch.Tensor, torch.Tensor] | None = None
        self.length = 0
        self.max_len = float("inf")  # a recurrent state never fills up


class LSTMLanguageModel(nn.Module):
    block_size = 1 << 30  # no context window: the no-cache reference re-reads the whole text

    def __init__(self, vocab_size: int, dim: int = 256, layers: int = 2, dropout: float = 0.0, tie: bool = True):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(dim, dim, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(dim, vocab_size)
        if tie:
            self.head.weight = self.embed.weight

    def new_cache(self, batch: int, max_len: int | None = None) -> LSTMState:
        return LSTMState()

    def forward(self, idx: torch.Tensor, cache: LSTMState | None = None) -> torch.Tensor:
        out, hc = self.lstm(self.drop(self.embed(idx)), None if cache is None else cache.hc)
        if cache is not None:
            cache.hc, cache.length = hc, cache.length + idx.shape[1]
        return self.head(self.drop(out))
