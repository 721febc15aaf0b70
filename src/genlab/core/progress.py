"""What a person waiting sees: progress bars where stderr is a terminal, and a timed line per step of long work
also where it is not (a pipe, a log file), unless genlab is told to be quiet (CI, GENLAB_QUIET, tests)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def quiet() -> bool:
    """No progress at all: under CI or with GENLAB_QUIET set."""
    return bool(os.environ.get("CI")) or bool(os.environ.get("GENLAB_QUIET"))


def bars_off(quiet: bool) -> bool:
    """Progress bars only on a terminal: in a log their redraws are noise, the timed lines say enough."""
    return quiet or not sys.stderr.isatty()


@contextmanager
def timed(timings: dict, name: str, quiet: bool) -> Iterator[None]:
    """Time one step into timings[name] (seconds) and, unless quiet, say how long it took on stderr."""
    if not quiet:
        print(f"{name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    yield
    seconds = timings[name] = round(time.perf_counter() - t0, 3)
    if not quiet:
        print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)
