"""A real Prometheus server for integration tests: start, query, wait, clean up.

Usage (the whole API):

    from real_prometheus import prometheus_binary, running_prometheus, scrape_config

    binary = prometheus_binary()          # skips the test, or fails it when
                                          # INFERWATCH_REQUIRE_INTEGRATION=1
    config = scrape_config({"inferwatch": ["127.0.0.1:9400"]}, rule_files=["rules/*.yml"])
    with running_prometheus(binary, tmp_path / "prom", config,
                            files={"rules/a.yml": text}) as prom:
        prom.wait_for_targets_up(2, timeout=20)
        series = prom.wait_for_series('inferwatch_requests_total', timeout=20)
        vector = prom.query('sum(rate(inferwatch_requests_total[5s]))')
        matrix = prom.query_range('up', start=t0, end=t1, step=1.0)
        prom.reload(other_config)          # rewrite prometheus.yml, POST /-/reload

`running_prometheus` writes the config (a YAML string or a mapping) and any extra `files`
(rule files, relative to the working directory) into its own directory, starts Prometheus on a
free loopback port with its own TSDB directory there, waits for `/-/ready` with a deadline, and
kills the process in teardown whatever happened. Every wait is a poll with a deadline; a
timeout raises `PrometheusTimeout` carrying the tail of Prometheus's log. Query helpers return
the `data.result` list of the HTTP API and raise `PrometheusError` on an API error.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from conftest import pick_free_port, require_program

PROMETHEUS = Path("/usr/bin/prometheus")
READY_TIMEOUT_S = 30.0
POLL_S = 0.1
HTTP_TIMEOUT_S = 10.0

Result = list[dict[str, Any]]


class PrometheusError(RuntimeError):
    """The HTTP API answered with status "error" (or not with JSON)."""


class PrometheusTimeout(AssertionError):
    """A wait ran past its deadline; the message ends with Prometheus's log tail."""


def prometheus_binary(path: Path = PROMETHEUS) -> Path:
    """`path` if it exists; otherwise skip the test (fail with INFERWATCH_REQUIRE_INTEGRATION=1)."""
    return require_program(path, "prometheus")


def scrape_config(jobs: Mapping[str, Sequence[str]], *, interval: str = "1s",
                  rule_files: Sequence[str] = (), evaluation_interval: str = "1s",
                  bearer_token: str | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A minimal prometheus.yml: one static job per entry of `jobs` (job name -> host:port)."""
    scrape_configs = []
    for job, targets in jobs.items():
        job_config: dict[str, Any] = {"job_name": job,
                                      "static_configs": [{"targets": list(targets)}]}
        if bearer_token is not None:
            job_config["authorization"] = {"type": "Bearer", "credentials": bearer_token}
        scrape_configs.append(job_config)
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": evaluation_interval},
        "scrape_configs": scrape_configs,
    }
    if rule_files:
        config["rule_files"] = list(rule_files)
    config.update(extra or {})
    return config


def _write_config(path: Path, config: str | Mapping[str, Any]) -> None:
    text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
    path.write_text(text, encoding="utf-8")


class RealPrometheus:
    """A started Prometheus: its base URL and typed helpers over its HTTP API."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, workdir: Path,
                 log_path: Path) -> None:
        self.process = process
        self.url = url
        self.workdir = workdir
        self.log_path = log_path

    # --- HTTP -------------------------------------------------------------------------------

    def get_json(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """GET `path` (with query `params`) and return the decoded JSON `data` field."""
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(list(params))
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise PrometheusError(f"{path}: not JSON: {body[:200]!r}") from exc
        if document.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params)}: {document.get('errorType')}: "
                                  f"{document.get('error')}")
        return document.get("data")

    def query(self, expr: str, at: float | None = None) -> Result:
        """An instant query's result list (vector or scalar/string shaped as the API returns)."""
        params = [("query", expr)]
        if at is not None:
            params.append(("time", f"{at:.3f}"))
        data = self.get_json("/api/v1/query", params)
        result = data["result"]
        return list(result) if isinstance(result, list) else [{"value": result}]

    def query_range(self, expr: str, start: float, end: float, step: float) -> Result:
        """A range query's matrix: [{"metric": {...}, "values": [[t, "v"], ...]}, ...]."""
        data = self.get_json("/api/v1/query_range", [
            ("query", expr), ("start", f"{start:.3f}"), ("end", f"{end:.3f}"),
            ("step", f"{step:g}")])
        return list(data["result"])

    def series(self, match: str, start: float | None = None) -> Result:
        params = [("match[]", match)]
        if start is not None:
            params.append(("start", f"{start:.3f}"))
        return list(self.get_json("/api/v1/series", params))

    def targets(self) -> Result:
        return list(self.get_json("/api/v1/targets")["activeTargets"])

    def reload(self, config: str | Mapping[str, Any]) -> None:
        """Rewrite prometheus.yml and ask Prometheus to reload it (POST /-/reload)."""
        _write_config(self.workdir / "prometheus.yml", config)
        request = urllib.request.Request(self.url + "/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            if response.status != 200:
                raise PrometheusError(f"/-/reload answered {response.status}")

    # --- waits ------------------------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, what: str, probe: Callable[[], Any], timeout: float) -> Any:
        """Poll `probe` until it returns something truthy; return that. Deadline: `timeout` s."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            if self.process.poll() is not None:
                raise PrometheusTimeout(f"prometheus exited ({self.process.returncode}) while "
                                        f"waiting for {what}\n{self.log_tail()}")
            try:
                value = probe()
            except (OSError, PrometheusError) as exc:
                last_error, value = exc, None
            if value:
                return value
            if time.monotonic() >= deadline:
                raise PrometheusTimeout(f"no {what} within {timeout:g}s (last error: "
                                        f"{last_error})\n{self.log_tail()}")
            time.sleep(POLL_S)

    def wait_for_series(self, expr: str, timeout: float = 20.0) -> Result:
        """The instant-query result of `expr` once it is non-empty."""
        result: Result = self.wait_until(f"series for {expr!r}", lambda: self.query(expr),
                                         timeout)
        return result

    def wait_for_targets_up(self, count: int, timeout: float = 20.0) -> Result:
        """The active targets once `count` of them have health "up" (scraped successfully)."""
        def probe() -> Result:
            targets = self.targets()
            return targets if sum(t.get("health") == "up" for t in targets) >= count else []
        result: Result = self.wait_until(f"{count} targets up", probe, timeout)
        return result


@contextmanager
def running_prometheus(binary: Path, workdir: Path, config: str | Mapping[str, Any], *,
                       files: Mapping[str, str] | None = None,
                       ready_timeout: float = READY_TIMEOUT_S,
                       extra_args: Sequence[str] = ()) -> Iterator[RealPrometheus]:
    """Prometheus on a free loopback port with config and TSDB under `workdir`; killed on exit.

    `files` are written relative to `workdir` before start (rule files, for example); relative
    paths in the config resolve against `workdir`, which is Prometheus's working directory.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        target = workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    config_path = workdir / "prometheus.yml"
    _write_config(config_path, config)
    port = pick_free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), f"--config.file={config_path}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}",
             "--web.enable-lifecycle", "--log.level=warn", *extra_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
    prom = RealPrometheus(process, f"http://127.0.0.1:{port}", workdir, log_path)
    try:
        def ready() -> bool:
            with urllib.request.urlopen(prom.url + "/-/ready", timeout=2.0) as response:
                return bool(response.status == 200)
        prom.wait_until("/-/ready", ready, ready_timeout)
        yield prom
    finally:
        process.kill()
        process.wait(timeout=10)
