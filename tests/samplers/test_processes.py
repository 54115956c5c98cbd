"""ProcessSampler (monitor/samplers/processes.py): discovery by command-line regex, sums over
workers, restarts (new PID, reused PID, gone and back), AccessDenied fields left out, the
scan budget, an overdue read; and once against the real process list with psutil."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from monitor.clock import FakeClock, SystemClock
from monitor.config_models import ProcessConfig
from monitor.metrics import families as fam
from monitor.metrics.store import CounterSeries, FamilySpec, GaugeSeries, MetricStore
from monitor.samplers.processes import (
    FakeProcess,
    FakeProcessTable,
    ProcessEntry,
    ProcessSampler,
)

T0 = 1_767_225_600.0
SERVER = "python app.py --port 7860"
WORKER = "python app.py --worker"
RESCAN_S = 30.0


def watch(name: str, match: str) -> ProcessConfig:
    return ProcessConfig.model_validate({"name": name, "match": match})


def value(store: MetricStore, spec: FamilySpec, process: str) -> float | None:
    family = store.register(spec)
    series = family.series.get(family.key([process]))
    if series is None:
        return None
    assert isinstance(series, CounterSeries | GaugeSeries)
    return series.value


class Rig:
    """A sampler over a fake table, with a fake clock."""

    def __init__(self, *configs: ProcessConfig, interval_s: float = 1.0) -> None:
        self.table = FakeProcessTable()
        self.clock = FakeClock()
        self.store = MetricStore()
        self.sampler = ProcessSampler(configs or (watch("model", r"app\.py"),),
                                      store=self.store, interval_s=interval_s,
                                      table=self.table, clock=self.clock)

    async def tick(self, advance: float = RESCAN_S) -> None:
        """Move the clock on (by default far enough that a scan is allowed) and sample."""
        self.clock.advance(advance)
        await self.sampler.sample()

    def get(self, spec: FamilySpec, process: str = "model") -> float | None:
        return value(self.store, spec, process)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig()
    yield made
    await made.sampler.close()


async def test_discovery_reports_the_matching_process_only(rig: Rig) -> None:
    rig.table.add(FakeProcess(100, SERVER, rss_bytes=500 << 20, cpu_seconds=12.5, open_fds=42))
    rig.table.add(FakeProcess(200, "bash -c tail app.log"))
    await rig.tick()
    assert rig.get(fam.PROCESS_UP) == 1
    assert rig.get(fam.PROCESS_RESIDENT_MEMORY) == 500 << 20
    assert rig.get(fam.PROCESS_CPU) == 12.5
    assert rig.get(fam.PROCESS_OPEN_FDS) == 42
    assert rig.get(fam.PROCESS_RESTARTS) == 0  # born at 0, and discovery is no restart


async def test_a_process_never_seen_is_down_without_usage_series(rig: Rig) -> None:
    await rig.tick()
    assert rig.get(fam.PROCESS_UP) == 0
    assert rig.get(fam.PROCESS_RESIDENT_MEMORY) is None
    assert rig.get(fam.PROCESS_CPU) is None
    assert rig.get(fam.PROCESS_OPEN_FDS) is None
    rig.table.add(FakeProcess(100, SERVER))
    await rig.tick()
    assert rig.get(fam.PROCESS_UP) == 1
    assert rig.get(fam.PROCESS_RESTARTS) == 0  # the first discovery, even if late


async def test_workers_are_summed_and_replacing_one_is_no_restart(rig: Rig) -> None:
    rig.table.add(FakeProcess(100, SERVER, create_time=T0, rss_bytes=100, cpu_seconds=1.0,
                              open_fds=5))
    rig.table.add(FakeProcess(101, WORKER, create_time=T0 + 1, rss_bytes=200, cpu_seconds=2.0,
                              open_fds=6))
    rig.table.add(FakeProcess(102, WORKER, create_time=T0 + 1, rss_bytes=300, cpu_seconds=3.0,
                              open_fds=7))
    await rig.tick()
    assert rig.get(fam.PROCESS_UP) == 1
    assert rig.get(fam.PROCESS_RESIDENT_MEMORY) == 600
    assert rig.get(fam.PROCESS_CPU) == 6.0
    assert rig.get(fam.PROCESS_OPEN_FDS) == 18

    rig.table.remove(102)
    rig.table.add(FakeProcess(103, WORKER, create_time=T0 + 50, rss_bytes=1000))
    await rig.tick()
    assert rig.get(fam.PROCESS_RESIDENT_MEMORY) == 1300
    assert rig.get(fam.PROCESS_RESTARTS) == 0


async def test_a_new_main_pid_is_one_restart(rig: Rig) -> None:
    rig.table.add(FakeProcess(100, SERVER, create_time=T0))
    await rig.tick()
    rig.table.remove(100)
    rig.table.add(FakeProcess(300, SERVER, create_time=T0 + 100))
    await rig.tick()
    assert rig.get(fam.PROCESS_UP) == 1
    assert rig.get(fam.PROCESS_RESTARTS) == 1
    await rig.tick()
    assert rig.get(fam.PROCESS_RESTARTS) == 1


async def test_a_reused_pid_is_a_new_process(rig: Rig) -> None:
    rig.table.add(FakeProcess(100, SERVER, create_time=T0, rss_bytes=10))
    await rig.tick()
    rig.table.add(FakeProcess(100, SERVER, create_time=T0 + 500, rss_bytes=20))  # same PID
    await rig.tick()
    assert rig.get(fam.PROCESS_UP) == 1
    assert rig.get(fam.PROCESS_RESTARTS) == 1
    assert rig.get(fam.PROCESS_RESIDENT_MEMORY) == 20


async def test_gone_then_back_is_down_in_between_and_one_restart(rig: Rig) -> None:
    rig.table.add(FakeProcess(100, SERVER, create_time=T0))
    await rig.tick()
    rig.table.remove(100)
    for _ in range(3):
        await rig.tick()
        assert rig.get(fam.PROCESS_UP) == 0
        assert rig.get(fam.PROCESS_RESIDENT_MEMORY) is None
        assert rig.get(fam.PROCESS_CPU) is None
        assert rig.get(fam.PROCESS_OPEN_FDS) is None
        assert rig.get(fam.PROCESS_RESTARTS) == 0
    rig.table.add(FakeProcess(400, SERVER, create_time=T0 + 300))
    await rig.tick()
    assert rig.get(fam.PROCESS_UP) == 1
    assert rig.get(fam.PROCESS_RESTARTS) == 1
    await rig.tick()
    assert rig.get(fam.PROCESS_RESTARTS) == 1


async def test_the_main_process_ending_under_running_workers_is_no_restart(rig: Rig) -> None:
    rig.table.add(FakeProcess(100, SERVER, create_time=T0))
    rig.table.add(FakeProcess(101, WORKER, create_time=T0 + 1))
    await rig.tick()
    rig.table.remove(100)
    await rig.tick()
    assert rig.get(fam.PROCESS_UP) == 1
    assert rig.get(fam.PROCESS_RESTARTS) == 0


async def test_a_zombie_is_gone(rig: Rig) -> None:
    process = rig.table.add(FakeProcess(100, SERVER))
    await rig.tick()
    process.zombie = True
    await rig.tick()
    assert rig.get(fam.PROCESS_UP) == 0


async def test_access_denied_leaves_that_value_out(rig: Rig) -> None:
    own = rig.table.add(FakeProcess(100, SERVER, create_time=T0, open_fds=5))
    rig.table.add(FakeProcess(101, WORKER, create_time=T0 + 1, open_fds=6,
                              denied=frozenset({"open_fds"})))
    await rig.tick()
    assert rig.get(fam.PROCESS_UP) == 1
    assert rig.get(fam.PROCESS_OPEN_FDS) is None  # never a partial sum
    assert rig.get(fam.PROCESS_RESIDENT_MEMORY) == 200 << 20
    assert rig.get(fam.PROCESS_CPU) == 2.0

    rig.table.remove(101)
    await rig.tick()
    assert rig.get(fam.PROCESS_OPEN_FDS) == 5
    own.denied = frozenset({"cpu_seconds", "rss_bytes"})
    await rig.tick()
    assert rig.get(fam.PROCESS_CPU) is None  # a series present before is removed
    assert rig.get(fam.PROCESS_RESIDENT_MEMORY) is None
    assert rig.get(fam.PROCESS_OPEN_FDS) == 5
    assert rig.get(fam.PROCESS_UP) == 1


async def test_one_process_matching_two_watches_is_read_once_per_tick() -> None:
    made = Rig(watch("model", r"app\.py"), watch("server", "port 7860"))
    try:
        made.table.add(FakeProcess(100, SERVER))
        await made.tick()
        reads = made.table.reads
        await made.tick()
        assert made.table.reads - reads == 1
        assert made.get(fam.PROCESS_UP, "model") == made.get(fam.PROCESS_UP, "server") == 1
    finally:
        await made.sampler.close()


async def test_nothing_missing_means_no_scan_after_the_first() -> None:
    made = Rig(watch("model", r"app\.py"), watch("gateway", "gateway"))
    try:
        made.table.add(FakeProcess(100, SERVER))
        made.table.add(FakeProcess(101, WORKER))
        made.table.add(FakeProcess(200, "node gateway.js"))
        for _ in range(200):
            await made.tick(advance=1.0)
        assert made.table.scans == 1
        assert made.table.reads == 200 * 3
    finally:
        await made.sampler.close()


async def test_a_missing_process_is_looked_for_once_per_rescan_interval() -> None:
    made = Rig(watch("model", r"app\.py"), watch("absent", "never-started"))
    try:
        made.table.add(FakeProcess(100, SERVER))
        await made.tick(advance=0.0)
        for _ in range(120):  # two minutes of one-second ticks
            await made.tick(advance=1.0)
        assert made.table.scans == 1 + 120 // int(RESCAN_S)
        assert made.get(fam.PROCESS_UP, "model") == 1
        assert made.get(fam.PROCESS_UP, "absent") == 0
    finally:
        await made.sampler.close()


async def test_a_death_is_looked_into_at_once_when_the_budget_allows(rig: Rig) -> None:
    rig.table.add(FakeProcess(100, SERVER, create_time=T0))
    await rig.tick()
    rig.table.remove(100)
    rig.table.add(FakeProcess(300, SERVER, create_time=T0 + 100))
    await rig.tick(advance=5.0)  # within the rescan interval of the first scan: no scan yet
    assert rig.get(fam.PROCESS_UP) == 0
    await rig.tick(advance=RESCAN_S)
    assert rig.get(fam.PROCESS_UP) == 1
    assert rig.get(fam.PROCESS_RESTARTS) == 1
    assert rig.table.scans == 2


class StuckTable(FakeProcessTable):
    """A table whose scan hangs until released (a /proc read stuck in the kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def scan(self, wanted: Callable[[str], bool]) -> list[ProcessEntry]:
        self.release.wait(timeout=10.0)
        return super().scan(wanted)


async def test_an_overdue_read_fails_the_sample_and_the_next_ones_until_it_returns() -> None:
    table = StuckTable()
    table.add(FakeProcess(100, SERVER))
    store = MetricStore()
    sampler = ProcessSampler([watch("model", r"app\.py")], store=store, interval_s=0.05,
                             table=table, clock=FakeClock())
    try:
        with pytest.raises(TimeoutError):
            await sampler.sample()
        with pytest.raises(TimeoutError, match="has not returned"):
            await sampler.sample()
        assert table.scans == 0
    finally:
        table.release.set()
    sampler_done = False
    for _ in range(200):  # the stuck pass returns; a later sample works again
        try:
            await sampler.sample()
        except TimeoutError:
            await asyncio.sleep(0.01)
            continue
        sampler_done = True
        break
    await sampler.close()
    assert sampler_done
    assert value(store, fam.PROCESS_UP, "model") == 1


@pytest.fixture
def sleeper() -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(marker: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()
        child.wait(timeout=10)


async def test_real_processes_through_psutil(
        sleeper: Callable[[str], subprocess.Popen[bytes]]) -> None:
    marker = f"inferwatch-test-marker-{uuid.uuid4().hex}"
    store = MetricStore()
    sampler = ProcessSampler([watch("sleeper", marker)], store=store, interval_s=1.0,
                             clock=SystemClock(), rescan_interval_s=0.0)
    try:
        first = sleeper(marker)
        await sampler.sample()
        assert value(store, fam.PROCESS_UP, "sleeper") == 1
        memory = value(store, fam.PROCESS_RESIDENT_MEMORY, "sleeper")
        assert memory is not None
        assert memory > 0
        fds = value(store, fam.PROCESS_OPEN_FDS, "sleeper")
        assert fds is not None
        assert fds >= 3
        cpu = value(store, fam.PROCESS_CPU, "sleeper")
        assert cpu is not None
        assert cpu >= 0

        first.kill()
        first.wait(timeout=10)
        await sampler.sample()
        assert value(store, fam.PROCESS_UP, "sleeper") == 0
        assert value(store, fam.PROCESS_RESIDENT_MEMORY, "sleeper") is None

        sleeper(marker)
        await sampler.sample()
        assert value(store, fam.PROCESS_UP, "sleeper") == 1
        assert value(store, fam.PROCESS_RESTARTS, "sleeper") == 1
    finally:
        await sampler.close()
