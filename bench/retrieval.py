"""Benchmark: the retrieval index (issue 16). Not a test.

    OMP_NUM_THREADS=1 taskset -c 1 python bench/retrieval.py faq
    OMP_NUM_THREADS=1 taskset -c 1 python bench/retrieval.py scale [--copies 10] [--max-seconds 120]

faq: the Debian FAQ chat set (data/chat/debian-faq.jsonl, 123 records): each assistant answer is a document
(id = its `source`, e.g. "debian-faq 2.1"), each user question a query whose one relevant document is its own
answer. Recall@1/5/10, MRR@10 and nDCG@10 at the document level for BM25, dense and hybrid, with the fixed
defaults (nothing tuned on these questions). Then a held-out check of the one knob that plausibly matters on
a corpus this small, the dense encoder's training length: the questions are split (seed 0) into a third for
choosing among 10/50/200 epochs by hybrid MRR@10 and two thirds on which the choice is reported.

scale: the eight English fortune files (cookie computers definitions people science politics work wisdom) and a
copy --copies times larger (every copy's words perturbed: 10% replaced by random corpus words, ids suffixed).
Each size is built in a fresh subprocess (so peak memory is its own) pinned to one core with one torch thread:
build time by step, peak memory, index size on disk by file, load time, and the latency of single queries
(k=10; 300 queries of 2-6 words drawn from the documents) per method, p50/p99.

Writes bench/out/retrieval_{faq,scale}.json and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path("bench/out")
FAQ = Path(__file__).resolve().parents[1] / "data" / "chat" / "debian-faq.jsonl"
FORTUNES = Path("/tmp/fortunes/usr/share/games/fortunes")
FILES = ("cookie", "computers", "definitions", "people", "science", "politics", "work", "wisdom")


def one_core(core: int = 1) -> None:
    import torch

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)


def faq_data():
    from genlab.retrieval import Document

    records = [json.loads(line) for line in FAQ.read_text().splitlines() if line.strip()]
    docs = [Document(r["source"], r["messages"][1]["content"], r["source"]) for r in records]
    queries = [(r["messages"][0]["content"], {r["source"]}) for r in records]
    return docs, queries


def score(index, queries, method: str) -> dict:
    from genlab.retrieval import evaluate_rankings

    rankings = [[index.chunks[i].doc_id for i, _ in index.rank(q, 50, method)] for q, _ in queries]
    return {k: round(v, 4) if isinstance(v, float) else v
            for k, v in evaluate_rankings(rankings, [rel for _, rel in queries]).items()}


def faq() -> dict:
    from genlab.retrieval import Index, IndexSettings
    from genlab.retrieval.dense import EncoderConfig

    docs, queries = faq_data()
    index = Index.build(docs)
    result = {"documents": len(docs), "chunks": len(index.chunks), "build": index.info["build"],
              "defaults": {m: score(index, queries, m) for m in ("bm25", "dense", "hybrid")}}
    order = np.random.default_rng(0).permutation(len(queries))
    dev = [queries[i] for i in order[: len(queries) // 3]]
    test = [queries[i] for i in order[len(queries) // 3:]]
    choices = {}
    for epochs in (10, 50, 200):
        ix = index if epochs == 10 else Index.build(docs, IndexSettings(encoder=EncoderConfig(epochs=epochs)))
        choices[epochs] = {"dev": {m: score(ix, dev, m) for m in ("dense", "hybrid")},
                           "test": {m: score(ix, test, m) for m in ("bm25", "dense", "hybrid")},
                           "training": ix.info["build"]["encoder_training"]}
    best = max(choices, key=lambda e: (choices[e]["dev"]["hybrid"]["mrr@10"], -e))
    result["held_out"] = {"dev_queries": len(dev), "test_queries": len(test), "by_epochs": choices,
                          "chosen_epochs": best, "test_of_chosen": choices[best]["test"]}
    return result


def fortunes(copies: int):
    """The eight files' records, and `copies` perturbed copies of them (copy 0 is the original)."""
    from genlab.retrieval import Document, read_documents

    base = read_documents([FORTUNES / f for f in FILES], "fortune")
    if copies == 1:
        return base
    rng = np.random.default_rng(0)
    vocab = sorted({w for d in base for w in d.text.split()})
    docs = list(base)
    for c in range(1, copies):
        for d in base:
            words = d.text.split(" ")
            for i in np.flatnonzero(rng.random(len(words)) < 0.1):
                words[i] = vocab[rng.integers(len(vocab))]
            docs.append(Document(f"{d.id}~{c}", " ".join(words), d.source))
    return docs


def scale_one(copies: int, max_seconds: float, folder: Path) -> dict:
    """One size, in this process: build, save, load, query."""
    from genlab.retrieval import Index, IndexSettings
    from genlab.retrieval.dense import EncoderConfig

    one_core()
    t0 = time.perf_counter()
    docs = fortunes(copies)
    read_seconds = time.perf_counter() - t0
    index = Index.build(docs, IndexSettings(encoder=EncoderConfig(max_seconds=max_seconds)))
    manifest = index.save(folder)
    files = {f.name: f.stat().st_size for f in sorted(folder.iterdir())}
    t0 = time.perf_counter()
    loaded = Index.load(folder)
    load_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    queries = []
    while len(queries) < 300:
        words = docs[rng.integers(len(docs))].text.split()
        n = int(rng.integers(2, 7))
        if len(words) >= n:
            a = int(rng.integers(len(words) - n + 1))
            queries.append(" ".join(words[a:a + n]))
    latency = {}
    for method in ("bm25", "dense", "hybrid"):
        loaded.search(queries[0], 10, method)  # warm-up
        times = []
        for q in queries:
            t = time.perf_counter()
            loaded.search(q, 10, method)
            times.append(time.perf_counter() - t)
        latency[method] = {"p50_ms": round(1000 * float(np.percentile(times, 50)), 2),
                           "p99_ms": round(1000 * float(np.percentile(times, 99)), 2)}
    return {"copies": copies, "documents": len(docs), "characters": sum(len(d.text) for d in docs),
            "chunks": len(index.chunks), "vocabulary": len(index.lexical.vocab), "read_seconds": round(read_seconds, 2),
            "build": manifest["build"], "bytes": manifest["bytes"], "files": files,
            "load_seconds": round(load_seconds, 2), "latency": latency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["faq", "scale", "scale-one"])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="dense encoder training cap per build")
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GENLAB_QUIET", "1")
    if args.part == "faq":
        one_core()
        result = faq()
    elif args.part == "scale-one":
        result = scale_one(args.copies, args.max_seconds, args.folder)
    else:
        result = {}
        with tempfile.TemporaryDirectory() as tmp:
            for copies in (1, args.copies):
                done = subprocess.run([sys.executable, __file__, "scale-one", "--copies", str(copies),
                                       "--max-seconds", str(args.max_seconds), "--folder", f"{tmp}/ix{copies}"],
                                      capture_output=True, text=True, check=True)
                result[f"x{copies}"] = json.loads(done.stdout)
    print(json.dumps(result, indent=1))
    if args.part != "scale-one":
        (OUT / f"retrieval_{args.part}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
