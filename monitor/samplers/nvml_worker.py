"""NVML off the event loop: the one thread that calls NVML, what it reads, the XID watcher.

Every pynvml call runs on `NvmlThread`, one daemon thread that runs jobs in submission order,
except `nvmlEventSetWait_v2`, which blocks by design and runs on `XidWatcher`'s own thread.
`NvmlSession` is the state that lives on the NVML thread (initialised or not, device
handles, per-device API fallbacks, the process-name cache); it hands the sampler frozen
`Snapshot`s and never touches the metric store. The threads are daemon threads and nobody
joins them from the loop: a call that hangs inside the driver must not hang shutdown too.

Errors are sorted where they enter: a library-wide code (uninitialised, driver not loaded,
NVML/RM version mismatch) raises `NvmlLibraryError` and the sampler re-initialises with
backoff; `GPU_IS_LOST` marks that device lost; `NOT_SUPPORTED` (or a function the driver
lacks) leaves that one field out; any other code leaves the field out and is reported, so the
sampler can log it once. pynvml is imported on first use, so `gpu.enabled: false` never loads
it, and a missing `libnvidia-ml.so.1` is an `NvmlLibraryError` like the others.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

log = logging.getLogger(__name__)

T = TypeVar("T")

# NVML return codes (nvml.h; stable across driver releases).
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25

LIBRARY_WIDE_ERRORS = frozenset({
    NVML_ERROR_UNINITIALIZED, NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH,
})
# What `enabled: auto` takes for "this host has no NVIDIA GPU" rather than "NVML is sick".
NVML_ABSENT_ERRORS = frozenset({NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED})
UNSUPPORTED_ERRORS = frozenset({NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND})

# How a driver without v2 memory info answers nvmlDeviceGetMemoryInfo_v2.
_MEMORY_V2_MISSING = UNSUPPORTED_ERRORS | {NVML_ERROR_ARGUMENT_VERSION_MISMATCH}

XID_CRITICAL_ERROR = 0x8  # nvmlEventTypeXidCriticalError
TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU


class NvmlLibraryError(Exception):
    """NVML as a whole failed (not one device, not one field)."""

    def __init__(self, code: int, detail: str, *, during: str) -> None:
        self.code = code
        self.detail = detail
        self.during = during
        super().__init__(f"{detail} (NVML error {code} in {during})")

    @property
    def nvml_absent(self) -> bool:
        """The library or the kernel driver is not there at all."""
        return self.code in NVML_ABSENT_ERRORS


class _DeviceLost(Exception):
    """GPU_IS_LOST from a call naming one device: stop reading that device this tick."""


# -- the thread ------------------------------------------------------------------------------


class NvmlThread:
    """One daemon thread that runs submitted jobs in order; every NVML call happens here."""

    def __init__(self, name: str = "nvml") -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future

    def stop(self) -> None:
        """Ask the thread to end after the jobs already queued; does not wait for it."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)


