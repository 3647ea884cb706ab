"""Helpers for deploy/check.sh: the checks that no off-the-shelf validator does alone.

Each sub-command does one thing and exits non-zero with a message on failure:

- ``prometheusrule --write|--check``: the prod overlay's PrometheusRule is generated from
  ``deploy/prometheus/rules/knapsack-rl.rules.yml``; ``--check`` fails when they drift.
- ``rule-spec``: read rendered manifests (stdin), write the PrometheusRule's ``spec`` as a plain
  rules file, so ``promtool check rules`` validates exactly what the operator will load.
- ``alert-coverage``: every alert has a promtool unit test where it fires and one where it
  stays quiet.
- ``prometheus-config``: copy prometheus.yml with ``rule_files`` pointed at the repository's
  rules, so ``promtool check config`` also parses the rules it loads.
- ``dashboard-ts``: write a TypeScript module assigning the dashboard JSON to a constant typed
  ``Dashboard`` from ``@grafana/schema``; ``tsc --strict`` then checks the JSON's shape.
- ``dashboard-lint``: project rules for the dashboard (unique panel ids, a ``run`` variable,
  every query on a ``krl_`` metric).
- ``k8s-policy``: rendered manifests on stdin keep the hardening and the one-worker-per-pod
  decision (the schema validator accepts a manifest that silently drops them).

Also imported by tests/deploy (``referenced_metric_names``) to check that every metric the
rules and the dashboard use is exported by the service.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
RULES_FILE = DEPLOY / "prometheus" / "rules" / "knapsack-rl.rules.yml"
RULE_TESTS_DIR = DEPLOY / "prometheus" / "tests"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
PROMETHEUS_RULE_CRD = DEPLOY / "k8s" / "overlays" / "prod" / "prometheusrule.yaml"
DASHBOARD = DEPLOY / "grafana" / "knapsack-rl.json"

_GENERATED_HEADER = """\
# GENERATED from deploy/prometheus/rules/knapsack-rl.rules.yml: do not edit by hand.
# Regenerate: .venv/bin/python deploy/tools/deploy_check.py prometheusrule --write
# deploy/check.sh fails when this file and the rules file differ.
"""

#: A project metric name inside PromQL (recorded series such as ``krl:...`` do not match).
_METRIC_NAME = re.compile(r"\bkrl_[a-z_]+\b")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class CheckError(Exception):
    """A check failed; the message says what to fix."""


class _BlockDumper(yaml.SafeDumper):
    """Dumps multi-line strings (PromQL, descriptions) as ``|`` blocks, as humans write them."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def load_yaml(path: Path) -> Any:
    """Parse one YAML document."""
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def build_prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    """The PrometheusRule object carrying exactly the groups of the rules file."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "knapsack-rl",
            "labels": {
                "app.kubernetes.io/name": "knapsack-rl",
                # kube-prometheus-stack's default ruleSelector; match your Prometheus's.
                "release": "prometheus",
            },
        },
        "spec": {"groups": rules["groups"]},
    }


def render_prometheus_rule() -> str:
    """The text of the generated PrometheusRule file."""
    document = build_prometheus_rule(load_yaml(RULES_FILE))
    body = yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, width=100)
    return _GENERATED_HEADER + body


def check_prometheus_rule() -> None:
    """Fail when the committed PrometheusRule differs from the rules file."""
    if not PROMETHEUS_RULE_CRD.exists():
        raise CheckError(f"{PROMETHEUS_RULE_CRD} is missing: run `prometheusrule --write`")
    committed = load_yaml(PROMETHEUS_RULE_CRD)
    if committed.get("spec") != load_yaml(RULES_FILE):
        raise CheckError(
            f"{PROMETHEUS_RULE_CRD.name} spec differs from {RULES_FILE.name}: "
            "run `.venv/bin/python deploy/tools/deploy_check.py prometheusrule --write`"
        )
    if PROMETHEUS_RULE_CRD.read_text(encoding="utf-8") != render_prometheus_rule():
        raise CheckError(f"{PROMETHEUS_RULE_CRD.name} was edited by hand: regenerate it")


def extract_rule_spec(manifests: str) -> dict[str, Any]:
    """The ``spec`` of the single PrometheusRule in a stream of rendered manifests."""
    specs = [
        doc["spec"]
        for doc in yaml.safe_load_all(manifests)
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule"
    ]
    if len(specs) != 1:
        raise CheckError(f"expected one PrometheusRule in the rendered overlay, found {len(specs)}")
    return specs[0]


def alert_names(rules: dict[str, Any]) -> list[str]:
    """Names of every alerting rule, in file order."""
    rules_of_groups = (rule for group in rules["groups"] for rule in group["rules"])
    return [rule["alert"] for rule in rules_of_groups if "alert" in rule]


def _alert_tests(test_files: Iterable[Path]) -> Iterator[tuple[str, bool]]:
    """(alert name, whether the case expects it to fire) for every alert_rule_test case."""
    for path in test_files:
        for test in load_yaml(path).get("tests", []):
            for case in test.get("alert_rule_test", []):
                yield case["alertname"], bool(case.get("exp_alerts"))


def check_alert_coverage() -> None:
    """Fail unless every alert has a firing and a not-firing unit test case."""
    test_files = sorted(RULE_TESTS_DIR.glob("*.yml"))
    if not test_files:
        raise CheckError(f"no promtool tests in {RULE_TESTS_DIR}")
    cases = set(_alert_tests(test_files))
    missing = [
        f"{name} ({'firing' if fires else 'not firing'})"
        for name in alert_names(load_yaml(RULES_FILE))
        for fires in (True, False)
        if (name, fires) not in cases
    ]
    if missing:
        raise CheckError("alerts without a unit test case: " + ", ".join(missing))


def write_prometheus_config(out: Path) -> None:
    """prometheus.yml with its rule_files pointed at this checkout's rules directory."""
    config = load_yaml(PROMETHEUS_CONFIG)
    config["rule_files"] = [str(RULES_FILE.parent / "*.yml")]
    out.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


