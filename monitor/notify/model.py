"""What the notification pipeline passes around: alerts as Alertmanager sees them, and one
notification (a group's alerts for one receiver) as every channel renders it.

Times are Unix seconds (floats). An alert is resolved when `ends_at` is set and not in the
future. Fingerprints are Alertmanager's (FNV-1a 64 over the sorted label pairs), so the same
alert has the same id here, in Alertmanager and in its webhook payloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_SEPARATOR = 0xFF
_MASK = 0xFFFFFFFFFFFFFFFF

Status = Literal["firing", "resolved"]


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's model.LabelSet.Fingerprint, as 16 lower-case hex digits."""
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name.encode(), labels[name].encode()):
            for byte in part:
                digest = ((digest ^ byte) * _FNV_PRIME) & _MASK
            digest = ((digest ^ _SEPARATOR) * _FNV_PRIME) & _MASK
    return f"{digest:016x}"


@dataclass(frozen=True)
class NotifyAlert:
    """One alert on its way to a receiver."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    ends_at: float | None = None  # None while firing with no known end
    generator_url: str = ""
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.labels))

    def resolved_at(self, now: float) -> bool:
        return self.ends_at is not None and self.ends_at <= now

    def status_at(self, now: float) -> Status:
        return "resolved" if self.resolved_at(now) else "firing"

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Notification:
    """A group's alerts for one receiver, as of `now`: what every channel renders.

    `alerts` holds at most what the integration takes (`max_alerts`); `truncated` counts the
    ones left out. Firing alerts come first, then resolved, each oldest first.
    """

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    alerts: tuple[NotifyAlert, ...]
    now: float
    external_url: str = ""
    truncated: int = 0

    @property
    def status(self) -> Status:
        return "firing" if self.firing else "resolved"

    @property
    def firing(self) -> tuple[NotifyAlert, ...]:
        return tuple(a for a in self.alerts if not a.resolved_at(self.now))

    @property
    def resolved(self) -> tuple[NotifyAlert, ...]:
        return tuple(a for a in self.alerts if a.resolved_at(self.now))

    @property
    def common_labels(self) -> dict[str, str]:
        return _common(a.labels for a in self.alerts)

    @property
    def common_annotations(self) -> dict[str, str]:
        return _common(a.annotations for a in self.alerts)

    def limited(self, max_alerts: int) -> Notification:
        """This notification with at most `max_alerts` alerts (0: all), the rest counted."""
        if max_alerts <= 0 or len(self.alerts) <= max_alerts:
            return self
        return Notification(self.receiver, self.group_key, self.group_labels,
                            self.alerts[:max_alerts], self.now, self.external_url,
                            self.truncated + len(self.alerts) - max_alerts)


def _common(maps: object) -> dict[str, str]:
    common: dict[str, str] | None = None
    for labels in maps:  # type: ignore[attr-defined]
        if common is None:
            common = dict(labels)
        else:
            common = {k: v for k, v in common.items() if labels.get(k) == v}
    return common or {}


def rfc3339(seconds: float | None) -> str:
    """Go's time.Time JSON form in UTC; Go's zero time for None (as Alertmanager writes an
    unset endsAt)."""
    if seconds is None:
        return "0001-01-01T00:00:00Z"
    moment = datetime.fromtimestamp(seconds, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"
