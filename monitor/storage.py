"""The SQLite state file: creation, schema migrations, and the single write transaction.

One file, `<storage.path>/inferwatch.db`, holds everything that must survive a restart: file
offsets and the counters they produced (committed together), the cost ledger and its journal,
alert state, the notification outbox and SLO buckets.

A missing file means a first start. An existing file that is empty, not SQLite, damaged, or
not ours is a `StateError`: starting fresh would silently re-read every log from the start
and double-count, so the daemon refuses and says how to recover. A new file is built under a
temporary name and renamed into place, so a crash during creation never leaves a half-made
file that would later be taken for valid state.

WAL journaling with `synchronous=NORMAL`: a commit survives the process being killed at any
moment (what exactly-once ingestion needs); a power cut may lose the last commits but never
leaves a torn state, and re-reading after such a loss stays consistent because offsets and
counters roll back together.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

from monitor.errors import StateError

log = logging.getLogger(__name__)

STATE_FILE_NAME = "inferwatch.db"
BUSY_TIMEOUT_S = 5.0  # how long a write waits for another connection's (sqlite3's default)
_APPLICATION_ID = 0x69776174  # "iwat": marks the file as ours

_LEDGER_V9 = """
    CREATE TABLE ledger_keys (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        user TEXT NOT NULL,
        currency TEXT NOT NULL,
        UNIQUE (source, model, user, currency)
    );
    CREATE TABLE ledger_rows (
        id INTEGER PRIMARY KEY,
        t REAL NOT NULL,
        key_id INTEGER NOT NULL,
        request_id TEXT,
        input_tokens INTEGER NOT NULL,
        cache_hit_tokens INTEGER NOT NULL,
        cache_miss_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        amount_units,
        amount_places INTEGER,
        reported TEXT
    );
    CREATE TABLE ledger_spans (
        first_id INTEGER PRIMARY KEY,
        last_id INTEGER NOT NULL,
        t_min REAL NOT NULL,
        t_max REAL NOT NULL
    );
"""
_LEDGER_VIEW = """
    CREATE VIEW ledger AS SELECT
        r.id AS id, r.t AS t, k.source AS source, r.request_id AS request_id,
        k.model AS model, k.user AS user, r.input_tokens AS input_tokens,
        r.cache_hit_tokens AS cache_hit_tokens, r.cache_miss_tokens AS cache_miss_tokens,
        r.output_tokens AS output_tokens, r.reasoning_tokens AS reasoning_tokens,
        k.currency AS currency, r.amount_units AS amount_units,
        r.amount_places AS amount_places, r.reported AS reported
    FROM ledger_rows AS r JOIN ledger_keys AS k ON k.id = r.key_id
