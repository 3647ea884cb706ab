"""The wire contract of the numeric fields, on the models and through the real app.

The models validate floats strictly and per-result counts once per report (for
speed); what they accept and refuse must stay what it was: a boolean is never a
number, every JSON number is one, and an integer field takes 3.0 as 3.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from knapsack_client import OutcomeReport, RunSettings, SolveRequest
from knapsack_client._exceptions import map_validation_error

REPORT: dict[str, Any] = {
    "report_id": "r",
    "step": 0,
    "results": [
        {"prompt_id": "a", "successes": 1, "trials": 2},
        {"prompt_id": "b", "successes": 3, "trials": 8, "mean_response_tokens": 120.5},
    ],
}
SOLVE: dict[str, Any] = {"success_rates": [0.5, None, 0.25], "budget": 12}


def with_value(body: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A deep copy of `body` with the field at dotted `path` set to `value`."""
    import copy

    changed = copy.deepcopy(body)
    *parents, last = path.split(".")
    target: Any = changed
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return changed


BOOLEAN_CASES = [
    ("report", "step"),
    ("report", "results.1.successes"),
    ("report", "results.1.trials"),
    ("report", "results.1.mean_response_tokens"),
    ("solve", "success_rates.0"),
    ("solve", "budget"),
    ("solve", "max_n"),
    ("solve", "costs"),
    ("settings", "success_threshold"),
    ("settings", "estimator.decay"),
    ("settings", "max_n"),
]


def body_for(kind: str, path: str) -> tuple[dict[str, Any], str, str]:
    """The body of the case, the route it goes to and the method."""
    if kind == "report":
        return with_value(REPORT, path, True), "/v1/runs/models-run/outcomes", "POST"
    if kind == "solve":
        base = dict(SOLVE, costs=[1.0, 1.0, 1.0]) if path == "costs" else SOLVE
        target = "costs.2" if path == "costs" else path
        return with_value(base, target, True), "/v1/solve", "POST"
    base = {"estimator": {"kind": "beta", "decay": 0.9}} if path.startswith("estimator") else {}
    return with_value(base, path, True), "/v1/runs/models-run", "PUT"


MODELS = {"report": OutcomeReport, "solve": SolveRequest, "settings": RunSettings}


@pytest.mark.parametrize(("kind", "path"), BOOLEAN_CASES)
def test_a_boolean_is_never_a_number(app_http: TestClient, kind: str, path: str) -> None:
    app_http.put("/v1/runs/models-run", json={})
    body, route, method = body_for(kind, path)
    # The estimator's loc carries the union's tag, as it always did.
    expected = {"costs": "costs.2", "estimator.decay": "estimator.beta.decay"}.get(path, path)
    with pytest.raises(Exception) as caught:
        MODELS[kind].model_validate(body)
    local = map_validation_error(caught.value)  # type: ignore[arg-type]
    assert local.field == expected
    response = app_http.request(method, route, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == expected


def test_every_json_number_is_a_number(app_http: TestClient) -> None:
    app_http.put("/v1/runs/models-run", json={})
    integral = with_value(with_value(REPORT, "results.0.trials", 2.0), "step", 0.0)
    integral = with_value(integral, "results.1.mean_response_tokens", 120)
    answer = app_http.post("/v1/runs/models-run/outcomes", json=integral)
    assert answer.status_code == 200, answer.text
    assert OutcomeReport.model_validate(integral).results[0].trials == 2
    whole_rates = {"success_rates": [1, 0, None], "budget": 12.0, "max_n": 8.0}
    assert app_http.post("/v1/solve", json=whole_rates).status_code == 200
    assert SolveRequest.model_validate(whole_rates).success_rates == [1.0, 0.0, None]


def test_a_fractional_count_is_refused(app_http: TestClient) -> None:
    body = with_value(REPORT, "results.0.trials", 2.5)
    response = app_http.post("/v1/runs/models-run/outcomes", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "results.0.trials"


def test_cross_field_checks_name_the_result(app_http: TestClient) -> None:
    app_http.put("/v1/runs/models-run", json={})
    too_many = with_value(REPORT, "results.1.successes", 9)
    both = with_value(REPORT, "results.0.rewards", [1.0, 0.0])
    neither = {**REPORT, "results": [{"prompt_id": "a"}]}
    cases = [
        (too_many, "results.1.successes"),
        (both, "results.0.rewards"),
        (neither, "results.0.trials"),
    ]
    for body, field in cases:
        with pytest.raises(Exception) as caught:
            OutcomeReport.model_validate(body)
        assert map_validation_error(caught.value).field == field  # type: ignore[arg-type]
        response = app_http.post("/v1/runs/models-run/outcomes", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == field
    assert app_http.get("/v1/runs/models-run").json()["counters"]["reports"] == 0


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("report", "results.1.trials", "8"),
        ("report", "step", "0"),
        ("solve", "success_rates.0", "0.5"),
        ("solve", "budget", "12"),
    ],
)
def test_a_numeric_string_is_not_a_number(
    app_http: TestClient, kind: str, path: str, value: str
) -> None:
    """The schema says integer/number: a string is refused (lax mode used to convert it)."""
    app_http.put("/v1/runs/models-run", json={})
    base, route = (
        (REPORT, "/v1/runs/models-run/outcomes") if kind == "report" else (SOLVE, "/v1/solve")
    )
    response = app_http.post(route, json=with_value(base, path, value))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == path


def test_integer_fields_stay_integers_in_the_schema(app_http: TestClient) -> None:
    schemas = app_http.get("/openapi.json").json()["components"]["schemas"]
    trials = schemas["PromptResult"]["properties"]["trials"]["anyOf"][0]
    assert trials == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    max_n = schemas["SolveRequest"]["properties"]["max_n"]
    assert max_n["type"] == "integer" and max_n["maximum"] == 4096
