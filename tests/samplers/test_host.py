"""The host sampler against a scripted `HostSystem`, and once against the real machine."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import psutil
import pytest

from monitor.clock import FakeClock
from monitor.config import HostConfig
from monitor.metrics import families as fam
from monitor.metrics.store import FamilySpec, MetricStore
from monitor.samplers.host import (
    EXCLUDED_FSTYPES,
    HostSampler,
    HostSamplingError,
    PsutilSystem,
    select_default_filesystems,
)

LOGGER = "monitor.samplers.host"


class CpuTimes(NamedTuple):
    user: float = 0.0
    nice: float = 0.0
    system: float = 0.0
    idle: float = 0.0
    iowait: float = 0.0
    irq: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0
    guest: float = 0.0
    guest_nice: float = 0.0


class Memory(NamedTuple):
    total: int
    available: int


class Partition(NamedTuple):
    device: str
    mountpoint: str
    fstype: str
    opts: str = "rw"


class Usage(NamedTuple):
    total: int
    free: int


class Net(NamedTuple):
    bytes_recv: int
    bytes_sent: int


class ProcessCpu(NamedTuple):
    user: float
    system: float
    children_user: float = 0.0
    children_system: float = 0.0


class ProcessMemory(NamedTuple):
    rss: int


class FakeHostSystem:
    """Scripted psutil answers: set the attributes between samples. `failing` maps a method
    name to what it raises; `blocking` holds a mountpoint's statfs until its event is set."""

    def __init__(self) -> None:
        self.cpu = CpuTimes(user=10.0, idle=90.0)
        self.load = (0.5, 0.25, 0.125)
        self.memory = Memory(total=64 << 30, available=48 << 30)
        self.partitions: list[Partition] = [Partition("/dev/vda1", "/", "ext4")]
        self.usages: dict[str, Usage] = {"/": Usage(total=100 << 30, free=40 << 30)}
        self.net: dict[str, Net] = {"eth0": Net(bytes_recv=1000, bytes_sent=500)}
        self.process_cpu = ProcessCpu(user=1.5, system=0.25)
        self.process_memory = ProcessMemory(rss=50 << 20)
        self.fds = 17
        self.failing: dict[str, Exception] = {}
        self.blocking: dict[str, threading.Event] = {}
        self.partition_calls: list[bool] = []
        self.usage_calls: list[tuple[str, str]] = []  # (mountpoint, thread name)

    def _answer(self, method: str) -> None:
        if method in self.failing:
            raise self.failing[method]

    def cpu_times(self) -> CpuTimes:
        self._answer("cpu_times")
        return self.cpu

    def getloadavg(self) -> tuple[float, float, float]:
        self._answer("getloadavg")
        return self.load

    def virtual_memory(self) -> Memory:
        self._answer("virtual_memory")
        return self.memory

    def disk_partitions(self, all: bool) -> Sequence[Partition]:
        self._answer("disk_partitions")
        self.partition_calls.append(all)
        return list(self.partitions)

    def disk_usage(self, path: str) -> Usage:
        self.usage_calls.append((path, threading.current_thread().name))
        blocker = self.blocking.get(path)
        if blocker is not None:
            assert blocker.wait(10), "a test forgot to release a blocked statfs"
        self._answer("disk_usage")
        if path not in self.usages:
            raise PermissionError(13, "Permission denied", path)
        return self.usages[path]

    def net_io_counters(self) -> Mapping[str, Net]:
        self._answer("net_io_counters")
        return dict(self.net)

    def process_cpu_times(self) -> ProcessCpu:
        self._answer("process_cpu_times")
        return self.process_cpu

    def process_memory_info(self) -> ProcessMemory:
        self._answer("process_memory_info")
        return self.process_memory

    def process_num_fds(self) -> int:
        self._answer("process_num_fds")
        return self.fds


@pytest.fixture
def store() -> MetricStore:
    return MetricStore()


@pytest.fixture
def system() -> FakeHostSystem:
    return FakeHostSystem()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_sampler(store: MetricStore, system: FakeHostSystem, clock: FakeClock,
                 filesystems: Sequence[str] | None = None, **kwargs: float) -> HostSampler:
    config = HostConfig.model_validate({"interval": "5s", "filesystems": filesystems})
    return HostSampler(config, store=store, system=system, clock=clock, **kwargs)


