"""`inferwatch cost report` (monitor/cost/report.py) over a ledger filled through the real
checkpoint, read while the writer still has the state file open (as with a running daemon)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from cost_helpers import Rig, usage

from monitor.cli import main
from monitor.config import Config, default_config
from monitor.cost.report import run_report
from monitor.errors import StateError, UsageError

NOV = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()
PRICES = """\
models:
  - match: chat
    prices:
      - {effective_from: 2026-01-01T00:00:00Z, currency: CNY, input_cache_hit: 1,
         input_cache_miss: 2, output: 4}
  - match: coder
    prices:
      - {effective_from: 2026-01-01T00:00:00Z, currency: CNY, input_cache_hit: 1,
         input_cache_miss: 1, output: 1}
"""


def config_for(rig: Rig, **cost: object) -> Config:
    return default_config(storage={"path": str(rig.directory / "state")},
                          cost={"currency": "CNY", "timezone": "UTC", **cost})


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path, prices=PRICES)
    # October (outside this month), then three November days, then "today" (Nov 20).
    made.feed(usage("oct", "chat", NOV - 3600, miss=1_000_000),
              usage("n1", "chat", NOV + 3600, miss=1_000_000, user_id="alice"),  # 2
              usage("n2", "coder", NOV + 86400, output=3_000_000, user_id="bob"),  # 3
              usage("n3", "chat", NOV + 2 * 86400, output=250_000, user_id="alice"),  # 1
              usage("n4", "mystery", NOV + 2 * 86400, miss=10),  # unpriced
              usage("t1", "chat", NOW - 3600, hit=500_000))  # 0.5
    yield made
    made.state.close()


def test_json_report_of_the_current_month_has_the_specified_shape(rig: Rig) -> None:
    config = config_for(rig, budgets=[
        {"name": "monthly", "period": "month", "limit": 10},
        {"name": "alice-daily", "period": "day", "limit": 1, "match": {"user": "alice"}}])
    report = json.loads(run_report(config, period=None, start=None, end=None, by="model",
                                   output="json", now=NOW))
    assert report["currency"] == "CNY"
    assert report["timezone"] == "UTC"
    assert report["period"] == {"kind": "month", "start": "2026-11-01T00:00:00+00:00",
                                "end": "2026-12-01T00:00:00+00:00"}
    assert report["total"] == "6.5"
    assert report["requests"] == 5
    assert report["unpriced_requests"] == 1
    assert report["by"] == {"coder": "3", "chat": "3.5"}
    # 0.5 spent in the last week, 10.5 days to go: 6.5 + 0.5 / 7.5 days x 10.5 days.
    assert report["budgets"][0] == {"name": "monthly", "period": "2026-11", "limit": "10",
                                    "spent": "6.5", "ratio": "0.65", "forecast": "7.2"}
    # Alice spent nothing today (t1 has no user).
    assert report["budgets"][1] == {"name": "alice-daily", "period": "2026-11-20",
                                    "limit": "1", "spent": "0", "ratio": "0", "forecast": "0"}


def test_by_user_and_source(rig: Rig) -> None:
    config = config_for(rig)
    by_user = json.loads(run_report(config, period="month", start=None, end=None, by="user",
                                    output="json", now=NOW))["by"]
    assert by_user == {"bob": "3", "alice": "3", "": "0.5"}
    by_source = json.loads(run_report(config, period="month", start=None, end=None,
                                      by="source", output="json", now=NOW))["by"]
    assert by_source == {"api": "6.5"}


def test_a_custom_range_adds_partial_days_from_the_ledger(rig: Rig) -> None:
    config = config_for(rig)
    # From the middle of Oct 31 (23:00 is inside) to the middle of Nov 2 (01:00 inside).
    report = json.loads(run_report(
        config, period=None, start="2026-10-31T12:00:00+00:00",
        end="2026-11-02T12:00:00+00:00", by="model", output="json", now=NOW))
    assert report["period"]["kind"] == "custom"
    assert report["by"] == {"chat": "4", "coder": "3"}
    # Naive times are in cost.timezone: in Shanghai, Nov 1 01:00 UTC is 09:00 local.
    shanghai = config_for(rig, timezone="Asia/Shanghai")
    report = json.loads(run_report(
        shanghai, period=None, start="2026-11-01T08:00", end="2026-11-01T10:00", by="model",
        output="json", now=NOW))
    assert report["by"] == {"chat": "2"}


def test_table_and_csv(rig: Rig) -> None:
    config = config_for(rig, budgets=[{"name": "monthly", "period": "month", "limit": 10}])
    table = run_report(config, period=None, start=None, end=None, by="model", output="table",
                       now=NOW)
    assert "coder" in table and "6.5" in table and "1 unpriced" in table
    assert "monthly" in table and "65.0%" in table
    rows = list(csv.reader(io.StringIO(run_report(config, period=None, start=None, end=None,
                                                  by="model", output="csv", now=NOW))))
    assert rows == [["model", "amount", "currency"], ["chat", "3.5", "CNY"],
                    ["coder", "3", "CNY"], ["(total)", "6.5", "CNY"]]


def test_bad_combinations_are_usage_errors(rig: Rig) -> None:
    config = config_for(rig)
    for kwargs in ({"period": "day", "start": "2026-11-01", "end": None},
                   {"period": None, "start": None, "end": "2026-11-01"},
                   {"period": None, "start": "yesterday", "end": None},
                   {"period": None, "start": "2026-11-02", "end": "2026-11-01"}):
        with pytest.raises(UsageError):
            run_report(config, by="model", output="json", now=NOW, **kwargs)  # type: ignore[arg-type]


def test_no_state_file_is_a_clear_error(tmp_path: Path) -> None:
    config = default_config(storage={"path": str(tmp_path / "nothing")})
    with pytest.raises(StateError, match="no state file"):
        run_report(config, period=None, start=None, end=None, by="model", output="json")


def test_the_cli_prints_the_report(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    path = rig.directory / "inferwatch.yml"
    path.write_text(yaml.safe_dump({"storage": {"path": str(rig.directory / "state")},
                                    "cost": {"currency": "CNY"}}))
    assert main(["cost", "report", "--config", str(path), "--from", "2026-11-01",
                 "--to", "2026-11-04", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert Decimal(report["total"]) == Decimal(6)
    assert main(["cost", "report", "--config", str(path), "--period", "day",
                 "--from", "2026-11-01"]) == 2
    assert "either --period or --from" in capsys.readouterr().err
