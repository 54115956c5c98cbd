"""Tests for monitor.config: the SPEC §4 schema, defaults, secrets, ${ENV}, and errors that
name file, line and key."""

from __future__ import annotations

import argparse
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.cli import cmd_check_config
from monitor.config import (
    MAX_LINE_BYTES_LIMIT,
    Config,
    ConfigError,
    FieldSpec,
    Matcher,
    SourceConfig,
    default_config,
    format_key_path,
    load_config,
    parse_config,
    parse_matchers,
)

FIXTURES = Path(__file__).parent / "fixtures" / "config"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inferwatch.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write_config(tmp_path, text), environ=environ or {})


def load_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    return caught.value


def first_line(error: ConfigError) -> str:
    return str(error).splitlines()[0]


# --- the SPEC example ----------------------------------------------------------------------


@pytest.fixture
def spec_example(tmp_path: Path) -> Path:
    secrets = {
        "dingtalk.url": "https://oapi.dingtalk.com/robot/send?access_token=t0ken\n",
        "dingtalk.secret": "SEC123\n",
        "smtp.pass": "hunter2\n",
    }
    text = (FIXTURES / "spec_example.yml").read_text(encoding="utf-8")
    for name, content in secrets.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        text = text.replace(f"/etc/inferwatch/{name}", str(tmp_path / name))
    path = tmp_path / "inferwatch.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_spec_example_validates(spec_example: Path) -> None:
    config = load_config(spec_example, environ={})

    assert config.namespace == "inferwatch"
    assert (config.server.listen_host, config.server.listen_port) == ("127.0.0.1", 9464)
    assert config.storage.retention == 6 * 3600
    assert [source.name for source in config.sources] == ["inference", "api"]
    inference = config.source_by_name("inference")
    assert inference.log_schema == "inference"
    assert inference.labels == {"service": "deepseek-r1"}
    assert inference.paths == ("/var/log/deepseek-r1/*.log",)
    assert config.host.filesystems == ("/", "/var")
    assert config.gpu.enabled == "auto"
    assert config.probes[0].timeout == 3.0
    assert config.processes[0].pattern.search("python app.py --port 7860")
    assert config.cost.timezone == "Asia/Shanghai"
    assert config.cost.budgets[0].limit == Decimal(100)
    assert config.cost.budgets[1].match.model == "deepseek-chat"

    receiver = config.notify.receiver_by_name("oncall")
    dingtalk = receiver.dingtalk_configs[0]
    assert dingtalk.url is not None and dingtalk.secret is not None
    assert dingtalk.url.get_secret_value().endswith("access_token=t0ken")
    assert dingtalk.secret.get_secret_value() == "SEC123"
    email = receiver.email_configs[0]
    assert email.from_ == "inferwatch@example.com"
    assert email.auth_password is not None
    assert email.auth_password.get_secret_value() == "hunter2"
    assert email.send_resolved is False and dingtalk.send_resolved is True
    assert [kind for kind, _ in receiver.integrations()] == ["dingtalk", "email"]

    tree = config.notify.route_tree
    assert tree is not None
    assert (tree.receiver, tree.group_by, tree.group_wait, tree.group_interval,
            tree.repeat_interval) == ("oncall", ("alertname",), 5.0, 60.0, 4 * 3600.0)


def test_secrets_never_appear_in_repr(spec_example: Path) -> None:
    config = load_config(spec_example, environ={})
    for text in (repr(config), str(config), repr(config.notify.receivers[0])):
        assert "t0ken" not in text
        assert "SEC123" not in text
        assert "hunter2" not in text


def test_loading_twice_gives_equal_configs(spec_example: Path) -> None:
    first = load_config(spec_example, environ={})
    second = load_config(spec_example, environ={})
    assert first == second
    assert first.sources[0] == second.sources[0]


# --- errors name file, line and key --------------------------------------------------------

