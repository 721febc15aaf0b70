"""Autoregressive decoding shared by every language model: sampling filters and a token iterator.

A model takes part through `forward(idx, cache)` and `new_cache(batch, max_len)`; `cache=None` recomputes
the whole context each step (the reference the cached path is tested against).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from genlab.core.errors import GenlabError
from genlab.core.options import option


@dataclass
class SamplingConfig:
    """How a language model samples: the options of `genlab sample`, the HTTP text request and generate_text."""

    max_new_tokens: int = option(200, "new tokens per sample", ge=1, le=100_000,
                                 flags=("--max-tokens", "--max-new-tokens"), http="max_tokens")
    temperature: float = option(1.0, "0 is greedy", ge=0, le=10)
    top_k: int | None = option(None, "sample from the k most likely tokens", ge=1)
    top_p: float | None = option(None, "nucleus: the smallest set of tokens with this much probability", gt=0, le=1)
    repetition_penalty: float = option(1.0, "> 1 discourages tokens already in the context (Keskar et al. 2019)",
                                       gt=0, le=10)

    def validate(self) -> None:
        numbers = (self.temperature, self.repetition_penalty, self.top_p if self.top_p is not None else 1.0)
        if not all(math.isfinite(x) for x in numbers):
            raise GenlabError("--temperature, --top-p and --repetition-penalty must be finite numbers")
        if not 1 <= self.max_new_tokens <= 100_000:
            raise GenlabError("--max-tokens must be between 1 and 100,000")
        if self.temperature < 0 or self.repetition_penalty <= 0:
            raise GenlabError("--temperature must be >= 0 and --repetition-penalty > 0")
        if (self.top_p is not None and not 0 < self.top_p <= 1) or (self.top_k is not None and self.top_k < 1):
            raise GenlabError("--top-p must be in (0, 1] and --top-k >= 1")


def filter_logits(logits: torch.Tensor, context: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Apply repetition penalty, temperature, top-k and top-p to B x V logits (returns new logits).

    Every row keeps at least its most likely token, so the result is a valid distribution for any valid
    config, however extreme (a temperature of 1e-300 is greedy, not NaN).
    """
    logits = logits.float().clone()
    if cfg.repetition_penalty != 1.0 and context.numel():
        seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, context, True)
        penalised = torch.where(logits > 0, logits / cfg.repetition_penalty, logits * cfg.repetition_penalty)
        biggest = torch.finfo(logits.dtype).max
        logits = torch.where(seen, penalised, logits).clamp(-biggest, biggest)
    if cfg.temperature > 0:
        # shifting the best logit to 0 first keeps it finite when a tiny temperature overflows the rest
        # (and a temperature below float32's range divides only the others, to -inf: greedy)
        shifted = logits - logits.max(-1, keepdim=True).values
        logits = torch.where(shifted == 0, shifted, shifted / cfg.temperature)
    if cfg.top_k is not None and cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= cfg.top_p  # keep the token that crosses top_p
        drop[:, 0] = False  # and always the most likely one (a top_p below float32's range rounds to 0)
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def next_tokens(logits: torch.Tensor, context: torch.Tensor, cfg: SamplingConfig,
                generator: torch.Generator | None) -> torch.Tensor:
    filtered = filter_logits(logits, context, cfg)
    if cfg.temperature == 0:
        return filtered.argmax(-1)
    return torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(1)


@torch.no_grad()
def generate_tokens(model, prompt: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None,
                    use_cache: bool = True) -> Iterator[torch.Tensor]:
    """Yield B new tokens per step for prompts `prompt` (B x T, T >= 1), up to cfg.max_new_tokens.

    With the cache each step runs the model on one token; when the context window is full the cache is
    rebuilt from the most recent half window (positions must restart), as without the cache.
    """
    window = model.block_size
    context = prompt[:, -window:]
    cache = model.new_cache(prompt.shape[0]) if use_cache else None
    logits = model(context, cache)[:, -1]
    tokens = prompt
    for _ in range(cfg.max_new_tokens):
        new = next_tokens(logits, tokens, cfg, generator)
        yield new
        tokens = torch.cat([tokens, new[:, None]], 1)
        if not use_cache:
            logits = model(tokens[:, -window:], None)[:, -1]
        elif cache.length < window:
            logits = model(new[:, None], cache)[:, -1]
        else:
            cache = model.new_cache(prompt.shape[0])
            logits = model(tokens[:, -(window // 2):], cache)[:, -1]
