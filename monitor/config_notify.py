"""The `notify` section: receivers and their integrations, and the section model itself.

Owns: one model per integration (DingTalk, WeCom, Feishu, email, webhook, forwarding to
Alertmanager) with the HTTP/TLS client settings they share, `ReceiverConfig`, and
`NotifyConfig`, which checks the routing tree against the receivers. Key names are
Alertmanager's. Secrets use the `X` / `X_file` twins of `ConfigModel`. Matchers, routes and
inhibit rules live in `monitor.config_routing`.
"""

from __future__ import annotations

import base64
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from monitor.config_routing import (
    InhibitRule,
    ResolvedRoute,
    RouteConfig,
    resolve_route,
)
from monitor.config_types import (
    ConfigModel,
    ConfigPath,
    GlobPattern,
    HostPort,
    HttpUrl,
    KeyPath,
    NonEmptyStr,
    PositiveDuration,
    Secret,
    check_http_url,
    config_problem,
    config_problems,
    duplicate_name_problems,
    split_host_port,
)


class TlsConfig(ConfigModel):
    """Client TLS settings, as Prometheus's tls_config; the files must exist at load."""

    ca_file: ConfigPath | None = None
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None
    server_name: NonEmptyStr | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _check_files(self) -> TlsConfig:
        problems: list[tuple[KeyPath, str]] = [
            ((key,), f"no such file: {path}")
            for key, path in (("ca_file", self.ca_file), ("cert_file", self.cert_file),
                              ("key_file", self.key_file))
            if path is not None and not path.is_file()
        ]
        if (self.cert_file is None) != (self.key_file is None):
            problems.append((("cert_file" if self.cert_file is None else "key_file",),
                             "cert_file and key_file must be set together"))
        if problems:
            raise config_problems(problems)
        return self


class BasicAuth(ConfigModel):
    secret_fields = ("password",)

    username: NonEmptyStr
    password: Secret | None = None
    password_file: Path | None = None


class Authorization(ConfigModel):
    """An `Authorization: <type> <credentials>` header (Prometheus's `authorization`)."""

    secret_fields = ("credentials",)

    type: NonEmptyStr = "Bearer"
    credentials: Secret | None = None
    credentials_file: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> Authorization:
        if self.type.lower() == "basic":
            raise config_problem(("type",), "use basic_auth for Basic authentication")
        self.require_secret("credentials")
        return self


class HttpClientConfig(ConfigModel):
    """Outbound HTTP settings; at most one way of authenticating."""

    secret_fields = ("bearer_token",)

    bearer_token: Secret | None = None
    bearer_token_file: Path | None = None
    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    tls_config: TlsConfig = Field(default_factory=TlsConfig)

    @model_validator(mode="after")
    def _one_auth_method(self) -> HttpClientConfig:
        chosen = [key for key, value in (("bearer_token", self.bearer_token),
                                         ("basic_auth", self.basic_auth),
                                         ("authorization", self.authorization))
                  if value is not None]
        if len(chosen) > 1:
            raise config_problem((chosen[1],), f"at most one of {', '.join(chosen)} may be set")
        return self

    def authorization_header(self) -> str | None:
        """The Authorization header value these settings call for, if any."""
        if self.bearer_token is not None:
            return f"Bearer {self.bearer_token.get_secret_value()}"
        if self.authorization is not None and self.authorization.credentials is not None:
            return f"{self.authorization.type} {self.authorization.credentials.get_secret_value()}"
        if self.basic_auth is not None:
            password = self.basic_auth.password
            pair = f"{self.basic_auth.username}:{password.get_secret_value() if password else ''}"
            return "Basic " + base64.b64encode(pair.encode()).decode()
        return None


class IntegrationConfig(ConfigModel):
    send_resolved: bool = True

    def check_secret_url(self, name: str) -> None:
        """The secret URL `name` is required and http(s); never echoed in the message."""
        self.require_secret(name)
        url = getattr(self, name)
        try:
            check_http_url(url.get_secret_value(), show_value=False)
        except ValueError as exc:
            key = f"{name}_file" if getattr(self, f"{name}_file") is not None else name
            raise config_problem((key,), str(exc)) from None


