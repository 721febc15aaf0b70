"""Text generation from a language-model run: token by token, decoded as it goes (streaming), with stop strings."""

from __future__ import annotations

import torch

from genlab.core.errors import GenlabError
from genlab.core.options import check_options
from genlab.core.validate import sample_count
from genlab.nn.decoding import generate_tokens

MAX_TEXTS = 1000


def stream_text(run, prompt: str = "", seed: int = 0, n: int = 1, stop: list[str] | None = None,
                report: dict | None = None, **sampling):
    """Yield the new text of `n` continuations of `prompt` piece by piece (one string per sample per step)
    as tokens are generated; stops at `max_new_tokens`, at end of document, or after a `stop` string."""
    tokenizer = language_tokenizer(run)
    ids = tokenizer.encode(prompt) if prompt else []
    yield from stream_tokens(run, [tokenizer.eot_id, *ids], seed, n, stop, report=report, **sampling)


def language_tokenizer(run):
    tokenizer = getattr(run.dataset, "tokenizer", None)
    if tokenizer is None:
        raise GenlabError(f"{run.paths.root} is {run.modality.model_noun}; text streams from language models")
    return tokenizer


def stream_tokens(run, prompt_ids, seed: int = 0, n: int = 1, stop: list[str] | None = None,
                  stop_ids: tuple[int, ...] = (), report: dict | None = None, **sampling):
    """Yield the new text of `n` continuations of the token ids `prompt_ids` (a new document starts with EOT)
    piece by piece; a sample ends at `max_new_tokens`, at EOT or a token of `stop_ids` (neither shown), or
    before a `stop` string. `report`, when given, receives per sample "finish_reason" (stop / length),
    "completion_tokens", and "prompt_tokens"."""
    tokenizer = language_tokenizer(run)
    cfg = check_options(run.model.sample_options, {k: v for k, v in sampling.items() if v is not None},
                        owner=f"the {run.config.family} family")
    cfg.validate()
    sample_count(n, MAX_TEXTS)
    start = torch.as_tensor(list(prompt_ids), dtype=torch.long)
    prompt_ids = start.expand(n, -1).contiguous()
    generator = torch.Generator().manual_seed(seed)
    done = [False] * n
    emitted = [0] * n
    shown = [""] * n  # each sample's text so far, cut at a stop string
    produced: list[list[int]] = [[] for _ in range(n)]
    ends = {tokenizer.eot_id, *stop_ids}
    finish = ["length"] * n
    if report is not None:
        report.update(finish_reason=finish, completion_tokens=[0] * n, prompt_tokens=int(start.numel()))

    def release(i: int) -> str:
        """The new text of sample i that is safe to show: not an incomplete UTF-8 sequence, and not the start of a
        stop string still being written (held back until the sample goes on or ends)."""
        text = shown[i]
        if done[i]:
            safe = len(text)
        elif text.endswith("\ufffd"):
            safe = emitted[i]
        else:
            safe = len(text) - held_back(text, stop or [])
        out = text[emitted[i]:safe]
        emitted[i] = max(emitted[i], safe)
        return out

    for new in generate_tokens(run.model.net, prompt_ids, cfg, generator):
        pieces = []
        for i, tok in enumerate(new.tolist()):
            if done[i]:
                pieces.append("")
                continue
            if report is not None:
                report["completion_tokens"][i] += 1
            if tok in ends:
                done[i], finish[i] = True, "stop"
            else:
                produced[i].append(tok)
                shown[i] = tokenizer.decode(produced[i])
                cut = min((shown[i].find(s) for s in stop or [] if s in shown[i]), default=-1)
                if cut >= 0:
                    shown[i], done[i], finish[i] = shown[i][:cut], True, "stop"
            pieces.append(release(i))
        yield pieces
        if all(done):
            return
    # max_new_tokens reached: what was held back for a stop string (never an incomplete UTF-8 sequence)
    rest = [text.rstrip("\ufffd")[e:] for text, e in zip(shown, emitted, strict=True)]
    if any(rest):
        yield rest


def held_back(text: str, stop: list[str]) -> int:
    """How many characters at the end of `text` could be the start of a stop string."""
    return max((k for s in stop for k in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:k])),
               default=0)


def generate_text(run, prompt: str = "", n: int = 1, seed: int = 0, **sampling) -> list[str]:
    """`n` continuations of `prompt` (without the prompt)."""
    out = [""] * n
    for pieces in stream_text(run, prompt, seed, n, **sampling):
        out = [a + b for a, b in zip(out, pieces, strict=True)]
    return out
