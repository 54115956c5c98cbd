"""`inferwatch query`: an instant query against a running daemon, printed one sample a line.

Uses the daemon's Prometheus-compatible API (`/api/v1/query`), so it works against any
Prometheus too. Output: `metric{labels} => value @[unix seconds]`, as `promtool query` prints.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from monitor.errors import InferwatchError

TIMEOUT_S = 30.0


class QueryClientError(InferwatchError):
    """The query could not be run (exit 1), or was refused by the server."""

    exit_code = 1


def _labels(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{inner}}}"


def format_result(data: dict[str, Any]) -> list[str]:
    kind, result = data.get("resultType"), data.get("result")
    if kind == "vector" and isinstance(result, list):
        return [f"{_labels(s['metric'])} => {s['value'][1]} @[{s['value'][0]}]" for s in result]
    if kind in ("scalar", "string") and isinstance(result, list):
        return [f"{kind} => {result[1]} @[{result[0]}]"]
    if kind == "matrix" and isinstance(result, list):
        lines = []
        for series in result:
            values = "\n".join(f"  {v} @[{t}]" for t, v in series["values"])
            lines.append(f"{_labels(series['metric'])} =>\n{values}")
        return lines
    raise QueryClientError(f"unexpected response shape: resultType {kind!r}")


def instant_query(base_url: str, expr: str, *, at: str | None = None,
                  token: str | None = None) -> list[str]:
    params = {"query": expr}
    if at is not None:
        params["time"] = at
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode(params)}"
    if not url.startswith(("http://", "https://")):
        raise QueryClientError(f"--url must be http:// or https://, got {base_url!r}")
    request = urllib.request.Request(url)  # noqa: S310 - the scheme is checked above
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            detail = exc.reason
        raise QueryClientError(f"query failed ({exc.code}): {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise QueryClientError(f"cannot reach {base_url}: {exc}") from None
    except ValueError as exc:
        raise QueryClientError(f"the response is not JSON: {exc}") from None
    if body.get("status") != "success":
        raise QueryClientError(f"query failed: {body.get('error', body)}")
    return format_result(body["data"])