def values(store: MetricStore, spec: FamilySpec) -> dict[tuple[str, ...], float]:
    """A family's series as {label values: value}."""
    family = store.family(store.full_name(spec))
    assert family is not None
    return {tuple(v for _, v in key): series.value  # type: ignore[union-attr]
            for key, series in family.series.items()}


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING and text in r.getMessage()]


async def test_the_interface(store: MetricStore, system: FakeHostSystem,
                             clock: FakeClock) -> None:
    sampler = make_sampler(store, system, clock)
    assert sampler.name == "host"
    assert sampler.interval_s == 5.0
    await sampler.close()


async def test_cpu_utilisation_is_busy_over_total_between_two_samples(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock) -> None:
    sampler = make_sampler(store, system, clock)
    system.cpu = CpuTimes(user=100, system=50, idle=800, iowait=50, guest=7)
    await sampler.sample()
    assert values(store, fam.HOST_CPU_UTILIZATION) == {}  # nothing to compare with yet

    # +20 user, +10 system, +10 steal: busy 40. +40 idle, +20 iowait: not busy. Total 100.
    # guest grows too, but Linux counts it inside user already, so it adds nothing.
    system.cpu = CpuTimes(user=120, system=60, idle=840, iowait=70, steal=10, guest=30)
    await sampler.sample()
    assert values(store, fam.HOST_CPU_UTILIZATION) == {(): 0.4}

    system.cpu = CpuTimes(user=120, system=60, idle=940, iowait=70, steal=10)
    await sampler.sample()
    assert values(store, fam.HOST_CPU_UTILIZATION) == {(): 0.0}


async def test_cpu_keeps_its_value_when_no_time_passed_and_clamps_backward_steps(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock) -> None:
    sampler = make_sampler(store, system, clock)
    system.cpu = CpuTimes(user=50, idle=50)
    await sampler.sample()
    system.cpu = CpuTimes(user=75, idle=75)
    await sampler.sample()
    assert values(store, fam.HOST_CPU_UTILIZATION) == {(): 0.5}
    await sampler.sample()  # the same counters: no time passed, the last value stands
    assert values(store, fam.HOST_CPU_UTILIZATION) == {(): 0.5}
    # iowait stepping back (a known Linux quirk) must not give a ratio above 1.
    system.cpu = CpuTimes(user=100, idle=75, iowait=-10)
    await sampler.sample()
    assert values(store, fam.HOST_CPU_UTILIZATION) == {(): 1.0}


async def test_memory_load_and_the_daemon_itself(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock) -> None:
    await make_sampler(store, system, clock).sample()
    assert values(store, fam.HOST_LOAD1) == {(): 0.5}
    assert values(store, fam.HOST_MEMORY_TOTAL) == {(): 64 << 30}
    assert values(store, fam.HOST_MEMORY_AVAILABLE) == {(): 48 << 30}
    assert values(store, fam.SELF_CPU) == {(): 1.75}  # user + system, not children
    assert values(store, fam.SELF_RESIDENT_MEMORY) == {(): 50 << 20}
    assert values(store, fam.SELF_OPEN_FDS) == {(): 17}


async def test_self_cpu_is_a_mirrored_counter_not_persisted(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock) -> None:
    await make_sampler(store, system, clock).sample()
    assert store.take_dirty() == []  # nothing here goes to the checkpoint


DEFAULT_MOUNTS = [
    Partition("/dev/vda1", "/", "ext4"),
    Partition("proc", "/proc", "proc"),
    Partition("sysfs", "/sys", "sysfs"),
    Partition("tmpfs", "/dev/shm", "tmpfs"),
    Partition("tmpfs", "/tmp", "tmpfs"),
    Partition("", "/sys/fs/cgroup", "cgroup2"),
    Partition("/dev/vda1", "/etc/hosts", "ext4"),  # a container's bind mount of the root disk
    Partition("/dev/vdb1", "/data", "xfs"),
    Partition("/dev/vdb1", "/srv/models", "xfs"),  # bind mount of /data
    Partition("/dev/loop3", "/snap/core22/1380", "squashfs"),
    Partition("/dev/loop4", "/snap/lxd/28373", "ext4"),  # under /snap, whatever its type
    Partition("/dev/sdc1", "/run/media/usb", "vfat"),
    Partition("/dev/vdc", "/var/lib/docker", "ext4"),  # its own disk: kept
    Partition("overlay", "/var/lib/docker/overlay2/ab12/merged", "overlay"),
    Partition("/dev/mapper/pv", "/var/lib/kubelet/pods/p1/volumes/v", "ext4"),
    Partition("/dev/nvme0n1p1", "/boot/efi", "vfat"),
    Partition("/dev/vdd", "/scratch", "ext4"),
    Partition("tmpfs", "/scratch", "tmpfs"),  # mounted over /scratch: statfs sees the tmpfs
    Partition("/dev/sr0", "/media/cdrom", "iso9660"),
]