# -- what a read returns ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    name: str  # "" when the process is gone or not visible here (another PID namespace)
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class FieldError:
    """A field that could not be read for a reason other than "not supported"."""

    field: str
    code: int
    text: str


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """One GPU in one read. A value of None is a series to leave out."""

    index: int
    uuid: str  # "" for a device lost before NVML ever told its UUID
    name: str
    lost: bool = False
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    utilization_ratio: float | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None
    energy_joules: float | None = None
    processes: tuple[GpuProcess, ...] = ()
    unsupported: tuple[str, ...] = ()
    errors: tuple[FieldError, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    driver_version: str
    devices: tuple[DeviceReading, ...]
    skipped: tuple[tuple[int, str], ...] = ()  # (index, why) devices NVML would not hand out
    xid_watched: tuple[int, ...] = ()  # indices registered for XID events
    reinitialised: bool = False


XidCallback = Callable[[int, str, int], None]  # (index, uuid, xid), called on the watcher thread


def process_name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return ""


# -- the session -----------------------------------------------------------------------------


class _Device:
    __slots__ = ("handle", "index", "memory_v2", "name", "processes_v3", "uuid")

    def __init__(self, index: int, handle: Any, uuid: str, name: str) -> None:
        self.index = index
        self.handle = handle  # None when the device was lost at enumeration
        self.uuid = uuid
        self.name = name
        self.memory_v2 = True
        self.processes_v3 = True


class _FieldReader:
    """Calls for one device in one read, sorting the NVML errors of each field."""

    __slots__ = ("errors", "nvml", "unsupported")

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.unsupported: list[str] = []
        self.errors: list[FieldError] = []

    def get(self, field: str, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except self.nvml.NVMLError as exc:
            self.failed(field, exc, call)
            return None

    def failed(self, field: str, exc: Any, call: Callable[..., Any]) -> None:
        code = int(exc.value)
        if code in LIBRARY_WIDE_ERRORS:
            raise NvmlLibraryError(code, str(exc), during=call.__name__) from exc
        if code == NVML_ERROR_GPU_IS_LOST:
            raise _DeviceLost from exc
        if code in UNSUPPORTED_ERRORS:
            self.unsupported.append(field)
        else:
            self.errors.append(FieldError(field, code, str(exc)))


class NvmlSession:
    """NVML state on the NVML thread. Only `NvmlThread` jobs may call its methods."""

    def __init__(
        self,
        on_xid: XidCallback,
        *,
        xid_wait_ms: int = 500,
        name_of: Callable[[int], str] = process_name,
    ) -> None:
        self._on_xid = on_xid
        self._xid_wait_ms = xid_wait_ms
        self._name_of = name_of
        self._nvml: Any = None
        self._initialised = False
        self._driver_version = ""
        self._devices: list[_Device] = []
        self._skipped: tuple[tuple[int, str], ...] = ()
        self._uuid_by_index: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self._watcher: XidWatcher | None = None
        self._event_set: Any = None

    def collect(self, *, reinit: bool = False) -> Snapshot:
        """Read every device; (re-)initialise NVML first when asked or when not yet up."""
        restarted = reinit or not self._initialised
        if restarted:
            self._restart()
        return self._read(restarted)

    def close(self) -> None:
        self._stop_nvml()

    # -- init and shutdown -------------------------------------------------------------------

    def _load(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml  # noqa: PLC0415  (loaded on first use: enabled=false never loads it)
            except ImportError as exc:
                raise NvmlLibraryError(NVML_ERROR_LIBRARY_NOT_FOUND,
                                       "the nvidia-ml-py package is not installed",
                                       during="import pynvml") from exc
            self._nvml = pynvml
        return self._nvml

    def _library_call(self, call: Callable[..., T], *args: Any) -> T:
        """A call whose every failure is library-wide (init, count, driver version)."""
        nvml = self._nvml
        try:
            return call(*args)
        except nvml.NVMLError as exc:
            code = int(exc.value)
            detail = str(exc)
            if code == NVML_ERROR_LIBRARY_NOT_FOUND:
                detail = "libnvidia-ml.so.1 could not be loaded"
            raise NvmlLibraryError(code, detail, during=call.__name__) from exc

    def _restart(self) -> None:
        self._stop_nvml()
        nvml = self._load()
        self._library_call(nvml.nvmlInit)
        self._initialised = True
        self._driver_version = str(self._library_call(nvml.nvmlSystemGetDriverVersion))
        count = int(self._library_call(nvml.nvmlDeviceGetCount))
        devices: list[_Device] = []
        skipped: list[tuple[int, str]] = []
        for index in range(count):
            try:
                devices.append(self._open_device(index))
            except _DeviceLost:
                devices.append(_Device(index, None, self._uuid_by_index.get(index, ""), ""))
            except nvml.NVMLError as exc:
                skipped.append((index, str(exc)))
        self._devices = devices
        self._skipped = tuple(skipped)
        self._start_watcher()

    def _open_device(self, index: int) -> _Device:
        nvml = self._nvml
        reader = _FieldReader(nvml)
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = str(nvml.nvmlDeviceGetUUID(handle))
        except nvml.NVMLError as exc:
            code = int(exc.value)
            if code in LIBRARY_WIDE_ERRORS or code == NVML_ERROR_GPU_IS_LOST:
                reader.failed("device", exc, nvml.nvmlDeviceGetHandleByIndex)
            raise
        self._uuid_by_index[index] = uuid
        name = reader.get("name", nvml.nvmlDeviceGetName, handle)
        return _Device(index, handle, uuid, str(name or ""))

    def _start_watcher(self) -> None:
        nvml = self._nvml
        try:
            self._event_set = nvml.nvmlEventSetCreate()
        except nvml.NVMLError as exc:
            code = int(exc.value)
            if code in LIBRARY_WIDE_ERRORS:
                raise NvmlLibraryError(code, str(exc), during="nvmlEventSetCreate") from exc
            log.debug("no XID events: nvmlEventSetCreate failed: %s", exc)
            return
        for dev in self._devices:
            try:
                self._watch(dev)
            except _DeviceLost:
                continue

    def _watch(self, dev: _Device) -> None:
        """Register `dev` for XID events, starting the watcher with the first device."""
        if self._event_set is None or dev.handle is None:
            return
        nvml = self._nvml
        reader = _FieldReader(nvml)
        types = reader.get("events", nvml.nvmlDeviceGetSupportedEventTypes, dev.handle)
        if types is None or not int(types) & XID_CRITICAL_ERROR:
            return
        reader.get("events", nvml.nvmlDeviceRegisterEvents, dev.handle, XID_CRITICAL_ERROR,
                   self._event_set)
        if reader.unsupported or reader.errors:
            return
        if self._watcher is None:
            self._watcher = XidWatcher(nvml, self._event_set, self._on_xid, self._xid_wait_ms)
            self._watcher.start()
        self._watcher.add(_address(dev.handle), dev.index, dev.uuid)

    def _stop_nvml(self) -> None:
        watcher, self._watcher = self._watcher, None
        event_set, self._event_set = self._event_set, None
        if watcher is not None and not watcher.stop(timeout_s=2 * self._xid_wait_ms / 1000 + 1):
            log.warning("the XID event thread did not stop; its event set is leaked")
            event_set = None
        if event_set is not None:
            try:
                self._nvml.nvmlEventSetFree(event_set)
            except self._nvml.NVMLError as exc:
                log.debug("nvmlEventSetFree failed: %s", exc)
        if self._initialised:
            self._initialised = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as exc:
                log.debug("nvmlShutdown failed: %s", exc)

    # -- reading -----------------------------------------------------------------------------

    def _read(self, restarted: bool) -> Snapshot:
        names: dict[int, str] = {}
        for position, dev in enumerate(self._devices):
            if dev.handle is None:
                self._devices[position] = self._reopen(dev)
        readings = tuple(self._read_device(dev, names) for dev in self._devices)
        self._names = names
        watcher = self._watcher
        return Snapshot(
            driver_version=self._driver_version,
            devices=readings,
            skipped=self._skipped,
            xid_watched=watcher.indices if watcher is not None else (),
            reinitialised=restarted,
        )

    def _reopen(self, dev: _Device) -> _Device:
        """A device lost at enumeration: ask for its handle again (one call while lost)."""
        try:
            found = self._open_device(dev.index)
            self._watch(found)
        except (_DeviceLost, self._nvml.NVMLError):
            return dev
        return found

    def _read_device(self, dev: _Device, names: dict[int, str]) -> DeviceReading:
        if dev.handle is None:
            return DeviceReading(index=dev.index, uuid=dev.uuid, name=dev.name, lost=True)
        nvml = self._nvml
        handle = dev.handle
        r = _FieldReader(nvml)
        try:
            used, total = self._memory(dev, r)
            util = r.get("utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
            temperature = r.get("temperature", nvml.nvmlDeviceGetTemperature, handle,
                                TEMPERATURE_GPU)
            power_mw = r.get("power", nvml.nvmlDeviceGetPowerUsage, handle)
            energy_mj = r.get("energy", nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
            processes = self._processes(dev, r, names)
        except _DeviceLost:
            return DeviceReading(index=dev.index, uuid=dev.uuid, name=dev.name, lost=True)
        return DeviceReading(
            index=dev.index, uuid=dev.uuid, name=dev.name,
            memory_used_bytes=used, memory_total_bytes=total,
            utilization_ratio=None if util is None else util.gpu / 100.0,
            temperature_celsius=None if temperature is None else float(temperature),
            power_watts=None if power_mw is None else power_mw / 1000.0,
            energy_joules=None if energy_mj is None else energy_mj / 1000.0,
            processes=processes,
            unsupported=tuple(r.unsupported), errors=tuple(r.errors),
        )

    def _memory(self, dev: _Device, r: _FieldReader) -> tuple[float | None, float | None]:
        nvml = self._nvml
        version = getattr(nvml, "nvmlMemory_v2", None)
        if dev.memory_v2 and version is not None:
            try:
                info = nvml.nvmlDeviceGetMemoryInfo(dev.handle, version=version)
            except TypeError:  # an nvidia-ml-py without the `version` argument
                dev.memory_v2 = False
            except nvml.NVMLError as exc:
                if int(exc.value) not in _MEMORY_V2_MISSING:
                    r.failed("memory", exc, nvml.nvmlDeviceGetMemoryInfo)
                    return None, None
                dev.memory_v2 = False  # an older driver: v1 from now on (used includes reserved)
            else:
                return float(info.used), float(info.total)
        info = r.get("memory", nvml.nvmlDeviceGetMemoryInfo, dev.handle)
        if info is None:
            return None, None
        return float(info.used), float(info.total)

    def _processes(
        self, dev: _Device, r: _FieldReader, names: dict[int, str]
    ) -> tuple[GpuProcess, ...]:
        nvml = self._nvml
        found: Any = None
        if dev.processes_v3:
            try:
                found = nvml.nvmlDeviceGetComputeRunningProcesses(dev.handle)
            except nvml.NVMLLibraryMismatchError:
                dev.processes_v3 = False  # the driver predates _v3
            except nvml.NVMLError as exc:
                r.failed("processes", exc, nvml.nvmlDeviceGetComputeRunningProcesses)
                return ()
        if not dev.processes_v3:
            found = r.get("processes", nvml.nvmlDeviceGetComputeRunningProcesses_v2, dev.handle)
        if not found:
            return ()
        out = []
        for proc in found:
            if proc.usedGpuMemory is None:  # not available (WDDM, or not permitted)
                continue
            pid = int(proc.pid)
            name = names.get(pid)
            if name is None:
                name = self._names.get(pid)
                if name is None:
                    name = self._name_of(pid)
                names[pid] = name
            out.append(GpuProcess(pid, name, int(proc.usedGpuMemory)))
        return tuple(out)


def _address(handle: Any) -> int | None:
    value: int | None = ctypes.cast(handle, ctypes.c_void_p).value
    return value


# -- XID events ------------------------------------------------------------------------------


class XidWatcher:
    """Waits for XID critical errors on its own thread and passes each to a callback.

    `nvmlEventSetWait_v2` blocks up to `wait_ms`, so stopping takes at most that long. Errors
    other than the timeout are retried after a pause: when NVML as a whole fails, the sampler
    sees it on its next read and re-initialises, which replaces this watcher.
    """

    def __init__(self, nvml: Any, event_set: Any, on_xid: XidCallback, wait_ms: int) -> None:
        self._event_set = event_set
        self._nvml = nvml
        # handle address -> (index, uuid); written on the NVML thread, read on this one
        self._devices: dict[int | None, tuple[int, str]] = {}
        self._on_xid = on_xid
        self._wait_ms = wait_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvml-xid", daemon=True)

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(sorted(index for index, _ in self._devices.values()))

    def add(self, address: int | None, index: int, uuid: str) -> None:
        self._devices[address] = (index, uuid)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> bool:
        """Stop and wait for the thread; False if it did not end in time."""
        self._stop.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        nvml = self._nvml
        last_error: int | None = None
        while not self._stop.is_set():
            try:
                data = nvml.nvmlEventSetWait_v2(self._event_set, self._wait_ms)
            except nvml.NVMLError as exc:
                code = int(exc.value)
                if code == NVML_ERROR_TIMEOUT:
                    continue
                if code != last_error:
                    log.debug("waiting for XID events failed: %s", exc)
                    last_error = code
                self._stop.wait(self._wait_ms / 1000)
                continue
            last_error = None
            if not int(data.eventType) & XID_CRITICAL_ERROR:
                continue
            device = self._devices.get(_address(data.device))
            if device is not None:
                self._on_xid(device[0], device[1], int(data.eventData))
