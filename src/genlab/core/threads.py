"""How many CPU threads torch uses, chosen from the CPUs other processes leave free and kept there while a job
runs, so genlab shares a busy machine instead of fighting over it.

What was measured (bench/busy_machine.py; figures in docs/benchmarks.md, "Sharing a busy machine"):

- The damage comes from more runnable threads than cores. torch runs its CPU kernels (and MKL's and oneDNN's)
  on an OpenMP pool (GNU libgomp in the PyPI wheels) with, by default, one thread per CPU; every parallel
  region ends in a barrier, so a region waits for whichever of its threads the scheduler has parked. Two
  trainings with 2 threads each on 2 cores ran at 2-21% of their speed alone; with 1 thread each, each ran as
  fast as with 1 thread alone.
- The OpenMP wait policy does not fix it. libgomp's workers busy-wait ~300,000 spins (~7 ms here) for the
  next region before they sleep. OMP_WAIT_POLICY=PASSIVE (sleep at once) makes 2+2 threads on 2 cores 2-26x
  faster, but a run alone 0.50-0.63x as fast (every region then pays a thread wake-up, expensive in a VM),
  and it stays slower than the right thread count; a short spin (GOMP_SPINCOUNT=10000) is as fast as the
  default alone and as bad when oversubscribed. So genlab sets no wait policy and leaves the user's.
- The policy variables must be in the environment before `import torch` (libgomp reads them once when torch
  loads it): `os.environ[...] = ...` before the import works, after it changes nothing. The thread count
  needs nothing early: `torch.set_num_threads` takes effect at once, any time, as often as needed. So no
  environment has to be prepared before torch is imported.
- Load changes while a job runs (another training starts later, or several start at once and each saw an
  idle machine), so the count is not only chosen once: `ThreadGovernor` re-applies the rule every two
  seconds from how busy other processes kept this process's CPUs since the last look.

The user's own choice wins everywhere: an explicit count (`train.threads`), then `OMP_NUM_THREADS` in the
environment, then the rule. With either of the first two the count never changes during a run. A count
that follows the load means results are bit-for-bit reproducible only with a fixed count (torch's CPU
reductions depend on it), as `tests/test_trainer.py` already does with `train.threads=1`.

This module imports nothing else of genlab, and torch only where it sets threads.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

LOAD_WINDOW_SECONDS = 0.2  # how long choose_threads watches the CPUs to see how busy others keep them


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask), or all CPUs where the OS does not say."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time a cgroup CPU limit allows this process (containers), or None when unlimited."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1: quota -1 means unlimited
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def read_cpu_times(path: Path = Path("/proc/stat")) -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) clock ticks since boot from /proc/stat; {} where there is no such file."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    times = {}
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        # user nice system idle iowait irq softirq steal [guest guest_nice: already counted in user and nice]
        ticks = [int(f) for f in fields[:8]]
        idle = ticks[3] + ticks[4]
        total = sum(ticks)
        times[int(name[3:])] = (total - idle, total)
    return times


def ticks_per_second() -> int:
    """The unit of /proc/stat (USER_HZ, 100 on Linux)."""
    try:
        return os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 100


def others_busy_between(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpus: set[int],
                        own_seconds: float) -> float:
    """How many of `cpus` other processes kept busy between two /proc/stat readings: the busy ticks of those
    CPUs less this process's own CPU time (`own_seconds`, all its threads), over the ticks of one CPU."""
    busy = total = 0
    for cpu in cpus:
        if cpu in before and cpu in after:
            busy += after[cpu][0] - before[cpu][0]
            total += after[cpu][1] - before[cpu][1]
    if total <= 0:
        return 0.0
    return max(0.0, (busy - own_seconds * ticks_per_second()) / (total / len(cpus)))


def others_busy_cpus(cpus: set[int], window: float = LOAD_WINDOW_SECONDS,
                     read: Callable[[], dict[int, tuple[int, int]]] = read_cpu_times,
                     sleep: Callable[[float], None] = time.sleep,
                     own_cpu_seconds: Callable[[], float] = time.process_time) -> float:
    """How many of `cpus` other processes keep busy now, from a `window`-second look at /proc/stat. Where there
    is no /proc/stat, the 1-minute load average scaled to this process's share of the machine's CPUs."""
    before, own_before = read(), own_cpu_seconds()
    if not before:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
        return load * len(cpus) / max(len(cpus), os.cpu_count() or 1)
    sleep(window)
    return others_busy_between(before, read(), cpus, own_cpu_seconds() - own_before)


