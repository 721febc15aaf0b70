"""What a chat run's answers are worth: held-out conversations answered greedily and scored against their real last
answer (token F1, exact match, ROUGE-L, BLEU), and whether the answers copy the training split's answers. The
perplexity of held-out answer tokens comes from the family's likelihood (pipeline.evaluate_run)."""

from __future__ import annotations

import json

from tqdm import tqdm

from genlab.core.errors import GenlabError
from genlab.core.progress import bars_off, timed
from genlab.core.runs import atomic_write_text
from genlab.metrics.answers import answer_scores, grounding_scores
from genlab.metrics.text import memorisation_report
from genlab.modalities.chat.generate import chat_answers


def last_answer(messages: list[dict]) -> tuple[list[dict], str]:
    """(the conversation before its last assistant turn, that turn's content): the context and the reference."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last]["content"]


def evaluate_chat_run(run, ec, quiet: bool = True) -> dict:
    """The first eval.n_answers held-out conversations (test split, else val) answered greedily (up to
    eval.answer_tokens tokens) and scored against their last answer; those answers' longest verbatim overlap with
    the training split's answers, beside the same for the real held-out answers. The answers are kept in the run
    (samples/answers.jsonl). Each step is timed (and told unless quiet); bars where stderr is a terminal."""
    ds, timings = run.dataset, {}
    no_bars = bars_off(quiet)
    split = "test" if len(ds.splits["test"]) else "val"
    conversations = ds.split_conversations(split)[: ec.n_answers]
    if not conversations:
        raise GenlabError("no held-out conversation to answer: the test and validation splits are empty (raise "
                          "data.test_fraction)")
    contexts, references = zip(*(last_answer(c) for c in conversations), strict=True)
    reports = [{} for _ in contexts]
    with timed(timings, "answers", quiet):
        answers = [chat_answers(run, context, 1, seed=ec.seed, report=report, temperature=0.0,
                                max_new_tokens=ec.answer_tokens)[0]
                   for context, report in zip(tqdm(contexts, disable=no_bars, desc="greedy answers", unit="answer"),
                                              reports, strict=False)]
        run.paths.samples.mkdir(exist_ok=True)
        atomic_write_text(run.paths.samples / "answers.jsonl", "".join(
            json.dumps({"messages": c, "reference": r, "answer": a}, ensure_ascii=False) + "\n"
            for c, r, a in zip(contexts, references, answers, strict=True)))
    metrics: dict = {"timings_seconds": timings}
    with timed(timings, "answer scores", quiet):
        metrics["answers"] = {**answer_scores(answers, list(references)), "split": split, "decoding": "greedy",
                              "max_new_tokens": ec.answer_tokens,
                              "likelihood_tokens": "answers",  # held-out splits score answers whatever train_on
                              "reference": "each conversation's last assistant turn, the turns before it as context"}
    if ds.grounding is not None:  # answers grounded in an index: were they supported, and cited right?
        metrics["grounding"] = {**grounding_scores(answers, [r.get("citations", []) for r in reports],
                                                   [bool(r.get("abstained")) for r in reports],
                                                   [ds.source_of(c) for c in conversations]),
                                "index": ds.grounding.path, "k": ds.grounding.k, "method": ds.grounding.method}
    with timed(timings, "memorisation", quiet):
        train_answers = [m["content"] for c in ds.split_conversations("train") for m in c if m["role"] == "assistant"]
        metrics["memorisation"] = {**memorisation_report(answers, "\n".join(train_answers), list(references),
                                                         quiet=no_bars),
                                   "against": "the training split's assistant turns"}
    return metrics


def chat_headline(metrics: dict) -> dict:
    """The figures a person reads first (the likelihood's held-out answer perplexity is printed beside them)."""
    out = {}
    if "answers" in metrics:
        a = metrics["answers"]
        if "likelihood" in metrics:
            lk = metrics["likelihood"]
            out[f"answer perplexity ({lk['split']} answer tokens)"] = round(lk["perplexity"], 3)
        out[f"answers token-F1 / exact match / ROUGE-L ({a['n']} {a['split']} conversations, greedy)"] = [
            round(a["token_f1"], 3), round(a["exact_match"], 3), round(a["rouge_l_f1"], 3)]
    if "grounding" in metrics:
        g = metrics["grounding"]
        keys = ("support_share", "citation_precision", "abstention_rate")
        out["grounding: support share / citation precision / abstention rate"] = [
            None if g[k] is None else round(g[k], 3) for k in keys]
    if "memorisation" in metrics:
        memo = metrics["memorisation"]
        out["memorisation of training answers"] = memo["verdict"]
        out["longest overlap with training answers, median chars (answers / real held-out answers)"] = [
            memo["longest_overlap_chars"]["median"], memo["held_out_longest_overlap_chars"]["median"]]
    return out