"""
LEDGER_SPAN_ROWS = 4096  # rows per span when migrating rows that had none


def _normalize_ledger(connection: sqlite3.Connection) -> None:
    """v9. A ledger row names its (source, model, user, currency) by a `ledger_keys` id and
    holds its amount as `amount_units` / 10**`amount_places` (an integer, or its decimal
    digits as text past 64 bits; untyped so SQLite never turns them into a float): no text
    to format and fewer strings to bind per request. Rows are found by time through
    `ledger_spans` (each conversion's id range and time bounds, a block-range index) rather
    than an index on t, which cost a quarter of every insert. The view `ledger` joins a row
    with its key, for readers and for people at a sqlite3 prompt."""
    for statement in _statements(_LEDGER_V9):
        connection.execute(statement)
    connection.execute("INSERT INTO ledger_keys (source, model, user, currency) "
                       "SELECT DISTINCT source, model, user, currency FROM ledger")
    rows = connection.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    if rows:
        log.info("state schema v9: rewriting %d cost ledger row(s), once (about 4 s a million)",
                 rows)
    # Plain decimal text of up to 18 digits (what v4-v8 wrote) is split in SQL; the rest
    # (an exponent, more digits, damage) is left for Python below.
    plain = ("l.amount NOT GLOB '*[^0-9.]*' AND l.amount GLOB '*[0-9]*' "
             "AND length(replace(l.amount, '.', '')) <= 18 "
             "AND length(l.amount) - length(replace(l.amount, '.', '')) <= 1")
    connection.execute(
        "INSERT INTO ledger_rows (id, t, key_id, request_id, input_tokens, cache_hit_tokens, "  # noqa: S608 - `plain` is a constant
        "cache_miss_tokens, output_tokens, reasoning_tokens, amount_units, amount_places, "
        "reported) SELECT l.id, l.t, k.id, l.request_id, l.input_tokens, l.cache_hit_tokens, "
        "l.cache_miss_tokens, l.output_tokens, l.reasoning_tokens, "
        f"CASE WHEN {plain} THEN CAST(replace(l.amount, '.', '') AS INTEGER) END, "
        f"CASE WHEN {plain} THEN CASE WHEN instr(l.amount, '.') > 0 "
        "THEN length(l.amount) - instr(l.amount, '.') ELSE 0 END END, l.reported "
        "FROM ledger AS l JOIN ledger_keys AS k ON k.source = l.source AND k.model = l.model "
        "AND k.user = l.user AND k.currency = l.currency")
    others = connection.execute(
        "SELECT l.id, l.amount FROM ledger AS l JOIN ledger_rows AS r ON r.id = l.id "
        "WHERE l.amount IS NOT NULL AND r.amount_units IS NULL").fetchall()
    connection.executemany(
        "UPDATE ledger_rows SET amount_units = ?, amount_places = ? WHERE id = ?",
        [(*_amount_parts(row_id, text), row_id) for row_id, text in others])
    connection.execute(
        "INSERT INTO ledger_spans (first_id, last_id, t_min, t_max) SELECT MIN(id), MAX(id), "
        "MIN(t), MAX(t) FROM ledger_rows GROUP BY id / ?", (LEDGER_SPAN_ROWS,))
    connection.execute("DROP TABLE ledger")  # and its index on t
    connection.execute(_LEDGER_VIEW)


def _amount_parts(row_id: int, text: str | None) -> tuple[int | str | None, int | None]:
    """A v4-v8 amount's exact (units, places); (None, None) for an unpriced row."""
    if text is None:
        return None, None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise StateError(f"ledger row {row_id} has an amount that is not a number "
                         f"({text!r}); the state file is damaged")
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite
    units = int("".join(map(str, digits))) * (-1 if sign else 1)
    if exponent > 0:
        units, exponent = units * 10**exponent, 0
    return (units if -(2**63) <= units < 2**63 else str(units)), -exponent


# Each entry moves the schema from version i to i+1; never edit one that has shipped.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    """
    CREATE TABLE sources (
        name TEXT PRIMARY KEY,
        first_seen REAL NOT NULL
    );
    CREATE TABLE file_offsets (
        source TEXT NOT NULL,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        path TEXT NOT NULL,
        offset INTEGER NOT NULL,
        fp_len INTEGER NOT NULL,
        fp_crc INTEGER NOT NULL,
        tail_len INTEGER NOT NULL,
        tail_crc INTEGER NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (source, dev, ino)
    );
    CREATE TABLE counters (
        family TEXT NOT NULL,
        labels TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('counter', 'histogram')),
        value REAL NOT NULL,
        buckets TEXT,
        PRIMARY KEY (family, labels)
    );
    """,
    """
    CREATE TABLE alert_state (
        rule_key TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        state INTEGER NOT NULL,
        active_at INTEGER NOT NULL,
        fired_at INTEGER,
        resolved_at INTEGER,
        keep_firing_since INTEGER,
        value REAL NOT NULL,
        PRIMARY KEY (rule_key, labels)
    );
    CREATE TABLE rule_groups (
        group_key TEXT PRIMARY KEY,
        last_eval INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE notification_log (
        group_key TEXT NOT NULL,
        receiver TEXT NOT NULL,
        integration TEXT NOT NULL,
        idx INTEGER NOT NULL,
        firing TEXT NOT NULL,
        resolved TEXT NOT NULL,
        sent_at REAL NOT NULL,
        PRIMARY KEY (group_key, receiver, integration, idx)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        receiver TEXT NOT NULL,
        integration TEXT NOT NULL,
        idx INTEGER NOT NULL,
        message TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE rate_log (
        rate_key TEXT NOT NULL,
        sent_at REAL NOT NULL
    );
    CREATE INDEX rate_log_by_key ON rate_log (rate_key, sent_at);
    """,
    # v4: the cost ledger (amounts as exact decimal text), its daily roll-ups, and the recent
    # request ids of each priced source (duplicates are charged once).
    """
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        t REAL NOT NULL,
        source TEXT NOT NULL,
        request_id TEXT,
        model TEXT NOT NULL,
        user TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        cache_hit_tokens INTEGER NOT NULL,
        cache_miss_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        currency TEXT NOT NULL,
        amount TEXT,
        reported TEXT
    );
    CREATE INDEX ledger_by_time ON ledger (t);
    CREATE TABLE cost_daily (
        day TEXT NOT NULL,
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        user TEXT NOT NULL,
        currency TEXT NOT NULL,
        requests INTEGER NOT NULL,
        unpriced INTEGER NOT NULL,
        amount TEXT NOT NULL,
        reported TEXT NOT NULL,
        cache_hit_tokens INTEGER NOT NULL,
        cache_miss_tokens INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        PRIMARY KEY (day, source, model, user, currency)
    );
    CREATE TABLE ledger_request_ids (
        source TEXT NOT NULL,
        request_id TEXT NOT NULL,
        t REAL NOT NULL,
        PRIMARY KEY (source, request_id)
    ) WITHOUT ROWID;
    CREATE TABLE cost_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # v5: the budget alerts that fired in each period (a threshold fires once per period, the
    # forecast alert at most once), so a restart neither repeats nor forgets them.
    """
    CREATE TABLE budget_alerts (
        budget TEXT NOT NULL,
        alertname TEXT NOT NULL,
        period TEXT NOT NULL,
        key TEXT NOT NULL,
        period_end REAL NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        PRIMARY KEY (budget, alertname, period, key)
    );
    """,
    # v6: the ledger's own rows (each keeps its request id) hold the dedup window; the separate
    # table of v4 cost an index insert per request.
    """
    DROP TABLE ledger_request_ids;
    """,
    # v7: SLO minute counts (no row: no data that minute), the last minute recorded, and the
    # SLO alerts active, written together once a minute (monitor/slo/service.py).
    """
    CREATE TABLE slo_minutes (
        slo TEXT NOT NULL,
        minute INTEGER NOT NULL,
        errors REAL NOT NULL,
        total REAL NOT NULL,
        PRIMARY KEY (slo, minute)
    ) WITHOUT ROWID;
    CREATE TABLE slo_alerts (
        slo TEXT NOT NULL,
        kind TEXT NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (slo, kind)
    ) WITHOUT ROWID;
    CREATE TABLE slo_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # v8: the ledger's write-ahead journal: the requests of priced sources, written in the
    # checkpoint transaction with the offsets that read them, turned into ledger rows (and
    # deleted, in one transaction) by the ledger writer (monitor/cost/feed.py).
    """
    CREATE TABLE ledger_journal (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        model_override TEXT,
        events BLOB NOT NULL
    );
    """,
    # v9: a ledger row a third cheaper to insert (see _normalize_ledger).
    _normalize_ledger,
)


def remedy(path: Path) -> str:
    return (
        f"inferwatch will not start on it, because starting fresh re-reads every log from "
        f"the beginning and double-counts. If you accept that, move {path} aside (and its "
        f"-wal and -shm files) and start again."
    )


class Busy(sqlite3.OperationalError):
    """Another connection holds the write lock (only from `transaction(wait=False)`)."""


class StateStore:
    """The open state file. Use `transaction()` for every write."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE_NAME
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state directory {directory}: {exc}") from exc
        if not self.path.exists():
            leftovers = [p for p in (Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
                         if p.exists()]
            if leftovers:
                # SQLite would replay an old -wal into the new file: half old state, half new.
                raise StateError(
                    f"{self.path} is missing but {', '.join(map(str, leftovers))} remain "
                    f"from it; delete them too for a fresh start (every log is then read "
                    f"again per start_at), or put the state file back"
                )
            self._create()
        self._conn = self._open_existing()

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    @contextlib.contextmanager
    def transaction(self, *, wait: bool = True) -> Iterator[sqlite3.Cursor]:
        """One atomic write: everything inside commits together or not at all. Another
        connection's write (the ledger writer's) is waited for up to BUSY_TIMEOUT_S; without
        `wait`, `Busy` is raised at once instead and nothing has been done."""
        cursor = self._conn.cursor()
        if wait:
            cursor.execute("BEGIN IMMEDIATE")
        else:
            cursor.execute("PRAGMA busy_timeout = 0")
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                cursor.close()
                if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                    raise Busy(str(exc)) from exc
                raise
            finally:
                self._conn.execute(f"PRAGMA busy_timeout = {round(BUSY_TIMEOUT_S * 1000)}")
        try:
            yield cursor
        except BaseException:
            self._conn.rollback()
            raise
        else:
            self._conn.commit()
        finally:
            cursor.close()

    def close(self) -> None:
        self._conn.close()

    def _create(self) -> None:
        temporary = self.path.with_name(self.path.name + ".creating")
        for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
            leftover.unlink(missing_ok=True)
        try:
            conn = sqlite3.connect(temporary, isolation_level=None)
            try:
                conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
                self._migrate(conn, 0)
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
            temporary.replace(self.path)
            _fsync_directory(self.directory)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot create state file {self.path}: {exc}") from exc
        log.info("created state file %s", self.path)

    def _open_existing(self) -> sqlite3.Connection:
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {exc}") from exc
        if size == 0:
            raise StateError(f"state file {self.path} is empty. {remedy(self.path)}")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state file {self.path}: {exc}") from exc
        try:
            version = self._check_identity(conn)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Builds that default to secure_delete (Debian's) zero every freed page: each
            # journal row the ledger writer deletes cost its whole size again in WAL writes.
            # FAST still zeroes what is deleted within a page that is written anyway.
            conn.execute("PRAGMA secure_delete = FAST")
            # Checkpoints every 16 MB of WAL, not 4: the daemon and the ledger writer rewrite
            # the same pages (the journal's, the ledger's last leaf), copied once per
            # checkpoint; measured 4-5 % off a ledger catch-up. The WAL file stays that size.
            conn.execute("PRAGMA wal_autocheckpoint = 4000")
            if version < len(MIGRATIONS):
                self._migrate(conn, version)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StateError(
                f"state file {self.path} is not a usable database ({exc}). {remedy(self.path)}"
            ) from exc
        except StateError:
            conn.close()
            raise
        return conn

    def _check_identity(self, conn: sqlite3.Connection) -> int:
        """The schema version of a file that is ours, intact and not from the future."""
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id != _APPLICATION_ID:
            raise StateError(
                f"state file {self.path} is not an inferwatch state file (its header lacks "
                f"inferwatch's application id: damaged, or another program's database). "
                f"{remedy(self.path)}"
            )
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise StateError(
                f"state file {self.path} has schema version {version}, newer than this "
                f"inferwatch understands ({len(MIGRATIONS)}); run the newer version"
            )
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        size = self.path.stat().st_size
        if page_size and size % page_size:
            # SQLite writes whole pages; quick_check misses a cut through free pages.
            raise StateError(f"state file {self.path} is damaged (its {size} bytes are not a "
                             f"whole number of {page_size}-byte pages: truncated). "
                             f"{remedy(self.path)}")
        (check,) = conn.execute("PRAGMA quick_check(1)").fetchone()
        if check != "ok":
            detail = " ".join(str(check).split())  # SQLite's report spans lines; ours is one
            raise StateError(f"state file {self.path} is damaged ({detail}). "
                             f"{remedy(self.path)}")
        return int(version)

    @staticmethod
    def _migrate(conn: sqlite3.Connection, current: int) -> None:
        for version in range(current, len(MIGRATIONS)):
            conn.execute("BEGIN IMMEDIATE")
            try:
                migration = MIGRATIONS[version]
                if isinstance(migration, str):
                    for statement in _statements(migration):
                        conn.execute(statement)
                else:
                    migration(conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            log.info("state schema migrated to version %d", version + 1)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
