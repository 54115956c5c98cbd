"""Prompt evaluation: rules see newly committed log lines at once, not at the next tick.

Left to the regular cadence, an error line waits for the next internal scrape (up to one
scrape_interval) and then for the next evaluation tick (up to one evaluation_interval) before
any rule can see it. Here, every commit of new lines pokes this task, which makes a scrape of
the series that changed and evaluates the rule groups right away, at the current time.

Bounds, so a busy log never turns this into a busy loop: at most one prompt pass every
`min_gap_s`; a group is evaluated promptly only when its last evaluation is at least that old
and at least `cost_factor` times its last duration ago; the prompt scrape appends samples only
for the series whose value moved. The regular scrape and tick evaluations go on unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from monitor.alerting.manager import RuleManager
from monitor.clock import Clock
from monitor.tsdb.scrape import InternalScraper

log = logging.getLogger(__name__)

MIN_GAP_S = 0.2
COST_FACTOR = 10.0


class PromptEvaluation:
    """A scrape of what changed plus the rule groups, soon after each `poke()`."""

    def __init__(self, *, scraper: InternalScraper, rules: RuleManager, clock: Clock,
                 min_gap_s: float = MIN_GAP_S, cost_factor: float = COST_FACTOR) -> None:
        self.scraper = scraper
        self.rules = rules
        self.clock = clock
        self.min_gap_s = min_gap_s
        self.cost_factor = cost_factor
        self.passes = 0
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """New data was committed to the metric store."""
        self._poked.set()

    def run_pass(self) -> int:
        """Scrape what changed and evaluate the groups that are due; groups evaluated."""
        self.scraper.scrape(changed_only=True)
        self.passes += 1
        return self.rules.evaluate_promptly(int(self.clock.time() * 1000),
                                            round(self.min_gap_s * 1000), self.cost_factor)

    async def run(self, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        last_pass = float("-inf")
        try:
            while True:
                poked = asyncio.ensure_future(self._poked.wait())
                await asyncio.wait([poked, stopping], return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    poked.cancel()
                    return
                wait = last_pass + self.min_gap_s - self.clock.monotonic()
                if wait > 0:
                    await asyncio.wait([stopping], timeout=wait)
                    if stop.is_set():
                        return
                self._poked.clear()  # what arrives from here on is seen by this pass or the next
                try:
                    self.run_pass()
                except Exception:  # a defect here must never stop ingestion or the tick loops
                    log.exception("prompt rule evaluation failed")
                last_pass = self.clock.monotonic()
        finally:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
