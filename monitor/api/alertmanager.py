"""Alertmanager-shaped API v2 over the daemon's own alerts and silences.

`GET /api/v2/alerts` (the dispatcher's alerts, with `active`, `silenced`, `inhibited` and
`filter` parameters), `GET|POST /api/v2/silences`, `GET|DELETE /api/v2/silence/{id}`. The
JSON is Alertmanager's (gettableAlert, gettableSilence); errors are a JSON string with
status 400 (bad input) or 404 (unknown silence), as Alertmanager answers, so amtool-style
clients and `inferwatch silence` work against it.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from monitor.clock import Clock
from monitor.config_routing import Matcher, parse_matchers
from monitor.notify.model import rfc3339
from monitor.notify.routing import matching_routes
from monitor.notify.service import NotifyService
from monitor.notify.silences import SilenceError, silence_from_json

MAX_BODY_BYTES = 1024 * 1024


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status,
                        content_type="application/json")


def _bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "true").lower()
    if raw not in ("true", "false"):
        raise web.HTTPBadRequest(text=orjson.dumps(f"{name}: must be true or false").decode(),
                                 content_type="application/json")
    return raw == "true"


def _filters(request: web.Request) -> list[Matcher]:
    matchers: list[Matcher] = []
    for text in request.query.getall("filter", []):
        try:
            matchers.extend(parse_matchers(text))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=orjson.dumps(f"bad filter {text!r}: {exc}").decode(),
                                     content_type="application/json") from None
    return matchers


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
        filters = _filters(request)
        now = self.clock.time()
        dispatcher = self.notify.dispatcher
        out = []
        for alert in sorted(dispatcher.alerts.values(), key=lambda a: a.fingerprint):
            if alert.resolved_at(now) or not all(m.matches(alert.labels) for m in filters):
                continue
            silenced_by = self.notify.silences.mutes(alert.labels, now)
            inhibited = dispatcher.inhibitor.mutes(alert.labels, dispatcher.alerts.values(),
                                                   now)
            suppressed = bool(silenced_by) or inhibited
            if (silenced_by and not want_silenced) or (inhibited and not want_inhibited) or \
                    (not suppressed and not want_active):
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
                           "silencedBy": silenced_by,
                           # Inhibiting alerts are not tracked by id here.
                           "inhibitedBy": ["inhibited"] if inhibited else []},
            })
        return _json(out)

    async def silences(self, request: web.Request) -> web.Response:
        filters = _filters(request)
        now = self.clock.time()
        found = []
        for silence in self.notify.silences.silences.values():
            if filters and not all(any(m.name == f.name and m.op == f.op and m.value == f.value
                                       for m in silence.matchers) for f in filters):
                continue
            found.append(silence)
        order = {"active": 0, "pending": 1, "expired": 2}
        found.sort(key=lambda s: (order[s.state(now)],
                                  s.ends_at if s.state(now) != "expired" else -s.ends_at))
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
