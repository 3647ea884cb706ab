"""ASGI middleware: request ids, access logs, metrics, and backpressure.

Written as plain ASGI (not `BaseHTTPMiddleware`) so it adds microseconds, not a
task per request, and can refuse a request before its body is read:
- more than `max_concurrency` requests in flight: 429 with `Retry-After`, instead
  of queueing without bound while trainers time out;
- a body over `max_body_bytes` (by Content-Length, or counted while streaming): 413
  before any parsing.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from knapsack_service.errors import error_response
from knapsack_service.logs import request_id_var
from knapsack_service.metrics import ServiceMetrics

logger = logging.getLogger("knapsack_service.access")

_UNMATCHED_ROUTE = "unmatched"
#: Probes and scrapes are never shed: a liveness probe failing because the service is
#: busy would get a healthy pod restarted exactly when it is needed most.
_NEVER_SHED = frozenset({"/healthz", "/readyz", "/metrics"})


class _BodyTooLargeError(Exception):
    pass


def _keep_escaped_slashes(scope: Scope) -> None:
    """Route on path segments as sent, so a run id may contain `/` (sent as %2F).

    Servers hand the app a fully decoded `path`, where `a%2Fb` and `a/b` look the
    same. For `/v1/runs/...` the path is rebuilt from `raw_path` with `/` and `%`
    inside a segment kept escaped; `deps.get_run_id` undoes exactly that.
    """
    raw = scope.get("raw_path")
    if not raw or not raw.startswith(b"/v1/runs/"):
        return
    segments = raw.decode("latin-1").split("/")
    try:
        decoded = [
            unquote(segment, errors="strict").replace("%", "%25").replace("/", "%2F")
            if "%" in segment
            else segment
            for segment in segments
        ]
    except UnicodeDecodeError:
        return  # not UTF-8: leave the server's path; the id check answers 422 or 404
    scope["path"] = "/".join(decoded)


class ServiceMiddleware:
    """Wraps the app: one place for cross-cutting request handling."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServiceMetrics,
        max_concurrency: int,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_concurrency = max_concurrency
        self.max_body_bytes = max_body_bytes
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        _keep_escaped_slashes(scope)
        headers = dict(scope.get("headers") or ())
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        method = scope["method"]
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            rejection = self._reject_early(headers, scope["path"])
            if rejection is not None:
                status, code, message, reason, extra = rejection
                self.metrics.rejected.labels(reason).inc()
                response = error_response(status, code, message, headers=extra)
                await response(scope, receive, send_with_id)
                return
            if b"content-length" not in headers and method in ("POST", "PUT", "PATCH"):
                try:
                    receive = await self._buffer_body(receive)
                except _BodyTooLargeError:
                    self.metrics.rejected.labels("body_too_large").inc()
                    response = error_response(
                        413, "body_too_large", f"body exceeds {self.max_body_bytes} bytes"
                    )
                    await response(scope, receive, send_with_id)
                    return
            self.inflight += 1
            self.metrics.inflight.inc()
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                self.inflight -= 1
                self.metrics.inflight.dec()
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", None) or _UNMATCHED_ROUTE
            status = status_holder["status"]
            self.metrics.requests.labels(path, method, str(status)).inc()
            self.metrics.request_seconds.labels(path, method).observe(elapsed)
            if path not in ("/metrics", "/healthz", "/readyz") or status >= 400:
                logger.info(
                    "request",
                    extra={
                        "method": method,
                        "route": path,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )
            request_id_var.reset(token)

    def _reject_early(
        self, headers: dict[bytes, bytes], path: str
    ) -> tuple[int, str, str, str, dict[str, str] | None] | None:
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_body_bytes
            except ValueError:
                return 400, "bad_request", "content-length is not a number", "bad_header", None
            if too_large:
                message = f"body exceeds {self.max_body_bytes} bytes"
                return 413, "body_too_large", message, "body_too_large", None
        if self.inflight >= self.max_concurrency and path not in _NEVER_SHED:
            message = f"more than {self.max_concurrency} requests in flight; retry shortly"
            return 429, "overloaded", message, "overload", {"Retry-After": "1"}
        return None

    async def _buffer_body(self, receive: Receive) -> Receive:
        """Read a body sent without Content-Length (chunked), refusing it past the limit.

        Bodies with a Content-Length were already checked against the limit, so only
        chunked uploads are buffered here; the app then reads the buffered copy.
        """
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks.clear()
                replay: list[dict[str, Any]] = [message]
                break
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_body_bytes:
                raise _BodyTooLargeError
            chunks.append(body)
            if not message.get("more_body", False):
                replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                break

        async def replayed() -> dict[str, Any]:
            if replay:
                return replay.pop()
            return await receive()

        return replayed
