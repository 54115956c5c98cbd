"""Alertmanager-shaped API v2 over the daemon's own alerts and silences.

`GET /api/v2/alerts` (the dispatcher's alerts, with `active`, `silenced`, `inhibited`,
`unprocessed` and `filter` parameters), `GET|POST /api/v2/silences`, `GET|DELETE
/api/v2/silence/{id}`. The JSON is Alertmanager's (gettableAlert, gettableSilence); errors
are a JSON string with status 400 (bad input) or 404 (unknown silence), as Alertmanager
answers, so amtool-style clients and `inferwatch silence` work against it.

Each `filter` is one matcher without braces, as Alertmanager 0.27+ reads it (`a="b"` or
`a=b`; `{a="b"}` is refused). An alert's status is worked out at query time, as
Alertmanager's API does: `silencedBy` the sorted ids of the active silences muting it,
`inhibitedBy` the fingerprint of the alert inhibiting it, `state` "suppressed" when either
is non-empty and "active" otherwise ("unprocessed" cannot occur at query time, so the
`unprocessed` parameter is checked and, as in Alertmanager, changes nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from monitor.clock import Clock
from monitor.config_routing import Matcher, parse_matcher
from monitor.notify.model import rfc3339
from monitor.notify.routing import matching_routes
from monitor.notify.service import NotifyService
from monitor.notify.silences import SilenceError, listing_order, silence_from_json

MAX_BODY_BYTES = 1024 * 1024

# go-openapi's ConvertBool reads these as true and anything else as false; an unknown word
# is refused here rather than silently read as false.
_TRUE_WORDS = frozenset({"true", "1", "yes", "ok", "y", "on", "selected", "checked", "t",
                         "enabled"})
_FALSE_WORDS = frozenset({"false", "0", "no", "n", "off", "f", "disabled"})


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status,
                        content_type="application/json")


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=orjson.dumps(message).decode(),
                              content_type="application/json")


def _bool(request: web.Request, name: str) -> bool:
    given = request.query.getall(name, [])
    raw = given[-1].lower() if given else ""  # the last one counts, as in Alertmanager
    if raw == "":
        return True
    if raw not in _TRUE_WORDS | _FALSE_WORDS:
        raise _bad_request(f"{name}: must be true or false")
    return raw in _TRUE_WORDS


def _filters(request: web.Request) -> list[Matcher]:
    matchers: list[Matcher] = []
    for text in request.query.getall("filter", []):
        if text.startswith("{") or text.endswith("}"):
            raise _bad_request(f"bad filter {text!r}: unexpected open or close brace: {text}")
        try:
            matchers.append(parse_matcher(text))
        except ValueError as exc:
            raise _bad_request(f"bad filter {text!r}: {exc}") from None
    return matchers


def _filter_matches(filters: list[Matcher], labels: Mapping[str, str]) -> bool:
    """Alertmanager's matchFilterLabels: as Matcher.matches, except that `x!=""` and
    `x!~""` match a label that is present with an empty value."""
    for matcher in filters:
        present = matcher.name in labels
        if matcher.value == "" and present == (matcher.op in ("!=", "!~")):
            continue
        if not matcher.matches(labels):
            return False
    return True


class AlertmanagerApi:
    def __init__(self, notify: NotifyService, clock: Clock) -> None:
        self.notify = notify
        self.clock = clock

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v2/alerts", self.alerts)
        router.add_get("/api/v2/silences", self.silences)
        router.add_post("/api/v2/silences", self.post_silence)
        router.add_get("/api/v2/silence/{id}", self.get_silence)
        router.add_delete("/api/v2/silence/{id}", self.delete_silence)

    async def alerts(self, request: web.Request) -> web.Response:
        want_active, want_silenced = _bool(request, "active"), _bool(request, "silenced")
        want_inhibited = _bool(request, "inhibited")
        _bool(request, "unprocessed")  # checked only: see the module docstring
        filters = _filters(request)
        now = self.clock.time()
        dispatcher = self.notify.dispatcher
        out = []
        for alert in sorted(dispatcher.alerts.values(), key=lambda a: a.fingerprint):
            if alert.resolved_at(now) or not _filter_matches(filters, alert.labels):
                continue
            silenced_by = self.notify.silences.mutes(alert.labels, now)
            inhibited_by = dispatcher.inhibitor.inhibited_by(
                alert.labels, dispatcher.alerts.values(), now)
            suppressed = bool(silenced_by or inhibited_by)
            if (silenced_by and not want_silenced) or (inhibited_by and not want_inhibited) \
                    or (not suppressed and not want_active):
                continue
            receivers = [] if dispatcher.tree is None else sorted(
                {r.receiver for r in matching_routes(dispatcher.tree, alert.labels)})
            out.append({
                "labels": dict(alert.labels), "annotations": dict(alert.annotations),
                "startsAt": rfc3339(alert.starts_at), "endsAt": rfc3339(alert.ends_at),
                "updatedAt": rfc3339(now), "generatorURL": alert.generator_url,
                "fingerprint": alert.fingerprint,
                "receivers": [{"name": name} for name in receivers],
                "status": {"state": "suppressed" if suppressed else "active",
                           "silencedBy": silenced_by, "inhibitedBy": inhibited_by},
            })
        return _json(out)

    async def silences(self, request: web.Request) -> web.Response:
        filters = _filters(request)
        now = self.clock.time()
        found = sorted((s for s in self.notify.silences.silences.values()
                        if s.matches_filter(filters)),
                       key=lambda s: listing_order(s, now))
        return _json([s.to_json(now) for s in found])

    async def post_silence(self, request: web.Request) -> web.Response:
        raw = bytearray()
        while chunk := await request.content.read(64 * 1024):
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                return _json(f"request body too large (at most {MAX_BODY_BYTES} bytes)", 400)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _json(f"invalid JSON: {exc}", 400)
        now = self.clock.time()
        try:
            given, silence = silence_from_json(body, now)
            silence_id = self.notify.silences.upsert(given, silence, now)
        except SilenceError as exc:
            status = 404 if "not found" in str(exc) else 400
            return _json(str(exc), status)
        return _json({"silenceID": silence_id})

    async def get_silence(self, request: web.Request) -> web.Response:
        silence = self.notify.silences.silences.get(request.match_info["id"])
        if silence is None:
            return _json("silence not found", 404)
        return _json(silence.to_json(self.clock.time()))

    async def delete_silence(self, request: web.Request) -> web.Response:
        try:
            self.notify.silences.expire(request.match_info["id"], self.clock.time())
        except SilenceError as exc:
            return _json(str(exc), 404 if "not found" in str(exc) else 400)
        return web.Response(status=200)


def add_alertmanager_api(app: web.Application, *, notify: NotifyService,
                         clock: Clock) -> AlertmanagerApi:
    api = AlertmanagerApi(notify, clock)
    api.register(app.router)
    return api
