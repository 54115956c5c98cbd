"""Prompt evaluation (monitor/alerting/prompt.py): new data evaluated at once, within bounds.

A real metric store, internal scrape, series store, engine and rule manager on a FakeClock.
The regular tick loops are not running here: every evaluation seen comes from the prompt path.
"""

from __future__ import annotations

import asyncio

from monitor.alerting.manager import RuleManager, build_group
from monitor.alerting.prompt import PromptEvaluation
from monitor.alerting.rulefmt import parse_rule_file
from monitor.alerting.rules import AlertState, TemplateContext
from monitor.clock import FakeClock
from monitor.metrics.store import FamilySpec, Kind, MetricStore
from monitor.promql.engine import Engine
from monitor.tsdb.scrape import InternalScraper
from monitor.tsdb.store import SeriesStore

ERRORS = FamilySpec(name="errors", help="h", kind=Kind.COUNTER, labels=("model",))
T0_S = 1_767_225_600.0
T0 = int(T0_S * 1000)
WAIT_S = 5.0
RULES = """\
groups:
- name: errors
  interval: 1h
  rules:
  - alert: ErrorsSeen
    expr: increase(inferwatch_errors_total[1m]) > 0
"""


class Rig:
    def __init__(self, *, min_gap_s: float = 0.2, cost_factor: float = 10.0) -> None:
        self.clock = FakeClock(T0_S)
        self.metrics = MetricStore()
        self.errors = self.metrics.register(ERRORS)
        self.series = SeriesStore(retention_ms=3600 * 1000)
        self.scraper = InternalScraper(self.metrics, self.series, self.clock, 1.0)
        self.manager = RuleManager(engine=Engine(self.series), series=self.series,
                                   metrics=self.metrics, clock=self.clock)
        self.manager.replace([build_group(spec, 3600_000, TemplateContext({}, ""))
                              for spec in parse_rule_file(RULES, file="/r.yml")])
        self.prompt = PromptEvaluation(scraper=self.scraper, rules=self.manager,
                                       clock=self.clock, min_gap_s=min_gap_s,
                                       cost_factor=cost_factor)
        self.evaluated: list[int] = []
        self.manager.listeners.append(lambda group, t: self.evaluated.append(t))

    def error(self, model: str = "m1") -> None:
        self.errors.inc(self.errors.key((model,)))

    def firing(self) -> set[str]:
        (rule,) = self.manager.groups[0].alerting_rules()
        return {dict(labels)["model"] for labels, alert in rule.active.items()
                if alert.state is AlertState.FIRING}


def test_a_pass_scrapes_and_evaluates_so_a_new_error_fires_at_once() -> None:
    rig = Rig()
    rig.scraper.scrape()
    rig.clock.advance(0.4)
    rig.error()
    assert rig.prompt.run_pass() == 1
    assert rig.evaluated == [T0 + 400]
    assert rig.firing() == {"m1"}


def test_a_group_evaluated_less_than_the_minimum_gap_ago_waits() -> None:
    rig = Rig(min_gap_s=0.2)
    rig.prompt.run_pass()
    rig.clock.advance(0.1)
    rig.error()
    assert rig.prompt.run_pass() == 0
    assert rig.firing() == set()
    rig.clock.advance(0.15)
    assert rig.prompt.run_pass() == 1
    assert rig.firing() == {"m1"}


def test_an_expensive_group_is_evaluated_promptly_no_more_than_its_cost_allows() -> None:
    rig = Rig(min_gap_s=0.2, cost_factor=10.0)
    rig.prompt.run_pass()
    rig.manager.groups[0].last_duration_s = 0.5  # as if the last evaluation took 500 ms
    rig.clock.advance(4.9)
    assert rig.prompt.run_pass() == 0  # 10 x 500 ms = 5 s between prompt evaluations
    rig.clock.advance(0.1)
    assert rig.prompt.run_pass() == 1


def test_a_tick_at_or_before_a_prompt_evaluation_is_skipped() -> None:
    rig = Rig()
    rig.clock.advance(0.5)
    rig.prompt.run_pass()
    group = rig.manager.groups[0]
    rig.manager._evaluate_guarded(group, T0)  # the tick whose task woke up late
    rig.manager._evaluate_guarded(group, T0 + 500)
    assert rig.evaluated == [T0 + 500]
    rig.manager._evaluate_guarded(group, T0 + 1000)
    assert rig.evaluated == [T0 + 500, T0 + 1000]


async def test_pokes_are_coalesced_into_passes_at_least_the_gap_apart() -> None:
    rig = Rig(min_gap_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(rig.prompt.run(stop))

    async def until_passes(n: int) -> None:
        while rig.prompt.passes < n:
            await asyncio.sleep(0.005)

    rig.error()
    rig.prompt.poke()
    await asyncio.wait_for(until_passes(1), WAIT_S)
    assert rig.firing() == {"m1"}
    for _ in range(5):  # five pokes inside one gap make one more pass, not five
        rig.prompt.poke()
    await asyncio.wait_for(until_passes(2), WAIT_S)
    await asyncio.sleep(0.1)
    assert rig.prompt.passes == 2
    stop.set()
    await asyncio.wait_for(task, WAIT_S)


async def test_a_failing_pass_is_logged_and_the_task_goes_on() -> None:
    rig = Rig(min_gap_s=0.0)
    calls = 0
    original = rig.scraper.scrape

    def flaky_scrape(*, changed_only: bool = False) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return original(changed_only=changed_only)

    rig.scraper.scrape = flaky_scrape  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(rig.prompt.run(stop))
    rig.prompt.poke()
    while calls < 1:
        await asyncio.sleep(0.005)
    rig.error()
    rig.clock.advance(0.1)
    rig.prompt.poke()
    while rig.prompt.passes < 1:
        await asyncio.sleep(0.005)
    assert rig.firing() == {"m1"}
    stop.set()
    await asyncio.wait_for(task, WAIT_S)
