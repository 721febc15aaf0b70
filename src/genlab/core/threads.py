"""How many CPU threads torch uses and how its idle threads wait, so genlab shares a busy machine instead of
fighting over it.

Two settings, made at two different moments (measured in bench/busy_machine.py, figures in
docs/benchmarks.md, "Sharing a busy machine"):

1. How idle OpenMP threads wait: `prepare_environment()`, first thing in a process, BEFORE `import torch`.
   torch runs its CPU kernels (and MKL's, oneDNN's) on an OpenMP thread pool: GNU libgomp in the PyPI wheels,
   LLVM/Intel libomp in some other builds. By default a libgomp worker busy-waits ~300,000 spins (about 7 ms
   on the project machine) after every parallel region before it sleeps. Alone on a machine that saves a
   wake-up; on a shared machine the spinning threads take the cores other processes (and this process's own
   main thread) need, and everyone slows down many times over. `OMP_WAIT_POLICY=PASSIVE` makes idle
   workers sleep at once (libgomp: spin count 0; libomp: KMP_BLOCKTIME 0). The OpenMP runtime reads these
   variables once, when `import torch` loads it: setting them in `os.environ` before that import works,
   setting them after it has no effect, and `torch.set_num_threads` cannot change how threads wait.
2. How many intra-op threads: `apply_threads(choose_threads(requested))`, any time before the work starts.
   `torch.set_num_threads` takes effect at once, so this can wait until a command knows its configuration.

The user's own settings win: an explicit thread count (`train.threads`), then `OMP_NUM_THREADS` in the
environment, then the rule in `choose_threads`; and `prepare_environment` leaves the wait policy alone when
the environment already sets one.

This module imports nothing else of genlab, and torch only inside `apply_threads`, so a command-line entry
point can call `prepare_environment()` before anything has imported torch.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path

# Set by prepare_environment when the environment names no wait policy of its own.
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}
# Any of these in the environment means the user chose how threads wait: leave them all alone.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "KMP_LIBRARY")
LOAD_WINDOW_SECONDS = 0.2  # how long choose_threads watches the CPUs to see how busy others keep them


def prepare_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the OpenMP wait policy (idle threads sleep instead of spinning) unless the environment already sets
    one; returns the variables it set. Call it first thing in a process, before anything imports torch: the
    OpenMP runtime reads the environment once, when torch loads it. Called after `import torch` it changes
    nothing for this process (child processes still inherit the variables)."""
    env = os.environ if environ is None else environ
    if any(name in env for name in WAIT_VARIABLES):
        return {}
    env.update(WAIT_POLICY)
    return dict(WAIT_POLICY)


def torch_imported() -> bool:
    """Whether torch is already loaded in this process (then the wait policy is fixed for its lifetime)."""
    return "torch" in sys.modules


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


def others_busy_cpus(cpus: set[int], window: float = LOAD_WINDOW_SECONDS,
                     read: Callable[[], dict[int, tuple[int, int]]] = read_cpu_times,
                     sleep: Callable[[float], None] = time.sleep,
                     own_cpu_seconds: Callable[[], float] = time.process_time) -> float:
    """How many of `cpus` other processes keep busy now: their busy share over a `window`-second look at
    /proc/stat, times the number of CPUs, less this process's own CPU time in that window. Where there is no
    /proc/stat, the 1-minute load average, scaled to this process's share of the machine's CPUs."""
    before, own_before = read(), own_cpu_seconds()
    if not before:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
        return load * len(cpus) / max(len(cpus), os.cpu_count() or 1)
    sleep(window)
    after, own = read(), own_cpu_seconds() - own_before
    busy = total = 0
    for cpu in cpus:
        if cpu in before and cpu in after:
            busy += after[cpu][0] - before[cpu][0]
            total += after[cpu][1] - before[cpu][1]
    if total <= 0:
        return 0.0
    own_ticks = own * ticks_per_second()
    return max(0.0, (busy - own_ticks) / (total / len(cpus)))  # busy ticks / ticks of one CPU in the window


def default_threads(cpus: float, busy: float) -> int:
    """The rule: one thread per CPU that others leave free, rounded to the nearest whole CPU, at least one and
    at most `cpus` (rounded down)."""
    limit = max(1, math.floor(cpus))
    return max(1, min(limit, math.floor(cpus - busy + 0.5)))


def choose_threads(requested: int | None = None) -> int:
    """torch intra-op threads for this process: `requested` when given (>= 1), else OMP_NUM_THREADS when the
    environment sets it, else `default_threads` of the CPUs this process may use (affinity mask, capped by a
    cgroup CPU quota) and how many of them other processes keep busy right now (`others_busy_cpus`: a 0.2-s
    look at /proc/stat).

    Why this rule: on a CPU, a torch thread only helps while it has a core to itself. A thread beyond the
    free cores waits for the scheduler while the OpenMP barriers of its parallel regions hold the others;
    a thread too few costs at most the parallel speed-up of that core, which is small for genlab's CPU-sized
    models (see docs/benchmarks.md). So count the cores others leave free now, and use at least one."""
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"threads must be at least 1, got {requested}")
        return int(requested)
    from_env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if from_env.isdigit() and int(from_env) >= 1:
        return int(from_env)
    cpus = usable_cpus()
    quota = cpu_quota()
    count = min(len(cpus), quota) if quota else len(cpus)
    busy = others_busy_cpus(cpus) * count / len(cpus)
    return default_threads(count, busy)


def apply_threads(n: int) -> int:
    """Use `n` intra-op threads in torch (takes effect at once) and as many inter-op threads where torch still
    allows it (only before its first inter-op work, once per process); returns `n`."""
    import torch

    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != n:
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # inter-op pool already started or already set: it stays as it is
            pass
    return n
