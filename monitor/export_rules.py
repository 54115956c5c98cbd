"""`inferwatch export rules`: the Prometheus rule files a central Prometheus needs to compute,
for every daemon it scrapes, what that daemon computes for itself.

Into `--out`, in this order:

- every file `rule_files` matches, under its own name (the parent directory's name prefixed
  when two would collide);
- the bundled files `rules/{requests,host,gpu,inferwatch,cost}.yml`, except one whose group
  names a configured file already uses (a configured copy replaces it), with metric names in
  the configured `namespace`; `cost.yml` carries the configured budgets' rules
  (monitor/export_budgets.py);
- `slos.yml`, the Sloth-equivalent recording and burn-rate rules of the `slo_files` SLOs, with
  the period ratios as true event ratios over the window (Sloth's `disableOptimized`), which is
  what the daemon computes, so both alert on the same minutes.

A file an earlier export wrote and this one does not (a rule file since removed from the
config) is deleted; `.inferwatch-export` in `--out` records what the last export wrote, and
files it does not name are never touched.

Every expression is then made to keep `instance` (monitor/promql/keep_label.py): a rule that
aggregates everything on one host aggregates per instance in a fleet, so three hosts give
three alerts, never one merged. A file that needs no change is copied byte for byte; any other
is written from its parsed groups, with a header saying where it came from.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from monitor import __version__
from monitor.alerting.manager import check_expr
from monitor.alerting.rulefmt import (
    RuleFileError,
    RuleGroupSpec,
    RuleNode,
    load_rule_file,
    parse_rule_file,
    read_text_file,
)
from monitor.alerting.templates import check_template
from monitor.config import Config
from monitor.errors import UsageError
from monitor.export_budgets import budget_groups
from monitor.promql import ast
from monitor.promql.keep_label import INSTANCE, carrying_records, keep_label
from monitor.promql.parse import parse_expr
from monitor.promql.printer import to_promql
from monitor.slo.export import render_rules
from monitor.slo.spec import load_slo_files
from monitor.tsdb.store import Matcher
from monitor.units import format_duration

SLO_FILE = "slos.yml"
# In --out: the names of the files the last export wrote (a dot file, so `*.yml` globs skip it).
MANIFEST = ".inferwatch-export"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "rules"
BUNDLED_FILES = ("requests.yml", "host.yml", "gpu.yml", "inferwatch.yml", "cost.yml")
BUNDLED_NAMESPACE = "inferwatch"
COST_FILE = "cost.yml"


@dataclass
class ExportFile:
    """One file of the export: its groups, and its text as read or generated."""

    name: str
    origin: str  # what it came from, for the header of a rewritten file
    groups: list[RuleGroupSpec]
    text: str | None  # None: must be written from `groups`


def export_rules(config: Config, out: Path, *, bundled_dir: Path = BUNDLED_DIR) -> list[Path]:
    """Write the files; the paths written, in order. A bad rule file is a ConfigError naming
    file and line; a missing bundled directory leaves the bundled files out."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    files = _configured(config.rule_files)
    taken = {group.name for file in files for group in file.groups}
    names = {file.name for file in files}
    for file in _bundled(bundled_dir, config, taken):
        if file.name in names:
            file.name = f"bundled-{file.name}"
        names.add(file.name)
        files.append(file)
    slos = [slo for spec in load_slo_files(config.slo_files) for slo in spec.slos]
    if slos:
        text = render_rules(slos, optimized=False)
        files.append(ExportFile(_unique(SLO_FILE, names), "slo_files", parse_rule_file(
            text, file=SLO_FILE, expr_checker=check_expr), text))
    _keep_instance(files)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file in files:
        target = out / file.name
        target.write_text(file.text if file.text is not None else render_file(file),
                          encoding="utf-8")
        written.append(target)
    _forget_stale(out, {path.name for path in written})
    return written


def _forget_stale(out: Path, names: set[str]) -> None:
    """Delete what an earlier export wrote that this one did not (a rule file since removed
    from the config would otherwise stay loaded by a Prometheus globbing the directory), and
    record what this one wrote. Files the export never wrote are left alone."""
    manifest = out / MANIFEST
    try:
        before = set(manifest.read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        before = set()
    for name in sorted(before - names):
        if name and "/" not in name and name not in (".", ".."):
            (out / name).unlink(missing_ok=True)
    manifest.write_text("".join(f"{name}\n" for name in sorted(names)), encoding="utf-8")


def _unique(name: str, names: set[str]) -> str:
    if name in names:
        name = f"generated-{name}"
    names.add(name)
    return name


def _configured(patterns: Iterable[str]) -> list[ExportFile]:
    files: list[ExportFile] = []
    names: set[str] = set()
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):  # noqa: PTH207 - absolute str globs from config
            name = Path(path).name
            if name in names or name == SLO_FILE:
                name = f"{Path(path).parent.name}-{name}"
            if name in names:
                raise UsageError(f"two rule files would both be written as {name}: rename one")
            names.add(name)
            text = read_text_file(path, RuleFileError)
            groups = parse_rule_file(text, file=path, expr_checker=check_expr,
                                     template_checker=check_template)
            files.append(ExportFile(name, path, groups, text))
    return files


