"""The thread rule of genlab.core.threads (requested > OMP_NUM_THREADS > the CPUs others leave free) and the
governor that re-applies it while a job runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genlab.core import threads


@pytest.fixture
def machine(monkeypatch):
    """A machine with `cpus` usable CPUs of which others keep `busy` busy, no quota, no OMP_NUM_THREADS."""

    def make(cpus: int, busy: float, quota: float | None = None) -> None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
        monkeypatch.setattr(threads, "cpu_quota", lambda: quota)
        monkeypatch.setattr(threads, "others_busy_cpus", lambda cpus: busy)
        monkeypatch.setattr(threads, "ticks_per_second", lambda: 100)

    return make


@pytest.mark.parametrize("cpus,busy,expected", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 2.0, 1), (2, 7.5, 1),
    (8, 0.0, 8), (8, 3.2, 5), (8, 3.6, 4), (1, 0.0, 1),
])
def test_default_is_the_cpus_others_leave_free_rounded_at_least_one(machine, cpus, busy, expected):
    machine(cpus, busy)
    assert threads.choose_threads(None) == expected


def test_affinity_limits_the_count_not_the_machine_size(machine, monkeypatch):
    machine(3, 0.0)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 64)
    assert threads.choose_threads(None) == 3


def test_a_cgroup_quota_caps_the_count_and_scales_the_load(machine):
    machine(8, 0.0, quota=2.5)
    assert threads.choose_threads(None) == 2
    machine(8, 4.0, quota=4.0)  # half of the 8 CPUs busy: half of the 4-CPU quota is left
    assert threads.choose_threads(None) == 2


def test_requested_wins_over_environment_and_load(machine, monkeypatch):
    machine(2, 2.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.choose_threads(4) == 4
    with pytest.raises(ValueError, match="at least 1"):
        threads.choose_threads(0)


def test_omp_num_threads_wins_over_the_rule(machine, monkeypatch):
    machine(2, 2.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.choose_threads(None) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "garbage")  # not a count: the rule decides
    assert threads.choose_threads(None) == 1


def test_others_busy_cpus_from_proc_stat_less_this_process(monkeypatch):
    monkeypatch.setattr(threads, "ticks_per_second", lambda: 100)
    # CPU 0: 80 of 100 ticks busy, CPU 1: 50 of 100; CPU 2 is not ours and fully busy.
    snapshots = iter([{0: (0, 0), 1: (0, 0), 2: (0, 0)}, {0: (80, 100), 1: (50, 100), 2: (100, 100)}])
    own = iter([10.0, 10.3])  # this process used 0.3 CPU-seconds = 30 ticks of the 1.3 CPUs' busy time
    busy = threads.others_busy_cpus({0, 1}, window=1.0, read=lambda: next(snapshots), sleep=lambda s: None,
                                    own_cpu_seconds=lambda: next(own))
    assert busy == pytest.approx(1.0)


def test_others_busy_cpus_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (6.0, 0.0, 0.0))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
    assert threads.others_busy_cpus({0, 1}, read=dict) == pytest.approx(1.5)  # our 2 of 8 CPUs' share


def test_read_cpu_times_parses_per_cpu_lines(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 10 1 5 80 4 0 0 0 7 0\ncpu1 1 0 1 98 0 0 0 0 0 0\nintr 1 2\n")
    assert threads.read_cpu_times(stat) == {0: (16, 100), 1: (2, 100)}
    assert threads.read_cpu_times(tmp_path / "missing") == {}


def test_cpu_quota_reads_cgroup_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert threads.cpu_quota(tmp_path) == 3.0


def test_importing_the_module_does_not_import_torch():
    code = "import sys; import genlab.core.threads; print('torch' in sys.modules)"
    src = str(Path(threads.__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": src}).stdout
    assert out.strip() == "False"


def test_apply_threads_sets_torch_intra_op_threads():
    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


class FakeMachine:
    """Two CPUs whose /proc/stat ticks advance by hand; 100 ticks per CPU per second."""

    def __init__(self):
        self.now, self.ticks, self.own = 0.0, {0: (0, 0), 1: (0, 0)}, 0.0

    def run(self, seconds: float, others_busy: float, own_busy: float = 0.0) -> None:
        """`seconds` pass with others keeping `others_busy` CPUs busy and this process `own_busy`."""
        self.now += seconds
        self.own += own_busy * seconds
        per_cpu = (others_busy + own_busy) * 100 * seconds / 2
        self.ticks = {c: (b + round(per_cpu), t + round(100 * seconds)) for c, (b, t) in self.ticks.items()}

    def governor(self, requested=None, choose=lambda requested: 2):
        applied = []
        gov = threads.ThreadGovernor(requested, every=2.0, clock=lambda: self.now, read=lambda: dict(self.ticks),
                                     own_cpu_seconds=lambda: self.own, choose=choose,
                                     apply=lambda n: applied.append(n) or n)
        return gov, applied


def test_governor_follows_the_load_as_it_changes(machine):
    machine(2, 0.0)
    fake = FakeMachine()
    gov, applied = fake.governor()
    assert gov.threads == 2 and applied == [2]
    fake.run(1.0, others_busy=1.0, own_busy=1.0)
    assert gov.update() == 2  # less than `every` seconds since the last look: no new look yet
    fake.run(1.5, others_busy=1.0, own_busy=1.0)
    assert gov.update() == 1  # another process took a core: 1.0 busy, 1 left
    assert applied == [2, 1]
    fake.run(2.5, others_busy=1.0, own_busy=1.0)
    assert gov.update() == 1 and applied == [2, 1]  # no change, nothing re-applied
    fake.run(2.5, others_busy=0.0, own_busy=1.0)  # its own busy time never counts against it
    assert gov.update() == 2
    assert [n for _, n, _ in gov.changes] == [1, 2]


def test_governor_keeps_a_requested_or_environment_count(machine, monkeypatch):
    machine(2, 0.0)
    fake = FakeMachine()
    gov, applied = fake.governor(requested=2, choose=threads.choose_threads)
    fake.run(5.0, others_busy=2.0)
    assert gov.update() == 2 and applied == [2]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    gov, applied = fake.governor(choose=threads.choose_threads)
    fake.run(5.0, others_busy=0.0)
    assert gov.update() == 1 and applied == [1]
