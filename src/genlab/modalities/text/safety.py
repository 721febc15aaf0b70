"""Output filter for generated text: a configurable blocklist (and optionally a classifier hook) that redacts
the matches or refuses the sample. A mechanism an operator configures, not a promise that nothing harmful
gets through: a blocklist misses paraphrases, and a hook is only as good as its classifier."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genlab.core.errors import GenlabError

REDACTION = "█"


@dataclass
class FilterResult:
    text: str
    filtered: bool  # something matched (redacted, or the sample refused)
    refused: bool


class TextFilter:
    def __init__(self, terms: list[str], mode: str = "redact", hook: Callable[[str], bool] | None = None):
        if mode not in ("redact", "refuse"):
            raise GenlabError(f"filter mode must be redact or refuse, got {mode!r}")
        terms = sorted({t.strip() for t in terms if t.strip()}, key=len, reverse=True)
        # ASCII words match whole words only ("ass" is not in "class"); other scripts match as substrings
        parts = [rf"\b{re.escape(t)}\b" if t.isascii() and t[0].isalnum() and t[-1].isalnum() else re.escape(t)
                 for t in terms]
        self.pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        self.longest = max((len(t) for t in terms), default=0)
        self.mode, self.hook = mode, hook

    @classmethod
    def from_options(cls, blocklist: str | Path | None, mode: str = "redact", hook: str | None = None):
        """A blocklist file (one term per line, # comments) and/or a hook "package.module:function" that
        takes a text and returns True to block it; None when neither is given."""
        if blocklist is None and hook is None:
            return None
        terms = []
        if blocklist is not None:
            try:
                lines = Path(blocklist).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise GenlabError(f"cannot read the blocklist {blocklist}: {exc}") from None
            terms = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
        fn = None
        if hook is not None:
            module, _, name = hook.partition(":")
            try:
                fn = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError, ValueError):
                raise GenlabError(f"cannot import the filter hook {hook!r} (package.module:function)") from None
        return cls(terms, mode, fn)

    def apply(self, text: str) -> FilterResult:
        matched = bool(self.pattern and self.pattern.search(text))
        blocked_by_hook = bool(self.hook and self.hook(text))
        if not (matched or blocked_by_hook):
            return FilterResult(text, False, False)
        if self.mode == "refuse" or blocked_by_hook:
            return FilterResult("", True, True)
        return FilterResult(self.pattern.sub(lambda m: REDACTION * len(m.group()), text), True, False)


class StreamFilter:
    """Filters one streamed sample: text is released only once no blocked term could still be completing
    at its end (a hold-back of the longest term's length), so a term split across pieces is still caught."""

    def __init__(self, text_filter: TextFilter):
        self.filter, self.text, self.sent = text_filter, "", 0
        self.filtered = self.refused = False  # as in FilterResult, for the sample so far

    def feed(self, piece: str, final: bool = False) -> str:
        if self.refused:
            return ""
        self.text += piece
        result = self.filter.apply(self.text)
        self.filtered = result.filtered
        if result.refused:
            self.refused = True
            return ""
        safe = len(result.text) if final else max(self.sent, len(result.text) - self.filter.longest)
        out, self.sent = result.text[self.sent:safe], safe
        return out
