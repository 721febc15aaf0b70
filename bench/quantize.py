"""Benchmark: dynamic int8 quantisation of a language model's Linear layers (what `genlab serve --quantize
int8` does): generation speed and test bits per character, float32 vs int8, one core. Not a test.

    OMP_NUM_THREADS=1 taskset -c 0 python bench/quantize.py RUN [RUN ...]

Speed: 4 samples x 256 new tokens with the KV cache (no early stop), best of 3. Writes bench/out/quantize.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genlab.nn.decoding import SamplingConfig, generate_tokens
from genlab.pipeline import open_run
from genlab.serve.app import quantize_int8


def tokens_per_second(run) -> float:
    prompt = torch.full((4, 1), run.dataset.tokenizer.eot_id, dtype=torch.long)
    cfg = SamplingConfig(temperature=0.8, max_new_tokens=256)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in generate_tokens(run.model.net, prompt, cfg, torch.Generator().manual_seed(0)):
            pass
        best = min(best, time.perf_counter() - t0)
    return 4 * 256 / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for path in args.runs:
        run = open_run(path)
        row = {"float32": {"tokens_per_second": tokens_per_second(run),
                           "bits_per_character": run.model.test_likelihood(run.dataset, run.config.eval, False)[
                               "bits_per_character"]}}
        quantize_int8(run.model)
        row["int8"] = {"tokens_per_second": tokens_per_second(run),
                       "bits_per_character": run.model.test_likelihood(run.dataset, run.config.eval, False)[
                           "bits_per_character"]}
        row["speedup"] = row["int8"]["tokens_per_second"] / row["float32"]["tokens_per_second"]
        results[Path(path).name] = row
        print(Path(path).name, json.dumps(row))
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    Path("bench/out/quantize.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
