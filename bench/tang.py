"""Benchmark: Tang poems from a trained language-model run. Not a test.

    python bench/tang.py RUN [--n 20] [--temperature 0.8] [--top-k 0] [--max-tokens 300]

Draws N unprompted samples (seeds 0..N-1; each starts a new document, so the model writes the 《title》 and
作者 lines itself), and reports:
- the share whose body is regulated verse in shape (genlab.metrics.text.regular_verse: every line two
  clauses of 5 or 7 characters, ， then 。), beside the same share over the real corpus;
- the memorisation check of `genlab eval`: longest verbatim overlap with the training poems, beside real
  held-out poems.
Writes bench/out/tang_<run>.json and the samples to bench/out/tang_<run>_samples.txt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from genlab.metrics.text import memorisation_report, regular_verse
from genlab.pipeline import generate_text, open_run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = open_run(args.run)
    sampling = {"temperature": args.temperature, "max_new_tokens": args.max_tokens,
                "top_k": args.top_k or None}
    samples = [generate_text(run, "", seed=i, **sampling)[0] for i in range(args.n)]
    shapes = [regular_verse(s) for s in samples]
    corpus = run.dataset.corpus
    real = [regular_verse(d) for d in corpus.documents]
    held_out = corpus.split_documents("test") or corpus.split_documents("val")
    memo = memorisation_report(samples, "\n".join(corpus.split_documents("train")), held_out[: args.n])
    result = {
        "run": str(Path(args.run).resolve()), "sampling": sampling, "n": args.n,
        "regular_fraction": sum(s["regular"] for s in shapes) / args.n,
        "regular_by_clause_length": {k: sum(s["clause_length"] == k for s in shapes) for k in (5, 7)},
        "corpus_regular_fraction": sum(s["regular"] for s in real) / len(real),
        "memorisation": memo,
    }
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.run).name
    (out / f"tang_{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (out / f"tang_{name}_samples.txt").write_text("\n%\n".join(samples) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
