"""The browser harness itself: it must see what a page does wrong, or its "no errors" means
nothing."""

from __future__ import annotations

from pathlib import Path

from headless_chromium import artifact_path, require_chromium, visit


def _page(tmp_path: Path, body: str) -> str:
    page = tmp_path / "page.html"
    page.write_text(f"<!doctype html><html><head><title>harness</title></head>"
                    f"<body>{body}</body></html>", encoding="utf-8")
    return page.as_uri()


def test_a_clean_page_has_no_errors_and_a_screenshot(tmp_path: Path) -> None:
    require_chromium()
    shot = artifact_path("harness-clean.png")
    seen = visit(_page(tmp_path, "<h1>fine</h1>"), shot, width=400, height=300)
    assert seen.console_errors == []
    assert seen.dialogs == []
    assert seen.title == "harness"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_exceptions_and_dialogs_are_recorded(tmp_path: Path) -> None:
    require_chromium()
    body = ("<script>console.error('boom one');</script>"
            "<script>alert('injected');</script>"
            "<script>throw new Error('boom two');</script>")
    seen = visit(_page(tmp_path, body), tmp_path / "bad.png", width=400, height=300)
    joined = "\n".join(seen.console_errors)
    assert "boom one" in joined
    assert "boom two" in joined
    assert seen.dialogs == ["injected"]
