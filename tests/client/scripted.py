"""Scripted answers for retry/backoff tests (the only use of httpx.MockTransport here).

The real service cannot be made to answer "503, 503, then 200" on demand, so these
tests script that sequence; every other test talks to the real app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from knapsack_client import RetryPolicy

Step = httpx.Response | type[httpx.HTTPError] | Callable[[httpx.Request], httpx.Response]

ACK = {"accepted": 1, "duplicate": False}
RESULTS = [{"prompt_id": "p", "successes": 1, "trials": 2}]


@dataclass
class Script:
    """Answers each request with the next step; records requests and the waits taken."""

    steps: list[Step]
    requests: list[httpx.Request] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, httpx.Response):
            return httpx.Response(step.status_code, headers=step.headers, content=step.content)
        if isinstance(step, type) and issubclass(step, httpx.HTTPError):
            raise step("scripted failure", request=request)
        return step(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def policy(self, max_attempts: int = 4, **changes: float) -> RetryPolicy:
        """A policy whose jitter draws 0.5 and whose sleeps are recorded, not slept."""

        async def async_sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        return RetryPolicy(
            max_attempts=max_attempts,
            base_delay=changes.get("base_delay", 0.1),
            max_delay=changes.get("max_delay", 1.0),
            max_retry_after=changes.get("max_retry_after", 30.0),
            random=lambda: 0.5,
            sleep=self.sleeps.append,
            async_sleep=async_sleep,
        )


def error(status: int, code: str, message: str = "", details: object = None, **headers: str):
    """An answer in the service's error shape."""
    body = {"error": {"code": code, "message": message or code, "details": details}}
    return httpx.Response(status, json=body, headers=headers)


def unavailable(retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return error(503, "store_unavailable", **headers)


def ok(body: object) -> httpx.Response:
    return httpx.Response(200, json=body)


def invalid(field_name: str) -> httpx.Response:
    return error(422, "invalid_request", details=[{"field": field_name, "message": "bad"}])
