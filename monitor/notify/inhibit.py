"""Inhibition (Alertmanager's inhibit/inhibit.go): an alert matching a rule's target matchers
is muted while a firing alert matching its source matchers has the same values of the
`equal` labels (a label missing on both sides counts as equal). An alert that matches both
sides is not muted by source alerts that match the target side too — so a rule inhibiting
warnings by criticals of the same name cannot mute an alert by itself.

`inhibited_by` names the inhibiting alert as Alertmanager's `Inhibitor.Mutes` does: the
first rule (in configuration order) that inhibits decides, and it names one source alert —
the one that resolves last, as Alertmanager's source index keeps, the lowest fingerprint
among equals — so `/api/v2/alerts` shows `inhibitedBy` with exactly one fingerprint.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from monitor.config_routing import InhibitRule
from monitor.notify.model import NotifyAlert


def _resolves_last_first(alert: NotifyAlert) -> tuple[float, str]:
    ends_at = math.inf if alert.ends_at is None else alert.ends_at
    return -ends_at, alert.fingerprint


class Inhibitor:
    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self.rules = [(tuple(r.all_source_matchers), tuple(r.all_target_matchers), r.equal)
                      for r in rules]

    def mutes(self, labels: Mapping[str, str], alerts: Iterable[NotifyAlert],
              now: float) -> bool:
        return bool(self.inhibited_by(labels, alerts, now))

    def inhibited_by(self, labels: Mapping[str, str], alerts: Iterable[NotifyAlert],
                     now: float) -> list[str]:
        """The fingerprint of the source alert inhibiting `labels`, or none (Alertmanager's
        inhibitedBy)."""
        if not self.rules:
            return []
        firing = [a for a in alerts if not a.resolved_at(now)]
        for sources, targets, equal in self.rules:
            if not all(m.matches(labels) for m in targets):
                continue
            two_sided = all(m.matches(labels) for m in sources)
            inhibiting = [
                alert for alert in firing
                if all(m.matches(alert.labels) for m in sources)
                and all(alert.labels.get(n, "") == labels.get(n, "") for n in equal)
                and not (two_sided and all(m.matches(alert.labels) for m in targets))]
            if inhibiting:
                return [min(inhibiting, key=_resolves_last_first).fingerprint]
        return []