#: Panel type -> (module of @grafana/schema with its option types, Options alias, FieldConfig
#: alias or None). Panels of other types are checked by the Dashboard type alone.
_PANEL_TYPES = {
    "timeseries": ("timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen", "TimeSeries", True),
    "bargauge": ("bargauge/panelcfg/x/BarGaugePanelCfg_types.gen", "BarGauge", False),
    "stat": ("stat/panelcfg/x/StatPanelCfg_types.gen", "Stat", False),
}
_COMPOSABLE = "@grafana/schema/dist/esm/raw/composable/"


def dashboard_typescript(dashboard: dict[str, Any]) -> str:
    """A module that type-checks the dashboard against Grafana's schema under ``tsc --strict``.

    The JSON is inlined as an object literal: importing the ``.json`` file would widen its
    literal types (``"timeseries"`` to ``string``) and hide mistakes. The schema declares
    closed sets of strings as TypeScript string enums, which no JSON literal satisfies, so
    the types are wrapped in ``JsonOf``, which turns each string enum into the union of its
    values (``"palette-classic" | ...``) and keeps excess-property checks. The Dashboard type
    leaves each panel's ``options`` and ``fieldConfig.defaults.custom`` open, so those are
    also assigned to the option types of the panel's visualisation (``Partial``: Grafana
    fills omitted top-level options with defaults; nested objects must be complete).
    """
    used = sorted({p["type"] for p in _panels(dashboard) if p.get("type") in _PANEL_TYPES})
    lines = [
        "// GENERATED by deploy/check.sh from knapsack-rl.json; checked with tsc --strict.",
        "import type { Dashboard } from '@grafana/schema';",
        "",
        "// A string enum E becomes `${E}`, the union of its values: what JSON can hold.",
        "type JsonOf<T> = T extends string",
        "  ? `${T}`",
        "  : T extends readonly (infer U)[]",
        "    ? JsonOf<U>[]",
        "    : T extends object",
        "      ? { [K in keyof T]: JsonOf<T[K]> }",
        "      : T;",
    ]
    for panel_type in used:
        module, alias, has_field_config = _PANEL_TYPES[panel_type]
        names = [f"Options as {alias}Options"]
        if has_field_config:
            names.append(f"FieldConfig as {alias}FieldConfig")
        lines.append(f"import type {{ {', '.join(names)} }} from '{_COMPOSABLE}{module}';")
    literal = json.dumps(dashboard, indent=2)
    lines += ["", f"export const dashboard: JsonOf<Dashboard> = {literal};", ""]
    for panel in _panels(dashboard):
        if panel.get("type") not in _PANEL_TYPES:
            continue
        _, alias, has_field_config = _PANEL_TYPES[panel["type"]]
        ident = f"panel{panel['id']}"
        options = json.dumps(panel.get("options", {}), indent=2)
        lines.append(f"export const {ident}Options: JsonOf<Partial<{alias}Options>> = {options};")
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if has_field_config and custom is not None:
            custom_type = f"JsonOf<Partial<{alias}FieldConfig>>"
            custom_literal = json.dumps(custom, indent=2)
            lines.append(f"export const {ident}Custom: {custom_type} = {custom_literal};")
    return "\n".join(lines) + "\n"


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard's panels and template variables."""
    exprs = [target["expr"] for panel in _panels(dashboard) for target in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            exprs.append(query)
    return exprs


def check_dashboard(dashboard: dict[str, Any]) -> None:
    """Project rules the schema cannot express."""
    panels = list(_panels(dashboard))
    ids = [panel.get("id") for panel in panels]
    if len(ids) != len(set(ids)) or None in ids:
        raise CheckError(f"panel ids must be present and unique, got {ids}")
    variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    if "run" not in variables:
        raise CheckError("the dashboard needs a `run` template variable")
    for panel in panels:
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            raise CheckError(f"panel {panel.get('title')!r} has no query")
        for target in targets:
            if not _METRIC_NAME.search(target.get("expr", "")):
                raise CheckError(f"panel {panel.get('title')!r}: query uses no krl_ metric")


_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc.get("kind") == kind]


