"""Host sampling through psutil: CPU, load, memory, filesystems, network and the daemon itself.

`HostSampler` writes the SPEC §6 host families and the `self_*` families every `host.interval`.
It reads the machine through `HostSystem`, exactly the psutil calls it makes: one per family
per tick, plus one `disk_usage` per filesystem. `PsutilSystem` is the real machine; tests
script a fake. Nothing here walks /proc for every process.

Definitions:

- CPU utilisation is busy time over total time of all CPUs between two `cpu_times()` reads,
  where busy is everything but `idle` and `iowait` (a CPU whose task waits for I/O is free to
  run another; `steal` counts as busy, the CPU was not ours to use), as node_exporter users
  compute `1 - sum(rate(node_cpu_seconds_total{mode=~"idle|iowait"}[1m])) / sum(rate(...))`.
  `guest` is left out of the total because Linux already counts it in `user`. The first
  sample has nothing to compare with, so the series appears from the second.
- Filesystems, when `host.filesystems` is not set: psutil's `disk_partitions(all=False)`
  (filesystems backed by a device, so no network mounts, which could hang), minus
  `EXCLUDED_FSTYPES` and the mounts under `EXCLUDED_MOUNT_TREES` / `EXCLUDED_BELOW`, one
  mountpoint per device (bind mounts repeat a device; the shallowest mountpoint is kept).
  Configured mountpoints are not filtered (a tmpfs can be watched by naming it). A
  configured mountpoint is reported only while it is mounted (a bare directory would
  report its parent's filesystem); one that is not, or cannot be statted, has no series
  and is logged once, then again only when the reason changes.
- Network: the kernel's per-device byte counters as they are (`nowrap=False`; a counter
  that goes down after a NIC reset is a reset to Prometheus' `rate`), every device but `lo`.

A family whose read raises loses its series for that tick and is logged at most once a
minute; the others are written. Only a tick where every read failed raises, so the runner
counts it in `sampler_failures_total{sampler="host"}`.

Every call runs inline on the event loop (all of them together take well under a
millisecond of CPU) except `disk_usage` of a filesystem not backed by a block device: a statfs
on a dead NFS server or FUSE daemon can block forever. Those run in a daemon thread with a
deadline; a mountpoint whose statfs has not returned is left out until it does, so a hung
mount costs one thread, not one per tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

import psutil

from monitor.clock import Clock, SystemClock
from monitor.config import HostConfig
from monitor.errors import InferwatchError
from monitor.metrics import families as fam
from monitor.metrics.store import LabelKey, MetricFamily, MetricStore

log = logging.getLogger(__name__)

FAILURE_LOG_INTERVAL_S = 60.0
STAT_TIMEOUT_S = 2.0
LOOPBACK_DEVICE = "lo"

# Left out of the default selection: node_exporter's default fs-types-exclude, plus tmpfs and
# ramfs (memory, not disk) and efivarfs and fuse.lxcfs (kernel and container views). Most are
# already dropped by psutil's all=False; the list makes the choice explicit and testable.
EXCLUDED_FSTYPES = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "devtmpfs", "efivarfs", "erofs", "fuse.lxcfs", "fusectl", "hugetlbfs", "iso9660", "mqueue",
    "nsfs", "overlay", "proc", "procfs", "pstore", "ramfs", "rpc_pipefs", "securityfs",
    "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs",
})
# Kernel and runtime trees: the mountpoint itself and everything under it.
EXCLUDED_MOUNT_TREES = ("/dev", "/proc", "/sys", "/run")
# Snap images, container layers and pod volumes: only what is under them; the directory
# itself may well be a real disk worth watching (/var/lib/docker on its own volume).
EXCLUDED_BELOW = ("/snap", "/var/lib/docker", "/var/lib/containers/storage", "/var/lib/kubelet")

_NO_LABELS: LabelKey = ()
_STUCK = "statfs has not returned (a hung network mount?); skipped until it does"


class CpuTimes(Protocol):
    """Seconds since boot summed over all CPUs (psutil's Linux `scputimes`)."""

    @property
    def user(self) -> float: ...
    @property
    def nice(self) -> float: ...
    @property
    def system(self) -> float: ...
    @property
    def idle(self) -> float: ...
    @property
    def iowait(self) -> float: ...
    @property
    def irq(self) -> float: ...
    @property
    def softirq(self) -> float: ...
    @property
    def steal(self) -> float: ...


class VirtualMemory(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def available(self) -> int: ...


class Partition(Protocol):
    @property
    def device(self) -> str: ...
    @property
    def mountpoint(self) -> str: ...
    @property
    def fstype(self) -> str: ...


class DiskUsage(Protocol):
    """psutil's `total` is the size, its `free` what unprivileged users may still use."""

    @property
    def total(self) -> int: ...
    @property
    def free(self) -> int: ...


class NetCounters(Protocol):
    @property
    def bytes_recv(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...


class ProcessCpuTimes(Protocol):
    @property
    def user(self) -> float: ...
    @property
    def system(self) -> float: ...


class ProcessMemory(Protocol):
    @property
    def rss(self) -> int: ...


class HostSystem(Protocol):
    """The psutil calls the host sampler makes. `disk_usage` may be called from a thread."""

    def cpu_times(self) -> CpuTimes: ...
    def getloadavg(self) -> tuple[float, float, float]: ...
    def virtual_memory(self) -> VirtualMemory: ...
    def disk_partitions(self, all: bool) -> Sequence[Partition]: ...
    def disk_usage(self, path: str) -> DiskUsage: ...
    def net_io_counters(self) -> Mapping[str, NetCounters]: ...
    def process_cpu_times(self) -> ProcessCpuTimes: ...
    def process_memory_info(self) -> ProcessMemory: ...
    def process_num_fds(self) -> int: ...


class PsutilSystem:
    """The real machine; the process calls are about the process that built this object."""

    def __init__(self) -> None:
        self._process = psutil.Process()

    def cpu_times(self) -> CpuTimes:
        return psutil.cpu_times()

    def getloadavg(self) -> tuple[float, float, float]:
        return psutil.getloadavg()

    def virtual_memory(self) -> VirtualMemory:
        return psutil.virtual_memory()

    def disk_partitions(self, all: bool) -> Sequence[Partition]:
        return psutil.disk_partitions(all=all)

    def disk_usage(self, path: str) -> DiskUsage:
        return psutil.disk_usage(path)

    def net_io_counters(self) -> Mapping[str, NetCounters]:
        # nowrap=True would keep a module-global cache and add the old value back after a
        # NIC reset; the exported counter follows the kernel and rate() handles the reset.
        return psutil.net_io_counters(pernic=True, nowrap=False)

    def process_cpu_times(self) -> ProcessCpuTimes:
        return self._process.cpu_times()

    def process_memory_info(self) -> ProcessMemory:
        return self._process.memory_info()

    def process_num_fds(self) -> int:
        return self._process.num_fds()


class HostSamplingError(InferwatchError):
    """Every read of one host sample failed."""


def _is_excluded_mountpoint(mountpoint: str) -> bool:
    for tree in EXCLUDED_MOUNT_TREES:
        if mountpoint == tree or mountpoint.startswith(tree + "/"):
            return True
    return any(mountpoint.startswith(parent + "/") for parent in EXCLUDED_BELOW)


def select_default_filesystems(partitions: Iterable[Partition]) -> list[Partition]:
    """The filesystems reported when none are configured, in mount-table order."""
    by_device: dict[str, tuple[int, int, Partition]] = {}
    for order, partition in _top_mounts(partitions).items():
        mountpoint = partition.mountpoint
        if (not partition.device or partition.fstype in EXCLUDED_FSTYPES
                or _is_excluded_mountpoint(mountpoint)):
            continue
        depth = 0 if mountpoint == "/" else mountpoint.count("/")
        kept = by_device.get(partition.device)
        if kept is None or (depth, order) < kept[:2]:
            by_device[partition.device] = (depth, order, partition)
    return [partition for _, _, partition in sorted(by_device.values(), key=lambda c: c[1])]


def _top_mounts(partitions: Iterable[Partition]) -> dict[int, Partition]:
    """{mount-table position: partition}, without mounts hidden by a later one at the same
    mountpoint (statfs sees the top one)."""
    top: dict[str, tuple[int, Partition]] = {}
    for order, partition in enumerate(partitions):
        top[partition.mountpoint] = (order, partition)
    return dict(top.values())


def _is_block_device(device: str) -> bool:
    return device.startswith("/dev/")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _remove_except(family: MetricFamily, keep: set[LabelKey]) -> None:
    for key in [key for key in family.series if key not in keep]:
        family.remove(key)


class _StatRun:
    """`disk_usage` of some mountpoints, one after another, inline or in a daemon thread.

    A daemon thread, not an executor: a statfs stuck in the kernel cannot be interrupted, and
    executor threads are joined at interpreter exit, which would then never come.
    """

    def __init__(self, system: HostSystem, mountpoints: Sequence[str]) -> None:
        self.system = system
        self.mountpoints = mountpoints
        self.usages: dict[str, DiskUsage] = {}
        self.errors: dict[str, str] = {}
        self.current: str | None = None  # the call in progress, read by the loop on timeout
        self.abandoned = False
        self.stuck: str | None = None  # set by the loop when the deadline passed

    def run(self, finished: Callable[[], None]) -> None:
        try:
            for mountpoint in self.mountpoints:
                if self.abandoned:
                    break
                self.current = mountpoint
                try:
                    self.usages[mountpoint] = self.system.disk_usage(mountpoint)
                except Exception as exc:
                    self.errors[mountpoint] = f"cannot be statted: {_describe(exc)}"
            self.current = None
        finally:
            finished()


class _Read(NamedTuple):
    name: str
    read: Callable[[], None]
    families: tuple[MetricFamily, ...]


class HostSampler:
    """The host and self families from a `HostSystem` (psutil unless one is given)."""

    def __init__(
        self,
        config: HostConfig,
        *,
        store: MetricStore,
        system: HostSystem | None = None,
        clock: Clock | None = None,
        stat_timeout_s: float = STAT_TIMEOUT_S,
    ) -> None:
        self._config = config
        self._system: HostSystem = system if system is not None else PsutilSystem()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._stat_timeout_s = stat_timeout_s
        self._configured = (None if config.filesystems is None else
                            tuple(dict.fromkeys(map(posixpath.normpath, config.filesystems))))
        self._cpu = store.register(fam.HOST_CPU_UTILIZATION)
        self._load1 = store.register(fam.HOST_LOAD1)
        self._memory_total = store.register(fam.HOST_MEMORY_TOTAL)
        self._memory_available = store.register(fam.HOST_MEMORY_AVAILABLE)
        self._fs_size = store.register(fam.HOST_FILESYSTEM_SIZE)
        self._fs_avail = store.register(fam.HOST_FILESYSTEM_AVAIL)
        self._receive = store.register(fam.HOST_NETWORK_RECEIVE)
        self._transmit = store.register(fam.HOST_NETWORK_TRANSMIT)
        self._self_cpu = store.register(fam.SELF_CPU)
        self._self_memory = store.register(fam.SELF_RESIDENT_MEMORY)
        self._self_fds = store.register(fam.SELF_OPEN_FDS)
        self._reads = (
            _Read("cpu", self._read_cpu, (self._cpu,)),
            _Read("load", self._read_load, (self._load1,)),
            _Read("memory", self._read_memory, (self._memory_total, self._memory_available)),
            _Read("network", self._read_network, (self._receive, self._transmit)),
            _Read("self_cpu", self._read_self_cpu, (self._self_cpu,)),
            _Read("self_memory", self._read_self_memory, (self._self_memory,)),
            _Read("self_fds", self._read_self_fds, (self._self_fds,)),
        )
        self._previous_cpu: tuple[float, float] | None = None  # (busy, total) seconds
        self._unavailable: dict[str, str] = {}  # mountpoint -> why, as last logged
        self._stuck: set[str] = set()
        self._failure_logged_at: dict[str, float] = {}

    @property
    def name(self) -> str:
        return "host"

    @property
    def interval_s(self) -> float:
        return self._config.interval

    @property
    def stuck_mountpoints(self) -> frozenset[str]:
        """Mountpoints whose statfs has not returned yet (skipped until it does)."""
        return frozenset(self._stuck)

    async def sample(self) -> None:
        failures: dict[str, Exception] = {}
        for read in self._reads:
            try:
                read.read()
            except Exception as exc:
                failures[read.name] = exc
                for family in read.families:
                    _remove_except(family, set())
        try:
            await self._sample_filesystems()
        except Exception as exc:
            failures["filesystems"] = exc
            _remove_except(self._fs_size, set())
            _remove_except(self._fs_avail, set())
        for name, error in failures.items():
            self._log_failure(name, error)
        if len(failures) == len(self._reads) + 1:
            name, first = next(iter(failures.items()))
            raise HostSamplingError(
                f"every host read failed (first, {name}: {_describe(first)})") from first

    async def close(self) -> None:
        """Nothing to release: a stat thread stuck on a dead mount cannot be stopped anyway."""

    # -- one read per family ------------------------------------------------------------------

    def _read_cpu(self) -> None:
        times = self._system.cpu_times()
        idle = times.idle + times.iowait
        total = (idle + times.user + times.nice + times.system + times.irq + times.softirq
                 + times.steal)
        previous, self._previous_cpu = self._previous_cpu, (total - idle, total)
        if previous is None:
            return
        elapsed = total - previous[1]
        if elapsed <= 0:  # two reads within one kernel tick: nothing new to say
            return
        busy = (total - idle) - previous[0]
        # iowait can step backwards on Linux, so the ratio is clamped rather than trusted.
        self._cpu.set(_NO_LABELS, min(1.0, max(0.0, busy / elapsed)))

    def _read_load(self) -> None:
        self._load1.set(_NO_LABELS, self._system.getloadavg()[0])

    def _read_memory(self) -> None:
        memory = self._system.virtual_memory()
        self._memory_total.set(_NO_LABELS, memory.total)
        self._memory_available.set(_NO_LABELS, memory.available)

    def _read_network(self) -> None:
        seen: set[LabelKey] = set()
        for device, counters in self._system.net_io_counters().items():
            if device == LOOPBACK_DEVICE:
                continue
            key = self._receive.key((device,))
            self._receive.set_total(key, counters.bytes_recv)
            self._transmit.set_total(key, counters.bytes_sent)
            seen.add(key)
        _remove_except(self._receive, seen)
        _remove_except(self._transmit, seen)

    def _read_self_cpu(self) -> None:
        times = self._system.process_cpu_times()
        self._self_cpu.set_total(_NO_LABELS, times.user + times.system)

    def _read_self_memory(self) -> None:
        self._self_memory.set(_NO_LABELS, self._system.process_memory_info().rss)

    def _read_self_fds(self) -> None:
        self._self_fds.set(_NO_LABELS, self._system.process_num_fds())

    # -- filesystems --------------------------------------------------------------------------

    async def _sample_filesystems(self) -> None:
        configured = self._configured
        partitions = self._system.disk_partitions(all=configured is not None)
        unavailable: dict[str, str] = {}
        if configured is None:
            wanted = {p.mountpoint: p.device for p in select_default_filesystems(partitions)}
        else:
            mounted = {p.mountpoint: p.device for p in _top_mounts(partitions).values()}
            wanted = {m: mounted[m] for m in configured if m in mounted}
            unavailable.update((m, "not mounted") for m in configured if m not in mounted)
        unavailable.update((m, _STUCK) for m in wanted if m in self._stuck)
        # statfs of a block-device filesystem answers from the superblock in memory; network
        # and FUSE filesystems ask a server or a daemon, which may never answer.
        local = _StatRun(self._system, [m for m, device in wanted.items()
                                        if _is_block_device(device) and m not in self._stuck])
        local.run(finished=lambda: None)
        remote = await self._stat_in_thread([m for m, device in wanted.items()
                                             if not _is_block_device(device)
                                             and m not in self._stuck])
        keep: set[LabelKey] = set()
        for run in (local, remote):
            usages = dict(run.usages)  # one copy: a thread past its deadline may still add
            unavailable.update(run.errors)
            if run.stuck is not None:
                unavailable[run.stuck] = _STUCK
            for mountpoint, usage in usages.items():
                key = self._fs_size.key((mountpoint,))
                self._fs_size.set(key, usage.total)
                self._fs_avail.set(key, usage.free)
                keep.add(key)
            # What the thread had not reached when the deadline passed keeps its values.
            keep.update(self._fs_size.key((m,)) for m in run.mountpoints
                        if m not in usages and m not in unavailable)
        _remove_except(self._fs_size, keep)
        _remove_except(self._fs_avail, keep)
        self._note_unavailable(unavailable)

    async def _stat_in_thread(self, mountpoints: Sequence[str]) -> _StatRun:
        run = _StatRun(self._system, mountpoints)
        if not mountpoints:
            return run
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()

        def on_loop() -> None:
            finished.set()
            if run.stuck is not None:
                self._stuck.discard(run.stuck)

        def from_thread() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while a statfs hung
                loop.call_soon_threadsafe(on_loop)

        threading.Thread(target=run.run, args=(from_thread,), name="inferwatch-statfs",
                         daemon=True).start()
        try:
            await asyncio.wait_for(finished.wait(), self._stat_timeout_s)
        except TimeoutError:
            run.abandoned = True
            stuck = run.current
            if stuck is not None:  # None: it finished just as the deadline passed
                run.stuck = stuck
                self._stuck.add(stuck)
        return run

    def _note_unavailable(self, unavailable: dict[str, str]) -> None:
        """Log a mountpoint when it becomes unavailable or its reason changes, not every tick."""
        for mountpoint, why in unavailable.items():
            if self._unavailable.get(mountpoint) != why:
                log.warning("host: filesystem %s left out: %s", mountpoint, why)
        for mountpoint in self._unavailable.keys() - unavailable.keys():
            if self._fs_size.key((mountpoint,)) in self._fs_size.series:
                log.info("host: filesystem %s is reported again", mountpoint)
        self._unavailable = unavailable

    def _log_failure(self, name: str, exc: Exception) -> None:
        now = self._clock.monotonic()
        if now - self._failure_logged_at.get(name, float("-inf")) >= FAILURE_LOG_INTERVAL_S:
            self._failure_logged_at[name] = now
            log.warning("host: cannot read %s, its series are left out (retried every tick, "
                        "logged at most once a minute): %s", name, _describe(exc))