def test_default_selection_keeps_real_filesystems_once_each() -> None:
    chosen = [p.mountpoint for p in select_default_filesystems(DEFAULT_MOUNTS)]
    assert chosen == ["/", "/data", "/var/lib/docker", "/boot/efi"]


def test_default_selection_prefers_the_shallowest_mountpoint_of_a_device() -> None:
    bind_first = [Partition("/dev/vdb1", "/srv/models/llm", "xfs"),
                  Partition("/dev/vdb1", "/models", "xfs")]
    assert [p.mountpoint for p in select_default_filesystems(bind_first)] == ["/models"]


def test_pseudo_filesystems_include_node_exporters_defaults() -> None:
    assert {"proc", "sysfs", "tmpfs", "overlay", "squashfs", "cgroup2", "devtmpfs",
            "nsfs"} <= EXCLUDED_FSTYPES


async def test_default_filesystems(store: MetricStore, system: FakeHostSystem,
                                   clock: FakeClock) -> None:
    system.partitions = list(DEFAULT_MOUNTS)
    system.usages = {m: Usage(total=1000 * (i + 1), free=100 * (i + 1)) for i, m in
                     enumerate(["/", "/data", "/var/lib/docker", "/boot/efi"])}
    sampler = make_sampler(store, system, clock)
    await sampler.sample()
    assert system.partition_calls == [False]  # psutil's all=False: device-backed only
    assert values(store, fam.HOST_FILESYSTEM_SIZE) == {
        ("/",): 1000, ("/data",): 2000, ("/var/lib/docker",): 3000, ("/boot/efi",): 4000}
    assert values(store, fam.HOST_FILESYSTEM_AVAIL) == {
        ("/",): 100, ("/data",): 200, ("/var/lib/docker",): 300, ("/boot/efi",): 400}
    assert {thread for _, thread in system.usage_calls} == {threading.current_thread().name}

    system.partitions.remove(Partition("/dev/nvme0n1p1", "/boot/efi", "vfat"))  # unmounted
    await sampler.sample()
    assert ("/boot/efi",) not in values(store, fam.HOST_FILESYSTEM_SIZE)
    assert ("/boot/efi",) not in values(store, fam.HOST_FILESYSTEM_AVAIL)