ERROR_CASES = {
    "unknown top-level key": (
        """\
        namespace: x
        frobnicate: 1
        """, 2, "frobnicate", "unknown key 'frobnicate'"),
    "unknown key in sources[1]": (
        """\
        sources:
          - name: a
            paths: [a.log]
            schema: inference
          - name: b
            paths: [b.log]
            schema: api_usage
            colour: blue
        """, 8, "sources[1].colour", "unknown key 'colour'"),
    "typo suggestion": (
        """\
        scrape_intervall: 5s
        """, 1, "scrape_intervall",
        "unknown key 'scrape_intervall'; did you mean 'scrape_interval'?"),
    "nested typo suggestion": (
        """\
        server:
          listen: 127.0.0.1:9000
          bearer_tokn: x
        """, 3, "server.bearer_tokn", "did you mean 'bearer_token'?"),
    "wrong type": (
        """\
        ingest:
          checkpoint_lines: lots
        """, 2, "ingest.checkpoint_lines", "must be a valid integer"),
    "mapping expected": (
        """\
        metrics: [1, 2]
        """, 1, "metrics", "must be a mapping (got a list)"),
    "bad duration": (
        """\
        host:
          interval: 5 minutes
        """, 2, "host.interval", "invalid duration '5 minutes'"),
    "bare number duration": (
        """\
        scrape_interval: 15
        """, 1, "scrape_interval", "add a unit, e.g. 15s"),
    "zero interval": (
        """\
        evaluation_interval: 0
        """, 1, "evaluation_interval", "must be greater than 0s"),
    "bad regex in processes": (
        """\
        processes:
          - name: model
            match: "app(.py"
        """, 3, "processes[0].match", "invalid regular expression 'app(.py'"),
    "bad enum": (
        """\
        sources:
          - name: a
            paths: [a.log]
            schema: inference
            start_at: begining
        """, 5, "sources[0].start_at",
        "must be one of beginning, end (got 'begining'); did you mean 'beginning'?"),
    "duplicate YAML key": (
        """\
        namespace: a
        server: {}
        namespace: b
        """, 3, "namespace", "duplicate key 'namespace' (first set at line 1)"),
    "duplicate source name": (
        """\
        sources:
          - {name: api, paths: [a.log], schema: api_usage}
          - {name: api, paths: [b.log], schema: api_usage}
        """, 3, "sources[1].name", "duplicate source name 'api' (first used by sources[0])"),
    "missing required key": (
        """\
        sources:
          - name: a
            paths: [a.log]
        """, 2, "sources[0].schema", "required key is missing"),
    "empty path list": (
        """\
        sources:
          - name: a
            paths: []
            schema: inference
        """, 3, "sources[0].paths", "must not be empty"),
    "unset environment variable": (
        """\
        server:
          listen: "${IW_HOST}:9464"
        """, 2, "server.listen", "environment variable IW_HOST is not set"),
    "non-loopback listen without token": (
        """\
        server:
          listen: 0.0.0.0:9464
        """, 2, "server.listen", "set server.bearer_token_file"),
    "route to a missing receiver, nested": (
        """\
        notify:
          route:
            receiver: oncall
            routes:
              - matchers: ['team="db"']
                routes:
                  - matchers: ['severity="page"']
                    receiver: pager
          receivers:
            - name: oncall
        """, 8, "notify.route.routes[0].routes[0].receiver", "undefined receiver 'pager'"),
    "top-level route with matchers": (
        """\
        notify:
          route:
            receiver: oncall
            matchers: [severity=page]
          receivers:
            - name: oncall
        """, 2, "notify.route", "must not have matchers"),
    "bad matcher": (
        """\
        notify:
          route:
            receiver: oncall
            routes:
              - receiver: oncall
                matchers:
                  - 'severity="page"'
                  - 'severity~page'
          receivers:
            - name: oncall
        """, 8, "notify.route.routes[0].matchers[1]", "bad matcher format"),
    "custom schema without timestamp": (
        """\
        sources:
          - name: c
            paths: [c.log]
            schema: custom
            fields: {duration: elapsed}
        """, 5, "sources[0].fields", "must map timestamp"),
    "fields with a built-in schema": (
        """\
        sources:
          - name: c
            paths: [c.log]
            schema: inference
            fields: {timestamp: ts}
        """, 5, "sources[0].fields", "only allowed with schema: custom"),
    "unit on a field that takes none": (
        """\
        sources:
          - name: c
            paths: [c.log]
            schema: custom
            fields:
              timestamp: ts
              model: {path: m, unit: s}
        """, 7, "sources[0].fields.model.unit", "only duration, ttft, timestamp take a unit"),
    "reserved label": (
        """\
        sources:
          - name: c
            paths: [c.log]
            schema: inference
            labels:
              service: x
              status: y
        """, 7, "sources[0].labels.status", "set by inferwatch itself"),
    "reserved external label": (
        """\
        external_labels:
          host: gpu-7
          __tenant: a
        """, 3, "external_labels.__tenant", "starting with __ are reserved"),
    "empty external label": (
        """\
        external_labels:
          host: ""
        """, 2, "external_labels.host", "must not be empty"),
    "probe timeout not below interval": (
        """\
        probes:
          - name: health
            url: http://127.0.0.1:7860/health
            interval: 2s
            timeout: 2s
        """, 5, "probes[0].timeout", "must be shorter than the probe's interval"),
    "bad time zone": (
        """\
        cost:
          timezone: Asia/Shangai
        """, 2, "cost.timezone", "unknown time zone 'Asia/Shangai'"),
    "budget thresholds out of order": (
        """\
        cost:
          budgets:
            - {name: d, period: day, limit: 10, thresholds: [0.8, 0.5]}
        """, 3, "cost.budgets[0].thresholds", "increasing order"),
    "bad listen address": (
        """\
        server:
          listen: localhost:99999
        """, 2, "server.listen", "port must be between 1 and 65535"),
    "bad namespace": (
        """\
        namespace: my-app
        """, 1, "namespace", "must match"),
    "receivers without a route": (
        """\
        notify:
          receivers:
            - name: oncall
        """, 1, "notify.route", "required when receivers are configured"),
    "duplicate receiver": (
        """\
        notify:
          route: {receiver: a}
          receivers:
            - name: a
            - name: a
        """, 5, "notify.receivers[1].name", "duplicate receiver name 'a'"),
    "number where text is expected": (
        """\
        sources:
          - name: a
            paths: [a.log]
            schema: inference
            labels: {gpu: 0}
        """, 5, "sources[0].labels.gpu", "quote it"),
}


