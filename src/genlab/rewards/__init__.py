"""Rewards: functions `(prompt, completion) -> float` that preference pairs are ranked by and tuned runs are scored
with. A reward is named by a built-in (registry kind "reward", optionally `name=argument`, e.g. `keyword=love`) or
by user code as `module:function`; a reward that fails or returns no number is one clear error naming it."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

from genlab.core.errors import GenlabError
from genlab.registry import lookup, names


@dataclass
class Reward:
    """A loaded reward: `name` as the user wrote it, `sign` -1 for a flipped one (`-name`)."""

    name: str
    function: Callable[[str, str], float]
    sign: float = 1.0

    def __call__(self, prompt: str, completion: str) -> float:
        try:
            value = self.function(prompt, completion)
        except GenlabError:
            raise
        except Exception as exc:  # user code: any failure is reported with the reward's name, not a traceback
            raise GenlabError(f"reward {self.name!r} failed on a completion: {type(exc).__name__}: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise GenlabError(f"reward {self.name!r} must return a finite number, got {value!r}")
        return self.sign * float(value)

    def many(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [self(p, c) for p, c in zip(prompts, completions, strict=True)]


def load_reward(spec: str) -> Reward:
    """The reward `spec` names: `-spec` flips its sign; `module:function` is user code; else a built-in, with
    `name=argument` for those that take one (length=TARGET, keyword=WORD)."""
    spec = spec.strip()
    if spec.startswith("-"):
        inner = load_reward(spec[1:])
        return Reward(spec, inner.function, -inner.sign)
    if ":" in spec:
        module, _, attribute = spec.partition(":")
        try:
            function = getattr(importlib.import_module(module), attribute)
        except ImportError as exc:
            raise GenlabError(f"reward {spec!r}: cannot import module {module!r} ({exc})") from None
        except AttributeError:
            raise GenlabError(f"reward {spec!r}: module {module!r} has no {attribute!r}") from None
        if not callable(function):
            raise GenlabError(f"reward {spec!r} is not a function (prompt, completion) -> float")
        return Reward(spec, function)
    name, _, argument = spec.partition("=")
    if name not in names("reward"):
        raise GenlabError(f"unknown reward {spec!r}; choose one of: {', '.join(names('reward'))}, or a function "
                          "given as module:function")
    factory = lookup("reward", name)
    return Reward(spec, factory(argument) if argument else factory())
