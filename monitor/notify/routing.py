"""Which routes an alert takes, and the group it joins there (Alertmanager's dispatch/route.go).

A route matches when its matchers do; its children are tried in order, and the first child
that matches stops the search unless it has `continue`. A route none of whose children match
takes the alert itself. The group of an alert on a route is named by the route's key and the
alert's values of the route's `group_by` labels (all its labels for `...`).
"""

from __future__ import annotations

from collections.abc import Mapping

from monitor.config_routing import ResolvedRoute


def matching_routes(route: ResolvedRoute, labels: Mapping[str, str]) -> list[ResolvedRoute]:
    if not route.matches(labels):
        return []
    found: list[ResolvedRoute] = []
    for child in route.routes:
        matches = matching_routes(child, labels)
        found.extend(matches)
        if matches and not child.continue_:
            break
    return found or [route]


def route_key(route: ResolvedRoute, parents: Mapping[str, ResolvedRoute]) -> str:
    """Alertmanager's Route.Key(): the matchers of the route and its ancestors."""
    own = "{" + ",".join(str(m) for m in route.matchers) + "}"
    parent = parents.get(route.path)
    return own if parent is None else f"{route_key(parent, parents)}/{own}"


def parents_of(root: ResolvedRoute) -> dict[str, ResolvedRoute]:
    """Each route's parent, by the route's path."""
    out: dict[str, ResolvedRoute] = {}
    stack = [root]
    while stack:
        route = stack.pop()
        for child in route.routes:
            out[child.path] = route
            stack.append(child)
    return out


def group_labels(route: ResolvedRoute, labels: Mapping[str, str]) -> dict[str, str]:
    if route.group_by_all:
        return dict(labels)
    return {name: labels[name] for name in route.group_by if name in labels}


def format_labels(labels: Mapping[str, str]) -> str:
    """model.LabelSet.String(): `{a="1", b="2"}`, names sorted, values Go-quoted."""
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return "{" + ", ".join(f"{name}={quoted(labels[name])}" for name in sorted(labels)) + "}"