async def test_configured_filesystems_and_a_missing_one(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    system.partitions = [Partition("/dev/vda1", "/", "ext4"),
                         Partition("tmpfs", "/dev/shm", "tmpfs"),
                         Partition("/dev/vdb1", "/var", "ext4")]
    system.usages = {"/": Usage(10, 1), "/dev/shm": Usage(20, 2), "/var": Usage(30, 3),
                     "/mnt/models": Usage(40, 4)}
    sampler = make_sampler(store, system, clock, filesystems=["/var/", "/dev/shm", "/mnt/models"])
    for _ in range(3):
        await sampler.sample()
        clock.advance(5)
    assert system.partition_calls == [True] * 3  # a configured tmpfs is found too
    # Never statted while unmounted: the directory would report its parent's filesystem.
    assert "/mnt/models" not in {path for path, _ in system.usage_calls}
    assert values(store, fam.HOST_FILESYSTEM_SIZE) == {("/var",): 30, ("/dev/shm",): 20}
    assert values(store, fam.HOST_FILESYSTEM_AVAIL) == {("/var",): 3, ("/dev/shm",): 2}
    assert warnings_about(caplog, "/mnt/models") == [
        "host: filesystem /mnt/models left out: not mounted"]

    system.partitions.append(Partition("/dev/vdc", "/mnt/models", "xfs"))
    await sampler.sample()
    assert values(store, fam.HOST_FILESYSTEM_SIZE)[("/mnt/models",)] == 40
    assert "host: filesystem /mnt/models is reported again" in caplog.messages

    system.partitions.pop()
    await sampler.sample()
    assert ("/mnt/models",) not in values(store, fam.HOST_FILESYSTEM_SIZE)
    assert len(warnings_about(caplog, "/mnt/models")) == 2  # once per disappearance


async def test_a_filesystem_that_cannot_be_statted_is_logged_once(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    system.partitions.append(Partition("/dev/vdb1", "/secret", "ext4"))
    sampler = make_sampler(store, system, clock, filesystems=["/", "/secret"])
    await sampler.sample()
    await sampler.sample()
    assert values(store, fam.HOST_FILESYSTEM_SIZE) == {("/",): 100 << 30}
    assert warnings_about(caplog, "/secret") == [
        "host: filesystem /secret left out: cannot be statted: PermissionError: "
        "[Errno 13] Permission denied: '/secret'"]


async def wait_until_unstuck(sampler: HostSampler) -> None:
    async with asyncio.timeout(5):
        while sampler.stuck_mountpoints:
            await asyncio.sleep(0.001)


async def test_a_hung_network_mount_costs_only_its_own_series(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    system.partitions += [Partition("nas:/export/models", "/mnt/nfs", "nfs4"),
                          Partition("sshfs#me@box:", "/mnt/fuse", "fuse.sshfs")]
    system.usages.update({"/mnt/nfs": Usage(7, 3), "/mnt/fuse": Usage(9, 4)})
    sampler = make_sampler(store, system, clock, stat_timeout_s=0.2,
                           filesystems=["/", "/mnt/nfs", "/mnt/fuse"])
    await sampler.sample()
    assert values(store, fam.HOST_FILESYSTEM_SIZE) == {("/",): 100 << 30, ("/mnt/nfs",): 7,
                                                       ("/mnt/fuse",): 9}
    threads = dict(system.usage_calls)
    assert threads["/"] == threading.current_thread().name  # block device: inline
    assert threads["/mnt/nfs"] == threads["/mnt/fuse"] == "inferwatch-statfs"

    release = system.blocking["/mnt/nfs"] = threading.Event()
    try:
        await sampler.sample()
        assert sampler.stuck_mountpoints == {"/mnt/nfs"}
        assert ("/mnt/nfs",) not in values(store, fam.HOST_FILESYSTEM_SIZE)
        # /mnt/fuse was queued behind the hung call: its last value stands this tick.
        assert values(store, fam.HOST_FILESYSTEM_SIZE)[("/mnt/fuse",)] == 9

        system.usage_calls.clear()
        await sampler.sample()  # skipped, not asked again: one hung thread, not one per tick
        assert [path for path, _ in system.usage_calls] == ["/", "/mnt/fuse"]
        assert ("/mnt/nfs",) not in values(store, fam.HOST_FILESYSTEM_SIZE)
        assert len(warnings_about(caplog, "/mnt/nfs")) == 1
    finally:
        release.set()
    del system.blocking["/mnt/nfs"]
    await wait_until_unstuck(sampler)
    await sampler.sample()
    assert values(store, fam.HOST_FILESYSTEM_SIZE)[("/mnt/nfs",)] == 7


async def test_network_devices_skip_lo_follow_resets_and_disappear(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock) -> None:
    system.net = {"lo": Net(5, 5), "eth0": Net(1000, 500), "docker0": Net(30, 40)}
    sampler = make_sampler(store, system, clock)
    await sampler.sample()
    assert values(store, fam.HOST_NETWORK_RECEIVE) == {("eth0",): 1000, ("docker0",): 30}
    assert values(store, fam.HOST_NETWORK_TRANSMIT) == {("eth0",): 500, ("docker0",): 40}

    system.net = {"lo": Net(9, 9), "eth0": Net(12, 8)}  # NIC reset; docker0 removed
    await sampler.sample()
    assert values(store, fam.HOST_NETWORK_RECEIVE) == {("eth0",): 12}
    assert values(store, fam.HOST_NETWORK_TRANSMIT) == {("eth0",): 8}
    assert store.take_dirty() == []  # mirrors of the kernel's counters: never persisted


async def test_a_failing_family_costs_only_itself(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    sampler = make_sampler(store, system, clock)
    await sampler.sample()
    assert values(store, fam.HOST_MEMORY_TOTAL) == {(): 64 << 30}

    system.failing["virtual_memory"] = psutil.AccessDenied(pid=None, msg="nope")
    system.failing["net_io_counters"] = OSError(5, "Input/output error")
    for _ in range(3):
        await sampler.sample()
        clock.advance(20)
    assert values(store, fam.HOST_MEMORY_TOTAL) == {}
    assert values(store, fam.HOST_MEMORY_AVAILABLE) == {}
    assert values(store, fam.HOST_NETWORK_RECEIVE) == {}
    assert values(store, fam.HOST_LOAD1) == {(): 0.5}
    assert values(store, fam.HOST_FILESYSTEM_SIZE) == {("/",): 100 << 30}
    assert values(store, fam.SELF_OPEN_FDS) == {(): 17}
    assert len(warnings_about(caplog, "cannot read memory")) == 1  # 40 s: once
    assert len(warnings_about(caplog, "cannot read network")) == 1

    await sampler.sample()  # 60 s after the first report
    assert len(warnings_about(caplog, "cannot read memory")) == 2

    system.failing.clear()
    await sampler.sample()
    assert values(store, fam.HOST_MEMORY_TOTAL) == {(): 64 << 30}


async def test_partitions_failing_costs_the_filesystems_only(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock) -> None:
    sampler = make_sampler(store, system, clock)
    await sampler.sample()
    system.failing["disk_partitions"] = OSError(2, "No such file or directory")
    await sampler.sample()
    assert values(store, fam.HOST_FILESYSTEM_SIZE) == {}
    assert values(store, fam.HOST_FILESYSTEM_AVAIL) == {}
    assert values(store, fam.HOST_MEMORY_TOTAL) == {(): 64 << 30}


async def test_the_sampler_raises_only_when_every_read_failed(
        store: MetricStore, system: FakeHostSystem, clock: FakeClock) -> None:
    sampler = make_sampler(store, system, clock)
    for method in ("cpu_times", "getloadavg", "virtual_memory", "disk_partitions",
                   "net_io_counters", "process_cpu_times", "process_memory_info",
                   "process_num_fds"):
        system.failing[method] = psutil.Error("psutil is broken here")
    with pytest.raises(HostSamplingError, match="every host read failed"):
        await sampler.sample()


async def test_the_real_machine(store: MetricStore) -> None:
    sampler = HostSampler(HostConfig(filesystems=("/",)), store=store)
    await sampler.sample()
    async with asyncio.timeout(5):  # the kernel's CPU counters move in 10 ms steps
        while not values(store, fam.HOST_CPU_UTILIZATION):
            await sampler.sample()
    assert 0.0 <= values(store, fam.HOST_CPU_UTILIZATION)[()] <= 1.0
    total = values(store, fam.HOST_MEMORY_TOTAL)[()]
    assert total > 0
    assert 0 < values(store, fam.HOST_MEMORY_AVAILABLE)[()] <= total
    assert values(store, fam.HOST_LOAD1)[()] >= 0
    size = values(store, fam.HOST_FILESYSTEM_SIZE)[("/",)]
    assert 0 <= values(store, fam.HOST_FILESYSTEM_AVAIL)[("/",)] <= size
    assert ("lo",) not in values(store, fam.HOST_NETWORK_RECEIVE)
    assert values(store, fam.SELF_CPU)[()] > 0
    assert values(store, fam.SELF_RESIDENT_MEMORY)[()] > 1 << 20
    assert values(store, fam.SELF_OPEN_FDS)[()] >= 3


async def test_the_real_machines_default_filesystems(store: MetricStore) -> None:
    sampler = HostSampler(HostConfig(), store=store, system=PsutilSystem())
    await sampler.sample()
    for (mountpoint,) in values(store, fam.HOST_FILESYSTEM_SIZE):
        assert not mountpoint.startswith(("/proc", "/sys", "/dev/", "/run/"))
