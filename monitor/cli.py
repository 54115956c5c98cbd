"""The `inferwatch` command line: argument parsing and dispatch, no logic of its own.

Exit codes: 0 ok, 1 a check/test failed or the daemon crashed, 2 usage or configuration
error. Errors print one line to stderr; tracebacks only for bugs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from monitor import __version__
from monitor.errors import InferwatchError
from monitor.logsetup import configure_logging
from monitor.units import parse_duration

DEFAULT_CONFIG = "/etc/inferwatch/inferwatch.yml"


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _default_config_path() -> str:
    return os.environ.get("INFERWATCH_CONFIG", DEFAULT_CONFIG)


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.config import load_config  # noqa: PLC0415 - keep `--help` fast
    from monitor.daemon import Daemon  # noqa: PLC0415

    path = Path(args.config)
    config = load_config(path)
    return asyncio.run(Daemon(config, config_path=path).run())


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo.runner import run_demo  # noqa: PLC0415

    return asyncio.run(run_demo(directory=Path(args.dir).resolve(), duration=args.duration,
                                listen=args.listen))


def cmd_check_config(args: argparse.Namespace) -> int:
    """Exit 1 when the file is invalid: a failed check, as SPEC §3 says for this command."""
    from monitor.config import load_config  # noqa: PLC0415
    from monitor.cost.pricing import PriceTable  # noqa: PLC0415
    from monitor.errors import ConfigError  # noqa: PLC0415
    from monitor.slo.spec import load_slo_files  # noqa: PLC0415

    try:
        config = load_config(args.path)
        PriceTable.load(config.cost.pricing_files)
        load_slo_files(config.slo_files)
    except ConfigError as exc:
        print_error(exc)
        return 1
    print(f"{args.path}: OK ({len(config.sources)} source(s), "
          f"{len(config.notify.receivers)} receiver(s))")
    return 0


def cmd_check_rules(args: argparse.Namespace) -> int:
    """Each file loaded as the daemon loads it (PromQL and templates included); exit 1 if
    any file is invalid."""
    from monitor.alerting.manager import check_expr  # noqa: PLC0415
    from monitor.alerting.rulefmt import load_rule_file  # noqa: PLC0415
    from monitor.alerting.templates import check_template  # noqa: PLC0415
    from monitor.errors import ConfigError  # noqa: PLC0415

    failed = False
    for path in args.files:
        try:
            groups = load_rule_file(path, expr_checker=check_expr,
                                    template_checker=check_template)
        except ConfigError as exc:
            print_error(exc)
            failed = True
            continue
        rules = sum(len(group.rules) for group in groups)
        print(f"{path}: OK ({len(groups)} group(s), {rules} rule(s))")
    return 1 if failed else 0


def cmd_test_rules(args: argparse.Namespace) -> int:
    """promtool's unit-test format; exit 0 only if every test of every file passes."""
    from monitor.alerting.ruletests import run_file  # noqa: PLC0415

    passed = True
    for path in args.files:
        print(f"Unit Testing:  {path}")
        result = run_file(path)
        if result.passed:
            print("  SUCCESS\n")
        else:
            passed = False
            print("  FAILED:")
            for failure in result.failures:
                print(failure)
            print()
    return 0 if passed else 1


def cmd_query(args: argparse.Namespace) -> int:
    from monitor.query_client import QueryClientError, instant_query  # noqa: PLC0415

    try:
        lines = instant_query(args.url, args.expr, at=args.time, token=args.token)
    except QueryClientError as exc:
        print_error(exc)
        return exc.exit_code
    for line in lines:
        print(line)
    return 0


def cmd_silence_add(args: argparse.Namespace) -> int:
    from monitor.clock import SystemClock  # noqa: PLC0415
    from monitor.silence_client import add_silence  # noqa: PLC0415

    silence_id = add_silence(args.url, args.matchers, duration_s=args.duration,
                             author=args.author, comment=args.comment,
                             now=SystemClock().time(), token=args.token)
    print(silence_id)
    return 0


def cmd_silence_list(args: argparse.Namespace) -> int:
    from monitor.silence_client import list_silences  # noqa: PLC0415

    for line in list_silences(args.url, expired=args.expired, token=args.token):
        print(line)
    return 0


def cmd_silence_expire(args: argparse.Namespace) -> int:
    from monitor.silence_client import expire_silence  # noqa: PLC0415

    for silence_id in args.ids:
        expire_silence(args.url, silence_id, token=args.token)
        print(f"expired {silence_id}")
    return 0


