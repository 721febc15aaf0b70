"""Answers from a chat run: the conversation is rendered by the run's template exactly as in training (turn by turn,
each piece tokenised on its own), the generation prompt appended, and the answer generated until the template's
end-of-turn marker."""

from __future__ import annotations

import numpy as np

from genlab.core.errors import GenlabError
from genlab.modalities.chat.data import conversation_problem
from genlab.modalities.text.generate import stream_tokens


def prompt_ids(dataset, messages: list[dict]) -> list[int]:
    """Token ids of `messages` (ending with a user turn) followed by the generation prompt."""
    problem = conversation_problem([*messages, {"role": "assistant", "content": "x"}])
    if problem:
        raise GenlabError(f"the conversation {problem.replace('turn', 'message')}")
    template, tokenizer = dataset.template, dataset.tokenizer
    pieces = template.pieces(messages)
    answered = max((i + 1 for i, (_, answer) in enumerate(pieces) if answer), default=0)
    ids, done = [tokenizer.eot_id], ""
    for text, _ in pieces[:answered]:  # earlier turns exactly as training tokenised them
        ids += tokenizer.encode(text).tolist()
        done += text
    full = template.render(messages, add_generation_prompt=True)
    if not full.startswith(done):
        raise GenlabError("the chat template renders a conversation differently from its turns")
    return ids + tokenizer.encode(full[len(done):]).tolist()


def end_of_turn(dataset) -> tuple[tuple[int, ...], list[str]]:
    """(stop token ids, stop strings): the template's end-of-turn marker as one token when it is one."""
    marker = dataset.template.end_of_turn()
    if not marker:
        return (), []
    ids = np.asarray(dataset.tokenizer.encode(marker)).tolist()
    return (tuple(ids), []) if len(ids) == 1 else ((), [marker])


def stream_chat(run, messages: list[dict], seed: int = 0, n: int = 1, stop: list[str] | None = None,
                report: dict | None = None, **sampling):
    """Yield the answers to `messages` piece by piece (one string per answer per step); see stream_tokens."""
    if getattr(run.dataset, "template", None) is None:
        raise GenlabError(f"{run.paths.root} is not a chat run (train it on data.source=chat)")
    grounding = run.dataset.grounding
    if grounding is not None:  # passages for the last user turn; citations reported beside the answers
        messages, citations, abstain = grounding.ground(messages)
        if report is not None:
            report["citations"] = citations
        if abstain:
            yield from abstention(n, report)
            return
    stop_ids, stop_strings = end_of_turn(run.dataset)
    yield from stream_tokens(run, prompt_ids(run.dataset, messages), seed, n, [*(stop or []), *stop_strings],
                             stop_ids, report, **sampling)


def abstention(n: int, report: dict | None):
    """The answer when no passage matches: said, not generated."""
    from genlab.modalities.chat.grounding import ABSTAIN

    if report is not None:
        report.update(finish_reason=["stop"] * n, completion_tokens=[0] * n, prompt_tokens=0, abstained=True)
    yield [ABSTAIN] * n


def chat_answers(run, messages: list[dict], n: int = 1, seed: int = 0, report: dict | None = None,
                 **sampling) -> list[str]:
    """`n` answers to the conversation `messages` (a list of {"role", "content"} ending with a user turn)."""
    out = [""] * n
    for pieces in stream_chat(run, messages, seed, n, report=report, **sampling):
        out = [a + b for a, b in zip(out, pieces, strict=True)]
    return out
