"""Inhibition (Alertmanager's inhibit/inhibit.go): an alert matching a rule's target matchers
is muted while a firing alert matching its source matchers has the same values of the
`equal` labels (a label missing on both sides counts as equal). An alert that matches both
sides is not muted by source alerts that match the target side too — so a rule inhibiting
warnings by criticals of the same name cannot mute an alert by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from monitor.config_routing import InhibitRule
from monitor.notify.model import NotifyAlert


class Inhibitor:
    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self.rules = [(tuple(r.all_source_matchers), tuple(r.all_target_matchers), r.equal)
                      for r in rules]

    def mutes(self, labels: Mapping[str, str], alerts: Iterable[NotifyAlert],
              now: float) -> bool:
        if not self.rules:
            return False
        firing = [a for a in alerts if not a.resolved_at(now)]
        for sources, targets, equal in self.rules:
            if not all(m.matches(labels) for m in targets):
                continue
            two_sided = all(m.matches(labels) for m in sources)
            for alert in firing:
                if not all(m.matches(alert.labels) for m in sources):
                    continue
                if any(alert.labels.get(n, "") != labels.get(n, "") for n in equal):
                    continue
                if two_sided and all(m.matches(alert.labels) for m in targets):
                    continue
                return True
        return False
