"""`inferwatch query` against a running daemon: output lines, errors, an unreachable URL."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.query_client import QueryClientError, format_result


def test_query_prints_samples_and_scalars(tmp_path: Path, free_port: Callable[[], int],
                                          write_config: Callable[..., Path],
                                          spawn_daemon: Callable[..., Any],
                                          run_cli: Callable[..., subprocess.CompletedProcess[str]],
                                          ) -> None:
    port = free_port()
    config = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(tmp_path / "state")},
        "scrape_interval": "100ms",
    })
    daemon = spawn_daemon(config, port)
    daemon.wait_ready()
    url = f"http://127.0.0.1:{port}"

    result = run_cli("query", "vector(42) + 0", "--url", url, timeout=30)
    assert result.returncode == 0, result.stderr
    line, = result.stdout.splitlines()
    assert line.startswith("{} => 42 @[")

    result = run_cli("query", "1 + 1", "--url", url, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("scalar => 2 @[")

    result = run_cli("query", "sum(", "--url", url, timeout=30)
    assert result.returncode == 1
    error, = result.stderr.strip().splitlines()
    assert error.startswith("inferwatch: query failed (400): ")
    assert "Traceback" not in result.stderr


def test_an_unreachable_daemon_is_one_clear_line(
        free_port: Callable[[], int],
        run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = run_cli("query", "up", "--url", f"http://127.0.0.1:{free_port()}", timeout=30)
    assert result.returncode == 1
    error, = result.stderr.strip().splitlines()
    assert "cannot reach" in error


def test_a_matrix_result_prints_every_point() -> None:
    lines = format_result({"resultType": "matrix", "result": [
        {"metric": {"__name__": "x", "a": "b"}, "values": [[1, "1"], [2, "2"]]}]})
    assert lines == ['x{a="b"} =>\n  1 @[1]\n  2 @[2]']


def test_an_unknown_result_type_is_an_error() -> None:
    try:
        format_result({"resultType": "streams", "result": []})
    except QueryClientError as exc:
        assert "unexpected response shape" in str(exc)
    else:
        raise AssertionError("no error")