def _bundled(directory: Path, config: Config, taken: set[str]) -> list[ExportFile]:
    files = []
    for name in BUNDLED_FILES:
        path = directory / name
        if not path.is_file():
            continue
        groups = load_rule_file(path, expr_checker=check_expr, template_checker=check_template)
        if any(group.name in taken for group in groups):
            continue
        file = ExportFile(name, f"the bundled rules/{name}", groups,
                          path.read_text(encoding="utf-8"))
        if config.namespace != BUNDLED_NAMESPACE:
            file.groups = [_map_exprs(g, _renamer(config.namespace)) for g in file.groups]
            file.text = None
        if name == COST_FILE and config.cost.budgets:
            file.groups = budget_groups(file.groups, config.cost, config.namespace)
            file.origin += " and the configured cost.budgets"
            file.text = None
        files.append(file)
    return files


def _renamer(namespace: str) -> Callable[[ast.Expr], ast.Expr]:
    old, new = f"{BUNDLED_NAMESPACE}_", f"{namespace}_"

    def rename(selector: ast.VectorSelector) -> ast.VectorSelector:
        if selector.name is None or not selector.name.startswith(old):
            return selector
        name = new + selector.name.removeprefix(old)
        matchers = tuple(Matcher.of(m.name, m.op, name)
                         if m.name == "__name__" and m.value == selector.name else m
                         for m in selector.matchers)
        return replace(selector, name=name, matchers=matchers)

    return lambda expr: ast.map_selectors(expr, rename)


def _map_exprs(group: RuleGroupSpec, change: Callable[[ast.Expr], ast.Expr]) -> RuleGroupSpec:
    rules = []
    for rule in group.rules:
        before = parse_expr(rule.expr)
        after = change(before)
        rules.append(rule if after == before else replace(rule, expr=to_promql(after)))
    return replace(group, rules=tuple(rules))


def _keep_instance(files: Sequence[ExportFile]) -> None:
    records = [(rule.name, parse_expr(rule.expr), rule.labels)
               for file in files for group in file.groups for rule in group.rules
               if rule.kind == "record"]
    recorded = carrying_records(records)

    def keep(expr: ast.Expr) -> ast.Expr:
        return keep_label(expr, INSTANCE, recorded).expr

    for file in files:
        groups = [_map_exprs(group, keep) for group in file.groups]
        if groups != file.groups:
            file.groups = groups
            file.text = None


# --- writing a rule file ------------------------------------------------------------------


class _RuleFileDumper(yaml.SafeDumper):
    """Multi-line text as literal blocks; no anchors for repeated values."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text,
                                   style="|" if "\n" in text else None)


_RuleFileDumper.add_representer(str, _represent_str)


def _rule_document(rule: RuleNode) -> dict[str, Any]:
    document: dict[str, Any] = {rule.kind: str(rule.name), "expr": str(rule.expr)}
    if rule.for_:
        document["for"] = format_duration(rule.for_)
    if rule.keep_firing_for:
        document["keep_firing_for"] = format_duration(rule.keep_firing_for)
    if rule.labels:
        document["labels"] = {str(k): str(v) for k, v in rule.labels.items()}
    if rule.annotations:
        document["annotations"] = {str(k): str(v) for k, v in rule.annotations.items()}
    return document


def _group_document(group: RuleGroupSpec) -> dict[str, Any]:
    document: dict[str, Any] = {"name": str(group.name)}
    if group.interval:
        document["interval"] = format_duration(group.interval)
    if group.limit > 0:
        document["limit"] = group.limit
    document["rules"] = [_rule_document(rule) for rule in group.rules]
    return document


def render_file(file: ExportFile) -> str:
    """A Prometheus rule file of `file.groups`, with a header naming its origin."""
    body = yaml.dump({"groups": [_group_document(g) for g in file.groups]},
                     Dumper=_RuleFileDumper, sort_keys=False, allow_unicode=True, width=1 << 20)
    origin = " ".join(file.origin.split())
    return (f"# Generated by inferwatch {__version__} `export rules` from {origin};\n"
            f"# every aggregation and match keeps `{INSTANCE}`, so a fleet alerts per host.\n"
            + body)
