"""The fake NVML library for the GPU sampler tests: build it, script it, drive a sampler on it.

- `build_fake_nvml(dest)` compiles `fake_nvml/fake_nvml.c` with gcc into
  `dest/libnvidia-ml.so.1` (SONAME `libnvidia-ml.so.1`).
- `FakeNvml` / `FakeGpu` model the script the library reads (`$FAKE_NVML_SCRIPT`);
  `write()` replaces the file atomically, and the library picks the change up on its next
  call. `FakeNvml.with_gpus(n)` gives n distinct, fully populated GPUs.
- `SamplerChild` runs `fake_nvml/gpu_sampler_child.py` (a real `GpuSampler`) in its own
  process with LD_LIBRARY_PATH set, so the real pynvml ctypes path loads the fake; each
  `request()` is one step, answered with the store's GPU series and the log records.

(Named `nvml_helpers`, not `helpers`: test directories have no `__init__.py`, so module
basenames must be unique across `tests/`.)
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAKE_NVML_DIR = Path(__file__).resolve().parent / "fake_nvml"
FAKE_NVML_SOURCE = FAKE_NVML_DIR / "fake_nvml.c"
CHILD_SCRIPT = FAKE_NVML_DIR / "gpu_sampler_child.py"
REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARY_NAME = "libnvidia-ml.so.1"

# NVML return codes the tests script.
NOT_SUPPORTED = 3
DRIVER_NOT_LOADED = 9
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15
LIB_RM_VERSION_MISMATCH = 18
UNKNOWN = 999


class FakeNvmlUnavailable(RuntimeError):
    """No C compiler here, or the fake did not compile."""


def build_fake_nvml(dest: Path) -> Path:
    """Compile the fake into `dest/libnvidia-ml.so.1`; returns the library's path."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise FakeNvmlUnavailable("no C compiler (gcc) to build the fake libnvidia-ml.so.1")
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / LIBRARY_NAME
    cmd = [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra",
           f"-Wl,-soname,{LIBRARY_NAME}", "-o", str(out), str(FAKE_NVML_SOURCE), "-lpthread"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise FakeNvmlUnavailable(f"building the fake NVML failed:\n{done.stderr}")
    return out


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    lost: bool = False
    mem_total: int = 80 * 2**30
    mem_used: int = 0
    mem_reserved: int = 0
    util: int = 0
    mem_util: int = 0
    temp: int = 40
    power_mw: int = 100_000
    energy_mj: int = 0
    procs: list[tuple[int, int]] = field(default_factory=list)  # (pid, bytes)
    events: int | None = None  # supported event types; None: the default (XID)
    errors: dict[str, int] = field(default_factory=dict)  # NVML function -> return code

    def lines(self, index: int) -> list[str]:
        p = f"gpu{index}."
        out = [
            f"{p}name={self.name}", f"{p}uuid={self.uuid}", f"{p}lost={int(self.lost)}",
            f"{p}mem_total={self.mem_total}", f"{p}mem_used={self.mem_used}",
            f"{p}mem_reserved={self.mem_reserved}", f"{p}util={self.util}",
            f"{p}mem_util={self.mem_util}", f"{p}temp={self.temp}",
            f"{p}power={self.power_mw}", f"{p}energy={self.energy_mj}",
            f"{p}procs=" + ",".join(f"{pid}:{size}" for pid, size in self.procs),
        ]
        if self.events is not None:
            out.append(f"{p}events={self.events}")
        out += [f"{p}err.{fn}={code}" for fn, code in self.errors.items()]
        return out


@dataclass
class FakeNvml:
    """The fake library's script: devices, failures, a hang, XID events to deliver."""

    path: Path
    gpus: list[FakeGpu] = field(default_factory=list)
    driver: str = "550.54.15"
    init_error: int = 0
    error: int = 0  # every call but init/shutdown fails with this: a library-wide failure
    hang: str = ""  # an NVML function that blocks while this is set
    errors: dict[str, int] = field(default_factory=dict)  # for every device
    xids: list[tuple[int, int]] = field(default_factory=list)  # (gpu index, xid), in order
    count: int | None = None  # what nvmlDeviceGetCount says; None: len(gpus)

    @classmethod
    def with_gpus(cls, path: Path, n: int = 2) -> FakeNvml:
        gpus = [
            FakeGpu(
                name="NVIDIA H100 80GB HBM3",
                uuid=f"GPU-{i:08x}-1111-2222-3333-444444444444",
                mem_total=80 * 2**30,
                mem_used=(10 + i) * 2**30,
                mem_reserved=2**29,
                util=40 + i,
                mem_util=20 + i,
                temp=60 + i,
                power_mw=250_000 + 1_000 * i,
                energy_mj=1_000_000 * (i + 1),
            )
            for i in range(n)
        ]
        return cls(path=path, gpus=gpus)

    def text(self) -> str:
        lines = [f"count={len(self.gpus) if self.count is None else self.count}",
                 f"driver={self.driver}", f"init_error={self.init_error}",
                 f"error={self.error}", f"hang={self.hang}",
                 "xid=" + ",".join(f"{gpu}:{xid}" for gpu, xid in self.xids)]
        lines += [f"err.{fn}={code}" for fn, code in self.errors.items()]
        for index, gpu in enumerate(self.gpus):
            lines += gpu.lines(index)
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(self.text(), encoding="utf-8")
        os.replace(tmp, self.path)


SeriesKey = frozenset[tuple[str, str]]


@dataclass
class Reply:
    raw: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.raw["ok"])

    @property
    def error(self) -> str | None:
        error: str | None = self.raw.get("error")
        return error

    @property
    def logs(self) -> list[dict[str, str]]:
        logs: list[dict[str, str]] = self.raw["logs"]
        return logs

    def logged(self, min_level: str = "INFO") -> list[str]:
        """Messages at `min_level` or above."""
        order = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
        floor = order.index(min_level)
        return [r["message"] for r in self.logs if order.index(r["level"]) >= floor]

    def series(self, family: str) -> dict[SeriesKey, float]:
        """`family` without the namespace ("gpu_up"): {frozenset(labels): value}."""
        name = f"inferwatch_{family}"
        return {frozenset(labels.items()): value
                for fam, labels, value in self.raw["store"] if fam == name}

    def by_gpu(self, family: str) -> dict[str, float]:
        """{gpu index: value} for a family with one series per GPU."""
        out: dict[str, float] = {}
        for key, value in self.series(family).items():
            labels = dict(key)
            out[labels["gpu"]] = value
        return out

    def __getitem__(self, name: str) -> Any:
        return self.raw[name]


