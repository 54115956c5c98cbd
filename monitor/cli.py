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
    from monitor.errors import ConfigError  # noqa: PLC0415

    try:
        config = load_config(args.path)
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
    return parser


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
