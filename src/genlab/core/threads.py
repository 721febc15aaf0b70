"""How many CPU threads a command uses: the CPUs this process may run on, fewer when other processes keep them busy,
so genlab degrades gracefully on a shared machine instead of fighting for cores."""

from __future__ import annotations

import os


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_threads(requested: int | None = None) -> int:
    """`requested` when given; else the CPUs this process may use less the load other processes put on them
    (the 1-minute load average), at least one."""
    if requested:
        return requested
    cpus = available_cpus()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cpus, round(cpus - busy)))


def apply_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
