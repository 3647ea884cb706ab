"""More concurrent requests than redis-py's default pool holds, on a healthy Redis.

redis-py's asyncio pool holds 100 connections and raises `MaxConnectionsError` the
moment a 101st is needed; the service used to read that as an outage: degraded
allocations and 503s while Redis was perfectly fine. Every burst below stays within
`KRL_MAX_CONCURRENCY` (256 by default), so every answer must be a healthy one.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.reliability.conftest import ServiceFactory

RUN = "pool-run"
PROMPTS = [f"pool-prompt-{i}" for i in range(64)]
BURST = 200


async def burst(url: str, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    """Send every request at once, each on its own connection."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        sent = [client.post(path, json=body) for path, body in requests]
        return list(await asyncio.gather(*sent))


def test_bursts_beyond_100_requests_never_degrade_on_healthy_redis(
    redis_url: str, start_service: ServiceFactory
) -> None:
    service = start_service({"KRL_REDIS_URL": redis_url, "KRL_LOG_LEVEL": "warning"})
    with httpx.Client(base_url=service.url, timeout=30) as client:
        client.put(f"/v1/runs/{RUN}", json={}).raise_for_status()

    allocations = [(f"/v1/runs/{RUN}/allocations", {"step": 1, "prompts": PROMPTS})] * BURST
    reports = [
        (
            f"/v1/runs/{RUN}/outcomes",
            {
                "report_id": f"burst-{i}",
                "step": 1,
                "results": [{"prompt_id": p, "successes": i % 3, "trials": 4} for p in PROMPTS],
            },
        )
        for i in range(BURST)
    ]
    lookups = [(f"/v1/runs/{RUN}/prompts/lookup", {"prompt_ids": PROMPTS})] * BURST

    answered = {
        "allocations": asyncio.run(burst(service.url, allocations)),
        "reports": asyncio.run(burst(service.url, reports)),
        "lookups": asyncio.run(burst(service.url, lookups)),
    }
    for route, responses in answered.items():
        statuses = sorted({response.status_code for response in responses})
        assert statuses == [200], (route, statuses, service.log_tail())
    degraded = [r for r in answered["allocations"] if r.json()["degraded"]]
    assert not degraded, degraded[0].json()["reason"]
    assert all(not r.json()["duplicate"] for r in answered["reports"])

    with httpx.Client(base_url=service.url, timeout=30) as client:
        counters = client.get(f"/v1/runs/{RUN}").json()["counters"]
        assert counters["reports"] == BURST
        assert counters["rollouts"] == BURST * len(PROMPTS) * 4
