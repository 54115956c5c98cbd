"""Jinja2 rendering of notifications: the default templates in `notify/templates/`, a
receiver's own template text where its config gives one, and the helpers every template has.

Templates see `n` (the Notification), `alerts`, `firing`, `resolved`, `status`,
`group_labels`, `common_labels`, `common_annotations`, `receiver`, `external_url`,
`truncated`, and the helpers `humanize`, `humanize1024`, `humanizeDuration`,
`humanizePercentage`, `humanizeTimestamp` (Prometheus's formatting), `localtime(seconds,
fmt)` (in the configured time zone: `cost.timezone`), `since(seconds)` (a duration up to now)
and `alert_url(alert)` (the alert's rule on the status page). Values that came from logs or
labels are data: the text formats (markdown, plain text) do not escape them, the HTML one
autoescapes. Prompt or response text is never part of an alert, so it cannot appear.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2

from monitor.alerting.gotemplate.values import CallError
from monitor.alerting.templates import HUMANIZERS
from monitor.notify.model import Notification, NotifyAlert

DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


class TemplateError(ValueError):
    """A receiver's template that does not parse or fails to render."""


def _tolerant(function: Callable[[Any], str]) -> Callable[[Any], str]:
    """A Prometheus humanizer that prints what it cannot format instead of failing."""

    def call(value: Any) -> str:
        try:
            return function(value)
        except (CallError, ValueError, TypeError, OverflowError):
            return str(value)

    return call


class Renderer:
    """Renders notifications with one time zone and one status-page URL."""

    def __init__(self, *, timezone: str = "UTC", external_url: str = "") -> None:
        self.zone = ZoneInfo(timezone)
        self.external_url = external_url.rstrip("/")

    @cached_property
    def _text_env(self) -> jinja2.Environment:
        return self._environment(autoescape=False)

    @cached_property
    def _html_env(self) -> jinja2.Environment:
        return self._environment(autoescape=True)

    def _environment(self, *, autoescape: bool) -> jinja2.Environment:
        # A label a template names but an alert lacks renders empty: a page with a blank is
        # better than no page. Markdown and text are not HTML-escaped; the HTML env is.
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("monitor.notify", "templates"),
            autoescape=autoescape, undefined=jinja2.Undefined,  # noqa: S701
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
        env.globals.update({name: _tolerant(fn) for name, fn in HUMANIZERS.items()})
        env.globals["localtime"] = self.localtime
        env.globals["alert_url"] = self.alert_url
        env.filters.update({name: _tolerant(fn) for name, fn in HUMANIZERS.items()})
        env.filters["localtime"] = self.localtime
        return env

    def localtime(self, seconds: float | None, fmt: str = DEFAULT_TIME_FORMAT) -> str:
        if seconds is None:
            return ""
        return datetime.fromtimestamp(seconds, self.zone).strftime(fmt)

    def alert_url(self, alert: NotifyAlert) -> str:
        if not self.external_url:
            return alert.generator_url
        return f"{self.external_url}/#alert-{quote(alert.name, safe='')}"

    def context(self, n: Notification) -> dict[str, Any]:
        def since(seconds: float) -> str:
            return _tolerant(HUMANIZERS["humanizeDuration"])(max(0.0, n.now - seconds))

        return {
            "n": n, "alerts": n.alerts, "firing": n.firing, "resolved": n.resolved,
            "status": n.status, "receiver": n.receiver, "group_labels": dict(n.group_labels),
            "common_labels": n.common_labels, "common_annotations": n.common_annotations,
            "external_url": n.external_url or self.external_url, "truncated": n.truncated,
            "since": since,
        }

    def render(self, n: Notification, *, default: str, override: str | None = None,
               html: bool = False) -> str:
        """`override` (template text from the receiver's config) if given, else the default
        template file `default` (e.g. "dingtalk.md.j2")."""
        env = self._html_env if html else self._text_env
        try:
            template = env.from_string(override) if override is not None \
                else env.get_template(default)
            return template.render(self.context(n)).strip()
        except jinja2.TemplateError as exc:
            where = "the receiver's template" if override is not None else default
            raise TemplateError(f"{where}: {exc}") from None
