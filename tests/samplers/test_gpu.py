"""GpuSampler against a fake libnvidia-ml.so.1 built from C, through the real pynvml.

Each test runs a sampler in a child process (pynvml loads the library once per process and
the loader reads LD_LIBRARY_PATH at start; see nvml_helpers), changes the fake's script
between steps and checks the store the child reports after each step. Backoff runs on the
child's fake clock, so nothing here waits for it; the only real waits are the short sample
deadline of the hang test and the XID thread's delivery.
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import integration_missing
from nvml_helpers import (
    DRIVER_NOT_LOADED,
    FUNCTION_NOT_FOUND,
    LIB_RM_VERSION_MISMATCH,
    NOT_SUPPORTED,
    UNKNOWN,
    FakeNvml,
    FakeNvmlUnavailable,
    Reply,
    SamplerChild,
    build_fake_nvml,
)

GiB = 2**30
DEADLINE_S = 0.4
VALUE_FAMILIES = ("gpu_memory_used_bytes", "gpu_memory_total_bytes", "gpu_utilization_ratio",
                  "gpu_temperature_celsius", "gpu_power_watts", "gpu_energy_joules")

StartChild = Callable[..., SamplerChild]


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake library, compiled once per test session."""
    dest = tmp_path_factory.mktemp("fake_nvml")
    try:
        build_fake_nvml(dest)
    except FakeNvmlUnavailable as exc:
        integration_missing(str(exc))
    return dest


@pytest.fixture
def nvml(tmp_path: Path) -> FakeNvml:
    script = FakeNvml.with_gpus(tmp_path / "fake_nvml.script", 2)
    script.write()
    return script


@pytest.fixture
def start_child(fake_nvml_dir: Path, nvml: FakeNvml) -> Iterator[StartChild]:
    children: list[SamplerChild] = []

    def start(*, lib_dir: Path | None = fake_nvml_dir, script: Path | None = None) -> SamplerChild:
        child = SamplerChild(lib_dir=lib_dir, script=script or nvml.path)
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


def open_sampler(child: SamplerChild, enabled: str = "auto", **options: object) -> Reply:
    reply = child.request("open", enabled=enabled, deadline_s=DEADLINE_S, **options)
    assert reply.error is None, reply.error
    assert reply["sampler"], reply.logs
    return reply


def sample_ok(child: SamplerChild) -> Reply:
    reply = child.request("sample")
    assert reply.ok, reply.error
    return reply


def value_series(reply: Reply, gpu: str) -> set[str]:
    """The value families that hold a series for `gpu`."""
    return {f for f in VALUE_FAMILIES if gpu in reply.by_gpu(f)}


# -- values ------------------------------------------------------------------------------------