class DingtalkConfig(IntegrationConfig):
    """A DingTalk robot webhook; `secret` turns on request signing."""

    secret_fields = ("url", "secret")

    url: Secret | None = None
    url_file: Path | None = None
    secret: Secret | None = None
    secret_file: Path | None = None
    at_mobiles: tuple[NonEmptyStr, ...] = ()
    at_user_ids: tuple[NonEmptyStr, ...] = ()
    at_all: bool = False
    keyword: NonEmptyStr | None = None
    title: str | None = None
    message: str | None = None
    max_alerts: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check_url(self) -> DingtalkConfig:
        self.check_secret_url("url")
        return self


class WecomConfig(IntegrationConfig):
    """A WeCom group robot, by its key or by its full webhook URL (exactly one)."""

    secret_fields = ("key", "url")

    key: Secret | None = None
    key_file: Path | None = None
    url: Secret | None = None
    url_file: Path | None = None
    mentioned_list: tuple[NonEmptyStr, ...] = ()
    mentioned_mobile_list: tuple[NonEmptyStr, ...] = ()
    message: str | None = None
    max_alerts: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _key_or_url(self) -> WecomConfig:
        if self.key is not None and self.url is not None:
            raise config_problem(("url",), "set either key (or key_file) or url (or url_file), "
                                           "not both")
        if self.key is None:
            if self.url is None:
                raise config_problem(("key",), "one of key, key_file, url or url_file is "
                                               "required")
            self.check_secret_url("url")
        return self


class FeishuConfig(IntegrationConfig):
    """A Feishu (Lark) custom bot webhook; `secret` turns on request signing."""

    secret_fields = ("url", "secret")

    url: Secret | None = None
    url_file: Path | None = None
    secret: Secret | None = None
    secret_file: Path | None = None
    title: str | None = None
    message: str | None = None
    max_alerts: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check_url(self) -> FeishuConfig:
        self.check_secret_url("url")
        return self


class EmailConfig(IntegrationConfig):
    """SMTP delivery; `from` is `from_` in Python. TLS: see `implicit_tls`."""

    secret_fields = ("auth_password",)

    send_resolved: bool = False
    to: NonEmptyStr
    from_: NonEmptyStr = Field(alias="from")
    smarthost: HostPort
    hello: NonEmptyStr = "localhost"
    auth_username: NonEmptyStr | None = None
    auth_password: Secret | None = None
    auth_password_file: Path | None = None
    auth_identity: str | None = None
    require_tls: bool = True
    force_implicit_tls: bool | None = None
    tls_config: TlsConfig = Field(default_factory=TlsConfig)
    headers: dict[NonEmptyStr, str] = Field(default_factory=dict)
    html: str | None = None
    text: str | None = None

    @property
    def smarthost_host(self) -> str:
        return split_host_port(self.smarthost)[0]

    @property
    def smarthost_port(self) -> int:
        return split_host_port(self.smarthost)[1]

    @property
    def implicit_tls(self) -> bool:
        """TLS from the first byte: as forced, else on port 465 (as Alertmanager)."""
        if self.force_implicit_tls is not None:
            return self.force_implicit_tls
        return self.smarthost_port == 465

    @model_validator(mode="after")
    def _check(self) -> EmailConfig:
        problems: list[tuple[KeyPath, str]] = []
        if not self.smarthost_host:
            problems.append((("smarthost",), "needs a host name before the port"))
        if self.auth_password is not None and self.auth_username is None:
            problems.append((("auth_username",), "required when a password is set"))
        seen: set[str] = set()
        for header in self.headers:
            if header.lower() in seen:
                problems.append((("headers", header), "duplicate header (names ignore case)"))
            seen.add(header.lower())
        if problems:
            raise config_problems(problems)
        return self


