"""A GpuSampler in its own process, driven step by step over stdin/stdout (JSON lines).

pynvml loads `libnvidia-ml.so.1` once per process and keeps it, and the dynamic loader reads
LD_LIBRARY_PATH only at process start, so each scenario runs the sampler here, started by
`nvml_helpers.SamplerChild` with LD_LIBRARY_PATH pointing at the fake library (or at an
empty directory, for "library missing"). The real pynvml ctypes path runs; the test changes
the fake's script file between steps and reads back the store after each one.

Requests are `{"op": ..., ...}`; every reply carries `ok`, the GPU series of the store, the
log records since the last reply, and `error` ("Type: message") when the step raised.

    open     {enabled, interval, deadline_s?, init_timeout_s?, xid_wait_ms?}
    sample   {ticker: bool}   one sample(); with a ticker, a concurrent task ticking every
                              5 ms reports how many ticks ran and the longest gap between them
    advance  {seconds}        move the fake clock (backoff is counted on it)
    wait_xid {total, timeout} run the loop until the XID counters sum to `total`
    calls    {names}          how often the fake library entered each function
    loaded   {}               whether any libnvidia-ml is mapped into this process
    bench    {runs}           CPU seconds (process_time) of each of `runs` samples
    close    {}               sampler.close(), then exit
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from monitor.clock import FakeClock
from monitor.config_models import GpuConfig
from monitor.metrics.store import CounterSeries, GaugeSeries, MetricStore
from monitor.samplers.gpu import GpuSampler, GpuSamplerOptions


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append({"level": record.levelname, "logger": record.name,
                             "message": record.getMessage()})

    def take(self) -> list[dict[str, str]]:
        out, self.records = self.records, []
        return out


class Child:
    def __init__(self) -> None:
        self.store = MetricStore()
        self.store.track_births = True
        self.clock = FakeClock()
        self.sampler: GpuSampler | None = None
        self.logs = _Records()
        logger = logging.getLogger("monitor")
        logger.addHandler(self.logs)
        logger.setLevel(logging.DEBUG)

    def dump(self) -> list[list[Any]]:
        out: list[list[Any]] = []
        for family in self.store.families():
            if not family.full_name.startswith("inferwatch_gpu_"):
                continue
            for key, series in family.series.items():
                assert isinstance(series, CounterSeries | GaugeSeries)
                out.append([family.full_name, dict(key), series.value])
        return sorted(out, key=lambda row: (row[0], sorted(row[1].items())))

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        reply: dict[str, Any] = {"ok": True, "error": None}
        try:
            reply.update(await getattr(self, f"op_{op}")(request))
        except Exception as exc:
            reply["ok"] = False
            reply["error"] = f"{type(exc).__name__}: {exc}"
        reply["store"] = self.dump()
        reply["logs"] = self.logs.take()
        return reply

    async def op_open(self, request: dict[str, Any]) -> dict[str, Any]:
        config = GpuConfig.model_validate({"enabled": request["enabled"],
                                           "interval": request.get("interval", "5s")})
        options = GpuSamplerOptions(
            deadline_s=request.get("deadline_s"),
            init_timeout_s=request.get("init_timeout_s", 30.0),
            xid_wait_ms=request.get("xid_wait_ms", 50),
        )
        self.sampler = await GpuSampler.open(config, store=self.store, clock=self.clock,
                                             options=options)
        return {"sampler": self.sampler is not None}

    async def op_sample(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.sampler is not None
        ticks = 0
        max_gap = 0.0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks, max_gap
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                max_gap = max(max_gap, now - last)
                last = now
                ticks += 1

        task = asyncio.create_task(ticker()) if request.get("ticker") else None
        started = time.monotonic()
        error = None
        try:
            await self.sampler.sample()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - started
        stop.set()
        if task is not None:
            await task
        return {"ok": error is None, "error": error, "elapsed_s": elapsed, "ticks": ticks,
                "max_gap_s": max_gap}

    async def op_advance(self, request: dict[str, Any]) -> dict[str, Any]:
        self.clock.advance(float(request["seconds"]))
        return {}

    async def op_wait_xid(self, request: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + float(request.get("timeout", 5.0))
        total = 0.0
        while time.monotonic() < deadline:
            family = self.store.family("inferwatch_gpu_xid_errors")
            total = 0.0
            if family is not None:
                total = sum(s.value for s in family.series.values()
                            if isinstance(s, CounterSeries))
            if total >= request["total"]:
                break
            await asyncio.sleep(0.01)
        return {"xid_total": total}

    async def op_calls(self, request: dict[str, Any]) -> dict[str, Any]:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        lib.fake_nvml_calls.restype = ctypes.c_ulonglong
        lib.fake_nvml_calls.argtypes = [ctypes.c_char_p]
        return {"calls": {n: int(lib.fake_nvml_calls(n.encode())) for n in request["names"]}}

    async def op_loaded(self, request: dict[str, Any]) -> dict[str, Any]:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8")
        return {"loaded": "libnvidia-ml" in maps}

    async def op_bench(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.sampler is not None
        cpu: list[float] = []
        for _ in range(int(request["runs"])):
            start = time.process_time()
            await self.sampler.sample()
            cpu.append(time.process_time() - start)
        return {"cpu_s": cpu}

    async def op_close(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.sampler is not None:
            await self.sampler.close()
        return {"closed": True}


async def main() -> None:
    child = Child()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        request = json.loads(line)
        reply = await child.handle(request)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if request["op"] == "close":
            return


if __name__ == "__main__":
    asyncio.run(main())