def test_two_gpus_report_every_family(start_child: StartChild, nvml: FakeNvml) -> None:
    me = os.getpid()
    nvml.gpus[0].procs = [(me, 3 * GiB), (4_000_000, 5 * GiB)]  # the second pid is not alive
    nvml.gpus[1].procs = [(me, GiB)]
    nvml.write()
    child = start_child()

    opened = open_sampler(child)
    assert opened.logged() == ["GPU sampling on: 2 GPU(s), driver 550.54.15"]
    r = sample_ok(child)

    uuid0, uuid1 = nvml.gpus[0].uuid, nvml.gpus[1].uuid
    assert r.series("gpu_up") == {
        frozenset({("gpu", "0"), ("uuid", uuid0)}): 1.0,
        frozenset({("gpu", "1"), ("uuid", uuid1)}): 1.0,
    }
    assert r.series("gpu_info") == {
        frozenset({("gpu", "0"), ("uuid", uuid0), ("name", "NVIDIA H100 80GB HBM3"),
                   ("driver_version", "550.54.15")}): 1.0,
        frozenset({("gpu", "1"), ("uuid", uuid1), ("name", "NVIDIA H100 80GB HBM3"),
                   ("driver_version", "550.54.15")}): 1.0,
    }
    # v2 memory info: "used" leaves out the driver's reserved memory
    assert r.by_gpu("gpu_memory_used_bytes") == {"0": 10 * GiB, "1": 11 * GiB}
    assert r.by_gpu("gpu_memory_total_bytes") == {"0": 80 * GiB, "1": 80 * GiB}
    assert r.by_gpu("gpu_utilization_ratio") == {"0": 0.40, "1": 0.41}
    assert r.by_gpu("gpu_temperature_celsius") == {"0": 60.0, "1": 61.0}
    assert r.by_gpu("gpu_power_watts") == {"0": 250.0, "1": 251.0}
    assert r.by_gpu("gpu_energy_joules") == {"0": 1000.0, "1": 2000.0}
    my_name = psutil.Process(me).name()
    assert r.series("gpu_process_memory_bytes") == {
        frozenset({("gpu", "0"), ("uuid", uuid0), ("pid", str(me)), ("process", my_name)}):
            3.0 * GiB,
        frozenset({("gpu", "0"), ("uuid", uuid0), ("pid", "4000000"), ("process", "")}):
            5.0 * GiB,
        frozenset({("gpu", "1"), ("uuid", uuid1), ("pid", str(me)), ("process", my_name)}):
            1.0 * GiB,
    }
    assert r.series("gpu_xid_errors") == {}
    assert r.logged() == []

    # New values are picked up; a process that left is removed; the energy counter follows.
    nvml.gpus[0].procs = [(me, 4 * GiB)]
    nvml.gpus[0].energy_mj = 1_500_000
    nvml.gpus[0].util = 100
    nvml.write()
    r = sample_ok(child)
    assert r.by_gpu("gpu_energy_joules") == {"0": 1500.0, "1": 2000.0}
    assert r.by_gpu("gpu_utilization_ratio")["0"] == 1.0
    assert {dict(k)["pid"]: v for k, v in r.series("gpu_process_memory_bytes").items()
            if dict(k)["gpu"] == "0"} == {str(me): 4.0 * GiB}


def test_not_supported_field_is_absent_and_the_rest_reported(
    start_child: StartChild, nvml: FakeNvml
) -> None:
    nvml.gpus[0].errors["nvmlDeviceGetPowerUsage"] = NOT_SUPPORTED
    nvml.gpus[0].errors["nvmlDeviceGetTotalEnergyConsumption"] = NOT_SUPPORTED
    nvml.write()
    child = start_child()
    open_sampler(child)
    r = sample_ok(child)

    assert r.by_gpu("gpu_up") == {"0": 1.0, "1": 1.0}
    assert value_series(r, "0") == set(VALUE_FAMILIES) - {"gpu_power_watts",
                                                          "gpu_energy_joules"}
    assert value_series(r, "1") == set(VALUE_FAMILIES)
    assert r.logged("WARNING") == []  # "not supported" is the GPU's nature, not a failure


def test_other_field_error_is_absent_and_logged_once(
    start_child: StartChild, nvml: FakeNvml
) -> None:
    child = start_child()
    open_sampler(child)
    nvml.gpus[1].errors["nvmlDeviceGetTemperature"] = UNKNOWN
    nvml.write()

    first = sample_ok(child)
    assert "gpu_temperature_celsius" not in value_series(first, "1")
    assert value_series(first, "0") == set(VALUE_FAMILIES)
    assert first.by_gpu("gpu_up") == {"0": 1.0, "1": 1.0}
    [warning] = first.logged("WARNING")
    assert "GPU 1" in warning and "temperature" in warning and "999" in warning
    assert sample_ok(child).logged() == []  # the same failure again: no new line

    nvml.gpus[1].errors.clear()
    nvml.write()
    assert "gpu_temperature_celsius" in value_series(sample_ok(child), "1")