@pytest.mark.parametrize(("text", "line", "key", "message"), list(ERROR_CASES.values()),
                         ids=list(ERROR_CASES))
def test_error_names_file_line_and_key(
        tmp_path: Path, text: str, line: int, key: str, message: str) -> None:
    error = load_error(tmp_path, text)
    file = str(tmp_path / "inferwatch.yml")
    assert (error.file, error.line, error.key) == (file, line, key), str(error)
    assert first_line(error).startswith(f"{file}:{line}: {key}: ")
    assert message in first_line(error)


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, """\
        namespace: a
        server:
          listen: [127.0.0.1
        storage: {}
        """)
    assert error.line == 4
    assert str(error).startswith(f"{tmp_path / 'inferwatch.yml'}:4: invalid YAML: ")


def test_all_errors_reported_one_per_line_in_file_order(tmp_path: Path) -> None:
    error = load_error(tmp_path, """\
        scrape_interval: 10
        ingest:
          bogus: 1
        namespace: ok
        host: {interval: soon}
        """)
    lines = str(error).splitlines()
    assert len(lines) == 3
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in lines] == ["1", "3", "5"]
    assert "host.interval" in lines[2]


def test_secret_file_missing(tmp_path: Path) -> None:
    error = load_error(tmp_path, """\
        server:
          bearer_token_file: secrets/token
        """)
    assert error.line == 2 and error.key == "server.bearer_token_file"
    assert f"cannot read secret file {tmp_path / 'secrets' / 'token'}" in str(error)


