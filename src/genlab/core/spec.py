"""What a model family needs to know about the data to size itself, for every modality."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DataSpec:
    channels: int = 0  # images
    height: int = 0
    width: int = 0
    num_classes: int = 0  # 0 when the data has no labels
    vocab_size: int = 0  # text: tokenizer vocabulary, including the end-of-document token
    block_size: int = 0  # text: training context length in tokens
    packed: bool = False  # chat: several conversations share a window (the family must restart attention)
    spans: tuple[tuple[str, int], ...] = ()  # tables: (part, width) blocks of an encoded row (tables.transform)
    category_frequencies: tuple[float, ...] = ()  # tables: training frequency of each category slot, in order
    # prompts: scores sampled completions, `score(prompt_ids, completions_ids) -> rewards`, and ends them
    # (`score.stop_ids`); what train.objective=grpo optimises
    score: Any = None
