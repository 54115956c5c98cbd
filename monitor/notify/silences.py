"""Silences, as Alertmanager keeps them: matchers, a time window, who and why; persisted.

A silence is *pending* before `startsAt`, *active* until `endsAt`, *expired* after; only an
active one mutes. Expiring sets `endsAt` to now (a pending silence expires at once, its
start moved to now as well). Updating a silence that has started changes its end and comment
in place only when its matchers and start are unchanged; otherwise the old one is expired and
a new one created — Alertmanager's rule, so history is never rewritten. Expired silences are
kept five days (Alertmanager's default retention) for `silence list --expired`.

The JSON shapes are Alertmanager's API v2 (`gettableSilence`, `postableSilence`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from monitor.config_routing import Matcher
from monitor.notify.model import rfc3339
from monitor.storage import StateStore
from monitor.units import parse_rfc3339

RETENTION_S = 5 * 24 * 3600.0


class SilenceError(ValueError):
    """A silence that cannot be created or changed; the message says why."""


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        if now < self.ends_at:
            return "active"
        return "expired"

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.state(now) == "active" and all(m.matches(labels) for m in self.matchers)

    def matches_filter(self, filters: Sequence[Matcher]) -> bool:
        """Whether `GET /api/v2/silences?filter=...` lists this silence: every filter
        matcher must equal one of the silence's matchers (name, operator and value), as
        Alertmanager's CheckSilenceMatchesFilterLabels decides. The filters are not
        evaluated against labels, so `foo!="bar"` lists only silences with that very
        matcher, and `team="x"` does not list a silence with `team=~"x"`."""
        own = {(m.name, m.op, m.value) for m in self.matchers}
        return all((f.name, f.op, f.value) in own for f in filters)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": {"state": self.state(now)},
            "updatedAt": rfc3339(self.updated_at),
            "comment": self.comment,
            "createdBy": self.created_by,
            "endsAt": rfc3339(self.ends_at),
            "startsAt": rfc3339(self.starts_at),
            "matchers": [matcher_json(m) for m in self.matchers],
        }


_STATE_ORDER = {"active": 0, "pending": 1, "expired": 2}


def listing_order(silence: Silence, now: float) -> tuple[int, float, str]:
    """Alertmanager's SortSilences: active ones ending soonest first, then pending ones
    starting soonest, then expired ones, most recently ended first."""
    state = silence.state(now)
    when = {"active": silence.ends_at, "pending": silence.starts_at,
            "expired": -silence.ends_at}[state]
    return _STATE_ORDER[state], when, silence.id


def matcher_json(matcher: Matcher) -> dict[str, Any]:
    return {"name": matcher.name, "value": matcher.value,
            "isRegex": matcher.op in ("=~", "!~"), "isEqual": matcher.op in ("=", "=~")}


def matcher_from_json(raw: object, where: str) -> Matcher:
    if not isinstance(raw, dict):
        raise SilenceError(f"{where}: must be an object with name, value, isRegex")
    name, value = raw.get("name"), raw.get("value")
    is_regex, is_equal = raw.get("isRegex", False), raw.get("isEqual", True)
    if not isinstance(name, str) or not name:
        raise SilenceError(f"{where}.name: must be a non-empty string")
    if not isinstance(value, str):
        raise SilenceError(f"{where}.value: must be a string")
    if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
        raise SilenceError(f"{where}: isRegex and isEqual must be true or false")
    op = {(False, True): "=", (False, False): "!=", (True, True): "=~",
          (True, False): "!~"}[(is_regex, is_equal)]
    try:
        return Matcher(name=name, op=op, value=value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise SilenceError(f"{where}: {exc}") from None


def _time(raw: object, where: str) -> float:
    if not isinstance(raw, str):
        raise SilenceError(f"{where}: must be an RFC 3339 time such as 2026-01-01T00:00:00Z")
    try:
        return parse_rfc3339(raw)
    except ValueError as exc:
        raise SilenceError(f"{where}: {exc}") from None


def silence_from_json(body: object, now: float) -> tuple[str | None, Silence]:
    """A posted silence: (the id it names, if any; the silence, id not yet assigned)."""
    if not isinstance(body, dict):
        raise SilenceError("the body must be a JSON object (a postableSilence)")
    raw_matchers = body.get("matchers")
    if not isinstance(raw_matchers, list) or not raw_matchers:
        raise SilenceError("matchers: at least one matcher is required")
    matchers = tuple(matcher_from_json(m, f"matchers[{i}]") for i, m in enumerate(raw_matchers))
    if all(m.matches({}) for m in matchers):
        raise SilenceError("matchers: at least one matcher must not match the empty string "
                           "(a silence would otherwise mute every alert)")
    starts_at = _time(body.get("startsAt"), "startsAt")
    ends_at = _time(body.get("endsAt"), "endsAt")
    if ends_at <= starts_at:
        raise SilenceError("endsAt must be after startsAt")
    if ends_at <= now:
        raise SilenceError("endsAt is in the past")
    created_by, comment = body.get("createdBy"), body.get("comment")
    if not isinstance(created_by, str) or not created_by.strip():
        raise SilenceError("createdBy: required")
    if not isinstance(comment, str) or not comment.strip():
        raise SilenceError("comment: required")
    given = body.get("id")
    if given is not None and not isinstance(given, str):
        raise SilenceError("id: must be a string")
    return (given or None), Silence("", matchers, max(starts_at, now) if starts_at < now
                                    else starts_at, ends_at, created_by, comment, now)


class SilenceStore:
    """All silences, in memory and in the state file (written through on every change)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state
        self.silences: dict[str, Silence] = {}
        for row in state.connection.execute(
                "SELECT id, matchers, starts_at, ends_at, created_by, comment, updated_at "
                "FROM silences"):
            sid, matchers, starts, ends, by, comment, updated = row
            parsed = tuple(matcher_from_json(m, "stored matcher")
                           for m in orjson.loads(matchers))
            self.silences[sid] = Silence(sid, parsed, starts, ends, by, comment, updated)

    def mutes(self, labels: Mapping[str, str], now: float) -> list[str]:
        """The ids of the active silences that mute `labels`, sorted (Alertmanager's
        silencedBy)."""
        return sorted(s.id for s in self.silences.values() if s.mutes(labels, now))

    def upsert(self, given_id: str | None, silence: Silence, now: float) -> str:
        """Create, or update the silence `given_id`; the id of the resulting silence."""
        if given_id is not None:
            old = self.silences.get(given_id)
            if old is None:
                raise SilenceError(f"silence {given_id} not found")
            if old.state(now) == "expired":
                raise SilenceError(f"silence {given_id} has expired and cannot be changed")
            in_place = old.matchers == silence.matchers and (
                old.state(now) == "pending" or old.starts_at == silence.starts_at
                or silence.starts_at <= now)
            if in_place:
                starts = silence.starts_at if old.state(now) == "pending" else old.starts_at
                updated = replace(silence, id=old.id, starts_at=starts, updated_at=now)
                self._write(updated)
                return updated.id
            self.expire(given_id, now)
        created = replace(silence, id=str(uuid.uuid4()), updated_at=now)
        self._write(created)
        return created.id

    def expire(self, silence_id: str, now: float) -> None:
        old = self.silences.get(silence_id)
        if old is None:
            raise SilenceError(f"silence {silence_id} not found")
        if old.state(now) == "expired":
            raise SilenceError(f"silence {silence_id} already expired")
        starts = now if old.state(now) == "pending" else old.starts_at
        self._write(replace(old, starts_at=starts, ends_at=now, updated_at=now))

    def collect_garbage(self, now: float) -> int:
        gone = [s.id for s in self.silences.values() if s.ends_at + RETENTION_S < now]
        if gone:
            with self.state.transaction() as cursor:
                cursor.executemany("DELETE FROM silences WHERE id = ?", [(i,) for i in gone])
            for sid in gone:
                del self.silences[sid]
        return len(gone)

    def _write(self, silence: Silence) -> None:
        matchers = orjson.dumps([matcher_json(m) for m in silence.matchers]).decode()
        with self.state.transaction() as cursor:
            cursor.execute(
                "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "matchers = excluded.matchers, starts_at = excluded.starts_at, "
                "ends_at = excluded.ends_at, created_by = excluded.created_by, "
                "comment = excluded.comment, updated_at = excluded.updated_at",
                (silence.id, matchers, silence.starts_at, silence.ends_at,
                 silence.created_by, silence.comment, silence.updated_at))
        self.silences[silence.id] = silence
