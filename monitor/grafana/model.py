"""The typed subset of Grafana's dashboard JSON that inferwatch's dashboards use.

Dashboards are described with these frozen dataclasses (rows of panels, each with its
PromQL targets, unit and thresholds) and turned into the JSON Grafana imports by
`Dashboard.to_json()`. Everything that Grafana would otherwise invent on import is fixed
here: panel ids are numbered in layout order, grid positions follow from each panel's width
and height, targets get refIds A, B, C..., and the text is serialised with sorted keys, so
the same description always gives the same bytes.

Every panel and query reads its data source from the `datasource` template variable, and
the dashboard carries the `instance` variable that the queries filter on (see
`monitor.grafana.promql`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

GRID_WIDTH = 24
SCHEMA_VERSION = 39
DATASOURCE_VARIABLE = "datasource"
INSTANCE_VARIABLE = "instance"
DATASOURCE_REF: dict[str, Any] = {"type": "prometheus", "uid": f"${{{DATASOURCE_VARIABLE}}}"}

PanelKind = Literal["timeseries", "stat", "bargauge", "heatmap", "table", "state-timeline"]
TargetFormat = Literal["time_series", "heatmap", "table"]
ThresholdStyle = Literal["off", "line", "area", "line+area"]

GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel. `instant` asks for one value (stat, bar gauge, table)."""

    expr: str
    legend: str = ""
    instant: bool = False
    format: TargetFormat = "time_series"

    def to_json(self, ref_id: str) -> dict[str, Any]:
        return {
            "datasource": dict(DATASOURCE_REF),
            "editorMode": "code",
            "expr": self.expr,
            "format": self.format,
            "instant": self.instant,
            "legendFormat": self.legend or "__auto",
            "range": not self.instant,
            "refId": ref_id,
        }


@dataclass(frozen=True)
class Step:
    """A threshold step: from `value` up (None: the base colour, from minus infinity)."""

    value: float | None
    color: str


def steps_above(base: str, *levels: tuple[float, str]) -> tuple[Step, ...]:
    """Colour `base` below the first level, then each level's colour from it upwards."""
    return (Step(None, base), *(Step(value, color) for value, color in levels))


@dataclass(frozen=True)
class Panel:
    """A visualisation. `width`/`height` are grid units (24 across); `time_from` overrides
    the dashboard's time range for this panel (`now/d`: today so far)."""

    title: str
    kind: PanelKind
    targets: tuple[Target, ...]
    description: str = ""
    unit: str = "short"
    thresholds: tuple[Step, ...] = ()
    threshold_style: ThresholdStyle | None = None  # None: a line where thresholds are set
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    stack: bool = False
    width: int = 12
    height: int = 8
    time_from: str | None = None
    mappings: tuple[tuple[str, str, str], ...] = ()  # (value, text, colour)

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError(f"panel {self.title!r}: needs at least one target")
        if not 0 < self.width <= GRID_WIDTH:
            raise ValueError(f"panel {self.title!r}: width must be 1..{GRID_WIDTH}")

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "color": {"mode": "thresholds" if self.kind in ("stat", "bargauge")
                      else "palette-classic"},
            "mappings": [{"type": "value", "options": {
                value: {"color": color, "index": index, "text": text}
                for index, (value, text, color) in enumerate(self.mappings)}}
            ] if self.mappings else [],
            "thresholds": {"mode": "absolute", "steps": [
                {"color": s.color, "value": s.value}
                for s in (self.thresholds or steps_above(GREEN))]},
            "unit": self.unit,
        }
        defaults.update({key: value for key, value in (
            ("min", self.min), ("max", self.max), ("decimals", self.decimals))
            if value is not None})
        if self.kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line", "fillOpacity": 20 if self.stack else 10, "lineWidth": 1,
                "showPoints": "never", "spanNulls": False,
                "stacking": {"group": "A", "mode": "normal" if self.stack else "none"},
                "thresholdsStyle": {"mode": self.threshold_style or (
                    "line" if self.thresholds else "off")},
            }
        elif self.kind == "state-timeline":
            defaults["custom"] = {"fillOpacity": 80, "lineWidth": 0}
        panel: dict[str, Any] = {
            "datasource": dict(DATASOURCE_REF),
            "description": self.description,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "id": panel_id,
            "options": _options(self.kind),
            "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
            "title": self.title,
            "type": self.kind,
        }
        if self.kind == "heatmap":
            panel["options"]["yAxis"]["unit"] = self.unit
        if self.time_from is not None:
            panel["timeFrom"] = self.time_from
        if self.kind == "table":
            panel["transformations"] = [{"id": "merge", "options": {}}]
        return panel


