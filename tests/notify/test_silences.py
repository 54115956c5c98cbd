"""Silences (monitor/notify/silences.py): hostile and malformed postable silences refused with
a message naming the field; pending/active/expired; update in place versus expire and
recreate, as Alertmanager decides; persisted across a restart; expired ones dropped after
the retention; which silences `GET /api/v2/silences?filter=` lists and in what order, as
Alertmanager's CheckSilenceMatchesFilterLabels and SortSilences (api/v2/api.go) decide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor.config_routing import parse_matcher
from monitor.notify.silences import (
    RETENTION_S,
    Silence,
    SilenceError,
    SilenceStore,
    listing_order,
    silence_from_json,
)
from monitor.storage import StateStore

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
GOOD: dict[str, Any] = {
    "matchers": [{"name": "alertname", "value": "High.*", "isRegex": True}],
    "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T02:00:00Z",
    "createdBy": "ops", "comment": "deploy",
}


@pytest.mark.parametrize(("change", "message"), [
    ({"matchers": []}, "at least one matcher"),
    ({"matchers": "alertname=x"}, "at least one matcher"),
    ({"matchers": [{"name": "a", "value": ".*", "isRegex": True}]}, "must not match the empty"),
    ({"matchers": [{"name": "", "value": "x"}]}, "matchers[0].name"),
    ({"matchers": [{"name": "a", "value": 3}]}, "matchers[0].value"),
    ({"matchers": [{"name": "a", "value": "x", "isRegex": "yes"}]}, "isRegex and isEqual"),
    ({"matchers": [{"name": "a", "value": "(", "isRegex": True}]}, "missing closing )"),
    ({"matchers": [{"name": "a", "value": "(" * 1500 + "a" + ")" * 1500, "isRegex": True}]},
     "nests too deeply"),
    ({"startsAt": "yesterday"}, "startsAt"),
    ({"endsAt": "2026-01-01T02:00:00"}, "no zone"),
    ({"endsAt": "2025-12-31T23:00:00Z", "startsAt": "2025-12-31T22:00:00Z"}, "in the past"),
    ({"endsAt": "2026-01-01T00:00:00Z"}, "endsAt must be after startsAt"),
    ({"createdBy": ""}, "createdBy"),
    ({"comment": None}, "comment"),
    ({"id": 7}, "id: must be a string"),
])
def test_a_bad_silence_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SilenceError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        silence_from_json({**GOOD, **change}, NOW)


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(SilenceError, match="JSON object"):
        silence_from_json(["not", "an", "object"], NOW)


@pytest.fixture
def store(tmp_path: Path) -> SilenceStore:
    return SilenceStore(StateStore(tmp_path))


def add(store: SilenceStore, now: float = NOW, **change: Any) -> str:
    given, silence = silence_from_json({**GOOD, **change}, now)
    return store.upsert(given, silence, now)


def test_states_and_muting(store: SilenceStore) -> None:
    sid = add(store, startsAt="2026-01-01T01:00:00Z")
    silence = store.silences[sid]
    assert silence.state(NOW) == "pending"
    assert store.mutes({"alertname": "HighLatency"}, NOW) == []
    assert store.mutes({"alertname": "HighLatency"}, NOW + 3600) == [sid]
    assert store.mutes({"alertname": "Other"}, NOW + 3600) == []
    assert silence.state(NOW + 7200) == "expired"


def test_changing_the_end_updates_in_place_and_new_matchers_make_a_new_silence(
        store: SilenceStore) -> None:
    sid = add(store)
    same = add(store, NOW + 60, id=sid, endsAt="2026-01-01T05:00:00Z", comment="longer")
    assert same == sid and store.silences[sid].comment == "longer"
    other = add(store, NOW + 120, id=sid,
                matchers=[{"name": "alertname", "value": "Down", "isRegex": False}])
    assert other != sid
    assert store.silences[sid].state(NOW + 120) == "expired"
    assert store.silences[other].state(NOW + 120) == "active"


def test_unknown_and_expired_silences_cannot_be_changed(store: SilenceStore) -> None:
    with pytest.raises(SilenceError, match="not found"):
        add(store, id="nope")
    sid = add(store)
    store.expire(sid, NOW + 10)
    with pytest.raises(SilenceError, match="already expired"):
        store.expire(sid, NOW + 20)
    with pytest.raises(SilenceError, match="expired and cannot be changed"):
        add(store, NOW + 30, id=sid)


def test_silences_survive_a_restart_and_expired_ones_go_after_the_retention(
        tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    store = SilenceStore(state)
    kept, gone = add(store), add(store, comment="short")
    store.expire(gone, NOW + 10)
    state.close()
    state = StateStore(tmp_path)
    again = SilenceStore(state)
    assert again.silences == store.silences
    assert again.collect_garbage(NOW + 10 + RETENTION_S + 1) == 1
    assert set(again.silences) == {kept}
    assert set(SilenceStore(state).silences) == {kept}
    state.close()


# -- filtering and ordering the silence list -----------------------------------------------


def _silence(*matchers: tuple[str, str, bool, bool]) -> Silence:
    """A silence from (name, value, isRegex, isEqual) matchers, as posted to the API."""
    body = {**GOOD, "matchers": [{"name": n, "value": v, "isRegex": r, "isEqual": e}
                                 for n, v, r, e in matchers]}
    return silence_from_json(body, NOW)[1]


REGEX_TEAM = _silence(("alertname", "Down", False, True), ("team", "x", True, True))
EQUAL_TEAM = _silence(("alertname", "Down", False, True), ("team", "x", False, True))
NOT_PROD = _silence(("alertname", "Down", False, True), ("env", "prod", False, False))
NOT_DEV = _silence(("alertname", "Down", False, True), ("env", "dev.*", True, False))


@pytest.mark.parametrize(("filters", "listed"), [
    # A filter lists a silence only when the silence has that very matcher: same name,
    # same operator, same value after unquoting.
    (['team="x"'], {"EQUAL_TEAM"}),
    (["team=x"], {"EQUAL_TEAM"}),
    (['team=~"x"'], {"REGEX_TEAM"}),
    (['team=~"x.*"'], set()),
    (['team="y"'], set()),
    # Negative matchers in the silence are listed by the same negative filter only.
    (['env!="prod"'], {"NOT_PROD"}),
    (['env="prod"'], set()),
    (['env!~"dev.*"'], {"NOT_DEV"}),
    # The filter is not evaluated against labels: `foo!="bar"` does not list a silence that
    # says nothing about foo (Alertmanager before 0.22 did; 0.22 and later do not).
    (['foo!="bar"'], set()),
    (['team!="y"'], set()),
    # Several filters are ANDed; no filter lists everything.
    (['alertname="Down"'], {"REGEX_TEAM", "EQUAL_TEAM", "NOT_PROD", "NOT_DEV"}),
    (['alertname="Down"', 'team="x"'], {"EQUAL_TEAM"}),
    (['alertname="Down"', 'env!="prod"', 'team="x"'], set()),
    ([], {"REGEX_TEAM", "EQUAL_TEAM", "NOT_PROD", "NOT_DEV"}),
])
def test_a_filter_lists_the_silences_that_have_each_filter_matcher(
        filters: list[str], listed: set[str]) -> None:
    silences = {"REGEX_TEAM": REGEX_TEAM, "EQUAL_TEAM": EQUAL_TEAM, "NOT_PROD": NOT_PROD,
                "NOT_DEV": NOT_DEV}
    parsed = [parse_matcher(text) for text in filters]
    assert {name for name, s in silences.items() if s.matches_filter(parsed)} == listed


def test_the_list_is_active_by_end_then_pending_by_start_then_expired_latest_first() -> None:
    hour = 3600.0

    def window(name: str, starts: float, ends: float) -> Silence:
        return Silence(name, EQUAL_TEAM.matchers, NOW + starts * hour, NOW + ends * hour,
                       "ops", "test", NOW)

    silences = [
        window("expired-long-ago", -9, -5), window("active-ends-late", -1, 9),
        window("pending-starts-late", 5, 6), window("expired-recently", -3, -1),
        window("active-ends-soon", -2, 1), window("pending-starts-soon", 2, 20),
    ]
    ordered = sorted(silences, key=lambda s: listing_order(s, NOW))
    assert [s.id for s in ordered] == [
        "active-ends-soon", "active-ends-late",
        "pending-starts-soon", "pending-starts-late",
        "expired-recently", "expired-long-ago",
    ]


def test_silenced_by_lists_every_active_silence_sorted_by_id(store: SilenceStore) -> None:
    ids = [add(store), add(store), add(store)]
    add(store, startsAt="2026-01-01T01:00:00Z")  # pending: does not mute yet
    assert store.mutes({"alertname": "HighLatency"}, NOW) == sorted(ids)
