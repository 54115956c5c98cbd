"""Grafana dashboards, generated from typed code (`inferwatch export dashboards`).

Five dashboards, one JSON file each, committed in the repository's `dashboards/`:

| file | uid | shows |
| --- | --- | --- |
| `llm-service.json` | inferwatch-llm-service | requests, errors, latency, TTFT, tokens, prompts |
| `cost.json` | inferwatch-cost | spend, budgets, forecast, cache savings, self-hosted cost |
| `gpu-host.json` | inferwatch-gpu-host | host, model-server process, health probe, GPUs |
| `slos.json` | inferwatch-slos | objectives, error budget left, burn rates, exhaustion |
| `inferwatch.json` | inferwatch-self | ingest, rules, notifications, the daemon itself |

Each has a `datasource` variable (any Prometheus data source: a central Prometheus or the
daemon's own API) and an `instance` variable; see `monitor.grafana.model`. Why plain
dataclasses and not the Grafana Foundation SDK: its PyPI versions are
`<build timestamp>!<Grafana version>`, so the newest install is whichever Grafana flavour was
built last, and the committed JSON could change under an unchanged lower bound.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from monitor.errors import RuntimeFailure, UsageError
from monitor.grafana.infra import gpu_host, inferwatch_itself, slos
from monitor.grafana.model import Dashboard
from monitor.grafana.service import cost, llm_service

BUILDERS: Final[Mapping[str, Callable[[], Dashboard]]] = {
    "llm-service.json": llm_service,
    "cost.json": cost,
    "gpu-host.json": gpu_host,
    "slos.json": slos,
    "inferwatch.json": inferwatch_itself,
}
REGENERATE: Final = "inferwatch export dashboards --out dashboards"


def build_dashboards() -> dict[str, Dashboard]:
    """File name -> dashboard, in the table's order."""
    return {name: build() for name, build in BUILDERS.items()}


def rendered() -> dict[str, str]:
    """File name -> the JSON text that file must hold."""
    return {name: dashboard.render() for name, dashboard in build_dashboards().items()}


def write_dashboards(out: Path) -> list[Path]:
    """Write every dashboard into `out` (created if missing); the paths written."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in rendered().items():
            target = out / name
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)
            written.append(target)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write the dashboards to {out}: {exc}") from exc
    return written


def stale_dashboards(directory: Path) -> list[str]:
    """The files of `directory` that differ from what the generator writes (missing ones
    included) and the generated-looking files it holds that the generator no longer writes."""
    expected = rendered()
    stale = []
    for name, text in expected.items():
        try:
            current = (directory / name).read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            stale.append(name)
    stale.extend(sorted(path.name for path in directory.glob("*.json")
                        if path.name not in expected))
    return stale


__all__ = ["BUILDERS", "REGENERATE", "build_dashboards", "rendered", "stale_dashboards",
           "write_dashboards"]
