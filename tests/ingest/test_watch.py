"""The change watchers: InotifyWatcher on real directories, with the kernel's refusals
injected at `add_watch` (the per-user watch limit) to check what is logged."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

inotify_simple = pytest.importorskip("inotify_simple")

from monitor.ingest.watch import InotifyWatcher  # noqa: E402 - after the skip on non-Linux


def _warnings(caplog: pytest.LogCaptureFixture, directory: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and str(directory) in r.getMessage()]


async def test_an_unwatchable_directory_is_logged_once_across_rescans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    full, fine = tmp_path / "full", tmp_path / "fine"
    full.mkdir()
    fine.mkdir()
    real_add_watch = inotify_simple.INotify.add_watch

    def add_watch(self: object, path: object, mask: int) -> int:
        if str(path) == str(full):  # fs.inotify.max_user_watches reached
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add_watch(self, path, mask)

    monkeypatch.setattr(inotify_simple.INotify, "add_watch", add_watch)
    caplog.set_level(logging.WARNING, logger="monitor.ingest.watch")
    watcher = InotifyWatcher()
    try:
        for _ in range(5):  # every rescan asks again for the same directories
            watcher.watch({str(full), str(fine)})
        warnings = _warnings(caplog, full)
        assert len(warnings) == 1, warnings
        assert "No space left on device" in warnings[0]
        assert "periodic rescans" in warnings[0]
        assert _warnings(caplog, fine) == []

        # Once it can be watched it is; should the limit bite again, that is news again.
        monkeypatch.setattr(inotify_simple.INotify, "add_watch", real_add_watch)
        watcher.watch({str(full), str(fine)})
        watcher.watch({str(fine)})
        monkeypatch.setattr(inotify_simple.INotify, "add_watch", add_watch)
        watcher.watch({str(full), str(fine)})
        watcher.watch({str(full), str(fine)})
        assert len(_warnings(caplog, full)) == 2
    finally:
        watcher.close()
