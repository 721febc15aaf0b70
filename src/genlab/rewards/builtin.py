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
