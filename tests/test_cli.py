"""The `inferwatch` command line as a user runs it: real processes, exit codes, stderr.

SPEC §3: 0 ok, 1 check failure or a daemon that cannot run, 2 usage or config error; errors go
to stderr as one clear line, never a traceback. `run` stops cleanly on SIGTERM, keeps serving
on a SIGHUP with a bad config, and refuses what §11 forbids (an open non-loopback listener).
Every process has a timeout; daemons are killed in teardown.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitor import __version__
from monitor.demo.workload import generate_lines

Run = Callable[..., subprocess.CompletedProcess[str]]


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    assert lines[0].startswith("inferwatch: ")
    return lines[0]


def config_text(state: Path, port: int, logs: Path, *, listen_host: str = "127.0.0.1",
                extra_sources: str = "") -> str:
    return textwrap.dedent(f"""\
        server:
          listen: {listen_host}:{port}
        storage:
          path: {state}
        ingest: {{checkpoint_interval: 100ms, rescan_interval: 100ms, poll_interval: 50ms,
                  rotate_wait: 2s}}
        host: {{enabled: false}}
        gpu: {{enabled: false}}
        sources:
          - name: inference
            paths: ["{logs}/inference/*.log"]
            schema: inference
        """) + extra_sources


API_SOURCE = """\
  - name: api
    paths: ["{logs}/api/*.jsonl"]
    schema: api_usage
