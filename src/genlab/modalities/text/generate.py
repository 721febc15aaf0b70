"""Text generation from a language-model run: token by token, decoded as it goes (streaming), with stop strings."""

from __future__ import annotations

import torch

from genlab.core.errors import GenlabError
from genlab.core.options import check_options
from genlab.core.validate import sample_count
from genlab.nn.decoding import generate_tokens

MAX_TEXTS = 1000


def stream_text(run, prompt: str = "", seed: int = 0, n: int = 1, stop: list[str] | None = None,
                **sampling):
    """Yield the new text of `n` continuations of `prompt` piece by piece (one string per sample per step)
    as tokens are generated; stops at `max_new_tokens`, at end of document, or after a `stop` string."""
    if run.modality.name != "text":
        raise GenlabError(f"{run.paths.root} is {run.modality.model_noun}; text streams from language models")
    ds = run.dataset
    cfg = check_options(run.model.sample_options, {k: v for k, v in sampling.items() if v is not None},
                        owner=f"the {run.config.family} family")
    cfg.validate()
    sample_count(n, MAX_TEXTS)
    ids = ds.tokenizer.encode(prompt) if prompt else []
    start = torch.tensor([ds.tokenizer.eot_id, *ids], dtype=torch.long)  # a new document begins
    prompt_ids = start.expand(n, -1).contiguous()
    generator = torch.Generator().manual_seed(seed)
    done = [False] * n
    emitted = [0] * n
    produced: list[list[int]] = [[] for _ in range(n)]
    for new in generate_tokens(run.model.net, prompt_ids, cfg, generator):
        pieces = []
        for i, tok in enumerate(new.tolist()):
            if done[i] or tok == ds.tokenizer.eot_id:
                done[i] = True
                pieces.append("")
                continue
            produced[i].append(tok)
            text = ds.tokenizer.decode(produced[i])
            if stop:
                cut = min((text.find(s) for s in stop if s in text), default=-1)
                if cut >= 0:
                    text, done[i] = text[:cut], True
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
