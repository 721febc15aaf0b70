"""The built-in rewards. Each entry is a factory (taking the `name=argument` text when it has one) returning the
function `(prompt, completion) -> float`, so an argument is parsed once, not per completion."""

from __future__ import annotations

import re

from genlab.core.errors import GenlabError


def regular_verse():
    """1 when the completion is regulated Tang verse in shape (genlab.metrics.text.regular_verse), else 0."""
    from genlab.metrics.text import regular_verse as check

    return lambda prompt, completion: float(check(completion)["regular"])


def sentiment():
    """VADER's compound score of the completion, in [-1, 1] (positive text scores high)."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise GenlabError("the sentiment reward needs vaderSentiment: pip install 'genlab[rewards]'") from None
    analyzer = SentimentIntensityAnalyzer()
    return lambda prompt, completion: float(analyzer.polarity_scores(completion)["compound"])


def length(target: str = "100"):
    """Closeness of the completion's length to TARGET characters: 0 at the target, -1 per TARGET off."""
    try:
        wanted = int(target)
    except ValueError:
        wanted = 0
    if wanted <= 0:
        raise GenlabError(f"reward length={target!r}: give a target length in characters, e.g. length=200")
    return lambda prompt, completion: -abs(len(completion) - wanted) / wanted


def keyword(word: str = ""):
    """How many times WORD occurs in the completion (whole words, any case)."""
    if not word.strip():
        raise GenlabError("reward keyword needs a word: keyword=WORD")
    pattern = re.compile(rf"(?<!\w){re.escape(word.strip())}(?!\w)", re.IGNORECASE)
    return lambda prompt, completion: float(len(pattern.findall(completion)))


def classifier(runs: str = ""):
    """A generative classifier built from genlab language-model runs, one per class, each trained (genlab train)
    on that class's texts: `classifier=RUN_A,RUN_B[,...]`. The reward is the posterior of the first class under
    equal priors, p(A | completion) = p(c | A) / sum_k p(c | k), in [0, 1], where p(c | k) is run k's exact
    likelihood of the completion as a whole document (end-of-document tokens around it; longer texts scored in
    windows of the run's context, each token once). Runs with different tokenizers compare fairly: each
    likelihood is of the same characters."""
    import torch

    from genlab.pipeline import open_run

    paths = [p.strip() for p in runs.split(",") if p.strip()]
    if len(paths) < 2:
        raise GenlabError("reward classifier needs two or more language-model runs, the rewarded class first: "
                          "classifier=RUN_A,RUN_B")
    loaded = [open_run(p) for p in paths]
    for path, run in zip(paths, loaded, strict=True):
        if getattr(run.dataset, "tokenizer", None) is None or not hasattr(run.model, "token_nll"):
            raise GenlabError(f"reward classifier: {path} is {run.modality.model_noun}, not a language model")

    @torch.no_grad()
    def log_likelihood(run, text: str) -> float:
        tokenizer, block = run.dataset.tokenizer, run.model.spec.block_size
        ids = torch.tensor([tokenizer.eot_id, *tokenizer.encode(text), tokenizer.eot_id], dtype=torch.long)
        total = 0.0
        for start in range(0, ids.numel() - 1, block):
            window = ids[start:start + block + 1].to(run.model.device)[None]
            total -= float(run.model.token_nll(window).sum())
        return total

    def reward(prompt: str, completion: str) -> float:
        scores = torch.tensor([log_likelihood(run, completion) for run in loaded], dtype=torch.float64)
        return float(torch.softmax(scores, 0)[0])

    return reward