def _options(kind: PanelKind) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    legend = {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True}
    if kind == "timeseries":
        return {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        return {"colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                "orientation": "auto", "reduceOptions": reduce, "textMode": "auto"}
    if kind == "bargauge":
        return {"displayMode": "gradient", "minVizHeight": 10, "orientation": "horizontal",
                "reduceOptions": reduce, "showUnfilled": True}
    if kind == "heatmap":
        return {"calculate": False, "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64,
                          "exponent": 0.5, "fill": "dark-orange", "reverse": False,
                          "scale": "exponential"},
                "legend": {"show": True}, "rowsFrame": {"layout": "auto"},
                "tooltip": {"show": True, "yHistogram": False},
                "yAxis": {"axisPlacement": "left", "reverse": False}}
    if kind == "table":
        return {"cellHeight": "sm", "footer": {"show": False}, "showHeader": True}
    return {"alignValue": "left", "legend": legend, "mergeValues": True, "rowHeight": 0.9,
            "showValue": "auto", "tooltip": {"mode": "single", "sort": "none"}}


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    """One dashboard; `uid` is stable, so re-importing replaces instead of duplicating."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    instance_metric: str  # a series every instance exports, for the instance variable
    tags: tuple[str, ...] = ("inferwatch",)
    time_from: str = "now-6h"
    refresh: str = "30s"
    links: tuple[str, ...] = field(default=("inferwatch",))  # tags of linked dashboards

    def panels(self) -> list[Panel]:
        return [panel for row in self.rows for panel in row.panels]

    def targets(self) -> list[tuple[Panel, Target]]:
        """Every (panel, target) pair, in layout order."""
        return [(panel, target) for panel in self.panels() for target in panel.targets]

    def to_json(self) -> dict[str, Any]:
        panels: list[dict[str, Any]] = []
        next_id = 1
        y = 0
        for row in self.rows:
            panels.append({"collapsed": False, "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0,
                                                           "y": y},
                           "id": next_id, "panels": [], "title": row.title, "type": "row"})
            next_id += 1
            y += 1
            x = 0
            line_height = 0
            for panel in row.panels:
                if x + panel.width > GRID_WIDTH:
                    x, y, line_height = 0, y + line_height, 0
                panels.append(panel.to_json(next_id, x, y))
                next_id += 1
                x += panel.width
                line_height = max(line_height, panel.height)
            y += line_height
        return {
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts", "type": "dashboard"}]},
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [{"asDropdown": True, "icon": "external link", "includeVars": True,
                       "keepTime": True, "tags": [tag], "targetBlank": False, "title": tag,
                       "type": "dashboards"} for tag in self.links],
            "panels": panels,
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "tags": list(self.tags),
            "templating": {"list": _variables(self.instance_metric)},
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "timezone": "",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }

    def render(self) -> str:
        """The dashboard as JSON text: sorted keys, two-space indent, a final newline."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _variables(instance_metric: str) -> list[dict[str, Any]]:
    query = f"label_values({instance_metric}, {INSTANCE_VARIABLE})"
    return [
        {"current": {}, "hide": 0, "includeAll": False, "label": "Data source",
         "multi": False, "name": DATASOURCE_VARIABLE, "options": [], "query": "prometheus",
         "refresh": 1, "regex": "", "skipUrlSync": False, "type": "datasource"},
        # All is `.*`, which also matches a series without the label: the daemon's own store
        # has no `instance` label, and there the query returns no value, leaving only All.
        {"allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
         "datasource": dict(DATASOURCE_REF), "definition": query, "hide": 0,
         "includeAll": True, "label": "Instance", "multi": True, "name": INSTANCE_VARIABLE,
         "options": [], "query": {"qryType": 1, "query": query,
                                  "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1, "type": "query"},
    ]
