"""Backpressure over real uvicorn: 429 past KRL_MAX_CONCURRENCY, 413 past KRL_MAX_BODY_BYTES.

Slow requests are made slow by the client, not by the service: a request whose
body is still being uploaded holds its slot in the service (the app is waiting on
`receive()`), so `max_concurrency` such uploads fill the service deterministically,
with no timing assumption about how fast a solve is.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.service_process import ServiceProcess

MAX_BODY = 4096
MAX_CONCURRENCY = 2


def open_slow_upload(port: int, path: str = "/v1/solve", length: int = 200) -> socket.socket:
    """Send headers and half a body, then stall: the request stays in flight."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"budget": 4, ')
    return sock


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def refused_while_full(client: httpx.Client, body: dict) -> httpx.Response:
    """Post until the stalled uploads hold every slot (they register asynchronously)."""
    for _ in range(400):
        response = client.post("/v1/solve", json=body)
        if response.status_code == 429:
            return response
        time.sleep(0.025)
    raise AssertionError("the service never refused a request")


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    """One service (memory store) with a small concurrency limit and a small body limit."""
    env = {
        "KRL_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
        "KRL_MAX_BODY_BYTES": str(MAX_BODY),
        # The stalled uploads below must outlive the test, not the body deadline
        # (tests/reliability/test_slow_clients.py checks that deadline).
        "KRL_BODY_MIN_RATE": "1",
    }
    with ServiceProcess(env) as process:
        yield process


def test_requests_beyond_max_concurrency_get_429_with_retry_after(
    service: ServiceProcess,
) -> None:
    uploads = [open_slow_upload(service.port) for _ in range(MAX_CONCURRENCY)]
    try:
        with httpx.Client(base_url=service.url, timeout=10) as client:
            body = {"success_rates": [0.5, 0.25], "budget": 8}
            refused = refused_while_full(client, body)
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "overloaded"
            # while full, every further request is refused at once instead of queueing
            assert {client.post("/v1/solve", json=body).status_code for _ in range(20)} == {429}
            for sock in uploads:  # finishing the uploads frees the slots
                sock.sendall(b" " * 186)
                assert read_status(sock) == 422  # the half body is not valid JSON
            accepted = client.post("/v1/solve", json=body)
            assert accepted.status_code == 200, accepted.text
            metrics = client.get("/metrics").text
            assert 'krl_rejected_requests_total{reason="overload"}' in metrics
            assert "krl_inflight_requests 1.0" in metrics  # only the /metrics call itself
    finally:
        for sock in uploads:
            sock.close()


def test_a_content_length_beyond_the_limit_is_refused_before_the_body_is_sent(
    service: ServiceProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        head = (
            "POST /v1/solve HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * MAX_BODY}\r\n\r\n"
        )
        sock.sendall(head.encode())  # no body at all: the answer must not wait for it
        assert read_status(sock) == 413


def test_oversized_bodies_get_413_in_the_contract_shape(service: ServiceProcess) -> None:
    rates = [0.5] * 2000  # about 10 kB of JSON
    with httpx.Client(base_url=service.url, timeout=10) as client:
        with_length = client.post("/v1/solve", json={"success_rates": rates, "budget": 4000})
        assert with_length.status_code == 413
        assert with_length.json()["error"]["code"] == "body_too_large"

        payload = httpx.Request("POST", "/", json={"success_rates": rates, "budget": 4000}).read()

        def chunks():
            for start in range(0, len(payload), 1000):
                yield payload[start : start + 1000]

        chunked = client.post(
            "/v1/solve", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413
        assert chunked.json()["error"]["code"] == "body_too_large"

        small = client.post("/v1/solve", json={"success_rates": [0.5] * 10, "budget": 40})
        assert small.status_code == 200
        small_chunked = client.post(
            "/v1/solve",
            content=iter([b'{"success_rates": [0.5, 0.5],', b' "budget": 8}']),
            headers={"Content-Type": "application/json"},
        )
        assert small_chunked.status_code == 200, small_chunked.text
        metrics = client.get("/metrics").text
        assert 'krl_rejected_requests_total{reason="body_too_large"}' in metrics
