"""Knowing when to look at log files: inotify on their directories, or a polling timer.

One watch per directory covers every file in it, so 1,000 files under one glob cost one watch
and nothing while idle. Modifications name the file to read; creations, moves and deletions
(and a queue overflow) ask for a rescan. The polling watcher, used where inotify cannot be
started at all, asks for a full rescan on every tick (`poll_interval`). A directory that
cannot be watched (the watch limit reached) is covered by the safety-net rescan
(`rescan_interval`) that runs alongside inotify.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass
class Changes:
    """What happened since the last wait: files written to, and whether to rescan."""

    modified: set[str] = field(default_factory=set)
    rescan: bool = False


class ChangeWatcher(Protocol):
    def watch(self, directories: set[str]) -> None:
        """Watch exactly these directories from now on."""

    async def wait(self, max_wait: float) -> Changes:
        """Changes so far, waiting up to `max_wait` seconds for the first one."""

    def close(self) -> None: ...


class PollingWatcher:
    """No notifications: every wait ends after its timeout and asks for a full rescan."""

    def watch(self, directories: set[str]) -> None:
        del directories  # polling looks at everything anyway

    async def wait(self, max_wait: float) -> Changes:
        await asyncio.sleep(max_wait)
        return Changes(rescan=True)

    def close(self) -> None:
        return None


class InotifyWatcher:
    """Directory watches through inotify, read from the event loop without a thread."""

    def __init__(self) -> None:
        from inotify_simple import INotify, flags  # noqa: PLC0415 - Linux only, optional

        self._inotify = INotify(nonblocking=True)
        self._flags = flags
        self._mask = (
            flags.MODIFY | flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO
            | flags.DELETE_SELF | flags.MOVE_SELF | flags.ATTRIB
        )
        self._rescan_mask = self._mask & ~flags.MODIFY & ~flags.ATTRIB
        self._dirs: dict[str, int] = {}
        self._wd_dirs: dict[int, str] = {}
        self._unwatchable: set[str] = set()
        self._ready = asyncio.Event()
        self._pending = Changes()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._inotify.fileno(), self._on_readable)

    def watch(self, directories: set[str]) -> None:
        for directory in set(self._dirs) - directories:
            wd = self._dirs.pop(directory)
            self._wd_dirs.pop(wd, None)
            with contextlib.suppress(OSError):
                self._inotify.rm_watch(wd)
        for directory in directories - set(self._dirs):
            try:
                wd = self._inotify.add_watch(directory, self._mask)
            except OSError as exc:
                # Usually fs.inotify.max_user_watches; the periodic rescan still finds
                # changes there. Said once per directory, not at every rescan.
                if directory not in self._unwatchable:
                    self._unwatchable.add(directory)
                    log.warning("cannot watch %s (%s); relying on periodic rescans for it",
                                directory, exc)
                continue
            self._unwatchable.discard(directory)
            self._dirs[directory] = wd
            self._wd_dirs[wd] = directory

    def _on_readable(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            events = []
            self._pending.rescan = True
        for event in events:
            if event.mask & self._flags.Q_OVERFLOW:
                self._pending.rescan = True
                continue
            directory = self._wd_dirs.get(event.wd)
            if event.mask & self._flags.IGNORED:
                if directory is not None:
                    self._dirs.pop(directory, None)
                    self._wd_dirs.pop(event.wd, None)
                self._pending.rescan = True
                continue
            if event.mask & self._rescan_mask:
                self._pending.rescan = True
            elif directory is not None and event.name:
                self._pending.modified.add(os.path.join(directory, event.name))  # noqa: PTH118
        self._ready.set()

    async def wait(self, max_wait: float) -> Changes:
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), max_wait)
        changes, self._pending = self._pending, Changes()
        if not self._ready.is_set():
            changes.rescan = True  # the timeout: a safety-net rescan
        self._ready.clear()
        return changes

    def close(self) -> None:
        self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()


def make_watcher(use_inotify: bool) -> ChangeWatcher:
    """inotify when wanted and available, else polling (logged once)."""
    if use_inotify:
        try:
            return InotifyWatcher()
        except (ImportError, OSError) as exc:
            log.warning("inotify unavailable (%s); polling for log changes instead", exc)
    return PollingWatcher()
