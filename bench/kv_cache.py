"""Benchmark: GPT generation with and without the KV cache, time per token as the text grows. Not a test.

    OMP_NUM_THREADS=1 taskset -c 0 python bench/kv_cache.py

Greedy decoding of 512 new tokens from a 1-token prompt (baby-GPT size: 4 layers, 4 heads, 128 wide,
context 1024, vocab 65); the two paths produce the same tokens (checked here and in tests/test_gpt.py).
"""

from __future__ import annotations

import json
import time

import torch

from genlab.nn.decoding import SamplingConfig, generate_tokens
from genlab.nn.gpt import GPT


def timed(model, use_cache: bool, n: int) -> tuple[list[float], torch.Tensor]:
    marks, tokens = [time.perf_counter()], []
    for tok in generate_tokens(model, torch.zeros(1, 1, dtype=torch.long),
                               SamplingConfig(temperature=0.0, max_new_tokens=n), use_cache=use_cache):
        tokens.append(tok)
        marks.append(time.perf_counter())
    return [b - a for a, b in zip(marks, marks[1:], strict=False)], torch.stack(tokens)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GPT(65, 1024, layers=4, heads=4, dim=128).eval()
    n = 512
    result = {}
    for use_cache in (True, False):
        timed(model, use_cache, 16)  # warm-up
        per_token, tokens = timed(model, use_cache, n)
        result["cache" if use_cache else "no_cache"] = {
            "total_seconds": round(sum(per_token), 3),
            "ms_per_token_first_64": round(1000 * sum(per_token[:64]) / 64, 3),
            "ms_per_token_last_64": round(1000 * sum(per_token[-64:]) / 64, 3),
            "tokens": tokens,
        }
    assert torch.equal(result["cache"].pop("tokens"), result["no_cache"].pop("tokens"))
    result["speedup_total"] = round(result["no_cache"]["total_seconds"] / result["cache"]["total_seconds"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
