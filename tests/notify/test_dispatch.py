"""Grouping, timers, dedup, inhibition and silences (monitor/notify/dispatch.py), on a fake
clock with scripted channels; Alertmanager's rules are the reference:

- a new group waits `group_wait`, then flushes every `group_interval`; an alert already older
  than group_wait flushes a new group at once;
- a flush notifies on new firing alerts, on all resolved (only if firing was notified), on
  newly resolved with send_resolved, and after repeat_interval; otherwise not;
- silenced and inhibited alerts are left out; routes with `continue` notify several
  receivers; the notification log survives a restart, so nothing is re-sent early.
"""

from __future__ import annotations

from pathlib import Path

from pipeline_rig import ROUTING, Rig, ScriptedChannel

from monitor.notify.outbox import ChannelId
from monitor.notify.silences import silence_from_json


def test_a_new_group_waits_group_wait_then_notifies_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.dispatcher.put([rig.firing("HighLatency", i="1")])
    rig.advance(29)
    assert rig.channel.rendered == []
    rig.dispatcher.put([rig.firing("HighLatency", i="2")])  # joins the same group
    rig.advance(1)
    (sent,) = rig.channel.rendered
    assert [a.labels["i"] for a in sent.firing] == ["1", "2"]
    assert sent.group_key == '{}:{alertname="HighLatency"}'
    assert sent.group_labels == {"alertname": "HighLatency"}
    rig.advance(300)  # group_interval: nothing new
    assert len(rig.channel.rendered) == 1
    rig.close()


def test_an_alert_older_than_group_wait_is_sent_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.dispatcher.put([rig.firing("Old", started=rig.clock.time() - 60)])
    rig.advance(0)
    assert len(rig.channel.rendered) == 1
    rig.close()