def test_secret_and_secret_file_together(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc\n")
    error = load_error(tmp_path, """\
        server:
          bearer_token: abc
          bearer_token_file: token
        """)
    assert (error.line, error.key) == (3, "server.bearer_token_file")
    assert "set either bearer_token or bearer_token_file, not both" in str(error)


def test_empty_secret_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    error = load_error(tmp_path, "server: {bearer_token_file: token}\n")
    assert error.key == "server.bearer_token_file" and "is empty" in str(error)


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    error = load_error(tmp_path, """\
        notify:
          route: {receiver: r}
          receivers:
            - name: r
              webhook_configs: [{url: "not-a-url-s3cret"}]
        """)
    assert error.key == "notify.receivers[0].webhook_configs[0].url"
    assert "s3cret" not in str(error)


# --- secrets -------------------------------------------------------------------------------


def test_secret_file_relative_to_config_dir_one_newline_stripped(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc\n\n")
    config = load(tmp_path, "server: {listen: '0.0.0.0:9464', bearer_token_file: token}\n")
    assert config.server.bearer_token is not None
    assert config.server.bearer_token.get_secret_value() == "abc\n"
    assert config.server.bearer_token_file == tmp_path / "token"


def test_secret_file_found_in_credentials_directory_first(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "token").write_text("from-systemd\n")
    (tmp_path / "token").write_text("from-config-dir\n")
    text = "server: {bearer_token_file: token}\n"

    config = load(tmp_path, text, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.server.bearer_token is not None
    assert config.server.bearer_token.get_secret_value() == "from-systemd"

    (credentials / "token").unlink()
    config = load(tmp_path, text, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.server.bearer_token is not None
    assert config.server.bearer_token.get_secret_value() == "from-config-dir"


def test_inline_secret_and_token_allows_public_listen(tmp_path: Path) -> None:
    config = load(tmp_path, "server: {listen: '[::]:9000', bearer_token: t}\n")
    assert (config.server.listen_host, config.server.listen_port) == ("::", 9000)
    assert not config.server.listens_on_loopback


@pytest.mark.parametrize("listen", ["127.0.0.1:9464", "127.3.2.1:80", "[::1]:9464",
                                    "localhost:9464"])
def test_loopback_listen_needs_no_token(tmp_path: Path, listen: str) -> None:
    config = load(tmp_path, f"server: {{listen: '{listen}'}}\n")
    assert config.server.listens_on_loopback


def test_allow_unauthenticated(tmp_path: Path) -> None:
    config = load(tmp_path, "server: {listen: ':9464', allow_unauthenticated: true}\n")
    assert config.server.listen_host == ""


def test_wecom_key_or_url(tmp_path: Path) -> None:
    (tmp_path / "wecom.key").write_text("k-123\n")
    config = load(tmp_path, """\
        notify:
          route: {receiver: r}
          receivers:
            - name: r
              wecom_configs: [{key_file: wecom.key}]
              webhook_configs:
                - url: http://hook.example/x
                  http_config: {basic_auth: {username: u, password: p}}
        """)
    receiver = config.notify.receivers[0]
    key = receiver.wecom_configs[0].key
    assert key is not None and key.get_secret_value() == "k-123"
    assert receiver.webhook_configs[0].http_config.authorization_header() == "Basic dTpw"


# --- ${ENV} --------------------------------------------------------------------------------


def test_environment_expansion_and_dollar_escape(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        namespace: ${IW_NS}
        server: {listen: "${IW_HOST}:${IW_PORT}"}
        processes:
          - {name: model, match: "app\\\\.py$$"}
          - {name: other, match: "end$"}
        """, environ={"IW_NS": "deepseek", "IW_HOST": "127.0.0.1", "IW_PORT": "9000"})
    assert config.namespace == "deepseek"
    assert config.server.listen_port == 9000
    assert config.processes[0].match == "app\\.py$"
    assert config.processes[1].match == "end$"


def test_malformed_reference_is_an_error(tmp_path: Path) -> None:
    error = load_error(tmp_path, "namespace: ${IW-NS}\n")
    assert error.key == "namespace" and "write ${NAME}, or $$ for a literal $" in str(error)


# --- values --------------------------------------------------------------------------------


def test_money_is_exact_decimal(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        cost:
          exchange_rates: {USD: "7.1", EUR: 7.7}
          budgets:
            - {name: tiny, period: day, limit: 0.1, thresholds: [0.3, 1]}
        sources:
          - {name: local, paths: [x.log], schema: inference, gpu_hourly_cost: 12.34}
        """)
    budget = config.cost.budgets[0]
    assert budget.limit == Decimal("0.1")
    assert str(budget.limit) == "0.1"
    assert budget.thresholds == (Decimal("0.3"), Decimal(1))
    assert config.cost.exchange_rates == {"USD": Decimal("7.1"), "EUR": Decimal("7.7")}
    assert config.sources[0].gpu_hourly_cost == Decimal("12.34")


def test_defaults_when_keys_are_omitted(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.namespace == "inferwatch"
    assert config.server.listen == "127.0.0.1:9464"
    assert config.server.bearer_token is None
    assert config.storage.path == Path("/var/lib/inferwatch")
    assert config.storage.retention == 6 * 3600
    assert (config.scrape_interval, config.evaluation_interval) == (1.0, 1.0)
    ingest = config.ingest
    assert (ingest.checkpoint_interval, ingest.checkpoint_lines, ingest.poll_interval,
            ingest.rescan_interval, ingest.rotate_wait, ingest.inotify) == (
        1.0, 10000, 0.25, 1.0, 30.0, True)
    assert (config.metrics.series_limit, config.metrics.user_label) == (10000, False)
    assert config.sources == () and config.probes == () and config.processes == ()
    assert (config.host.enabled, config.host.interval, config.host.filesystems) == (
        True, 5.0, None)
    assert (config.gpu.enabled, config.gpu.interval) == ("auto", 5.0)
    assert (config.cost.currency, config.cost.timezone) == ("CNY", "UTC")
    assert config.cost.ledger_retention == 400 * 86400
    assert config.notify.route is None and config.notify.route_tree is None


def test_empty_sections_take_their_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        server:
        ingest:
        notify:
        """)
    assert config.server.listen == "127.0.0.1:9464"
    assert config.ingest.checkpoint_lines == 10000
    assert config.notify.receivers == ()


def test_source_defaults_and_custom_fields(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        sources:
          - name: gw
            paths: [logs/*.jsonl]
            exclude_paths: [logs/old-*.jsonl]
            schema: custom
            max_line_bytes: 64KiB
            fields:
              timestamp: {path: ts, unit: ms}
              duration: latency.total
              ttft: {path: latency.first, unit: s}
              model: req.model
            include: {req.model: "^deepseek-"}
        """)
    source = config.sources[0]
    assert source.paths == (str(tmp_path / "logs" / "*.jsonl"),)
    assert source.exclude_paths == (str(tmp_path / "logs" / "old-*.jsonl"),)
    assert source.start_at == "beginning" and source.max_line_bytes == 64 * 1024
    assert source.fields is not None
    assert (source.fields["timestamp"].path, source.fields["timestamp"].unit) == ("ts", "ms")
    assert source.fields["duration"].unit == "ms"
    assert source.fields["duration"].path == "latency.total"
    assert source.fields["ttft"].unit == "s"
    assert source.fields["model"].unit is None
    assert source.include_patterns["req.model"].search("deepseek-chat")


def test_compiled_include_and_exclude_patterns_are_cached_by_dotted_path(
        tmp_path: Path) -> None:
    source = load(tmp_path, """\
        sources:
          - name: a
            paths: [a.log]
            schema: inference
            include: {req.model: "^deepseek-", status: "^2"}
            exclude: {req.user: "^test-"}
        """).sources[0]
    assert list(source.include_patterns) == ["req.model", "status"]
    assert source.include_patterns["status"].pattern == "^2"
    assert source.exclude_patterns["req.user"].search("test-42")
    assert source.include_patterns is source.include_patterns
    assert source.exclude_patterns is source.exclude_patterns


def test_field_spec_has_no_keys_helper() -> None:
    assert not hasattr(FieldSpec, "keys")


def test_exclude_paths_without_a_slash_match_base_names_and_stay_verbatim(
        tmp_path: Path) -> None:
    source = load(tmp_path, """\
        sources:
          - name: a
            paths: [/var/log/app/*.log]
            schema: inference
            exclude_paths: ["*.gz", "old-*", "logs/skip-*.log", /var/log/app/tmp/*, ./x.log]
        """).sources[0]
    assert source.exclude_paths == (
        "*.gz", "old-*", str(tmp_path / "logs" / "skip-*.log"), "/var/log/app/tmp/*",
        str(tmp_path / "x.log"))
    description = SourceConfig.model_fields["exclude_paths"].description or ""
    assert "without '/'" in description and "base name" in description


def test_exclude_paths_entries_must_not_be_empty(tmp_path: Path) -> None:
    error = load_error(tmp_path, """\
        sources:
          - {name: a, paths: [a.log], schema: inference, exclude_paths: [" "]}
        """)
    assert error.key == "sources[0].exclude_paths[0]" and "must not be empty" in str(error)


@pytest.mark.parametrize(("size", "expected"), [
    ("1KiB", 1024), ("64MiB", 64 * 1024 * 1024), (67108864, 67108864)])
def test_max_line_bytes_up_to_64_mib(tmp_path: Path, size: object, expected: int) -> None:
    source = load(tmp_path, f"""\
        sources:
          - {{name: a, paths: [a.log], schema: inference, max_line_bytes: {size}}}
        """).sources[0]
    assert source.max_line_bytes == expected
    assert MAX_LINE_BYTES_LIMIT == 64 * 1024 * 1024


def test_max_line_bytes_defaults_to_1_mib(tmp_path: Path) -> None:
    config = load(tmp_path, "sources: [{name: a, paths: [a.log], schema: inference}]\n")
    assert config.sources[0].max_line_bytes == 1024 * 1024


@pytest.mark.parametrize("size", ["64GiB", "67108865", "65MiB", "9" * 40])
def test_max_line_bytes_above_64_mib_is_refused(tmp_path: Path, size: str) -> None:
    error = load_error(tmp_path, f"""\
        sources:
          - name: a
            paths: [a.log]
            schema: inference
            max_line_bytes: {size}
        """)
    assert (error.line, error.key) == (5, "sources[0].max_line_bytes")
    assert "64MiB" in str(error) or "too large" in str(error)


def test_state_directory_is_the_default_storage_path(tmp_path: Path) -> None:
    config = load(tmp_path, "", environ={"STATE_DIRECTORY": "/var/lib/iw:/var/lib/other"})
    assert config.storage.path == Path("/var/lib/iw")
    config = load(tmp_path, "storage: {path: state}\n",
                  environ={"STATE_DIRECTORY": "/var/lib/iw"})
    assert config.storage.path == tmp_path / "state"


def test_yaml_12_scalars(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        sources:
          - name: a
            paths: [a.log]
            schema: inference
            labels: {enabled: on, answer: no, at: "16:30"}
        gpu: {enabled: false}
        host: {enabled: off}
        """)
    assert config.sources[0].labels == {"enabled": "on", "answer": "no", "at": "16:30"}
    assert config.gpu.enabled == "false"
    assert config.host.enabled is False


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        sources:
          - &common {name: a, paths: [a.log], schema: inference, start_at: end}
          - <<: *common
            name: b
            paths: [b.log]
        """)
    assert [(s.name, s.start_at, s.log_schema) for s in config.sources] == [
        ("a", "end", "inference"), ("b", "end", "inference")]
    error = load_error(tmp_path, """\
        sources:
          - &common {name: a, paths: [a.log], schema: inference}
          - <<: *common
            name: b
            start_at: later
        """)
    assert (error.line, error.key) == (5, "sources[1].start_at")


def test_config_equality_and_source_diffing(tmp_path: Path) -> None:
    text = """\
        sources:
          - {name: a, paths: [a.log], schema: inference, include: {model: "^x"}}
        """
    first = load(tmp_path, text).sources[0]
    second = load(tmp_path, text).sources[0]
    assert first.include_patterns  # a cached compiled pattern must not affect equality
    assert first == second
    changed = load(tmp_path, text.replace("^x", "^y")).sources[0]
    assert changed != first


# --- default_config ------------------------------------------------------------------------


def test_default_config() -> None:
    config = default_config()
    assert config.sources == ()
    assert config.namespace == "inferwatch"
    demo = default_config(
        storage={"path": "/tmp/iw-demo"},
        sources=[{"name": "demo", "paths": ["/tmp/iw-demo/*.log"], "schema": "inference"}],
        scrape_interval="2s",
    )
    assert demo.storage.path == Path("/tmp/iw-demo")
    assert isinstance(demo.source_by_name("demo"), SourceConfig)
    assert demo.scrape_interval == 2.0
    with pytest.raises(KeyError):
        demo.source_by_name("missing")


def test_default_config_rejects_bad_overrides() -> None:
    with pytest.raises(ConfigError) as caught:
        default_config(scrape_interval=5, nonsense=True)
    assert str(caught.value).splitlines() == [
        "<defaults>: scrape_interval: a bare number is not a duration: add a unit, e.g. 5s",
        "<defaults>: nonsense: unknown key 'nonsense'",
    ]


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yml")
    assert str(caught.value).startswith(f"{tmp_path / 'absent.yml'}: cannot read config file")


def test_parse_config_without_a_file() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("namespace: 1x\n", environ={})
    assert str(caught.value).startswith("<config>:1: namespace: ")


# --- notify --------------------------------------------------------------------------------


def test_route_inheritance(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        notify:
          route:
            receiver: default
            group_by: [alertname]
            repeat_interval: 1h
            routes:
              - matchers: ['severity="page"', 'team=~"db|infra"']
                receiver: pager
                group_wait: 10s
                continue: true
                routes:
                  - match: {env: prod}
                    group_by: ['...']
              - match_re: {service: "^llm-.*"}
                group_by: [service]
          receivers:
            - name: default
            - name: pager
        """)
    tree = config.notify.route_tree
    assert tree is not None
    pager, llm = tree.routes
    assert (pager.receiver, pager.group_by, pager.group_wait, pager.group_interval,
            pager.repeat_interval, pager.continue_) == (
        "pager", ("alertname",), 10.0, 300.0, 3600.0, True)
    assert pager.path == "route.routes[0]"
    prod = pager.routes[0]
    assert (prod.receiver, prod.group_by_all, prod.group_wait) == ("pager", True, 10.0)
    assert (llm.receiver, llm.group_by, llm.group_wait, llm.continue_) == (
        "default", ("service",), 30.0, False)
    assert pager.matches({"severity": "page", "team": "db"})
    assert not pager.matches({"severity": "page", "team": "dba"})
    assert llm.matches({"service": "llm-gateway"})
    assert not llm.matches({"service": "my-llm-gateway"})


@pytest.mark.parametrize(("text", "expected"), [
    ('severity="page"', [("severity", "=", "page")]),
    ("severity=page", [("severity", "=", "page")]),
    ('alertname=~"High.*"', [("alertname", "=~", "High.*")]),
    ('{a!="x, y", b!~c}', [("a", "!=", "x, y"), ("b", "!~", "c")]),
    (r'msg="say \"hi\"\n"', [("msg", "=", 'say "hi"\n')]),
    ("  env = prod  ", [("env", "=", "prod")]),
    ('empty=""', [("empty", "=", "")]),
])
def test_parse_matchers(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert [(m.name, m.op, m.value) for m in parse_matchers(text)] == expected


@pytest.mark.parametrize("text", ["severity", 'a="unclosed', 'a="x"y"', "1a=b", "a=~("])
def test_parse_matchers_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"matcher|regular expression"):
        parse_matchers(text)


def test_matcher_semantics() -> None:
    assert Matcher(name="a", op="=~", value="b|c").matches({"a": "c"})
    assert not Matcher(name="a", op="=~", value="b").matches({"a": "bb"})
    assert Matcher(name="a", op="!=", value="x").matches({})
    assert Matcher(name="a", op="=", value="").matches({})
    assert str(Matcher(name="a", op="!~", value='x"y')) == 'a!~"x\\"y"'


def test_inhibit_rules_and_alertmanager_forwarding(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        notify:
          route: {receiver: am}
          receivers:
            - name: am
              alertmanager_configs:
                - urls: ["http://am1:9093", "http://am2:9093/"]
                  path_prefix: /alertmanager
          inhibit_rules:
            - source_matchers: [severity=critical]
              target_match: {severity: warning}
              equal: [alertname]
        """)
    forward = config.notify.receivers[0].alertmanager_configs[0]
    assert forward.alerts_endpoints() == (
        "http://am1:9093/alertmanager/api/v2/alerts", "http://am2:9093/alertmanager/api/v2/alerts")
    rule = config.notify.inhibit_rules[0]
    assert [str(m) for m in rule.all_source_matchers] == ['severity="critical"']
    assert [str(m) for m in rule.all_target_matchers] == ['severity="warning"']
    assert rule.equal == ("alertname",)


def test_email_tls_settings(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca")
    config = load(tmp_path, """\
        notify:
          route: {receiver: mail}
          receivers:
            - name: mail
              email_configs:
                - to: ops@example.com
                  from: iw@example.com
                  smarthost: smtp.example.com:465
                  tls_config: {ca_file: ca.pem}
                  headers: {Subject: hi}
        """)
    email = config.notify.receivers[0].email_configs[0]
    assert email.implicit_tls and email.require_tls
    assert (email.smarthost_host, email.smarthost_port) == ("smtp.example.com", 465)
    assert email.tls_config.ca_file == tmp_path / "ca.pem"

    error = load_error(tmp_path, """\
        notify:
          route: {receiver: mail}
          receivers:
            - name: mail
              email_configs:
                - to: ops@example.com
                  from: iw@example.com
                  smarthost: smtp.example.com:587
                  tls_config: {ca_file: missing.pem}
        """)
    assert error.key == "notify.receivers[0].email_configs[0].tls_config.ca_file"
    assert error.line == 9


def test_format_key_path() -> None:
    assert format_key_path(("sources", 0, "start_at")) == "sources[0].start_at"
    assert format_key_path(("sources", 0, "include", "usage.total")) == (
        "sources[0].include['usage.total']")
    assert format_key_path(()) == ""


# --- hostile input: only ever a ConfigError, one line per problem --------------------------


def assert_one_line_per_problem(error: ConfigError, file: str) -> None:
    for line in str(error).splitlines():
        assert line.startswith(f"{file}:"), str(error)
    assert "\n" not in error.message.splitlines()[0]


def test_control_character_names_its_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, "namespace: a\nserver: {listen: b\x07}\n")
    file = str(tmp_path / "inferwatch.yml")
    assert (error.file, error.line) == (file, 2)
    assert str(error) == (f"{file}:2: invalid YAML: character #x0007 is not allowed (special "
                          "characters are not allowed); write it as an escape in a "
                          "double-quoted string")


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\ud800", "\ufffe"])
def test_unreadable_characters_are_config_errors(character: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"namespace: x\nsources: []\n# {character}\n", environ={})
    assert caught.value.line == 3
    assert len(str(caught.value).splitlines()) == 1


def test_recursive_alias_names_file_line_and_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, """\
        namespace: x
        sources: &x [ {name: a, paths: *x, schema: inference} ]
        """)
    assert (error.line, error.key) == (2, "sources[0].paths")
    assert "recursive YAML alias" in str(error)
    assert len(str(error).splitlines()) == 1


def test_recursive_mapping_alias() -> None:
    with pytest.raises(ConfigError, match=r"^<config>:1: a\.b: recursive YAML alias"):
        parse_config("a: &m {b: *m}\n", environ={})


def test_shared_aliases_that_are_not_recursive_still_load(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        sources:
          - {name: a, paths: &paths [a.log, b.log], schema: inference}
          - {name: b, paths: *paths, schema: api_usage}
        """)
    assert config.sources[0].paths == config.sources[1].paths


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_a_config_error(opening: str, closing: str) -> None:
    text = "sources: " + opening * 5000 + closing * 5000 + "\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="deep.yml", environ={})
    assert str(caught.value).startswith("deep.yml:1: invalid YAML: nested more than")


def test_deep_nesting_through_aliases_is_a_config_error() -> None:
    text = "d0: &d0 [[[[[[[[[[]]]]]]]]]]\n" + "".join(
        f"d{i}: &d{i} [[[[[[[[[[*d{i - 1}]]]]]]]]]]\n" for i in range(1, 600))
    with pytest.raises(ConfigError, match="nested more than 100 levels deep"):
        parse_config(text, environ={})


def test_alias_bomb_is_refused_quickly() -> None:
    text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
    started = time.monotonic()
    with pytest.raises(ConfigError, match="once aliases are expanded"):
        parse_config(text, environ={})
    assert time.monotonic() - started < 10


def test_chained_merge_keys_do_not_double_in_size() -> None:
    text = "m0: &m0 {k0: 1}\n" + "".join(
        f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}\n" for i in range(1, 80))
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert "unknown key 'm0'" in str(caught.value)


def test_merge_keys_keep_yaml_precedence(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        sources:
          - &a {name: a, paths: [a.log], schema: inference, start_at: end}
          - &b {name: b, paths: [b.log], schema: api_usage, start_at: beginning}
          - <<: [*a, *b]
            name: c
        """)
    merged = config.sources[2]
    assert (merged.name, merged.log_schema, merged.start_at) == ("c", "inference", "end")
    assert merged.paths == (str(tmp_path / "a.log"),)


@pytest.mark.parametrize("literal", ["1" * 5000, "-" + "9" * 4301, "0x" + "f" * 4000])
def test_huge_integer_literal_is_a_config_error(literal: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"namespace: x\nscrape_interval: {literal}\n", environ={})
    assert caught.value.line == 2
    assert "integer too large" in str(caught.value)


def test_large_but_readable_integer_is_just_a_wrong_value() -> None:
    with pytest.raises(ConfigError, match=r"scrape_interval: a bare number is not a duration"):
        parse_config(f"scrape_interval: {'9' * 4300}\n", environ={})


@pytest.mark.parametrize(("value", "message"), [
    ("!!int abc", "cannot read this value as int"),
    ("!!float abc", "cannot read this value as float"),
    ("!!bool maybe", "cannot read this value as bool"),
    ("!!timestamp 2020-99-99", "cannot read this value as timestamp"),
    ("!!binary 'a'", "failed to decode base64"),
    ("!!python/object:os.system x", "could not determine a constructor"),
])
def test_values_their_tag_cannot_read(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"namespace: x\nserver: {{listen: {value}}}\n", environ={})
    assert caught.value.line == 2 and message in str(caught.value)


@pytest.mark.parametrize(("text", "key", "message"), [
    ("scrape_interval: " + "9" * 400 + "y\n", "scrape_interval", "duration is too long"),
    ("scrape_interval: " + "9" * 30 + "0ms\n", "scrape_interval", "duration is too long"),
    ("processes: [{name: p, match: '" + "(" * 3000 + ")" * 3000 + "'}]\n",
     "processes[0].match", "nests too deeply"),
    ("processes: [{name: p, match: 'a{4294967296}'}]\n", "processes[0].match",
         "invalid repeat count"),
])
def test_values_that_overflow_are_config_errors(text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert caught.value.key == key and message in str(caught.value)


@pytest.mark.parametrize(("text", "key"), [
    ('server: {listen: "a\\nb:80"}\n', "server.listen"),
    ('notify: {route: {receiver: r, routes: [{matchers: ["a=\\"x\\u2028y\\"z\\""]}]}, '
     "receivers: [{name: r}]}\n", "notify.route.routes[0].matchers[0]"),
    ('namespace: "\\e[31m\\x85"\n', "namespace"),
])
def test_every_problem_is_one_line(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text + "scrape_interval: 5\n", environ={})
    error = caught.value
    lines = str(error).splitlines()
    assert len(lines) == 2, lines
    assert error.key == key and lines[0].startswith(f"<config>:1: {key}: ")
    assert lines[1].startswith("<config>:")
    assert not any(ch in error.message.split("\n")[0] for ch in "\r\x1b\x85\u2028")


def test_odd_keys_are_quoted_on_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('"ab\\n": 1\n', environ={})
    assert str(caught.value) == "<config>:1: ['ab\\n']: unknown key 'ab\\n'"
    assert format_key_path(("ok", "x\n")) == "ok['x\\n']"


def test_load_config_with_a_nul_in_the_path() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config("bad\x00name.yml")


def test_check_config_prints_one_line_per_problem_and_no_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "inferwatch.yml"
    path.write_text("sources: &x [ {name: a, paths: *x, schema: inference} ]\n"
                    "namespace: a\x07\n", encoding="utf-8")
    assert cmd_check_config(argparse.Namespace(path=str(path))) == 1
    err = capsys.readouterr().err
    assert err == f"inferwatch: {path}:2: invalid YAML: character #x0007 is not allowed " \
                  "(special characters are not allowed); write it as an escape in a " \
                  "double-quoted string\n"

    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    assert cmd_check_config(argparse.Namespace(path=str(path))) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1


_YAML_PIECES = [
    "{", "}", "[", "]", ":", ": ", "- ", ", ", "\n", "  ", "#", "'", '"', "|", ">", "? ",
    "&a ", "*a", "&b ", "*b", "<<: ", "!!int ", "!!bool ", "!!float ", "!!timestamp ",
    "!!binary ", "!!set ", "!!omap ", "!!python/name:os.system ", "!x ", "%YAML 1.1\n",
    "---\n", "...\n", "${X}", "${", "$$", "\\x07", "\\ud800", "\\e", "0x", "1e999", ".nan",
    "9" * 4400, "~", "\t", "\r", "\x85", "\u2028", "\ufeff", "\x00", "\x07", "sources",
    "name", "paths", "schema", "inference", "custom", "fields", "max_line_bytes", "64GiB",
    "exclude_paths", "include", "notify", "route", "receiver", "receivers", "matchers",
    "timezone", "listen", "scrape_interval", "99999999999999999999999999999999y", "(((",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(
    st.binary(max_size=300).map(lambda data: data.decode("latin-1")),
    st.binary(max_size=300).map(lambda data: data.decode("utf-8", "surrogateescape")),
    st.text(max_size=200),
    st.lists(st.sampled_from(_YAML_PIECES), max_size=60).map("".join),
))
def test_hostile_text_gives_only_config_errors(text: str) -> None:
    try:
        parse_config(text, file="fuzz.yml", environ={"X": "1"})
    except ConfigError as error:
        assert_one_line_per_problem(error, "fuzz.yml")
