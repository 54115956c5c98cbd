"""Which alert inhibits which (monitor/notify/inhibit.py), as Alertmanager's
`Inhibitor.Mutes` records it (inhibit/inhibit.go): the first rule that inhibits decides and
names one source alert's fingerprint; a source alert that also matches the target side
does not inhibit a two-sided alert; resolved sources inhibit nothing."""

from __future__ import annotations

from monitor.config import parse_config
from monitor.notify.inhibit import Inhibitor
from monitor.notify.model import NotifyAlert, fingerprint

NOW = 1_767_225_600.0
RULES = """
notify:
  route: {receiver: team}
  receivers: [{name: team}]
  inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [instance]
  - source_matchers: [alertname="NodeDown"]
    target_matchers: [severity=~"warning|info"]
"""


def _inhibitor(text: str = RULES) -> Inhibitor:
    return Inhibitor(parse_config(text).notify.inhibit_rules)


def _alert(ends_in: float | None = 3600.0, **labels: str) -> NotifyAlert:
    return NotifyAlert(labels, {}, NOW - 60, None if ends_in is None else NOW + ends_in)


def test_fingerprint_is_alertmanagers_fnv1a() -> None:
    # By hand from prometheus/common model.labelSetToFingerprint: FNV-1a 64 from the offset
    # basis over name, 0xff, value, 0xff for each label in name order; printed %016x.
    digest = 0xCBF29CE484222325
    for byte in (ord("a"), 0xFF, ord("b"), 0xFF):
        digest = ((digest ^ byte) * 0x100000001B3) % 2**64
    assert f"{digest:016x}" == "d2b371819297f98a" == fingerprint({"a": "b"})
    # The expected values of prometheus/common's TestMetricToFingerprint.
    assert fingerprint({}) == f"{14695981039346656037:016x}"
    assert fingerprint({"name": "garland, briggs", "fear": "love is not enough"}) == \
        f"{5799056148416392346:016x}"


def test_inhibited_by_names_the_source_alert() -> None:
    source = _alert(alertname="Down", severity="critical", instance="a")
    target = _alert(alertname="Slow", severity="warning", instance="a")
    elsewhere = _alert(alertname="Slow", severity="warning", instance="b")
    alerts = [source, target, elsewhere]
    inhibitor = _inhibitor()
    assert inhibitor.inhibited_by(target.labels, alerts, NOW) == [
        fingerprint({"alertname": "Down", "severity": "critical", "instance": "a"})]
    assert inhibitor.mutes(target.labels, alerts, NOW)
    assert inhibitor.inhibited_by(elsewhere.labels, alerts, NOW) == []
    assert inhibitor.inhibited_by(source.labels, alerts, NOW) == []


def test_one_source_is_named_the_one_that_resolves_last() -> None:
    early = _alert(600, alertname="Down", severity="critical", instance="a", zone="1")
    late = _alert(7200, alertname="Down", severity="critical", instance="a", zone="2")
    target = _alert(alertname="Slow", severity="warning", instance="a")
    inhibitor = _inhibitor()
    for order in ([early, late, target], [target, late, early]):
        assert inhibitor.inhibited_by(target.labels, order, NOW) == [late.fingerprint]
    no_end = _alert(None, alertname="Down", severity="critical", instance="a", zone="3")
    assert inhibitor.inhibited_by(target.labels, [early, late, no_end], NOW) == [
        no_end.fingerprint]


def test_the_first_rule_that_inhibits_decides() -> None:
    node_down = _alert(alertname="NodeDown", severity="page")
    critical = _alert(alertname="Down", severity="critical", instance="a")
    target = _alert(alertname="Slow", severity="warning", instance="a")
    inhibitor = _inhibitor()
    assert inhibitor.inhibited_by(target.labels, [node_down, critical], NOW) == [
        critical.fingerprint]
    # With no critical alert on its instance, the second rule names NodeDown.
    assert inhibitor.inhibited_by(target.labels, [node_down], NOW) == [node_down.fingerprint]
    info = _alert(alertname="Disk", severity="info", instance="a")
    assert inhibitor.inhibited_by(info.labels, [node_down, critical], NOW) == [
        node_down.fingerprint]


def test_resolved_sources_and_two_sided_sources_do_not_inhibit() -> None:
    resolved = _alert(-1, alertname="Down", severity="critical", instance="a")
    target = _alert(alertname="Slow", severity="warning", instance="a")
    inhibitor = _inhibitor()
    assert inhibitor.inhibited_by(target.labels, [resolved, target], NOW) == []
    same_name = _inhibitor("""
notify:
  route: {receiver: team}
  receivers: [{name: team}]
  inhibit_rules:
  - source_matchers: [alertname="Flap"]
    target_matchers: [alertname="Flap"]
""")
    one = _alert(alertname="Flap", i="1")
    two = _alert(alertname="Flap", i="2")
    assert same_name.inhibited_by(one.labels, [one, two], NOW) == []