def test_old_driver_falls_back_to_v1_memory_and_v2_processes(
    start_child: StartChild, nvml: FakeNvml
) -> None:
    nvml.errors["nvmlDeviceGetMemoryInfo_v2"] = FUNCTION_NOT_FOUND
    nvml.errors["nvmlDeviceGetComputeRunningProcesses_v3"] = FUNCTION_NOT_FOUND
    nvml.gpus[0].procs = [(os.getpid(), GiB)]
    nvml.write()
    child = start_child()
    open_sampler(child)
    r = sample_ok(child)
    r = sample_ok(child)

    # v1 counts the reserved memory as used
    assert r.by_gpu("gpu_memory_used_bytes") == {"0": 10 * GiB + GiB // 2,
                                                 "1": 11 * GiB + GiB // 2}
    assert list(r.series("gpu_process_memory_bytes").values()) == [1.0 * GiB]
    calls = child.calls("nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetMemoryInfo",
                        "nvmlDeviceGetComputeRunningProcesses_v3",
                        "nvmlDeviceGetComputeRunningProcesses_v2")
    # The missing versions are tried once per GPU, then remembered (3 reads: open + 2).
    # Process lists take two calls where there are processes (size, then fetch): GPU 0.
    assert calls == {"nvmlDeviceGetMemoryInfo_v2": 2, "nvmlDeviceGetMemoryInfo": 6,
                     "nvmlDeviceGetComputeRunningProcesses_v3": 2,
                     "nvmlDeviceGetComputeRunningProcesses_v2": 3 * 2 + 3}


# -- lost GPUs ---------------------------------------------------------------------------------


def test_gpu_lost_then_back(start_child: StartChild, nvml: FakeNvml) -> None:
    child = start_child()
    open_sampler(child)
    uuid1 = nvml.gpus[1].uuid

    nvml.gpus[1].lost = True
    nvml.write()
    r = sample_ok(child)
    assert r.by_gpu("gpu_up") == {"0": 1.0, "1": 0.0}
    assert value_series(r, "0") == set(VALUE_FAMILIES)
    assert value_series(r, "1") == set()
    assert set(r.by_gpu("gpu_info")) == {"0", "1"}  # still describes the lost GPU
    [warning] = r.logged("WARNING")
    assert f"GPU 1 ({uuid1}) is lost" in warning
    assert sample_ok(child).logged() == []  # still lost: no new line

    # After the backoff, NVML is re-initialised to find the GPU again; still lost here.
    inits = child.calls("nvmlInitWithFlags")["nvmlInitWithFlags"]
    child.request("advance", seconds=5)
    r = sample_ok(child)
    assert child.calls("nvmlInitWithFlags")["nvmlInitWithFlags"] == inits + 1
    assert r.by_gpu("gpu_up") == {"0": 1.0, "1": 0.0}
    assert r.logged() == []

    nvml.gpus[1].lost = False
    nvml.write()
    r = sample_ok(child)
    assert r.by_gpu("gpu_up") == {"0": 1.0, "1": 1.0}
    assert value_series(r, "1") == set(VALUE_FAMILIES)
    assert r.logged() == [f"GPU 1 ({uuid1}) answers again"]


def test_gpu_lost_at_start_is_reported_then_found_by_reinit(
    start_child: StartChild, nvml: FakeNvml
) -> None:
    nvml.gpus[1].lost = True
    nvml.write()
    child = start_child()
    opened = open_sampler(child)
    # NVML never told its UUID: reported by index alone
    assert opened.series("gpu_up") == {
        frozenset({("gpu", "0"), ("uuid", nvml.gpus[0].uuid)}): 1.0,
        frozenset({("gpu", "1"), ("uuid", "")}): 0.0,
    }
    assert any("GPU 1 is lost" in m for m in opened.logged("WARNING"))

    r = sample_ok(child)  # still lost: asked for its handle again, once per sample
    assert r.by_gpu("gpu_up") == {"0": 1.0, "1": 0.0}
    assert r.logged() == []

    nvml.gpus[1].lost = False
    nvml.write()
    r = sample_ok(child)
    assert r.series("gpu_up") == {
        frozenset({("gpu", "0"), ("uuid", nvml.gpus[0].uuid)}): 1.0,
        frozenset({("gpu", "1"), ("uuid", nvml.gpus[1].uuid)}): 1.0,
    }
    assert value_series(r, "1") == set(VALUE_FAMILIES)
    assert r.logged() == ["GPU 1 answers again"]
    # and it was registered for XID events when it came back
    nvml.xids = [(1, 43)]
    nvml.write()
    assert child.request("wait_xid", total=1).by_gpu("gpu_xid_errors") == {"1": 1.0}


# -- start-up ----------------------------------------------------------------------------------


def _real_nvml_installed() -> bool:
    return ctypes.util.find_library("nvidia-ml") is not None


def test_library_missing_auto_turns_sampling_off_with_one_line(
    start_child: StartChild, tmp_path: Path
) -> None:
    if _real_nvml_installed():
        pytest.skip("a real libnvidia-ml is installed here")
    empty = tmp_path / "no-nvml"
    empty.mkdir()
    child = start_child(lib_dir=empty)
    r = child.request("open", enabled="auto")
    assert r.error is None
    assert r["sampler"] is False
    assert r.logged("DEBUG") == [
        "GPU sampling off: NVML is not available (libnvidia-ml.so.1 could not be loaded); "
        "gpu.enabled is auto"
    ]
    assert r.series("gpu_up") == {}


def test_library_missing_enabled_true_is_a_startup_error(
    start_child: StartChild, tmp_path: Path
) -> None:
    if _real_nvml_installed():
        pytest.skip("a real libnvidia-ml is installed here")
    empty = tmp_path / "no-nvml"
    empty.mkdir()
    child = start_child(lib_dir=empty)
    r = child.request("open", enabled="true")
    assert r.error == ("StartupError: gpu.enabled is true but NVML is not available: "
                       "libnvidia-ml.so.1 could not be loaded")


def test_driver_not_loaded_auto_off_true_fails(start_child: StartChild, nvml: FakeNvml) -> None:
    nvml.init_error = DRIVER_NOT_LOADED
    nvml.write()
    auto = start_child().request("open", enabled="auto")
    assert auto["sampler"] is False
    assert auto.logged("DEBUG") == [
        "GPU sampling off: NVML is not available (Driver Not Loaded); gpu.enabled is auto"
    ]
    required = start_child().request("open", enabled="true")
    assert required.error == ("StartupError: gpu.enabled is true but NVML is not available: "
                              "Driver Not Loaded")


def test_disabled_never_loads_nvml(start_child: StartChild) -> None:
    child = start_child()
    r = child.request("open", enabled="false")
    assert r["sampler"] is False
    assert r.logs == []
    assert child.request("loaded")["loaded"] is False


def test_broken_nvml_at_start_runs_and_recovers(start_child: StartChild, nvml: FakeNvml) -> None:
    nvml.init_error = LIB_RM_VERSION_MISMATCH  # driver upgraded, not yet rebooted
    nvml.write()
    child = start_child()
    opened = child.request("open", enabled="auto", deadline_s=DEADLINE_S)
    assert opened["sampler"] is True
    [warning] = opened.logged("WARNING")
    assert "version mismatch" in warning
    assert opened.series("gpu_up") == {}

    nvml.init_error = 0
    nvml.write()
    assert sample_ok(child).series("gpu_up") == {}  # backoff not over yet
    child.request("advance", seconds=5)
    r = sample_ok(child)
    assert r.by_gpu("gpu_up") == {"0": 1.0, "1": 1.0}
    assert r.logged() == ["NVML is back after 1 failed attempt(s)"]


# -- library-wide failures ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [1, DRIVER_NOT_LOADED, LIB_RM_VERSION_MISMATCH],
                         ids=["uninitialized", "driver_not_loaded", "rm_version_mismatch"])