def test_a_new_alert_in_a_flushed_group_waits_for_group_interval(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.dispatcher.put([rig.firing("A", i="1")])
    rig.advance(30)
    rig.dispatcher.put([rig.firing("A", i="2")])
    rig.advance(299)
    assert len(rig.channel.rendered) == 1
    rig.advance(1)
    assert [a.labels["i"] for a in rig.channel.rendered[-1].firing] == ["1", "2"]
    rig.close()


def test_resolved_is_sent_once_and_the_group_goes(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    alert = rig.firing("A")
    rig.dispatcher.put([alert])
    rig.advance(30)
    rig.clock.advance(10)
    rig.dispatcher.put([rig.resolved(alert)])
    rig.advance(290)
    assert [n.status for n in rig.channel.rendered] == ["firing", "resolved"]
    assert rig.dispatcher.groups == {}
    rig.dispatcher.put([rig.resolved(alert)])  # the rule repeats it for 15 min: no news
    rig.advance(600)
    assert len(rig.channel.rendered) == 2
    rig.close()


def test_without_send_resolved_the_resolution_is_logged_not_sent(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.channel.send_resolved = False
    alert = rig.firing("A")
    rig.dispatcher.put([alert])
    rig.advance(30)
    rig.dispatcher.put([rig.resolved(alert)])
    rig.advance(300)
    assert [n.status for n in rig.channel.rendered] == ["firing"]
    rig.close()


def test_a_firing_alert_is_repeated_after_repeat_interval_only(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    alert = rig.firing("A")
    rig.dispatcher.put([alert])
    rig.advance(30)
    for _ in range(47):  # 47 x 5 min = 3 h 55 min
        rig.dispatcher.put([rig.firing("A", started=alert.starts_at)])
        rig.advance(300)
    assert len(rig.channel.rendered) == 1
    rig.dispatcher.put([rig.firing("A", started=alert.starts_at)])
    rig.advance(300)  # 4 h since the first notification
    assert len(rig.channel.rendered) == 2
    rig.close()


def test_a_restart_does_not_notify_again_before_repeat_interval(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    alert = rig.firing("A")
    rig.dispatcher.put([alert])
    rig.advance(30)
    assert len(rig.channel.rendered) == 1
    rig.restart()
    rig.dispatcher.put([rig.firing("A", started=alert.starts_at)])  # restored firing
    rig.advance(30)
    rig.advance(300)
    assert len(rig.channel.rendered) == 1
    rig.close()


def test_silenced_alerts_are_left_out_and_a_fully_silenced_group_sends_nothing(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    now = rig.clock.time()
    given, silence = silence_from_json({
        "matchers": [{"name": "i", "value": "1", "isRegex": False}],
        "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-02T00:00:00Z",
        "createdBy": "me", "comment": "maintenance"}, now)
    rig.silences.upsert(given, silence, now)
    rig.dispatcher.put([rig.firing("A", i="1"), rig.firing("A", i="2"),
                        rig.firing("B", i="1")])
    rig.advance(30)
    assert [(n.group_labels["alertname"], [a.labels["i"] for a in n.alerts])
            for n in rig.channel.rendered] == [("A", ["2"])]
    rig.close()


INHIBITING = ROUTING + """
  inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [instance]
"""


def test_a_critical_alert_inhibits_warnings_on_the_same_instance(tmp_path: Path) -> None:
    rig = Rig(tmp_path, INHIBITING)
    rig.dispatcher.put([
        rig.firing("Down", severity="critical", instance="a"),
        rig.firing("Slow", i="a", severity="warning", instance="a"),
        rig.firing("Slow", i="b", severity="warning", instance="b"),
    ])
    rig.advance(30)
    by_group = {n.group_labels["alertname"]: [a.labels["instance"] for a in n.alerts]
                for n in rig.channel.rendered}
    assert by_group == {"Down": ["a"], "Slow": ["b"]}
    rig.close()


CONTINUING = """
notify:
  route:
    receiver: team
    group_wait: 0s
    routes:
    - {matchers: [severity="page"], receiver: oncall, continue: true}
    - {matchers: [severity=~"page|ticket"], receiver: tickets}
  receivers:
  - {name: team, webhook_configs: [{url: "http://127.0.0.1:9/team"}]}
  - {name: oncall, webhook_configs: [{url: "http://127.0.0.1:9/oncall"}]}
  - {name: tickets, webhook_configs: [{url: "http://127.0.0.1:9/tickets"}]}
"""


def test_continue_sends_to_every_matching_route_and_unmatched_go_to_the_root(
        tmp_path: Path) -> None:
    channels = {name: ScriptedChannel() for name in ("team", "oncall", "tickets")}
    rig = Rig(tmp_path, CONTINUING,
              channels={ChannelId(n, "webhook", 0): c for n, c in channels.items()})
    rig.dispatcher.put([rig.firing("P", severity="page"), rig.firing("T", severity="ticket"),
                        rig.firing("X", severity="info")])
    rig.advance(0)
    got = {name: sorted(a.name for n in c.rendered for a in n.alerts)
           for name, c in channels.items()}
    assert got == {"team": ["X"], "oncall": ["P"], "tickets": ["P", "T"]}
    rig.close()


SIBLINGS_WITHOUT_MATCHERS = """
notify:
  route:
    receiver: team
    group_wait: 0s
    routes:
    - {receiver: oncall, continue: true}
    - {receiver: tickets}
  receivers:
  - {name: team, webhook_configs: [{url: "http://127.0.0.1:9/team"}]}
  - {name: oncall, webhook_configs: [{url: "http://127.0.0.1:9/oncall"}]}
  - {name: tickets, webhook_configs: [{url: "http://127.0.0.1:9/tickets"}]}
"""


def test_sibling_routes_with_the_same_matchers_are_separate_groups(tmp_path: Path) -> None:
    # Both routes' Alertmanager key is "{}/{}"; Alertmanager still keeps one group per route,
    # so each receiver is notified.
    channels = {name: ScriptedChannel() for name in ("team", "oncall", "tickets")}
    rig = Rig(tmp_path, SIBLINGS_WITHOUT_MATCHERS,
              channels={ChannelId(n, "webhook", 0): c for n, c in channels.items()})
    rig.dispatcher.put([rig.firing("P", severity="page")])
    rig.advance(0)
    got = {name: sorted(a.name for n in c.rendered for a in n.alerts)
           for name, c in channels.items()}
    assert got == {"team": [], "oncall": ["P"], "tickets": ["P"]}
    keys = {n.group_key for c in channels.values() for n in c.rendered}
    assert keys == {"{}/{}:{}"}
    rig.close()


async def test_a_notification_is_queued_then_delivered(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.dispatcher.put([rig.firing("A")])
    rig.advance(30)
    assert rig.outbox.queue_length() == 1
    await rig.deliver()
    assert rig.channel.delivered == [{"status": "firing", "firing": ["A/"], "resolved": [],
                                      "parts": 1}]
    assert rig.outbox.queue_length() == 0
    assert rig.counter("inferwatch_notifications") == {
        (("receiver", "team"), ("integration", "webhook")): 1.0}
    rig.close()


FORWARDING = """
notify:
  route: {receiver: am}
  receivers:
  - name: am
    alertmanager_configs: [{urls: ["http://127.0.0.1:9"]}]
"""


def test_forwarded_alerts_are_sent_on_change_every_minute_and_for_15m_after_resolving(
        tmp_path: Path) -> None:
    am = ScriptedChannel("alertmanager")
    rig = Rig(tmp_path, FORWARDING, channels={ChannelId("am", "alertmanager", 0): am})
    alert = rig.firing("A")
    rig.dispatcher.put([alert])
    assert len(am.rendered) == 1  # at once: no group_wait for forwarding
    for _ in range(5):
        rig.clock.advance(10)
        rig.dispatcher.put([rig.firing("A", started=alert.starts_at)])
    assert len(am.rendered) == 1
    rig.clock.advance(10)
    rig.dispatcher.put([rig.firing("A", started=alert.starts_at)])
    assert len(am.rendered) == 2  # a minute since the last send
    rig.clock.advance(1)
    resolved = rig.resolved(alert)
    rig.dispatcher.put([resolved])
    assert [n.status for n in am.rendered] == ["firing", "firing", "resolved"]
    for _ in range(20):
        rig.clock.advance(60)
        rig.dispatcher.put([resolved])
    assert len(am.rendered) == 3 + 15  # re-sent every minute up to 15 minutes after
    assert rig.outbox.queue_length() == len(am.rendered)
    rig.close()