"""


@pytest.fixture
def setup(tmp_path: Path, free_port: Callable[[], int]) -> dict[str, Any]:
    logs = tmp_path / "logs"
    (logs / "inference").mkdir(parents=True)
    (logs / "api").mkdir(parents=True)
    port = free_port()
    config = tmp_path / "inferwatch.yml"
    config.write_text(config_text(tmp_path / "state", port, logs))
    return {"config": config, "port": port, "logs": logs, "state": tmp_path / "state"}


# --- generic -------------------------------------------------------------------------------


def test_version_via_module(run_cli: Run) -> None:
    result = run_cli("--version", timeout=30)
    assert result.returncode == 0
    assert result.stdout.strip() == f"inferwatch {__version__}"


def test_version_via_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "inferwatch"
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable}")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            timeout=30, check=False, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"inferwatch {__version__}"


@pytest.mark.parametrize("args", [(), ("frobnicate",), ("run", "--bogus"), ("check",)])
def test_usage_errors_exit_2(run_cli: Run, args: tuple[str, ...]) -> None:
    result = run_cli(*args, timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "usage:" in result.stderr


# --- check config --------------------------------------------------------------------------


def test_check_config_ok(run_cli: Run, setup: dict[str, Any]) -> None:
    result = run_cli("check", "config", str(setup["config"]), timeout=30)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "1 source(s)" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("needle", "replacement", "line", "key", "words"), [
    ("  listen:", "  lisen:", 2, "server.lisen", "unknown key"),
    ("schema: inference", "schema: inferenz", 12, "sources[0].schema", "must be one of"),
    ("rescan_interval: 100ms", "rescan_interval: soon", 5, "ingest.rescan_interval",
     "invalid duration"),
], ids=["unknown-key", "bad-enum", "bad-duration"])
def test_check_config_invalid_is_one_line_naming_file_line_and_key(
        run_cli: Run, setup: dict[str, Any], needle: str, replacement: str, line: int,
        key: str, words: str) -> None:
    config: Path = setup["config"]
    text = config.read_text()
    assert needle in text
    config.write_text(text.replace(needle, replacement))
    result = run_cli("check", "config", str(config), timeout=30)
    assert result.returncode == 1  # SPEC §3: check config exits 1 on error
    error = one_error_line(result.stderr)
    assert f"{config}:{line}: {key}: " in error
    assert words in error
    assert result.stdout == ""


def test_check_config_missing_file(run_cli: Run, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    result = run_cli("check", "config", str(missing), timeout=30)
    assert result.returncode == 1
    assert str(missing) in one_error_line(result.stderr)


# --- run: refusals -------------------------------------------------------------------------


def test_run_refuses_open_non_loopback_listener(run_cli: Run, setup: dict[str, Any]) -> None:
    config: Path = setup["config"]
    config.write_text(config_text(setup["state"], setup["port"], setup["logs"],
                                  listen_host="0.0.0.0"))
    result = run_cli("run", "--config", str(config), timeout=30)
    assert result.returncode == 2
    error = one_error_line(result.stderr)
    assert f"{config}:2: server.listen: " in error
    assert "not a loopback address" in error
    assert "bearer_token_file" in error
    assert "allow_unauthenticated" in error
    assert not setup["state"].exists()  # refused before touching anything


def test_run_with_corrupt_state_file_exits_1_with_one_line(run_cli: Run,
                                                           setup: dict[str, Any]) -> None:
    state: Path = setup["state"]
    state.mkdir()
    (state / "inferwatch.db").write_bytes(b"\0" * 4096)
    result = run_cli("run", "--config", str(setup["config"]), timeout=30)
    assert result.returncode == 1
    error = one_error_line(result.stderr)
    assert str(state / "inferwatch.db") in error
    assert "move" in error
    assert (state / "inferwatch.db").read_bytes() == b"\0" * 4096


def test_run_with_an_unusable_state_directory_exits_1(run_cli: Run,
                                                      setup: dict[str, Any]) -> None:
    config: Path = setup["config"]
    blocker = config.parent / "not-a-directory"
    blocker.write_text("a file where the state directory should go\n")
    config.write_text(config_text(blocker / "state", setup["port"], setup["logs"]))
    result = run_cli("run", "--config", str(config), timeout=30)
    assert result.returncode == 1
    assert str(blocker / "state") in one_error_line(result.stderr)


def test_run_on_an_address_in_use_exits_1(run_cli: Run, setup: dict[str, Any]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", setup["port"]))
        squatter.listen()
        result = run_cli("run", "--config", str(setup["config"]), timeout=30)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]  # log lines (state file created) may precede it
    assert last.startswith(f"inferwatch: cannot listen on 127.0.0.1:{setup['port']}")


# --- run: signals --------------------------------------------------------------------------


def test_run_stops_on_sigterm_with_status_0_and_commits(
        spawn_daemon: Callable[..., Any], setup: dict[str, Any], truth: Any,
        compare_samples: Callable[[Any, Any], str]) -> None:
    lines = list(generate_lines(150, "inference", seed=3))
    (setup["logs"] / "inference" / "app.log").write_bytes(b"".join(x.data for x in lines))
    truth.add_all("inference", lines)
    daemon = spawn_daemon(setup["config"], setup["port"])
    daemon.wait_ready()
    assert compare_samples(daemon.samples(), truth.samples()) == ""
    assert daemon.terminate() == 0
    log = daemon.log_text()
    assert "inferwatch stopped" in log
    assert "Traceback" not in log
    # What it read is committed: the next start restores it and reads nothing twice.
    again = spawn_daemon(setup["config"], setup["port"], log_name="again.log")
    again.wait_ready()
    assert compare_samples(again.samples(), truth.samples()) == ""
    assert again.terminate() == 0


def test_run_reads_the_config_named_by_inferwatch_config(run_cli: Run, tmp_path: Path) -> None:
    missing = tmp_path / "elsewhere.yml"
    result = run_cli("run", timeout=30, env={"INFERWATCH_CONFIG": str(missing)})
    assert result.returncode == 2
    assert str(missing) in one_error_line(result.stderr)


def test_sighup_with_invalid_config_keeps_serving_then_valid_one_applies(
        spawn_daemon: Callable[..., Any], setup: dict[str, Any]) -> None:
    config: Path = setup["config"]
    logs: Path = setup["logs"]
    daemon = spawn_daemon(config, setup["port"])
    daemon.wait_ready()
    good = config.read_text()

    config.write_text(good.replace("schema: inference", "schema: inferenz"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("reload failed")
    assert daemon.alive()
    assert daemon.get("/-/healthy").status == 200
    assert daemon.get("/-/ready").status == 200
    assert daemon.get("/metrics").status == 200

    api_lines = list(generate_lines(25, "api_usage", seed=7))
    (logs / "api" / "usage.jsonl").write_bytes(b"".join(line.data for line in api_lines))
    config.write_text(good + API_SOURCE.format(logs=logs))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("configuration reloaded")
    daemon.wait_ready()
    key = ("inferwatch_log_lines_total", frozenset({("source", "api"), ("result", "parsed")}))
    deadline = time.monotonic() + 10
    while (parsed := daemon.samples().get(key)) != len(api_lines):
        assert time.monotonic() < deadline, f"api lines parsed: {parsed}, written: 25"
        time.sleep(0.02)
    assert daemon.terminate() == 0


# --- demo ----------------------------------------------------------------------------------


def test_demo_runs_and_counts_exactly(run_cli: Run, tmp_path: Path,
                                      free_port: Callable[[], int]) -> None:
    """Twice: a second demo in the same directory continues from the first one's state."""
    for _ in range(2):
        port = free_port()
        result = run_cli("demo", "--duration", "3s", "--dir", str(tmp_path / "demo"),
                         "--listen", f"127.0.0.1:{port}", timeout=45)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        verdicts = {line.split()[0]: line.split()[-1] for line in lines
                    if line.strip().endswith(("exact", "MISMATCH"))}
        assert verdicts == {"inference": "exact", "api": "exact"}, result.stdout
        assert f"http://127.0.0.1:{port}/metrics" in result.stdout
        assert "Traceback" not in result.stderr
