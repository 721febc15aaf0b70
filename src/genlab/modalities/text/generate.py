"""Text generation from a language-model run: token by token, decoded as it goes (streaming), with stop strings."""

from __future__ import annotations

import torch

from genlab.core.errors import GenlabError
from genlab.core.options import check_options
from genlab.nn.decoding import generate_tokens


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
    if not 1 <= n <= 1000:
        raise GenlabError(f"n must be between 1 and 1,000 for text, got {n}")
    start = torch.as_tensor(list(prompt_ids), dtype=torch.long)
    prompt_ids = start.expand(n, -1).contiguous()
    generator = torch.Generator().manual_seed(seed)
    done = [False] * n
    emitted = [0] * n
    produced: list[list[int]] = [[] for _ in range(n)]
    ends = {tokenizer.eot_id, *stop_ids}
    finish = ["length"] * n
    if report is not None:
        report.update(finish_reason=finish, completion_tokens=[0] * n, prompt_tokens=int(start.numel()))
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
                pieces.append("")
                continue
            produced[i].append(tok)
            text = tokenizer.decode(produced[i])
            if stop:
                cut = min((text.find(s) for s in stop if s in text), default=-1)
                if cut >= 0:
                    text, done[i], finish[i] = text[:cut], True, "stop"
            if text.endswith("\ufffd") and not done[i]:  # an incomplete UTF-8 sequence: wait for its bytes
                pieces.append("")
                continue
            pieces.append(text[emitted[i]:])
            emitted[i] = len(text)
        yield pieces
        if all(done):
            return


def generate_text(run, prompt: str = "", n: int = 1, seed: int = 0, **sampling) -> list[str]:
    """`n` continuations of `prompt` (without the prompt)."""
    out = [""] * n
    for pieces in stream_text(run, prompt, seed, n, **sampling):
        out = [a + b for a, b in zip(out, pieces, strict=True)]
    return out