def test_library_failure_sets_all_down_and_reinitialises_with_backoff(
    start_child: StartChild, nvml: FakeNvml, code: int
) -> None:
    child = start_child()
    open_sampler(child)
    watched = ("nvmlInitWithFlags", "nvmlShutdown", "nvmlDeviceGetUtilizationRates")

    nvml.error = code
    nvml.write()
    r = sample_ok(child)  # a known state, not a failed sample
    assert r.by_gpu("gpu_up") == {"0": 0.0, "1": 0.0}
    assert all(value_series(r, gpu) == set() for gpu in ("0", "1"))
    assert r.series("gpu_process_memory_bytes") == {}
    [warning] = r.logged("WARNING")
    assert warning.startswith("NVML failed: ") and f"NVML error {code} " in warning
    calls = child.calls(*watched)
    assert calls["nvmlInitWithFlags"] == 1

    def attempts_after(seconds: float) -> int:
        child.request("advance", seconds=seconds)
        r = sample_ok(child)
        assert r.logged() == []  # retries that fail the same way are not logged again
        assert r.by_gpu("gpu_up") == {"0": 0.0, "1": 0.0}
        now = child.calls(*watched)
        assert now["nvmlDeviceGetUtilizationRates"] == calls["nvmlDeviceGetUtilizationRates"]
        return now["nvmlInitWithFlags"] - 1

    # Backoff 5 s, 10 s, 20 s, ... on the fake clock: no NVML call in between.
    assert attempts_after(0) == 0
    assert attempts_after(4.9) == 0
    assert attempts_after(0.1) == 1
    assert attempts_after(9.9) == 1
    assert attempts_after(0.1) == 2
    assert attempts_after(19.9) == 2
    assert attempts_after(0.1) == 3
    # NVML was shut down before the first attempt; a failed init leaves nothing to shut down
    assert child.calls("nvmlShutdown")["nvmlShutdown"] == 1

    nvml.error = 0
    nvml.write()
    child.request("advance", seconds=40)
    r = sample_ok(child)
    assert r.by_gpu("gpu_up") == {"0": 1.0, "1": 1.0}
    assert value_series(r, "0") == set(VALUE_FAMILIES)
    assert r.logged() == ["NVML is back after 4 failed attempt(s)"]

    # the XID watcher was set up again on the fresh NVML
    nvml.xids = [(1, 79)]
    nvml.write()
    assert child.request("wait_xid", total=1)["xid_total"] == 1


