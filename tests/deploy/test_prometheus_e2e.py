"""End to end: a real Prometheus scrapes the real service and loads the project's rules.

Starts `knapsack-service serve` (uvicorn, memory store) and `prometheus` on free loopback
ports, with a 1 s scrape interval and deploy/prometheus/rules, drives allocations and
reports, then polls Prometheus's HTTP API until the project's series arrive. Skipped only
where the `prometheus` binary is absent (apt-get install prometheus).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.deploy._deploy_files import (
    RULES_FILE,
    RUN_ID,
    drive_traffic,
    load_deploy_check,
)
from tests.support.redis_server import find_free_port
from tests.support.service_process import ServiceProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="the prometheus binary is not installed (apt-get install prometheus)",
    ),
]

T = TypeVar("T")
SERIES_TIMEOUT_S = 30.0  # first scraped series show up after ~5 s with a 1 s interval


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    proc: subprocess.Popen | None = None,
) -> T:
    """Poll `probe` until it returns a value; fail early if `proc` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}")
        try:
            value = probe()
        except httpx.TransportError:
            value = None
        if value is not None:
            return value
        time.sleep(0.25)
    pytest.fail(f"{what}: not within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    with ServiceProcess({"KRL_LOG_LEVEL": "warning"}) as service:
        yield service.url


@pytest.fixture(scope="module")
def prometheus_url(service_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": "knapsack-rl",
                "static_configs": [{"targets": [service_url.removeprefix("http://")]}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = find_free_port()
    with (workdir / "prometheus.log").open("wb") as out:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "prometheus ready",
            lambda: httpx.get(f"{url}/-/ready").status_code == 200 or None,
            30.0,
            proc,
        )
        yield url
    finally:
        stop(proc)


def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql})
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_the_service_series(service_url: str, prometheus_url: str) -> None:
    with httpx.Client(base_url=service_url, timeout=10.0) as client:
        drive_traffic(client, steps=3)

    def applied_reports() -> float | None:
        result = query(prometheus_url, 'krl_reports_total{job="knapsack-rl", result="applied"}')
        value = float(result[0]["value"][1]) if result else 0.0
        return value if value >= 3 else None

    assert wait_for("krl_reports_total scraped", applied_reports, SERIES_TIMEOUT_S) == 3
    up = query(prometheus_url, 'up{job="knapsack-rl"}')
    assert [float(sample["value"][1]) for sample in up] == [1.0]
    ratio = query(prometheus_url, f'krl_run_effective_gradient_ratio{{run="{RUN_ID}"}}')
    assert [float(sample["value"][1]) for sample in ratio] == [0.5]
    latency = query(
        prometheus_url, 'krl_http_request_duration_seconds_count{route=~".*/allocations"}'
    )
    assert sum(float(sample["value"][1]) for sample in latency) == 3


def test_prometheus_loads_every_project_rule(prometheus_url: str) -> None:
    response = httpx.get(f"{prometheus_url}/api/v1/rules")
    response.raise_for_status()
    groups = response.json()["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    expected = {r.get("alert") or r["record"] for g in rules["groups"] for r in g["rules"]}
    assert expected <= loaded
    assert set(load_deploy_check().alert_names(rules)) <= loaded
