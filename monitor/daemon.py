"""The daemon's lifecycle: start, readiness, SIGHUP reload, SIGTERM drain, sd_notify, watchdog.

`Daemon` is an async context manager with an explicit run state. Entering it opens the state
file, restores counters, binds the HTTP server and starts ingestion; leaving it stops
ingestion (which commits its last checkpoint), the scheduler and the server, and closes the
state file. `run()` adds signal handling and waits for a stop or a crash, and logs which of the
two it was.

systemd sees READY=1 once the server listens (readiness for traffic is `/-/ready`, after the
first catch-up), RELOADING=1 … READY=1 around a reload, STOPPING=1 on the way out, and
WATCHDOG=1 only while the ingestion loop is making progress, so a wedged loop gets restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import sqlite3
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from types import TracebackType

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor import __version__
from monitor.alerting.groups import RuleGroup
from monitor.alerting.manager import RuleManager, load_groups
from monitor.alerting.prompt import PromptEvaluation
from monitor.alerting.rules import TemplateContext, template_query
from monitor.alerting.state import AlertStateStore
from monitor.api.alertmanager import add_alertmanager_api
from monitor.api.app import TokenHolder, create_app
from monitor.api.prom import add_prometheus_api
from monitor.api.status import add_status_page
from monitor.clock import Clock, SystemClock
from monitor.config import Config, load_config
from monitor.cost import journal
from monitor.cost.budgets import BudgetTracker
from monitor.cost.feed import LedgerFeed, WorkerLedgerFeed
from monitor.cost.ledger import PRICED_SCHEMAS
from monitor.cost.pricing import PriceTable
from monitor.cost.self_hosted import SelfHostedCost
from monitor.errors import ConfigError, StartupError
from monitor.ingest.checkpoint import restore_counters
from monitor.ingest.service import IngestService
from monitor.ingest.watch import ChangeWatcher, make_watcher
from monitor.metrics import families as fam
from monitor.metrics.exposition import Exposition
from monitor.metrics.store import MetricStore
from monitor.notify.model import NotifyAlert
from monitor.notify.service import NotifyService
from monitor.promql.ast import reach_ms
from monitor.promql.engine import Engine
from monitor.samplers.base import Sampler
from monitor.samplers.gpu import GpuSampler
from monitor.samplers.runner import SamplerRunner
from monitor.samplers.setup import build_samplers
from monitor.sdnotify import SystemdNotifier
from monitor.slo.model import Slo
from monitor.slo.service import TICK_EVERY_S as SLO_EVERY_S
from monitor.slo.service import SloService
from monitor.slo.spec import load_slo_files
from monitor.status_snapshot import DaemonStatus
from monitor.storage import StateStore
from monitor.tsdb.scrape import InternalScraper
from monitor.tsdb.store import SeriesStore

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
SELF_HOSTED_EVERY_S = 15.0
BUDGETS_EVERY_MAX_S = 10.0
TRIM_EVERY_S = 60.0
# Queries run on the event loop: bounded well under the watchdog ping spacing (WatchdogSec/2).
API_QUERY_TIMEOUT_S = 10.0
# Rules are evaluated on the event loop; one slow rule must not hold it past the watchdog.
RULE_QUERY_TIMEOUT_S = 10.0
RETENTION_MARGIN_MS = 60_000
# The ingest loop ticks at least every rescan interval and after every chunk it reads; a loop
# silent for this long (beyond its own interval) is wedged.
STALL_GRACE_S = 60.0


class RunState(Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"


def retention_ms(config: Config, groups: list[RuleGroup]) -> int:
    """storage.retention, or longer when a rule reaches further back (SPEC §4)."""
    lookback = 5 * 60 * 1000
    needed = max((reach_ms(rule.expr, lookback) for group in groups for rule in group.rules),
                 default=0)
    return max(round(config.storage.retention * 1000), needed + RETENTION_MARGIN_MS)


def slos_of(config: Config) -> list[Slo]:
    """The SLOs of `slo_files`; SloFileError (a ConfigError) for a bad file."""
    return [slo for spec in load_slo_files(config.slo_files) for slo in spec.slos]


def _raise_open_file_limit() -> None:
    """Hold one descriptor per log file: lift the soft limit toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class Daemon:
    """One running inferwatch."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        clock: Clock | None = None,
        notifier: SystemdNotifier | None = None,
        config_loader: Callable[[Path], Config] = load_config,
        watcher_factory: Callable[[bool], ChangeWatcher] = make_watcher,
        extra_samplers: Sequence[Callable[[MetricStore, Clock], Sampler]] = (),
    ) -> None:
        self.config = config
        self._extra_samplers = list(extra_samplers)  # factories, given the store and clock
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.notifier = notifier or SystemdNotifier()
        self._load = config_loader
        self._watcher_factory = watcher_factory
        self.state = RunState.NEW
        self.token = TokenHolder(self._bearer_token(config))
        self.store = MetricStore(config.namespace, config.metrics.series_limit)
        self._stop = asyncio.Event()
        self._ingest_stop = asyncio.Event()
        self._rules_stop = asyncio.Event()
        self._notify_stop = asyncio.Event()
        self._samplers_stop = asyncio.Event()
        self.samplers: SamplerRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.templates = TemplateContext(external_labels={}, external_url="")
        self.series = SeriesStore(round(config.storage.retention * 1000))
        self.engine: Engine | None = None
        self.api_engine: Engine | None = None
        self.scraper: InternalScraper | None = None
        self.rules: RuleManager | None = None
        self.prompt: PromptEvaluation | None = None
        self.notify: NotifyService | None = None
        self._reload_lock = asyncio.Lock()
        self._state_store: StateStore | None = None
        self._runner: web.AppRunner | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self.ingest: IngestService | None = None
        self.ledger: LedgerFeed | None = None
        self.self_hosted: SelfHostedCost | None = None
        self.budgets: BudgetTracker | None = None
        self.slos: SloService | None = None
        self.listen_url = ""

    @staticmethod
    def _bearer_token(config: Config) -> str | None:
        secret = config.server.bearer_token
        return secret.get_secret_value() if secret is not None else None

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def ledger_writer_status(self) -> str:
        """The cost ledger writer and its backlog, for the status page; "" until one has
        been started (no priced source)."""
        feed, state = self.ledger, self._state_store
        if not isinstance(feed, WorkerLedgerFeed) or not feed.started or state is None:
            return ""
        return feed.describe(journal.length(state.connection))

    def _start_cost(self, state: StateStore) -> tuple[WorkerLedgerFeed, BudgetTracker]:
        """The ledger writer's feed (its process started now when a priced source is
        configured or the journal has work) and the budgets that listen to it."""
        ledger = WorkerLedgerFeed(
            self.store, state_directory=self.config.storage.path,
            prices=PriceTable.load(self.config.cost.pricing_files),
            config=self.config.cost, user_label=self.config.metrics.user_label)
        budgets = BudgetTracker(self.config.cost, state=state, store=self.store,
                                clock=self.clock,
                                evaluation_interval=self.config.evaluation_interval)
        budgets.load()
        ledger.listeners.append(budgets.add)
        ledger.resync_listeners.append(budgets.reload_spend)
        if journal.length(state.connection):
            ledger.recorded()  # requests the last run journaled but did not convert
        elif any(source.log_schema in PRICED_SCHEMAS for source in self.config.sources):
            ledger.start_ahead()
        return ledger, budgets

    async def start(self) -> None:
        self.state = RunState.STARTING
        _raise_open_file_limit()
        self._state_store = StateStore(self.config.storage.path)
        try:
            restored = restore_counters(self._state_store, self.store)
            build = self.store.register(fam.BUILD_INFO)
            build.set(build.key((__version__,)), 1.0)
            self.ledger, self.budgets = self._start_cost(self._state_store)
            self.ingest = IngestService(
                sources=self.config.sources, ingest=self.config.ingest,
                metrics=self.config.metrics, state=self._state_store, store=self.store,
                clock=self.clock, watcher_factory=self._watcher_factory, ledger=self.ledger,
            )
            samplers = build_samplers(self.config, store=self.store, clock=self.clock)
            gpu = await GpuSampler.open(self.config.gpu, store=self.store, clock=self.clock)
            if gpu is not None:
                samplers.append(gpu)
            samplers += [make(self.store, self.clock) for make in self._extra_samplers]
            self.samplers = SamplerRunner(samplers, store=self.store, clock=self.clock)
            self._start_rules(self._state_store)
            assert self.prompt is not None
            self.ingest.on_commit.append(self.prompt.poke)
            self.notify = NotifyService(self.config.notify, timezone=self.config.cost.timezone,
                                        state=self._state_store, clock=self.clock,
                                        metrics=self.store,
                                        external_labels=self.config.external_labels)
            assert self.rules is not None
            self.rules.listeners.append(self.notify.on_rule_group)
            await self._start_http()
            self.templates.external_url = self.listen_url
            await self.notify.start(self.listen_url)
        except BaseException:
            if self.samplers is not None:
                await self.samplers.close()  # the GPU sampler holds threads and NVML
            self._state_store.close()
            self._state_store = None
            raise
        self._tasks.append(asyncio.create_task(self._run_ingest(), name="ingest"))
        assert self.rules is not None and self.scraper is not None
        # The restored counters go into the (in-memory) series store before any rule runs: a
        # rule evaluated on an empty store would resolve every restored firing alert, and
        # the next scrape fire it again — a "resolved" and a second "firing" notification
        # after each restart.
        self.scraper.scrape()
        await self._slo_tick()
        self._tasks.append(asyncio.create_task(self.rules.run(self._rules_stop), name="rules"))
        assert self.prompt is not None
        self._tasks.append(asyncio.create_task(self.prompt.run(self._rules_stop),
                                               name="prompt-evaluation"))
        self._tasks.append(asyncio.create_task(self._run_notify(), name="notify"))
        assert self.samplers is not None
        self._tasks.append(asyncio.create_task(self.samplers.run(self._samplers_stop),
                                               name="samplers"))
        self._start_scheduler()
        self.state = RunState.RUNNING
        log.info("inferwatch %s started: %d persisted series restored, %d source(s), "
                 "listening on %s", __version__, restored, len(self.config.sources),
                 self.listen_url)
        self.notifier.ready(status=f"listening on {self.listen_url}")

    async def _start_http(self) -> None:
        server = self.config.server
        app = create_app(exposition=Exposition(self.store), control=self, token=self.token)
        assert self.engine is not None
        # Queries from the API get their own, shorter timeout than rule evaluations.
        self.api_engine = Engine(self.series, timeout_s=API_QUERY_TIMEOUT_S,
                                 subquery_step_ms=self.engine.subquery_step_ms)
        add_prometheus_api(app, engine=self.api_engine, series=self.series,
                           rules=lambda: self.rules.groups if self.rules else [],
                           clock=self.clock)
        if self.notify is not None:
            add_alertmanager_api(app, notify=self.notify, clock=self.clock)
        add_status_page(app, source=DaemonStatus(self))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, server.listen_host, server.listen_port,
                           reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise StartupError(f"cannot listen on {server.listen}: {exc.strerror or exc}") \
                from exc
        host = server.listen_host
        self.listen_url = f"http://{f'[{host}]' if ':' in host else host}:{server.listen_port}"

    def _start_rules(self, state: StateStore) -> None:
        """The series store, its scrape, the engine and the rule groups (loaded first: a bad
        rule file stops the start-up before anything listens)."""
        config = self.config
        groups = load_groups(config.rule_files,
                             default_interval_ms=round(config.evaluation_interval * 1000),
                             templates=self.templates)
        self.series.retention_ms = retention_ms(config, groups)
        self.engine = Engine(self.series, timeout_s=RULE_QUERY_TIMEOUT_S,
                             subquery_step_ms=round(config.evaluation_interval * 1000))
        self.templates.query = template_query(self.engine.instant)
        self.scraper = InternalScraper(self.store, self.series, self.clock,
                                       config.scrape_interval)
        self.rules = RuleManager(engine=self.engine, series=self.series, metrics=self.store,
                                 clock=self.clock, state=AlertStateStore(state))
        self.rules.replace(groups, restore=True)
        self.slos = SloService(slos_of(config), state=state, store=self.store,
                               engine=self.engine, clock=self.clock,
                               notify_put=self._put_alerts)
        self.slos.load()
        self.prompt = PromptEvaluation(scraper=self.scraper, rules=self.rules, clock=self.clock)
        self.self_hosted = SelfHostedCost(engine=self.engine, store=self.store, clock=self.clock)

    def _start_scheduler(self) -> None:
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        assert self.scraper is not None
        scheduler.add_job(self.scraper.scrape, "interval", seconds=self.config.scrape_interval,
                          max_instances=1, coalesce=True, id="scrape")
        scheduler.add_job(self._trim, "interval", seconds=TRIM_EVERY_S, max_instances=1,
                          coalesce=True, id="trim-series")
        scheduler.add_job(self._self_hosted_cost, "interval", seconds=SELF_HOSTED_EVERY_S,
                          max_instances=1, coalesce=True, id="self-hosted-cost")
        scheduler.add_job(self._evaluate_budgets, "interval",
                          seconds=min(self.config.evaluation_interval, BUDGETS_EVERY_MAX_S),
                          max_instances=1, coalesce=True, id="budgets")
        scheduler.add_job(self._slo_tick, "interval", seconds=SLO_EVERY_S, max_instances=1,
                          coalesce=True, id="slos")
        interval = self.notifier.watchdog_interval()
        if interval is not None:
            scheduler.add_job(self._watchdog, "interval", seconds=interval, max_instances=1,
                              coalesce=True, id="watchdog")
        scheduler.add_job(self._prune, "interval", seconds=PRUNE_EVERY_S, max_instances=1,
                          coalesce=True, id="prune-offsets")
        scheduler.start()
        self._scheduler = scheduler

    async def _run_notify(self) -> None:
        assert self.notify is not None
        try:
            await self.notify.run(self._notify_stop)
        except Exception:  # delivery failing must not take ingestion and rules with it
            log.exception("notification delivery crashed; alerts are no longer delivered")

    async def _run_ingest(self) -> None:
        assert self.ingest is not None
        try:
            await self.ingest.run(self._ingest_stop)
        except Exception:
            log.exception("ingestion crashed")
            self.state = RunState.CRASHED
            self._stop.set()
            raise

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        """Drain: stop ingesting (committing the last checkpoint), then everything else."""
        crashed = self.state is RunState.CRASHED
        if self.state in (RunState.STOPPED, RunState.NEW):
            return
        self.state = RunState.STOPPING
        self.notifier.stopping()
        self._ingest_stop.set()
        self._rules_stop.set()
        self._notify_stop.set()
        self._samplers_stop.set()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.ingest is not None and not self.ingest.final_commit_ok:
            crashed = True  # exit non-zero: the last lines read were not committed
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.notify is not None:
            await self.notify.close()
        if self.ledger is not None:
            self.ledger.close()
        if self._state_store is not None:
            self._state_store.close()
            self._state_store = None
        self.state = RunState.CRASHED if crashed else RunState.STOPPED
        if crashed:
            log.error("inferwatch crashed")
        else:
            log.info("inferwatch stopped")

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT (SIGHUP reloads), stop; the exit status."""
        loop = asyncio.get_running_loop()
        await self.start()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            await self.wait()
        finally:
            # While stopping, a SIGHUP (a logrotate postrotate, say) must not kill the process
            # with its default action before the last commit; a second SIGTERM changes nothing.
            loop.add_signal_handler(signal.SIGHUP, lambda: None)
            try:
                await self.stop()
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
        return 1 if self.state is RunState.CRASHED else 0

    # -- control (used by the HTTP API) ---------------------------------------------------------

    def is_ready(self) -> bool:
        return self.ingest is not None and self.ingest.is_ready()

    def sources_catching_up(self) -> list[str]:
        return self.ingest.sources_catching_up() if self.ingest is not None else ["(starting)"]

    async def reload(self) -> str | None:
        """Re-read the config file; an invalid one is logged and the running one kept."""
        if self.config_path is None:
            return "no configuration file to reload (running on embedded defaults)"
        async with self._reload_lock:
            self.state = RunState.RELOADING
            self.notifier.reloading(status="reloading configuration")
            error: str | None = None
            try:
                new = self._load(self.config_path)
                error = self._refuse(new)
                if error is None:
                    groups = load_groups(
                        new.rule_files, templates=self.templates,
                        default_interval_ms=round(new.evaluation_interval * 1000))
                    prices = PriceTable.load(new.cost.pricing_files)
                    self._apply(new, groups, prices, slos_of(new))
            except ConfigError as exc:
                error = str(exc)
            except Exception as exc:  # a loader bug must not leave the daemon half-reloaded
                log.exception("unexpected error while reloading")
                error = f"unexpected {type(exc).__name__}: {exc}"
            finally:
                if self.state is RunState.RELOADING:
                    self.state = RunState.RUNNING
            if error is not None:
                log.error("reload failed, keeping the running configuration: %s", error)
                self.notifier.ready(status="reload failed; running the previous configuration")
                return error
            self.notifier.ready(status=f"listening on {self.listen_url}")
            log.info("configuration reloaded from %s", self.config_path)
            return None

    def _refuse(self, new: Config) -> str | None:
        """Why `new` cannot be applied to the running daemon, if it cannot.

        The listen address only changes at a restart, so the new token settings are checked
        against the address actually bound: a reload must not drop the token of a daemon
        that keeps listening beyond loopback.
        """
        running, wanted = self.config.server, new.server
        if (
            not running.listens_on_loopback
            and wanted.bearer_token is None
            and not wanted.allow_unauthenticated
        ):
            return (f"the daemon keeps listening on {running.listen} until a restart; a "
                    f"reload cannot remove its bearer token (set server.bearer_token_file, "
                    f"or server.allow_unauthenticated: true, or restart to change the address)")
        return None

    def _apply(self, new: Config, groups: list[RuleGroup], prices: PriceTable,
               slos: list[Slo]) -> None:
        old = self.config
        for section in ("namespace", "storage", "metrics", "ingest", "host", "gpu", "probes",
                        "processes"):
            if getattr(new, section) != getattr(old, section):
                log.warning("reload: %s changed; restart inferwatch to apply it", section)
        if new.server.listen != old.server.listen:
            log.warning("reload: server.listen changed; restart inferwatch to apply it")
        if new.scrape_interval != old.scrape_interval:
            log.warning("reload: scrape_interval changed; restart inferwatch to apply it")
        # A subquery without a step steps at the evaluation interval, as in Prometheus.
        for engine in (self.engine, self.api_engine):
            if engine is not None:
                engine.subquery_step_ms = round(new.evaluation_interval * 1000)
        self.token.token = self._bearer_token(new)
        if self.ingest is not None and new.sources != old.sources:
            self.ingest.reconfigure(new.sources)
        if self.rules is not None:
            self.series.retention_ms = retention_ms(new, groups)
            self.rules.replace(groups)
        if self.notify is not None:
            self.notify.configure(new.notify, new.cost.timezone, new.external_labels)
        if self.ledger is not None:
            self.ledger.configure(prices, new.cost)
        if self.budgets is not None:
            self.budgets.configure(new.cost)
        if self.slos is not None:
            self.slos.configure(slos)
        self.config = new

    # -- periodic jobs --------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        assert self.ingest is not None
        silent_for = self.clock.monotonic() - self.ingest.last_tick
        if silent_for <= self.ingest.max_wait + STALL_GRACE_S:
            self.notifier.watchdog()
        else:
            log.error("ingestion loop silent for %.0f s; withholding the watchdog ping",
                      silent_for)

    async def _trim(self) -> None:
        dropped = self.series.trim(int(self.clock.time() * 1000))
        if dropped:
            log.debug("series store: %d sample(s) past retention dropped", dropped)

    async def _evaluate_budgets(self) -> None:
        """Budget alerts join the rule alerts in routing and delivery."""
        if self.budgets is None:
            return
        try:
            alerts = self.budgets.evaluate()
            if self.notify is not None:
                self.notify.dispatcher.put(alerts)
        except Exception:  # budgets failing must not stop the scheduler or delivery
            log.exception("cannot evaluate the budgets")

    def _put_alerts(self, alerts: list[NotifyAlert]) -> None:
        if self.notify is not None:
            self.notify.dispatcher.put(alerts)

    async def _slo_tick(self) -> None:
        """The SLOs' closed minutes, metrics and alerts (monitor/slo/service.py)."""
        if self.slos is not None:
            try:
                self.slos.tick()
            except Exception:  # SLOs failing must not stop the scheduler or delivery
                log.exception("cannot evaluate the SLOs")

    async def _self_hosted_cost(self) -> None:
        if self.self_hosted is not None:
            try:
                self.self_hosted.update(self.config.sources, self.config.cost.currency)
            except Exception:  # a gauge must never take the scheduler down
                log.exception("cannot compute the self-hosted cost per million tokens")

    async def _prune(self) -> None:
        assert self.ingest is not None
        pruned = self.ingest.prune()
        if pruned:
            log.info("forgot the positions of %d file(s) closed and unseen for a week", pruned)
        if self.ledger is not None:
            try:
                self.ledger.prune(self.clock.time())
            except sqlite3.Error as exc:
                log.error("cannot prune the cost ledger (retried in an hour): %s", exc)
        if self.slos is not None:
            try:
                self.slos.prune()
            except sqlite3.Error as exc:
                log.error("cannot prune the SLO minutes (retried in an hour): %s", exc)