def cmd_notify_test(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from monitor.config import load_config  # noqa: PLC0415
    from monitor.notify.testsend import send_test  # noqa: PLC0415

    config = load_config(args.config)
    results = asyncio.run(send_test(config, args.receiver))
    for line, _ok in results:
        print(line)
    return 0 if results and all(ok for _line, ok in results) else 1


def cmd_cost_report(args: argparse.Namespace) -> int:
    from monitor.config import load_config  # noqa: PLC0415
    from monitor.cost.report import run_report  # noqa: PLC0415

    config = load_config(args.config)
    print(run_report(config, period=args.period, start=args.from_, end=args.to, by=args.by,
                     output=args.format))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from monitor.report.command import run_report  # noqa: PLC0415

    sys.stdout.write(run_report(args.logs, since=args.since, output=args.format,
                                config_path=args.config))
    return 0


def cmd_export_rules(args: argparse.Namespace) -> int:
    from monitor.config import load_config  # noqa: PLC0415
    from monitor.export_rules import export_rules  # noqa: PLC0415

    for path in export_rules(load_config(args.config), Path(args.out)):
        print(path)
    return 0


def cmd_export_dashboards(args: argparse.Namespace) -> int:
    from monitor.grafana import write_dashboards  # noqa: PLC0415

    for path in write_dashboards(Path(args.out)):
        print(path)
    return 0


def print_error(exc: Exception) -> None:
    """Each problem on its own line, each line prefixed, so any one of them reads alone."""
    for line in str(exc).splitlines() or [type(exc).__name__]:
        print(f"inferwatch: {line}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferwatch",
        description="Monitoring daemon for LLM inference hosts: log-derived request metrics, "
                    "host and GPU sampling, rules, SLOs, token cost and alert delivery.",
    )
    parser.add_argument("--version", action="version", version=f"inferwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config", default=_default_config_path(),
                     help=f"config file (default $INFERWATCH_CONFIG or {DEFAULT_CONFIG})")
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser(
        "demo", help="synthetic inference + API traffic with scripted incidents, monitored by "
                     "the daemon on embedded defaults")
    demo.add_argument("--duration", type=_duration, default=600.0,
                      help="how long to run (Prometheus duration, default 10m)")
    demo.add_argument("--dir", default="var/demo",
                      help="where logs and state go (default ./var/demo)")
    demo.add_argument("--listen", default="127.0.0.1:9464", help="HTTP address of the daemon")
    demo.set_defaults(handler=cmd_demo)

    check = commands.add_parser("check", help="validate configuration")
    check_what = check.add_subparsers(dest="what", metavar="WHAT", required=True)
    check_config = check_what.add_parser("config", help="validate a config file")
    check_config.add_argument("path")
    check_config.set_defaults(handler=cmd_check_config)
    check_rules = check_what.add_parser("rules", help="validate rule files, PromQL included")
    check_rules.add_argument("files", nargs="+", metavar="FILE")
    check_rules.set_defaults(handler=cmd_check_rules)

    test = commands.add_parser("test", help="run rule unit tests")
    test_what = test.add_subparsers(dest="what", metavar="WHAT", required=True)
    test_rules = test_what.add_parser(
        "rules", help="run rule unit tests written in `promtool test rules` format")
    test_rules.add_argument("files", nargs="+", metavar="FILE")
    test_rules.set_defaults(handler=cmd_test_rules)

    query = commands.add_parser("query", help="instant query against a running daemon")
    query.add_argument("expr", metavar="EXPR")
    query.add_argument("--time", help="evaluation time (RFC 3339 or unix seconds; default now)")
    query.add_argument("--url", default="http://127.0.0.1:9464",
                       help="the daemon's address (default %(default)s)")
    query.add_argument("--token", default=os.environ.get("INFERWATCH_TOKEN"),
                       help="bearer token (default $INFERWATCH_TOKEN)")
    query.set_defaults(handler=cmd_query)

    _add_notify_commands(commands)
    return parser


Commands = argparse._SubParsersAction  # the type add_subparsers returns


def _add_notify_commands(commands: Commands[argparse.ArgumentParser]) -> None:
    silence = commands.add_parser("silence", help="manage silences on a running daemon")
    silence_what = silence.add_subparsers(dest="what", metavar="ACTION", required=True)
    silence_add = silence_what.add_parser("add", help="silence the alerts matching all of "
                                                      "MATCHER... (e.g. alertname=HighLatency)")
    silence_add.add_argument("matchers", nargs="+", metavar="MATCHER")
    silence_add.add_argument("--duration", type=_duration, default=3600.0,
                             help="how long (Prometheus duration, default 1h)")
    silence_add.add_argument("--author", default=os.environ.get("USER", "inferwatch"),
                             help="who silences (default $USER)")
    silence_add.add_argument("--comment", required=True, help="why")
    silence_add.set_defaults(handler=cmd_silence_add)
    silence_list = silence_what.add_parser("list", help="the active and pending silences")
    silence_list.add_argument("--expired", action="store_true", help="include expired ones")
    silence_list.set_defaults(handler=cmd_silence_list)
    silence_expire = silence_what.add_parser("expire", help="end silences now")
    silence_expire.add_argument("ids", nargs="+", metavar="ID")
    silence_expire.set_defaults(handler=cmd_silence_expire)
    for sub in (silence_add, silence_list, silence_expire):
        sub.add_argument("--url", default="http://127.0.0.1:9464",
                         help="the daemon's address (default %(default)s)")
        sub.add_argument("--token", default=os.environ.get("INFERWATCH_TOKEN"),
                         help="bearer token (default $INFERWATCH_TOKEN)")

    notify = commands.add_parser("notify", help="notification tools")
    notify_what = notify.add_subparsers(dest="what", metavar="ACTION", required=True)
    notify_test = notify_what.add_parser(
        "test", help="send a test notification through every integration of RECEIVER")
    notify_test.add_argument("receiver", metavar="RECEIVER")
    notify_test.add_argument("--config", default=_default_config_path(),
                             help=f"config file (default $INFERWATCH_CONFIG or {DEFAULT_CONFIG})")
    notify_test.set_defaults(handler=cmd_notify_test)

    export = commands.add_parser("export", help="artefacts for a central Prometheus")
    export_what = export.add_subparsers(dest="what", metavar="WHAT", required=True)
    export_rules = export_what.add_parser(
        "rules", help="Prometheus rule files for a central Prometheus: the configured and "
                      "bundled rules, the budgets' and the SLOs' rules, every aggregation "
                      "kept per instance")
    export_rules.add_argument("--config", default=_default_config_path(),
                              help=f"config file (default $INFERWATCH_CONFIG or {DEFAULT_CONFIG})")
    export_rules.add_argument("--out", required=True, help="directory to write the files to")
    export_rules.set_defaults(handler=cmd_export_rules)
    export_dashboards = export_what.add_parser(
        "dashboards", help="the Grafana dashboards (the JSON files of dashboards/)")
    export_dashboards.add_argument("--out", required=True,
                                   help="directory to write the files to")
    export_dashboards.set_defaults(handler=cmd_export_dashboards)

    cost = commands.add_parser("cost", help="token spend from the ledger")
    cost_what = cost.add_subparsers(dest="what", metavar="ACTION", required=True)
    cost_report = cost_what.add_parser(
        "report", help="spend, budgets and forecast (current month by default); works while "
                       "the daemon runs")
    cost_report.add_argument("--config", default=_default_config_path(),
                             help=f"config file (default $INFERWATCH_CONFIG or {DEFAULT_CONFIG})")
    cost_report.add_argument("--period", choices=("day", "week", "month"),
                             help="the current day, week or month in cost.timezone")
    cost_report.add_argument("--from", dest="from_", metavar="T",
                             help="start (ISO 8601 date or date-time; local to cost.timezone "
                                  "without an offset)")
    cost_report.add_argument("--to", metavar="T", help="end, exclusive (default now)")
    cost_report.add_argument("--by", choices=("model", "user", "source"), default="model")
    cost_report.add_argument("--format", choices=("table", "json", "csv"), default="table")
    cost_report.set_defaults(handler=cmd_cost_report)

    from monitor.report import HELP_EPILOG  # noqa: PLC0415 - a string, nothing heavy

    report = commands.add_parser(
        "report", help="offline analysis of log files: latency percentiles, throughput, "
                       "errors, cost and trend, recommendations",
        description="Offline analysis of inference and api_usage log files (plain, rotated "
                    "or compressed): requests, latency/TTFT/throughput percentiles overall "
                    "and per model, tokens, error classes per hour, cost per day with its "
                    "trend, the slowest requests by request_id, and recommendations.",
        epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("--logs", nargs="+", required=True, metavar="GLOB",
                        help="log files or shell globs (quote them to let inferwatch expand)")
    report.add_argument("--since", type=_duration, metavar="DUR",
                        help="only requests of the last DUR (Prometheus duration, e.g. 24h, 7d)")
    report.add_argument("--format", choices=("text", "json", "html"), default="text",
                        help="output format (default text); html is one self-contained file")
    report.add_argument("--config", metavar="PATH",
                        help="take cost.currency, timezone, pricing_files and exchange_rates "
                             "from this config file (default: CNY, UTC, the bundled prices)")
    report.set_defaults(handler=cmd_report)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except InferwatchError as exc:
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
