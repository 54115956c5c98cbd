"""Open a page in Debian's headless Chromium and record what a person would have seen.

The browser is driven over the DevTools protocol (a websocket from aiohttp, already a
dependency), so a test gets more than a screenshot: every console error, every uncaught
exception, every failed resource load Chromium logs, and every JavaScript dialog (`alert()`
run by injected markup shows up here). The browser starts with `--headless --no-sandbox`, a
throw-away profile and background networking off, and is killed however the visit ends.

- `require_chromium()`: the binary, or a skip (a failure under INFERWATCH_REQUIRE_INTEGRATION=1).
- `visit(url, screenshot, ...)` / `visit_async(...)`: load, settle, screenshot; a `PageVisit`.
- `artifact_path(name)`: where screenshots are kept after the run (`$INFERWATCH_ARTIFACTS_DIR`,
  default `test-artifacts/` at the repository root).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from conftest import integration_missing

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
REPO_ROOT = Path(__file__).resolve().parent.parent
# Quiet time after the load event before the screenshot: late console errors of scripts that
# run on load land in it.
SETTLE_S = 0.3
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


@dataclass
class PageVisit:
    """What one page load showed."""

    url: str
    screenshot: Path
    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def require_chromium() -> str:
    found = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if found is None:
        integration_missing("headless Chromium is not installed (Debian package `chromium`)")
    return found


def artifact_path(name: str) -> Path:
    root = Path(os.environ.get("INFERWATCH_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts"))
    root.mkdir(parents=True, exist_ok=True)
    return root / name


def visit(
    url: str, screenshot: Path, *, width: int = 1280, height: int = 900, timeout_s: float = 30
) -> PageVisit:
    """`visit_async` for synchronous tests."""
    return asyncio.run(
        visit_async(url, screenshot, width=width, height=height, timeout_s=timeout_s)
    )


async def visit_async(
    url: str, screenshot: Path, *, width: int = 1280, height: int = 900, timeout_s: float = 30
) -> PageVisit:
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="inferwatch-chromium-",
                                     ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its renderers and helpers are killed with it
        )
        try:
            return await asyncio.wait_for(
                _drive(Path(profile), url, screenshot, width, height, process), timeout_s
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


async def _drive(
    profile: Path, url: str, screenshot: Path, width: int, height: int,
    process: subprocess.Popen[bytes],
) -> PageVisit:
    port = await _debugging_port(profile, process)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets: list[dict[str, Any]] = await response.json()
        page = next(target for target in targets if target.get("type") == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            session = _DevToolsSession(socket)
            reader = asyncio.create_task(session.read_forever())
            try:
                return await _load_and_capture(session, url, screenshot, width, height)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


async def _debugging_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    marker = profile / "DevToolsActivePort"
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode} before it listened")
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            return int(marker.read_text(encoding="utf-8").splitlines()[0])
        await asyncio.sleep(0.05)


async def _load_and_capture(
    session: _DevToolsSession, url: str, screenshot: Path, width: int, height: int
) -> PageVisit:
    visit = PageVisit(url=url, screenshot=screenshot)
    session.visit = visit
    for domain in ("Page", "Runtime", "Log"):
        await session.call(f"{domain}.enable")
    await session.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                       deviceScaleFactor=1, mobile=width < 600)
    loaded = session.expect("Page.loadEventFired")
    navigation = await session.call("Page.navigate", url=url)
    if navigation.get("errorText"):
        raise RuntimeError(f"navigation to {url} failed: {navigation['errorText']}")
    await loaded
    await asyncio.sleep(SETTLE_S)
    title = await session.call("Runtime.evaluate", expression="document.title",
                               returnByValue=True)
    visit.title = str(title.get("result", {}).get("value", ""))
    shot = await session.call("Page.captureScreenshot", format="png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    return visit


class _DevToolsSession:
    """Commands with replies matched by id; events recorded into the current visit."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.visit: PageVisit | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._dismissals: set[asyncio.Task[dict[str, Any]]] = set()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[command_id] = reply
        await self.socket.send_json({"id": command_id, "method": method, "params": params})
        return await reply

    def expect(self, event: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[event] = future
        return future

    async def read_forever(self) -> None:
        async for message in self.socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            payload: dict[str, Any] = message.json()
            if "id" in payload:
                reply = self._replies.pop(payload["id"], None)
                if reply is not None and not reply.done():
                    if "error" in payload:
                        reply.set_exception(RuntimeError(str(payload["error"])))
                    else:
                        reply.set_result(payload.get("result", {}))
                continue
            await self._on_event(payload.get("method", ""), payload.get("params", {}))

    async def _on_event(self, method: str, params: dict[str, Any]) -> None:
        waiting = self._waiting.pop(method, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)
        visit = self.visit
        if visit is None:
            return
        if method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
            texts = [str(arg.get("value", arg.get("description", "")))
                     for arg in params.get("args", [])]
            visit.console_errors.append("console." + params["type"] + ": " + " ".join(texts))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description") or details.get("text")
            visit.console_errors.append(f"uncaught: {description}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            visit.console_errors.append(f"{entry.get('source')}: {entry.get('text')} "
                                        f"({entry.get('url', '')})")
        elif method == "Page.javascriptDialogOpening":
            visit.dialogs.append(str(params.get("message", "")))
            # Not awaited here: the reply only comes once the dialog is gone, and this runs
            # inside the reader that would deliver it.
            dismissal = asyncio.get_running_loop().create_task(
                self.call("Page.handleJavaScriptDialog", accept=True))
            self._dismissals.add(dismissal)
            dismissal.add_done_callback(self._dismissals.discard)

