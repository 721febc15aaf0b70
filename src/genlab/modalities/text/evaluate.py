"""What a language-model run's generated text is worth: memorisation against the training text, diversity, and
continuations of held-out documents scored against their true endings."""

from __future__ import annotations

import time

from genlab.metrics.text import distinct_n, memorisation_report, reference_scores, self_bleu
from genlab.modalities.text.generate import generate_text


def evaluate_text_run(run, ec, quiet: bool = True) -> dict:
    """Language models: eval.n_samples unprompted samples of up to eval.sample_tokens tokens: their longest verbatim
    overlap with the training text (beside held-out documents'), distinct-1/2 and self-BLEU; and greedy
    continuations of the first half of up to eval.n_samples held-out documents scored against the true second half
    (BLEU, ROUGE-L). Samples are kept in the run."""
    t0 = time.perf_counter()
    metrics: dict = {"timings_seconds": {}}
    ds = run.dataset
    texts = generate_text(run, "", n=ec.n_samples, seed=ec.seed, max_new_tokens=ec.sample_tokens)
    run.paths.samples.mkdir(exist_ok=True)
    (run.paths.samples / "samples.txt").write_text("\n%\n".join(texts) + "\n", encoding="utf-8")
    held_out = ds.corpus.split_documents("test") or ds.corpus.split_documents("val")
    train_text = "\n".join(ds.corpus.split_documents("train"))
    metrics["memorisation"] = memorisation_report(texts, train_text, held_out[:ec.n_samples])
    metrics["diversity"] = {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
                            "self_bleu": self_bleu(texts), "n_samples": len(texts)}
    docs = [d for d in held_out if len(d) >= 8][:ec.n_samples]
    if len(docs) == 1:  # one long held-out text (Tiny Shakespeare): score 20 passages of it instead
        docs = [docs[0][i: i + 400] for i in range(0, min(len(docs[0]), 400 * ec.n_samples), 400)]
    prompts = [d[: len(d) // 2] for d in docs]
    truths = [d[len(d) // 2:] for d in docs]
    continuations = [generate_text(run, p, 1, seed=0, temperature=0.0,
                                   max_new_tokens=max(1, len(ds.tokenizer.encode(t))))[0]
                     for p, t in zip(prompts, truths, strict=True)]
    metrics["continuations"] = {**reference_scores(continuations, truths), "decoding": "greedy",
                                "prompt": "first half of each held-out document"}
    metrics["timings_seconds"]["samples"] = round(time.perf_counter() - t0, 3)
    return metrics