class SamplerChild:
    """`gpu_sampler_child.py` as a subprocess; `request()` sends one step and waits."""

    def __init__(self, *, lib_dir: Path | None, script: Path | None) -> None:
        env = dict(os.environ)
        env.pop("FAKE_NVML_SCRIPT", None)
        if lib_dir is not None:
            env["LD_LIBRARY_PATH"] = str(lib_dir)
        if script is not None:
            env["FAKE_NVML_SCRIPT"] = str(script)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                           env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, str(CHILD_SCRIPT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, cwd=str(REPO_ROOT),
        )
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._pumps = [threading.Thread(target=self._pump, daemon=True),
                       threading.Thread(target=self._pump_stderr, daemon=True)]
        for pump in self._pumps:
            pump.start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def _pump_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    def request(self, op: str, timeout: float = 20.0, **args: Any) -> Reply:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self._proc.stdin.flush()
        try:
            line = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the sampler child did not answer {op!r} within "
                                 f"{timeout}s; stderr:\n{''.join(self._stderr)}") from None
        if line is None:
            raise AssertionError(f"the sampler child exited during {op!r}; stderr:\n"
                                 f"{''.join(self._stderr)}")
        return Reply(json.loads(line))

    def calls(self, *names: str) -> dict[str, int]:
        calls: dict[str, int] = self.request("calls", names=list(names))["calls"]
        return calls

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self.request("close", timeout=10.0)
                self._proc.wait(timeout=10.0)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                pass
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10.0)
        for pump in self._pumps:
            pump.join(timeout=10.0)
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()