class WebhookConfig(IntegrationConfig):
    """Alertmanager's webhook v4 payload, POSTed to `url`."""

    secret_fields = ("url",)

    url: Secret | None = None
    url_file: Path | None = None
    max_alerts: int = Field(default=0, ge=0)
    timeout: PositiveDuration = 10.0
    http_config: HttpClientConfig = Field(default_factory=HttpClientConfig)

    @model_validator(mode="after")
    def _check_url(self) -> WebhookConfig:
        self.check_secret_url("url")
        return self


class AlertmanagerForwardConfig(IntegrationConfig):
    """Firing alerts POSTed to real Alertmanagers, as Prometheus sends them."""

    urls: tuple[HttpUrl, ...] = Field(min_length=1)
    timeout: PositiveDuration = 10.0
    api_version: Literal["v2"] = "v2"
    path_prefix: str = "/"
    http_config: HttpClientConfig = Field(default_factory=HttpClientConfig)

    @field_validator("path_prefix")
    @classmethod
    def _absolute_prefix(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with / (got {value!r})")
        return value

    def alerts_endpoints(self) -> tuple[str, ...]:
        """The `/api/v2/alerts` URL of each Alertmanager."""
        prefix = self.path_prefix.strip("/")
        suffix = f"/{prefix}/api/v2/alerts" if prefix else "/api/v2/alerts"
        return tuple(url.rstrip("/") + suffix for url in self.urls)


class ReceiverConfig(ConfigModel):
    """A named set of integrations; one with none is a valid blackhole."""

    name: NonEmptyStr
    dingtalk_configs: tuple[DingtalkConfig, ...] = ()
    wecom_configs: tuple[WecomConfig, ...] = ()
    feishu_configs: tuple[FeishuConfig, ...] = ()
    email_configs: tuple[EmailConfig, ...] = ()
    webhook_configs: tuple[WebhookConfig, ...] = ()
    alertmanager_configs: tuple[AlertmanagerForwardConfig, ...] = ()

    def integrations(self) -> tuple[tuple[str, IntegrationConfig], ...]:
        """(integration name as in metrics, e.g. 'dingtalk', config) for every config."""
        return tuple(
            (field_name.removesuffix("_configs"), config)
            for field_name in ("dingtalk_configs", "wecom_configs", "feishu_configs",
                               "email_configs", "webhook_configs", "alertmanager_configs")
            for config in getattr(self, field_name)
        )


def _receiver_problems(route: RouteConfig, known: set[str],
                       path: KeyPath) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    if route.receiver is not None and route.receiver not in known:
        problems.append(((*path, "receiver"), f"undefined receiver {route.receiver!r}"))
    for index, child in enumerate(route.routes):
        problems.extend(_receiver_problems(child, known, (*path, "routes", index)))
    return problems


class NotifyConfig(ConfigModel):
    """Routing tree, receivers, inhibit rules and template files."""

    route: RouteConfig | None = None
    receivers: tuple[ReceiverConfig, ...] = ()
    inhibit_rules: tuple[InhibitRule, ...] = ()
    templates: tuple[GlobPattern, ...] = ()

    @model_validator(mode="after")
    def _check_routing(self) -> NotifyConfig:
        names = [receiver.name for receiver in self.receivers]
        problems = duplicate_name_problems("receivers", names, "receiver")
        if self.route is None:
            if self.receivers:
                problems.append((("route",), "required when receivers are configured"))
        else:
            if self.route.receiver is None:
                problems.append((("route", "receiver"),
                                 "the top-level route must name a default receiver"))
            if self.route.all_matchers:
                problems.append((("route",), "the top-level route must not have matchers: "
                                             "it receives every alert"))
            problems.extend(_receiver_problems(self.route, set(names), ("route",)))
        if problems:
            raise config_problems(problems)
        return self

    @cached_property
    def route_tree(self) -> ResolvedRoute | None:
        """The routing tree with inherited settings filled in; None when no route is set."""
        return resolve_route(self.route, None) if self.route is not None else None

    def receiver_by_name(self, name: str) -> ReceiverConfig:
        """The receiver called `name`; KeyError if there is none."""
        for receiver in self.receivers:
            if receiver.name == name:
                return receiver
        raise KeyError(f"no receiver named {name!r}")
