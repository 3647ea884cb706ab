"""Every metric the alert rules, recording rules and Grafana dashboard query is exported.

The rules and the dashboard name metrics as strings; a renamed metric in the service would
leave an alert that can never fire and a blank panel, and nothing else would notice. This
test drives the real app (memory store) so that labelled series exist, reads /metrics, and
checks each referenced name against what the service actually exposes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from knapsack_service.main import create_app
from knapsack_service.settings import Settings
from tests.deploy._deploy_files import RUN_ID, drive_traffic, load_deploy_check

deploy_check = load_deploy_check()


@pytest.fixture(scope="module")
def exposition() -> Iterator[str]:
    settings = Settings(redis_url=None, api_tokens="", max_metric_runs=10)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        drive_traffic(client, steps=2)
        assert client.get("/readyz").status_code in (200, 503)  # sets krl_ready/krl_store_up
        response = client.get("/metrics")
        assert response.status_code == 200
        yield response.text


def exported_names(text: str) -> tuple[set[str], set[str]]:
    """(names of samples present, names of families declared even without samples).

    A counter family ``x`` declares series ``x_total``; histograms declare ``_bucket``,
    ``_sum`` and ``_count``. Labelled metrics that have not happened yet (store errors on a
    healthy store) are declared by their HELP/TYPE lines but have no sample.
    """
    samples: set[str] = set()
    declared: set[str] = set()
    for family in text_string_to_metric_families(text):
        samples.update(sample.name for sample in family.samples)
        if family.type == "counter":
            declared.add(f"{family.name}_total")
        elif family.type == "histogram":
            declared.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
        else:
            declared.add(family.name)
    return samples, declared


def test_rules_and_dashboard_reference_metrics() -> None:
    referenced = deploy_check.referenced_metric_names()
    # The scan must see the metrics behind each alert and each paper figure.
    for expected in (
        "krl_http_requests_total",
        "krl_http_request_duration_seconds_bucket",
        "krl_store_errors_total",
        "krl_degraded_allocations_total",
        "krl_run_effective_gradient_ratio",
        "krl_run_all_success_share",
        "krl_run_all_failure_share",
        "krl_rollouts_allocated_by_difficulty_total",
        "krl_prompts_allocated_by_difficulty_total",
        "krl_solve_duration_seconds_bucket",
        "krl_reports_total",
        "krl_duplicate_reports_total",
        "krl_ready",
    ):
        assert expected in referenced


def test_every_referenced_metric_is_exported(exposition: str) -> None:
    samples, declared = exported_names(exposition)
    missing = sorted(
        name for name in deploy_check.referenced_metric_names() if name not in samples | declared
    )
    assert not missing, f"queried by rules or dashboard but not exported: {missing}"


def test_traffic_produced_the_labelled_series(exposition: str) -> None:
    """The series the panels and alerts select on carry samples after one step of traffic."""
    samples, _ = exported_names(exposition)
    for name in (
        "krl_http_request_duration_seconds_bucket",
        "krl_solve_duration_seconds_bucket",
        "krl_allocations_total",
        "krl_rollouts_allocated_by_difficulty_total",
        "krl_run_effective_gradient_ratio",
        "krl_run_last_step",
        "krl_duplicate_reports_total",
        "krl_outcomes_ingested_total",
    ):
        assert name in samples, name


def _value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


def test_label_values_match_the_rules(exposition: str) -> None:
    """Label values the rules filter on (route regex, result, degraded) are the ones emitted."""
    route = "/v1/runs/{run_id}/allocations"
    assert _value(exposition, "krl_http_request_duration_seconds_count", route=route) == 2
    assert _value(exposition, "krl_reports_total", result="applied") == 2
    assert _value(exposition, "krl_reports_total", result="duplicate") == 2
    assert _value(exposition, "krl_allocations_total", degraded="false") == 2
    assert _value(exposition, "krl_run_last_step", run=RUN_ID) == 2
    # Step 2 allocates by estimate: the p = 0.5 prompt lands in its difficulty bucket.
    assert _value(exposition, "krl_prompts_allocated_by_difficulty_total", bucket="p40_60") == 1
    # Each step: one group with successes and failures, one all-failure group, 4 rollouts each.
    assert _value(exposition, "krl_run_effective_gradient_ratio", run=RUN_ID) == pytest.approx(0.5)
    assert _value(exposition, "krl_run_all_failure_share", run=RUN_ID) == pytest.approx(0.5)
    assert _value(exposition, "krl_run_all_success_share", run=RUN_ID) == pytest.approx(0.0)