def default_threads(cpus: float, busy: float) -> int:
    """The rule: one thread per CPU that others leave free, rounded to the nearest whole CPU, at least one and
    at most `cpus` (rounded down)."""
    limit = max(1, math.floor(cpus))
    return max(1, min(limit, math.floor(cpus - busy + 0.5)))


def threads_from_env() -> int | None:
    """The thread count the user set with OMP_NUM_THREADS (its first entry), or None."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def cpu_budget(cpus: set[int]) -> float:
    """How many CPUs' worth of time this process may use: its affinity mask, capped by a cgroup quota."""
    quota = cpu_quota()
    return min(len(cpus), quota) if quota else float(len(cpus))


def choose_threads(requested: int | None = None) -> int:
    """torch intra-op threads for this process: `requested` when given (>= 1), else OMP_NUM_THREADS when the
    environment sets it, else `default_threads` of the CPUs this process may use (affinity mask, capped by a
    cgroup CPU quota) and how many of them other processes keep busy right now (a 0.2-s look at /proc/stat).

    Why this rule: a torch thread only helps while it has a core to itself. A thread beyond the free cores
    waits for the scheduler, and the barrier that ends every parallel region holds its siblings until it
    runs: two 2-thread trainings on 2 cores ran at 2-21% of their speed alone. A thread too few costs at most
    the parallel speed-up of that core, 0.95-1.46x for genlab's CPU-sized recipes. So: one thread per core
    that others leave free now (rounded to the nearest whole core), and at least one. The load is read over
    a short window rather than from the load average, which lags a minute behind: it still counts a job
    that just ended and misses one that just started."""
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"threads must be at least 1, got {requested}")
        return int(requested)
    if (from_env := threads_from_env()) is not None:
        return from_env
    cpus = usable_cpus()
    budget = cpu_budget(cpus)
    return default_threads(budget, others_busy_cpus(cpus) * budget / len(cpus))


def apply_threads(n: int) -> int:
    """Use `n` intra-op threads in torch from now on; returns `n`. The inter-op pool is left alone: genlab's
    work never starts it (a training has the same threads with 1 or 2 inter-op threads), and torch lets its
    size be set only once, before it starts."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


class ThreadGovernor:
    """Keeps torch's intra-op threads at the rule's count while a job runs, as the load changes.

    `update()` is cheap enough to call every step: at most every `every` seconds it reads /proc/stat and this
    process's CPU time (no waiting), works out how many of its CPUs other processes kept busy since the last
    look, and sets torch's threads to `default_threads` of that. With a requested count or OMP_NUM_THREADS
    the count is the user's: it is applied once and never changed."""

    def __init__(self, requested: int | None = None, every: float = 2.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 read: Callable[[], dict[int, tuple[int, int]]] = read_cpu_times,
                 own_cpu_seconds: Callable[[], float] = time.process_time,
                 choose: Callable[[int | None], int] = choose_threads,
                 apply: Callable[[int], int] = apply_threads):
        self.fixed = requested is not None or threads_from_env() is not None
        self.every, self.clock, self.read, self.own_cpu_seconds, self.apply = every, clock, read, own_cpu_seconds, apply
        self.threads = apply(choose(requested))
        log.debug("torch threads %d (%s)", self.threads, "fixed" if self.fixed else f"re-checked every {every:g} s")
        self.cpus = usable_cpus()
        self.budget = cpu_budget(self.cpus)
        self._last = (clock(), read(), own_cpu_seconds())
        self.changes: list[tuple[float, int, float]] = []  # (clock, new count, others' busy CPUs) per change

    def update(self) -> int:
        """Re-apply the rule when `every` seconds have passed since the last look; returns the thread count."""
        if self.fixed:
            return self.threads
        now = self.clock()
        if now - self._last[0] < self.every:
            return self.threads
        ticks, own = self.read(), self.own_cpu_seconds()
        if not ticks:  # no /proc/stat: keep the count chosen at the start
            return self.threads
        _, last_ticks, last_own = self._last
        self._last = (now, ticks, own)
        busy = others_busy_between(last_ticks, ticks, self.cpus, own - last_own) * self.budget / len(self.cpus)
        n = default_threads(self.budget, busy)
        if n != self.threads:
            self.threads = self.apply(n)
            self.changes.append((now, n, round(busy, 2)))
            log.debug("torch threads %d (other processes keep %.2f of %.3g CPUs busy)", n, busy, self.budget)
        return self.threads
