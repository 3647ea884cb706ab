"""The Prometheus difficulty counters and `/summary` put each estimate in the same band."""

from __future__ import annotations

from urllib.parse import quote

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

#: `/summary` band -> Prometheus label value (README, "Metrics").
TO_METRIC = {
    "unseen": "unseen",
    "0": "p0",
    "(0,0.2]": "p0_20",
    "(0.2,0.4]": "p20_40",
    "(0.4,0.6]": "p40_60",
    "(0.6,0.8]": "p60_80",
    "(0.8,1)": "p80_100",
    "1": "p1",
}


def counters_by_label(metrics_text: str, name: str) -> dict[str, float]:
    for family in text_string_to_metric_families(metrics_text):
        if family.name == name:
            return {
                sample.labels["bucket"]: sample.value
                for sample in family.samples
                if sample.name == f"{name}_total"
            }
    raise AssertionError(f"{name} not exported")


def test_band_edges_agree_between_metrics_and_summary(app_client: TestClient) -> None:
    # A window of 5 outcomes gives estimates k/5: 0.2, 0.4, 0.6 and 0.8 sit exactly on
    # the band edges, where the metrics and the summary used to disagree.
    estimator = {"kind": "window", "window": 5, "min_observations": 5}
    app_client.put("/v1/runs/bands", json={"estimator": estimator, "strategy": "uniform"})
    prompts = [f"k{k}" for k in range(6)] + ["never-seen"]
    results = [{"prompt_id": f"k{k}", "successes": k, "trials": 5} for k in range(6)]
    report = {"report_id": "r0", "step": 0, "results": results}
    assert app_client.post("/v1/runs/bands/outcomes", json=report).status_code == 200
    body = {"step": 1, "prompts": prompts, "budget": 7 * 4}
    allocation = app_client.post("/v1/runs/bands/allocations", json=body).json()
    assert [entry["p_hat"] for entry in allocation["allocations"]] == [
        0.0, 0.2, 0.4, 0.6, 0.8, 1.0, None
    ]  # fmt: skip

    steps = app_client.get(f"/v1/runs/{quote('bands')}/summary").json()["steps"]
    (summary,) = [step for step in steps if step["step"] == 1]
    by_band = {label: bucket["prompts"] for label, bucket in summary["difficulty_buckets"].items()}
    assert by_band == {
        "unseen": 1, "0": 1, "(0,0.2]": 1, "(0.2,0.4]": 1, "(0.4,0.6]": 1, "(0.6,0.8]": 1, "1": 1
    }  # fmt: skip

    metrics = counters_by_label(
        app_client.get("/metrics").text, "krl_prompts_allocated_by_difficulty"
    )
    assert {TO_METRIC[band]: float(count) for band, count in by_band.items()} == {
        label: value for label, value in metrics.items() if value
    }
