"""What a language-model run's generated text is worth: memorisation against the training text, diversity, and
continuations of held-out documents scored against their true endings."""

from __future__ import annotations

from tqdm import tqdm

from genlab.core.progress import bars_off, timed
from genlab.metrics.text import distinct_n, memorisation_report, reference_scores, self_bleu
from genlab.modalities.text.generate import generate_text, stream_text


def evaluate_text_run(run, ec, quiet: bool = True) -> dict:
    """eval.n_samples unprompted samples of up to eval.sample_tokens tokens: their longest verbatim overlap with
    the training text (beside held-out documents'), distinct-1/2 and self-BLEU; and greedy continuations of the
    first half of up to eval.n_samples held-out documents scored against the true second half (BLEU, ROUGE-L).
    Samples are kept in the run. Each step is timed (and told unless quiet); bars where stderr is a terminal."""
    ds, timings = run.dataset, {}
    metrics: dict = {"timings_seconds": timings}
    no_bars = bars_off(quiet)
    with timed(timings, "sampling", quiet):
        texts = [""] * ec.n_samples  # generate_text's loop, with a bar over the tokens
        steps = stream_text(run, "", ec.seed, ec.n_samples, max_new_tokens=ec.sample_tokens)
        for pieces in tqdm(steps, total=ec.sample_tokens, disable=no_bars, desc=f"sampling {ec.n_samples} texts",
                           unit="token"):
            texts = [a + b for a, b in zip(texts, pieces, strict=True)]
        run.paths.samples.mkdir(exist_ok=True)
        (run.paths.samples / "samples.txt").write_text("\n%\n".join(texts) + "\n", encoding="utf-8")
    held_out = ds.corpus.split_documents("test") or ds.corpus.split_documents("val")
    with timed(timings, "memorisation", quiet):
        train_text = "\n".join(ds.corpus.split_documents("train"))
        metrics["memorisation"] = memorisation_report(texts, train_text, held_out[:ec.n_samples], quiet=no_bars)
    with timed(timings, "diversity", quiet):
        metrics["diversity"] = {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
                                "self_bleu": self_bleu(texts), "n_samples": len(texts)}
    with timed(timings, "continuations", quiet):
        docs = [d for d in held_out if len(d) >= 8][:ec.n_samples]
        if len(docs) == 1:  # one long held-out text (Tiny Shakespeare): score passages of it instead
            docs = [docs[0][i: i + 400] for i in range(0, min(len(docs[0]), 400 * ec.n_samples), 400)]
        prompts = [d[: len(d) // 2] for d in docs]
        truths = [d[len(d) // 2:] for d in docs]
        continuations = [generate_text(run, p, 1, seed=0, temperature=0.0,
                                       max_new_tokens=max(1, len(ds.tokenizer.encode(t))))[0]
                         for p, t in tqdm(list(zip(prompts, truths, strict=True)), disable=no_bars,
                                          desc="greedy continuations", unit="document")]
        metrics["continuations"] = {**reference_scores(continuations, truths), "decoding": "greedy",
                                    "prompt": "first half of each held-out document"}
    timings["samples"] = round(sum(timings[k] for k in ("sampling", "memorisation", "diversity", "continuations")),
                               3)  # all of the above, as before
    return metrics
