"""The small validators every config dataclass uses: each raises one clear GenlabError naming the key."""

from __future__ import annotations

from genlab.core.errors import GenlabError


def choice(key: str, value: str, options: tuple[str, ...]) -> None:
    """Raise a clear config error when `value` is not one of `options`."""
    if value not in options:
        raise GenlabError(f"config key {key!r} is {value!r}; choose one of: {', '.join(options)}")


def positive(section: str, values: dict[str, float | None]) -> None:
    """Raise a clear config error for the first value that is set but not > 0."""
    for key, value in values.items():
        if value is not None and value <= 0:
            raise GenlabError(f"config key '{section}.{key}' must be > 0, got {value}")


def sample_count(n: int, most: int, name: str = "n") -> None:
    """One range for a number of samples, worded in the caller's own name for it: `n` in Python, `--n` on the
    command line."""
    if not 1 <= n <= most:
        raise GenlabError(f"{name} must be between 1 and {most:,} per call, got {n}")


def fraction(section: str, values: dict[str, float | None], hint: str = "") -> None:
    """Raise a clear config error for the first value that is set but not in [0, 1) (rates, fractions)."""
    for key, value in values.items():
        if value is not None and not 0 <= value < 1:
            raise GenlabError(f"config key '{section}.{key}' must be in [0, 1){hint}, got {value}")
