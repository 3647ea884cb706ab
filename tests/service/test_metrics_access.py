"""Per-run metric labels are freed, and /metrics has a scrape token of its own."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from knapsack_service.main import create_app
from tests.service.conftest import make_settings


def report(client: TestClient, run_id: str, report_id: str, **headers: str) -> None:
    client.put(f"/v1/runs/{run_id}", json={}, headers=headers)
    body = {
        "report_id": report_id,
        "step": 1,
        "results": [{"prompt_id": "p", "successes": 1, "trials": 2}],
    }
    assert client.post(f"/v1/runs/{run_id}/outcomes", json=body, headers=headers).status_code == 200


def labelled(client: TestClient, **headers: str) -> set[str]:
    """Run labels of krl_run_last_step in the scrape."""
    text = client.get("/metrics", headers=headers).text
    return {
        line.split('run="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("krl_run_last_step{")
    }


def test_a_deleted_runs_label_slot_goes_to_the_next_run() -> None:
    with TestClient(create_app(make_settings(max_metric_runs=2))) as client:
        report(client, "throwaway", "r1")
        report(client, "kept", "r2")
        report(client, "real", "r3")
        assert labelled(client) == {"throwaway", "kept", "_other"}
        assert client.delete("/v1/runs/throwaway").status_code == 200
        assert labelled(client) == {"kept", "_other"}  # the deleted run's series are gone
        report(client, "real", "r4")
        assert labelled(client) == {"kept", "real", "_other"}


def test_an_idle_runs_label_slot_goes_to_a_new_run() -> None:
    settings = make_settings(max_metric_runs=1, metric_run_idle_seconds=0.3)
    with TestClient(create_app(settings)) as client:
        report(client, "old", "r1")
        report(client, "new", "r2")
        assert labelled(client) == {"old", "_other"}  # "old" is not idle yet
        time.sleep(0.4)
        report(client, "new", "r3")
        assert "new" in labelled(client) and "old" not in labelled(client)


def test_metrics_has_a_scrape_token_of_its_own() -> None:
    settings = make_settings(api_tokens="api-token,scoped=team-a-*", metrics_token="scrape")
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        api = {"Authorization": "Bearer api-token"}
        assert client.get("/metrics", headers=api).status_code == 401
        scrape = {"Authorization": "Bearer scrape"}
        assert client.get("/metrics", headers=scrape).status_code == 200
        # The scrape token grants nothing under /v1.
        assert client.put("/v1/runs/x", json={}, headers=scrape).status_code == 401


def test_a_run_scoped_token_cannot_read_every_runs_metrics() -> None:
    settings = make_settings(api_tokens="api-token,scoped=team-a-*", metrics_require_token=True)
    with TestClient(create_app(settings)) as client:
        scoped = client.get("/metrics", headers={"Authorization": "Bearer scoped"})
        assert scoped.status_code == 403
        assert scoped.json()["error"]["code"] == "forbidden"
        assert (
            client.get("/metrics", headers={"Authorization": "Bearer api-token"}).status_code == 200
        )