def test_backoff_is_capped(start_child: StartChild, nvml: FakeNvml) -> None:
    child = start_child()
    open_sampler(child)
    nvml.error = DRIVER_NOT_LOADED
    nvml.write()
    sample_ok(child)
    child.request("advance", seconds=10_000)  # long past any backoff
    for _ in range(8):  # 5, 10, ... doubling: past 300 s after 6 failures
        child.request("advance", seconds=300)
        sample_ok(child)
    before = child.calls("nvmlInitWithFlags")["nvmlInitWithFlags"]
    child.request("advance", seconds=300)
    sample_ok(child)
    assert child.calls("nvmlInitWithFlags")["nvmlInitWithFlags"] == before + 1


# -- a call that hangs -------------------------------------------------------------------------


def test_hanging_call_times_out_without_blocking_the_loop(
    start_child: StartChild, nvml: FakeNvml
) -> None:
    child = start_child()
    open_sampler(child)
    sample_ok(child)

    nvml.hang = "nvmlDeviceGetPowerUsage"
    nvml.write()
    r = child.request("sample", ticker=True)
    assert not r.ok
    assert r.error == ("NvmlTimeoutError: NVML did not answer within 0.4s; "
                       "gpu_up is 0 until it does")
    assert DEADLINE_S * 0.9 <= r["elapsed_s"] < DEADLINE_S + 0.5
    # The loop kept running: a 5 ms ticker ran throughout the 0.4 s wait, never stalled
    # (bounds loose enough for a loaded machine, far from a blocked loop's 0.4 s gap).
    assert r["ticks"] >= 10
    assert r["max_gap_s"] < 0.2
    assert r.by_gpu("gpu_up") == {"0": 0.0, "1": 0.0}
    assert all(value_series(r, gpu) == set() for gpu in ("0", "1"))
    [warning] = r.logged("WARNING")
    assert "did not answer within 0.4s" in warning

    # While the call is stuck, samples fail at once and queue no work behind it.
    calls = child.calls("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPowerUsage")
    for _ in range(3):
        r = child.request("sample", ticker=True)
        assert not r.ok
        assert r.error is not None and "has not returned" in r.error
        assert r["elapsed_s"] < 0.1
        assert r.logged() == []
    assert child.calls("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPowerUsage") == calls

    # The call comes back: sampling carries on.
    nvml.hang = ""
    nvml.write()
    deadline = time.monotonic() + 10
    while not (r := child.request("sample")).ok:
        assert time.monotonic() < deadline, r.error
        time.sleep(0.01)
    assert r.by_gpu("gpu_up") == {"0": 1.0, "1": 1.0}
    assert value_series(r, "0") == set(VALUE_FAMILIES)
    assert any("answered again" in m for m in r.logged())


