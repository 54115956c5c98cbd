"""`inferwatch silence add|list|expire`: silences on a running daemon, through its
Alertmanager-shaped API (so it works against a real Alertmanager too)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from monitor.config_routing import matcher_text, parse_matchers
from monitor.errors import InferwatchError
from monitor.notify.model import rfc3339
from monitor.notify.silences import matcher_json

TIMEOUT_S = 30.0


class SilenceClientError(InferwatchError):
    exit_code = 1


def _call(base_url: str, method: str, path: str, token: str | None,
          body: object = None) -> Any:
    if not base_url.startswith(("http://", "https://")):
        raise SilenceClientError(f"--url must be http:// or https://, got {base_url!r}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        base_url.rstrip("/") + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read())
        except ValueError:
            detail = exc.reason
        raise SilenceClientError(f"{method} {path} failed ({exc.code}): {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise SilenceClientError(f"cannot reach {base_url}: {exc}") from None
    return json.loads(raw) if raw else None


def add_silence(base_url: str, matchers: list[str], *, duration_s: float, author: str,
                comment: str, now: float, token: str | None = None) -> str:
    parsed = []
    for text in matchers:
        try:
            parsed.extend(parse_matchers(text))
        except ValueError as exc:
            raise SilenceClientError(f"bad matcher {text!r}: {exc}") from None
    if not parsed:
        raise SilenceClientError("give at least one matcher, e.g. alertname=HighLatency")
    body = {"matchers": [matcher_json(m) for m in parsed], "startsAt": rfc3339(now),
            "endsAt": rfc3339(now + duration_s), "createdBy": author, "comment": comment}
    answer = _call(base_url, "POST", "/api/v2/silences", token, body)
    return str(answer["silenceID"])


def list_silences(base_url: str, *, expired: bool = False,
                  token: str | None = None) -> list[str]:
    lines = []
    for silence in _call(base_url, "GET", "/api/v2/silences", token):
        state = silence["status"]["state"]
        if state == "expired" and not expired:
            continue
        matchers = " ".join(matcher_text(m) for m in silence["matchers"])
        ends = datetime.fromisoformat(silence["endsAt"]).astimezone(UTC)
        lines.append(f"{silence['id']}  {state:8}  until {ends:%Y-%m-%d %H:%M:%SZ}  "
                     f"{matchers}  by {silence['createdBy']}: {silence['comment']}")
    return lines


def expire_silence(base_url: str, silence_id: str, *, token: str | None = None) -> None:
    _call(base_url, "DELETE", f"/api/v2/silence/{silence_id}", token)
