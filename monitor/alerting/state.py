"""Alert state in the state file, so a restart neither forgets a pending `for` nor re-fires.

After each group evaluation the active alerts of every alerting rule whose set changed are
written (one transaction per group), with the group's evaluation time (also at least every
10 s, and at shutdown). At start-up they are put back: firing alerts stay firing; a pending
alert whose `for` is at least the grace period (10 m) has its clock adjusted for the time the
daemon was down as Prometheus's RestoreForState does (outage tolerance 1 h); one with a
shorter `for` carries on where it stopped, the time down not counted (Prometheus would
start it over). State of groups no longer loaded is kept for a week, then dropped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

import orjson

from monitor.alerting.rules import Alert, AlertingRule, AlertState
from monitor.promql.values import Labels
from monitor.storage import StateStore

log = logging.getLogger(__name__)

OUTAGE_TOLERANCE_MS = 60 * 60 * 1000
STATE_KEPT_MS = 7 * 24 * 60 * 60 * 1000  # state of a group not evaluated for this long goes
FOR_GRACE_PERIOD_MS = 10 * 60 * 1000

Snapshot = tuple[tuple[Labels, int, int, int | None, int | None, int | None], ...]


def rule_key(group_key: str, identity: str) -> str:
    """The state file's key for an alerting rule: stable while the rule keeps its group,
    name, static labels and position among rules equal in those (see RuleGroup.identities)."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"{group_key}|{digest}"


def snapshot(rule: AlertingRule) -> Snapshot:
    return tuple(sorted(
        (a.labels, int(a.state), a.active_at, a.fired_at, a.resolved_at, a.keep_firing_since)
        for a in rule.active.values()))


def _pairs(text: str) -> Labels:
    return tuple((str(k), str(v)) for k, v in orjson.loads(text))


class AlertStateStore:
    """Reads and writes alert state through the daemon's StateStore."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def save(self, group_key: str, t: int,
             rules: Iterable[tuple[str, AlertingRule]]) -> None:
        with self.state.transaction() as cursor:
            for key, rule in rules:
                cursor.execute("DELETE FROM alert_state WHERE rule_key = ?", (key,))
                cursor.executemany(
                    "INSERT INTO alert_state (rule_key, labels, annotations, state, active_at, "
                    "fired_at, resolved_at, keep_firing_since, value) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(key, orjson.dumps(a.labels).decode(),
                      orjson.dumps(a.annotations).decode(), int(a.state), a.active_at,
                      a.fired_at, a.resolved_at, a.keep_firing_since, a.value)
                     for a in rule.active.values()])
            cursor.execute(
                "INSERT INTO rule_groups (group_key, last_eval) VALUES (?, ?) "
                "ON CONFLICT (group_key) DO UPDATE SET last_eval = excluded.last_eval",
                (group_key, t))

    def forget_except(self, keys: set[str]) -> None:
        """Drop the saved alerts of rules that no longer exist (a reload removed them)."""
        stored = {key for (key,) in self.state.connection.execute(
            "SELECT DISTINCT rule_key FROM alert_state")}
        gone = stored - keys
        if gone:
            with self.state.transaction() as cursor:
                cursor.executemany("DELETE FROM alert_state WHERE rule_key = ?",
                                   [(key,) for key in gone])

    def forget_older_than(self, cutoff: int) -> None:
        """Drop the state of groups not evaluated since `cutoff` (ms). At start-up a group
        missing from the rule files keeps its state until then: a rule file that is briefly
        absent or broken must not make every alert in it fire again."""
        old = [key for (key,) in self.state.connection.execute(
            "SELECT group_key FROM rule_groups WHERE last_eval < ?", (cutoff,))]
        if not old:
            return
        with self.state.transaction() as cursor:
            for group_key in old:
                cursor.execute("DELETE FROM alert_state WHERE substr(rule_key, 1, ?) = ?",
                               (len(group_key) + 1, f"{group_key}|"))
                cursor.execute("DELETE FROM rule_groups WHERE group_key = ?", (group_key,))

    def last_eval(self, group_key: str) -> int | None:
        row = self.state.connection.execute(
            "SELECT last_eval FROM rule_groups WHERE group_key = ?", (group_key,)).fetchone()
        return None if row is None else int(row[0])

    def restore(self, key: str, rule: AlertingRule, *, down_at: int | None, now: int) -> int:
        """Put a rule's saved alerts back; the number restored."""
        rows = self.state.connection.execute(
            "SELECT labels, annotations, state, active_at, fired_at, resolved_at, "
            "keep_firing_since, value FROM alert_state WHERE rule_key = ?", (key,)).fetchall()
        restored = 0
        for labels, notes, state, active_at, fired_at, resolved_at, since, value in rows:
            alert = Alert(_pairs(labels), _pairs(notes), AlertState(state), active_at,
                          value, fired_at, resolved_at, since)
            if alert.state is AlertState.PENDING and not _adjust_pending(
                    alert, rule.for_ms, down_at, now):
                continue
            rule.active[alert.labels] = alert
            restored += 1
        return restored


def _adjust_pending(alert: Alert, for_ms: int, down_at: int | None, now: int) -> bool:
    """Prometheus's RestoreForState for one pending alert; False to drop it."""
    if down_at is None or now - down_at > OUTAGE_TOLERANCE_MS:
        return False  # down too long: the `for` starts again when the alert comes back
    if for_ms < FOR_GRACE_PERIOD_MS:
        # Prometheus would start a short `for` over (it restores only `for` >= the grace
        # period); SPEC §7 wants pending state to survive a restart, so it carries on where
        # it stopped: the time down does not count towards the `for`.
        alert.active_at += now - down_at
        return True
    remaining = for_ms - (down_at - alert.active_at)
    if remaining <= 0:
        return True
    if remaining < FOR_GRACE_PERIOD_MS:
        alert.active_at = now + FOR_GRACE_PERIOD_MS - for_ms
    else:
        alert.active_at += now - down_at
    return True
