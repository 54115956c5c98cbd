"""Sampling inside the running daemon, in process: host, a watched process and a health probe
end up on /metrics (and in the series store the rules read); `gpu.enabled: true` on a machine
without NVML stops the start with a clear error. Bounded polls, no timing assertions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.errors import StartupError
from monitor.sdnotify import SystemdNotifier

WAIT_S = 15.0


def nvml_loads() -> bool:
    import pynvml  # noqa: PLC0415 - only to know whether this machine has a driver

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


async def metrics_text(daemon: Daemon) -> str:
    async with aiohttp.ClientSession() as session, session.get(
            daemon.listen_url + "/metrics", timeout=aiohttp.ClientTimeout(total=5)) as response:
        return await response.text()


async def test_host_process_and_probe_series_are_exported(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path]) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    marker = f"inferwatch-sampler-test-{uuid.uuid4().hex}"
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(60)  # {marker}"])
    config_path = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "storage": {"path": str(tmp_path / "state")},
        "host": {"interval": "200ms"},
        "gpu": {"enabled": False},
        "processes": [{"name": "model-server", "match": marker}],
        "probes": [{"name": "model-health", "url": f"http://127.0.0.1:{port}/health",
                    "interval": "200ms", "timeout": "100ms"}],
    })
    daemon = Daemon(load_config(config_path), config_path=config_path,
                    notifier=SystemdNotifier(environ={}))
    await daemon.start()
    try:
        wanted = ("inferwatch_host_memory_total_bytes ", "inferwatch_self_open_fds ",
                  "inferwatch_host_cpu_utilization_ratio ",  # from the second sample on
                  'inferwatch_process_up{process="model-server"} 1.0',
                  'inferwatch_probe_success{probe="model-health"} 1.0')
        async with asyncio.timeout(WAIT_S):
            text = await metrics_text(daemon)
            while not all(line in text for line in wanted):
                await asyncio.sleep(0.05)
                text = await metrics_text(daemon)
        child.kill()
        child.wait()
        async with asyncio.timeout(WAIT_S):
            while 'inferwatch_process_up{process="model-server"} 0.0' not in (
                    await metrics_text(daemon)):
                await asyncio.sleep(0.05)
    finally:
        child.kill()
        child.wait()
        await daemon.stop()
        await runner.cleanup()


async def test_gpu_enabled_true_without_nvml_is_a_startup_error(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path]) -> None:
    if nvml_loads():
        pytest.skip("this machine has a working NVIDIA driver")
    config_path = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "storage": {"path": str(tmp_path / "state")},
        "gpu": {"enabled": True},
    })
    daemon = Daemon(load_config(config_path), config_path=config_path,
                    notifier=SystemdNotifier(environ={}))
    with pytest.raises(StartupError, match=r"gpu\.enabled is true but NVML is not available"):
        await daemon.start()
