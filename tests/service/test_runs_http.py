"""Runs over HTTP on both stores: settings, allocations, reports, lookups, summaries."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from knapsack_service.main import create_app
from tests.service.conftest import make_settings


def run_path(run_id: str, suffix: str = "") -> str:
    return f"/v1/runs/{quote(run_id, safe='')}{suffix}"


def report(client: TestClient, run_id: str, report_id: str, step: int, results: list) -> dict:
    response = client.post(
        run_path(run_id, "/outcomes"),
        json={"report_id": report_id, "step": step, "results": results},
    )
    assert response.status_code == 200, response.text
    return response.json()


def lookup(client: TestClient, run_id: str, prompt_ids: list[str]) -> list[dict]:
    response = client.post(run_path(run_id, "/prompts/lookup"), json={"prompt_ids": prompt_ids})
    assert response.status_code == 200, response.text
    return response.json()["prompts"]


def test_put_creates_then_updates_a_run(app_client: TestClient) -> None:
    first = app_client.put(run_path("r1"), json={})
    assert first.status_code == 201
    assert first.json()["settings"]["strategy"] == "knapsack"
    again = app_client.put(run_path("r1"), json={"strategy": "uniform", "max_n": 64})
    assert again.status_code == 200
    got = app_client.get(run_path("r1")).json()
    assert got["settings"]["strategy"] == "uniform" and got["settings"]["max_n"] == 64


def test_unknown_run_is_a_404_run_not_found(app_client: TestClient) -> None:
    for method, suffix, body in [
        ("POST", "/allocations", {"step": 0, "prompts": ["a"]}),
        (
            "POST",
            "/outcomes",
            {
                "report_id": "x",
                "step": 0,
                "results": [{"prompt_id": "a", "successes": 1, "trials": 2}],
            },
        ),
        ("POST", "/prompts/lookup", {"prompt_ids": ["a"]}),
        ("GET", "/summary", None),
        ("GET", "", None),
        ("DELETE", "", None),
    ]:
        response = app_client.request(method, run_path("nope", suffix), json=body)
        assert response.status_code == 404, (method, suffix, response.text)
        assert response.json()["error"]["code"] == "run_not_found"


def test_reports_update_statistics_and_duplicates_count_once(app_client: TestClient) -> None:
    app_client.put(run_path("r"), json={})
    results = [
        {"prompt_id": "p1", "successes": 3, "trials": 8, "mean_response_tokens": 100},
        {"prompt_id": "p2", "successes": 0, "trials": 8},
    ]
    assert report(app_client, "r", "rep-1", 0, results) == {"accepted": 2, "duplicate": False}
    assert report(app_client, "r", "rep-1", 0, results) == {"accepted": 2, "duplicate": True}
    p1, p2, p3 = lookup(app_client, "r", ["p1", "p2", "p3"])
    assert (p1["successes"], p1["trials"], p1["p_hat"]) == (3, 8, 3 / 8)
    assert p1["mean_response_tokens"] == 100 and p1["last_step"] == 0
    assert (p2["successes"], p2["trials"], p2["p_hat"]) == (0, 8, 0.0)
    assert (p3["trials"], p3["p_hat"], p3["last_step"]) == (0, None, None)
    counters = app_client.get(run_path("r")).json()["counters"]
    assert counters["reports"] == 1 and counters["duplicate_reports"] == 1
    assert counters["rollouts"] == 16 and counters["successes"] == 3


def test_a_report_with_one_bad_result_changes_nothing(app_client: TestClient) -> None:
    app_client.put(run_path("r"), json={})
    body = {
        "report_id": "bad",
        "step": 1,
        "results": [
            {"prompt_id": "ok", "successes": 1, "trials": 2},
            {"prompt_id": "broken", "successes": 5, "trials": 2},
        ],
    }
    response = app_client.post(run_path("r", "/outcomes"), json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "results.1.successes"
    assert lookup(app_client, "r", ["ok"])[0]["trials"] == 0
    # The rejected id was never recorded: the corrected report is applied.
    body["results"][1]["successes"] = 2
    assert app_client.post(run_path("r", "/outcomes"), json=body).json()["duplicate"] is False


def test_rewards_use_the_success_threshold_and_count_zero_variance(
    app_client: TestClient,
) -> None:
    app_client.put(run_path("r"), json={"success_threshold": 0.7})
    report(
        app_client,
        "r",
        "g",
        3,
        [
            {"prompt_id": "graded", "rewards": [0.0, 0.7, 0.9, 0.5]},
            {"prompt_id": "flat", "rewards": [0.6, 0.6]},
        ],
    )
    graded, flat = lookup(app_client, "r", ["graded", "flat"])
    assert (graded["successes"], graded["trials"]) == (2, 4)
    assert (flat["successes"], flat["trials"]) == (0, 2)
    step = app_client.get(run_path("r", "/summary")).json()["steps"][0]
    assert step["step"] == 3 and step["rollouts"] == 6 and step["groups"] == 2
    assert step["zero_variance_groups"] == 1
    assert step["effective_rollouts"] == 4 and step["effective_ratio"] == pytest.approx(4 / 6)


def test_allocation_equals_the_stateless_solve_for_the_same_estimates(
    app_client: TestClient,
) -> None:
    settings = {
        "strategy": "knapsack",
        "min_n": 2,
        "max_n": 64,
        "fallback": True,
        "estimator": {"kind": "window", "window": 16, "min_observations": 4},
    }
    app_client.put(run_path("r"), json=settings)
    prompts = [f"p{i}" for i in range(40)]
    results = [{"prompt_id": p, "successes": i % 9, "trials": 8} for i, p in enumerate(prompts)]
    report(app_client, "r", "s0", 0, results)
    allocation = app_client.post(
        run_path("r", "/allocations"),
        json={"step": 1, "prompts": [*prompts, "new"], "budget": 400},
    ).json()
    assert allocation["degraded"] is False and allocation["strategy"] == "knapsack"
    n = [entry["n"] for entry in allocation["allocations"]]
    assert sum(n) == 400
    rates = [entry["p_hat"] for entry in allocation["allocations"]]
    assert rates[-1] is None and rates[0] == 0.0
    solved = app_client.post(
        "/v1/solve",
        json={
            "success_rates": rates,
            "budget": 400,
            "min_n": 2,
            "max_n": 64,
            "fallback": True,
            "positive_n": 2,
            "negative_n": 2,
            "default_n": 8,
            "strategy": "knapsack",
        },
    ).json()
    assert solved["n"] == n


def test_allocation_shards_and_summary_histograms(app_client: TestClient) -> None:
    app_client.put(run_path("r"), json={})
    prompts = [f"q{i}" for i in range(10)]
    response = app_client.post(
        run_path("r", "/allocations"), json={"step": 5, "prompts": prompts, "workers": 3}
    )
    body = response.json()
    assert body["budget"] == 80  # run default: prompts x default_n
    totals = [sum(count for _, count in shard) for shard in body["shards"]]
    assert sum(totals) == 80 and max(totals) - min(totals) <= 1
    step = app_client.get(run_path("r", "/summary")).json()["steps"][0]
    assert step["step"] == 5 and step["allocated_rollouts"] == 80
    assert step["allocated_prompts"] == 10
    assert sum(step["budget_histogram"].values()) == 10
    assert sum(b["prompts"] for b in step["difficulty_buckets"].values()) == 10


ODD_IDS = [
    "a/b",
    "x:y",
    "{tag}",
    "}{",
    "with space",
    "*glob?[",
    "line\nbreak",
    "q\"uote'",
    "ünïcødé-☃",
    "%2F",
    "%",
    "r" * 256,
]


@pytest.mark.parametrize("odd", ODD_IDS, ids=range(len(ODD_IDS)))
def test_odd_run_and_prompt_ids_round_trip(app_client: TestClient, odd: str) -> None:
    assert app_client.put(run_path(odd), json={}).status_code == 201
    report(app_client, odd, odd, 0, [{"prompt_id": odd, "successes": 1, "trials": 3}])
    (stats,) = lookup(app_client, odd, [odd])
    assert stats["prompt_id"] == odd and stats["trials"] == 3
    assert app_client.get(run_path(odd)).json()["run_id"] == odd
    neighbour = odd[:250] + "-n"  # a run whose id shares the odd prefix sees nothing
    app_client.put(run_path(neighbour), json={})
    assert lookup(app_client, neighbour, [odd])[0]["trials"] == 0


def test_ids_longer_than_256_characters_are_refused(app_client: TestClient) -> None:
    assert app_client.put(run_path("r" * 257), json={}).status_code == 422
    app_client.put(run_path("r"), json={})
    response = app_client.post(run_path("r", "/prompts/lookup"), json={"prompt_ids": ["p" * 257]})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "prompt_ids.0"


def test_delete_removes_the_run(app_client: TestClient) -> None:
    app_client.put(run_path("gone"), json={})
    report(app_client, "gone", "x", 0, [{"prompt_id": "p", "successes": 1, "trials": 2}])
    assert app_client.delete(run_path("gone")).status_code == 200
    assert app_client.get(run_path("gone")).status_code == 404
    app_client.put(run_path("gone"), json={})
    assert lookup(app_client, "gone", ["p"])[0]["trials"] == 0


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_eight_concurrent_reporters_give_exact_totals(
    store: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else None
    app = create_app(make_settings(redis_url=redis_url))
    prompts = [f"shared-{i}" for i in range(16)]

    async def scenario() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://krl") as client,
        ):
            await client.put("/v1/runs/c", json={})

            async def reporter(worker: int) -> None:
                for step in range(5):
                    body = {
                        "report_id": f"w{worker}-s{step}",
                        "step": step,
                        "results": [
                            {"prompt_id": p, "successes": (worker + step) % 3, "trials": 4}
                            for p in prompts
                        ],
                    }
                    for _attempt in range(2):  # every report sent twice: a retry
                        response = await client.post("/v1/runs/c/outcomes", json=body)
                        assert response.status_code == 200, response.text

            await asyncio.gather(*(reporter(w) for w in range(8)))
            response = await client.post("/v1/runs/c/prompts/lookup", json={"prompt_ids": prompts})
            return response.json()["prompts"]

    stats = asyncio.run(scenario())
    expected_successes = sum((w + s) % 3 for w in range(8) for s in range(5))
    for entry in stats:
        assert entry["trials"] == 8 * 5 * 4
        assert entry["successes"] == expected_successes


def test_tokens_guard_runs_but_not_operations() -> None:
    settings = make_settings(api_tokens="team-a-token=team-a-*,admin-token")
    with TestClient(create_app(settings)) as client:
        assert client.put(run_path("team-a-1"), json={}).status_code == 401
        wrong = client.put(run_path("team-a-1"), json={}, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthorized"
        team_a = {"authorization": "Bearer team-a-token"}
        assert client.put(run_path("team-a-1"), json={}, headers=team_a).status_code == 201
        forbidden = client.put(run_path("team-b-1"), json={}, headers=team_a)
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["code"] == "forbidden"
        admin = {"authorization": "Bearer admin-token"}
        assert client.put(run_path("team-b-1"), json={}, headers=admin).status_code == 201
        assert (
            client.post("/v1/solve", json={"success_rates": [0.5], "budget": 4}).status_code == 401
        )
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_metrics_can_require_a_token() -> None:
    settings = make_settings(api_tokens="t", metrics_require_token=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"authorization": "Bearer t"}).status_code == 200


def test_run_gauges_follow_the_reported_step(app_client: TestClient) -> None:
    app_client.put(run_path("g"), json={})
    report(
        app_client,
        "g",
        "a",
        7,
        [
            {"prompt_id": "x", "successes": 2, "trials": 4},
            {"prompt_id": "y", "successes": 4, "trials": 4},
        ],
    )
    report(app_client, "g", "b", 7, [{"prompt_id": "z", "successes": 0, "trials": 8}])
    metrics = app_client.get("/metrics").text
    # Step 7 across both reports: 4 of 16 rollouts in a mixed group; 1 of 3 groups each way.
    assert 'krl_run_effective_gradient_ratio{run="g"} 0.25' in metrics
    assert 'krl_run_all_success_share{run="g"} 0.3333' in metrics
    assert 'krl_run_all_failure_share{run="g"} 0.3333' in metrics
    assert 'krl_run_last_step{run="g"} 7.0' in metrics
    assert "krl_outcomes_ingested_total 16.0" in metrics
