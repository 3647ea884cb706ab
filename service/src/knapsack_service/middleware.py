"""ASGI middleware: request ids, access logs, metrics, authentication and backpressure.

Written as plain ASGI (not `BaseHTTPMiddleware`) so it adds microseconds, not a
task per request, and decides before a body is read. In this order:
1. a bad or oversized Content-Length: 400 / 413, nothing read;
2. `/v1` without a valid token (401), or with a token scoped to other runs (403),
   nothing read: requests without a valid token never take a slot, never make the
   service parse their body;
3. more than `max_concurrency` requests in flight: 429 with `Retry-After`, instead
   of queueing without bound while trainers time out;
4. the request now counts as in flight while its body is read here, whole, under
   three limits: the size limit as it streams (chunked bodies included; 413), a
   deadline and a minimum rate (408): a body must arrive within `body_timeout`
   seconds and, after `BODY_GRACE_SECONDS`, at `body_min_rate` bytes per second on
   average, so a trickling client holds its slot for seconds, not for ever.
The app then reads the buffered body, which it would have buffered anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from knapsack_service.auth import check_run_access, find_grant, run_id_of_path
from knapsack_service.errors import ApiError, error_response
from knapsack_service.logs import request_id_var
from knapsack_service.metrics import ServiceMetrics
from knapsack_service.settings import TokenGrant

logger = logging.getLogger("knapsack_service.access")

_UNMATCHED_ROUTE = "unmatched"
#: Probes and scrapes are never shed: a liveness probe failing because the service is
#: busy would get a healthy pod restarted exactly when it is needed most.
_NEVER_SHED = frozenset({"/healthz", "/readyz", "/metrics"})
#: Seconds a body may take before the minimum rate applies (connection set-up, the
#: first bytes of a slow link).
BODY_GRACE_SECONDS = 2.0
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: (status, code, message, metrics reason, extra headers) of a refusal.
Rejection = tuple[int, str, str, str, dict[str, str] | None]


def _announces_body(headers: dict[bytes, bytes]) -> bool:
    """Whether the request says a body follows (a non-zero length, or chunked)."""
    length = headers.get(b"content-length", b"").strip()
    return b"transfer-encoding" in headers or (bool(length) and length != b"0")


class _BodyRefused(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection[2])
        self.rejection = rejection


def _keep_escaped_slashes(scope: Scope) -> None:
    """Route on path segments as sent, so a run id may contain `/` (sent as %2F).

    Servers hand the app a fully decoded `path`, where `a%2Fb` and `a/b` look the
    same. For `/v1/runs/...` the path is rebuilt from `raw_path` with `/` and `%`
    inside a segment kept escaped; `auth.unescape_segment` undoes exactly that.
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
        api_tokens: tuple[TokenGrant, ...] = (),
        body_timeout: float = 30.0,
        body_min_rate: float = 16384.0,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_concurrency = max_concurrency
        self.max_body_bytes = max_body_bytes
        self.api_tokens = api_tokens
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate
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
            path = scope["path"]
            rejection = self._reject_early(headers, path) or self._authenticate(headers, path)
            full = self.inflight >= self.max_concurrency and path not in _NEVER_SHED
            if rejection is None and full:
                message = f"more than {self.max_concurrency} requests in flight; retry shortly"
                rejection = 429, "overloaded", message, "overload", {"Retry-After": "1"}
            if rejection is not None:
                await self._refuse(
                    rejection, scope, receive, send_with_id, body_unread=_announces_body(headers)
                )
                return
            self.inflight += 1
            self.metrics.inflight.inc()
            try:
                if method in _BODY_METHODS:
                    try:
                        receive = await self._read_body(receive)
                    except _BodyRefused as refused:
                        await self._refuse(
                            refused.rejection, scope, receive, send_with_id, body_unread=True
                        )
                        return
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

    async def _refuse(
        self,
        rejection: Rejection,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        body_unread: bool,
    ) -> None:
        """Answer a refusal; close the connection when a body was left unread.

        Kept alive, the server would go on reading (and discarding) the rest of the
        body on its event loop: 13 MB uploads without a token then cost everyone.
        """
        status, code, message, reason, extra = rejection
        self.metrics.rejected.labels(reason).inc()
        if body_unread:
            extra = {**(extra or {}), "Connection": "close"}
        response = error_response(status, code, message, headers=extra)
        await response(scope, receive, send)

    def _reject_early(self, headers: dict[bytes, bytes], path: str) -> Rejection | None:
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_body_bytes
            except ValueError:
                return 400, "bad_request", "content-length is not a number", "bad_header", None
            if too_large:
                message = f"body exceeds {self.max_body_bytes} bytes"
                return 413, "body_too_large", message, "body_too_large", None
        return None

    def _authenticate(self, headers: dict[bytes, bytes], path: str) -> Rejection | None:
        """401/403 for `/v1` before anything else is spent on the request.

        The routes check the token again (their dependency is the contract's source of
        truth); this check only makes sure that an unauthenticated request never
        takes a slot or has its body read.
        """
        if not self.api_tokens or not path.startswith("/v1/"):
            return None
        authorization = headers.get(b"authorization")
        try:
            grant = find_grant(
                self.api_tokens, None if authorization is None else authorization.decode("latin-1")
            )
            run_id = run_id_of_path(path)
            if run_id:
                check_run_access(grant, run_id)
        except ApiError as error:
            reason = "unauthorized" if error.status == 401 else "forbidden"
            return error.status, error.code, error.message, reason, error.headers
        return None

    async def _read_body(self, receive: Receive) -> Receive:
        """Read the whole body under the size limit, the deadline and the minimum rate.

        Raises:
            _BodyRefused: 413 past the size limit (counted as it streams, so a chunked
                body is refused the moment it passes the limit), 408 when the body is
                too slow.

        """
        chunks: list[bytes] = []
        received = 0
        started = time.monotonic()
        while True:
            allowed = min(self.body_timeout, BODY_GRACE_SECONDS + received / self.body_min_rate)
            remaining = started + allowed - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                raise _BodyRefused(self._too_slow(received, time.monotonic() - started)) from None
            if message["type"] != "http.request":  # the client went away: let the app see it
                replay: list[dict[str, Any]] = [message]
                break
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_body_bytes:
                text = f"body exceeds {self.max_body_bytes} bytes"
                raise _BodyRefused((413, "body_too_large", text, "body_too_large", None))
            chunks.append(body)
            if not message.get("more_body", False):
                replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                break

        async def replayed() -> dict[str, Any]:
            if replay:
                return replay.pop()
            return await receive()

        return replayed

    def _too_slow(self, received: int, elapsed: float) -> Rejection:
        message = (
            f"request body too slow: {received} bytes in {elapsed:.1f} s; a body must arrive "
            f"within {self.body_timeout:g} s and at {self.body_min_rate:g} bytes/s or more "
            f"after the first {BODY_GRACE_SECONDS:g} s"
        )
        return 408, "body_timeout", message, "body_timeout", None