# -- XID events --------------------------------------------------------------------------------


def test_xid_events_are_counted_per_gpu_and_code(start_child: StartChild, nvml: FakeNvml) -> None:
    child = start_child()
    open_sampler(child)
    nvml.xids = [(0, 79), (1, 48), (1, 48), (1, 13)]
    nvml.write()
    r = child.request("wait_xid", total=4)
    uuid0, uuid1 = nvml.gpus[0].uuid, nvml.gpus[1].uuid
    assert r.series("gpu_xid_errors") == {
        frozenset({("gpu", "0"), ("uuid", uuid0), ("xid", "79")}): 1.0,
        frozenset({("gpu", "1"), ("uuid", uuid1), ("xid", "48")}): 2.0,
        frozenset({("gpu", "1"), ("uuid", uuid1), ("xid", "13")}): 1.0,
    }
    assert len(r.logged("WARNING")) == 4  # one line per XID: they are rare and matter

    nvml.xids += [(0, 79)]
    nvml.write()
    r = child.request("wait_xid", total=5)
    assert r.series("gpu_xid_errors")[
        frozenset({("gpu", "0"), ("uuid", uuid0), ("xid", "79")})] == 2.0

    # XID counters survive a GPU going down; its gauges do not.
    nvml.gpus[0].lost = True
    nvml.write()
    r = sample_ok(child)
    assert r.by_gpu("gpu_up")["0"] == 0.0
    assert len(r.series("gpu_xid_errors")) == 3


def test_gpu_without_xid_events_is_skipped(start_child: StartChild, nvml: FakeNvml) -> None:
    nvml.gpus[1].events = 0
    nvml.write()
    child = start_child()
    opened = open_sampler(child)
    assert "XID events are not available for GPU(s) 1" in opened.logged()
    nvml.xids = [(1, 79), (0, 31)]
    nvml.write()
    r = child.request("wait_xid", total=1)
    assert r.by_gpu("gpu_xid_errors") == {"0": 1.0}
    assert r.by_gpu("gpu_up") == {"0": 1.0, "1": 1.0}


# -- a real GPU --------------------------------------------------------------------------------


def _real_gpu_count() -> int:
    probe = ("import pynvml\npynvml.nvmlInit()\nprint(pynvml.nvmlDeviceGetCount())\n")
    env = {k: v for k, v in os.environ.items() if k != "FAKE_NVML_SCRIPT"}
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              timeout=60, env=env, check=False)
    except subprocess.TimeoutExpired:
        return 0
    return int(done.stdout.strip()) if done.returncode == 0 else 0


@pytest.mark.gpu
def test_real_gpu(tmp_path: Path) -> None:
    count = _real_gpu_count()
    if count == 0:
        pytest.skip("no NVIDIA GPU with a working driver here")
    child = SamplerChild(lib_dir=None, script=None)
    try:
        opened = child.request("open", enabled="true")
        assert opened.error is None
        r = child.request("sample")
        assert r.ok, r.error
        assert len(r.by_gpu("gpu_up")) == count
        assert set(r.by_gpu("gpu_up").values()) == {1.0}
        assert all(v > 0 for v in r.by_gpu("gpu_memory_total_bytes").values())
        assert all(0.0 <= v <= 1.0 for v in r.by_gpu("gpu_utilization_ratio").values())
    finally:
        child.close()