def check_k8s_policy(manifests: str) -> None:
    """Fail when a rendered overlay loses the hardening or the one-worker-per-pod setting."""
    docs = [doc for doc in yaml.safe_load_all(manifests) if isinstance(doc, dict)]
    problems: list[str] = []
    service_pods = [
        d for d in _by_kind(docs, "Deployment") if d["metadata"]["name"] == "knapsack-rl"
    ]
    if len(service_pods) != 1:
        raise CheckError(f"expected one knapsack-rl Deployment, found {len(service_pods)}")
    pod = service_pods[0]["spec"]["template"]["spec"]
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("pod mounts a service account token")
    for container in pod["containers"]:
        context = container.get("securityContext", {})
        for key, wanted in _CONTAINER_SECURITY.items():
            if context.get(key) != wanted:
                problems.append(f"container {container['name']}: securityContext.{key} != {wanted}")
        probes = {
            "startupProbe": "/healthz",
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        for probe, path in probes.items():
            if container.get(probe, {}).get("httpGet", {}).get("path") != path:
                problems.append(f"container {container['name']}: {probe} must GET {path}")
        if not container.get("resources", {}).get("limits", {}).get("memory"):
            problems.append(f"container {container['name']}: no memory limit")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    if not any("emptyDir" in v for v in volumes.values()):
        problems.append("no emptyDir for the numba cache and TMPDIR")
    settings = [
        d for d in _by_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("knapsack-rl")
    ]
    if not settings or any(d.get("data", {}).get("KRL_WORKERS") != "1" for d in settings):
        problems.append("the settings ConfigMap must set KRL_WORKERS=1 (one worker per pod)")
    for account in _by_kind(docs, "ServiceAccount"):
        if account.get("automountServiceAccountToken") is not False:
            problems.append(f"ServiceAccount {account['metadata']['name']} automounts its token")
    for policy in _by_kind(docs, "NetworkPolicy"):
        if policy["metadata"]["name"] == "knapsack-rl" and sorted(
            policy["spec"].get("policyTypes", [])
        ) != ["Egress", "Ingress"]:
            problems.append("NetworkPolicy knapsack-rl must restrict both Ingress and Egress")
    if problems:
        raise CheckError("; ".join(problems))


def base_metric_name(name: str) -> str:
    """Strip the series suffixes of a histogram, so ``x_bucket`` maps to family ``x``."""
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def metric_names_in(exprs: Iterable[str]) -> set[str]:
    """Project metric names used by PromQL expressions (a loose lexical scan)."""
    return {match for expr in exprs for match in _METRIC_NAME.findall(expr)}


def referenced_metric_names() -> set[str]:
    """Every ``krl_`` series name the alerts, recording rules and dashboard query."""
    rules = load_yaml(RULES_FILE)
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    exprs += dashboard_queries(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    return metric_names_in(exprs)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point used by deploy/check.sh."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rule = sub.add_parser("prometheusrule", help="generate or check the prod PrometheusRule")
    mode = rule.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    spec = sub.add_parser("rule-spec", help="rendered manifests on stdin -> rules file")
    spec.add_argument("out", type=Path)
    sub.add_parser("alert-coverage", help="every alert has firing and quiet unit tests")
    config = sub.add_parser("prometheus-config", help="prometheus.yml using this checkout's rules")
    config.add_argument("out", type=Path)
    ts = sub.add_parser("dashboard-ts", help="write the TypeScript module tsc checks")
    ts.add_argument("out", type=Path)
    sub.add_parser("dashboard-lint", help="project rules for the dashboard")
    sub.add_parser("k8s-policy", help="rendered manifests on stdin keep the hardening")
    args = parser.parse_args(argv)

    try:
        if args.command == "prometheusrule" and args.write:
            PROMETHEUS_RULE_CRD.write_text(render_prometheus_rule(), encoding="utf-8")
        elif args.command == "prometheusrule":
            check_prometheus_rule()
        elif args.command == "rule-spec":
            spec_doc = extract_rule_spec(sys.stdin.read())
            args.out.write_text(yaml.safe_dump(spec_doc, sort_keys=False), encoding="utf-8")
        elif args.command == "alert-coverage":
            check_alert_coverage()
        elif args.command == "prometheus-config":
            write_prometheus_config(args.out)
        elif args.command == "dashboard-ts":
            dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
            args.out.write_text(dashboard_typescript(dashboard), encoding="utf-8")
        elif args.command == "dashboard-lint":
            check_dashboard(json.loads(DASHBOARD.read_text(encoding="utf-8")))
        elif args.command == "k8s-policy":
            check_k8s_policy(sys.stdin.read())
    except CheckError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
