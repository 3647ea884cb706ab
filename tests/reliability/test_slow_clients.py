"""Slow and unauthenticated clients over real uvicorn: they must not starve anyone.

Every attack here is made slow by the client (headers, then a body trickled or
withheld), so nothing depends on how fast the service is: on the old code each
of them held a slot, or got its body parsed, before the token was looked at.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.service_process import ServiceProcess

TOKEN = "slow-client-token"
SCOPED = "scoped-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_CONCURRENCY = 4
SOLVE = {"success_rates": [0.5, 0.25], "budget": 8}


def open_upload(
    port: int,
    *,
    token: str | None,
    path: str = "/v1/solve",
    length: int | None = 1_000_000,
    first: bytes = b'{"budget": 4, ',
) -> socket.socket:
    """Headers (a Content-Length, or chunked when `length` is None) and a first piece."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{auth}{framing}\r\n\r\n"
    )
    body = first if length is not None else b"%x\r\n%s\r\n" % (len(first), first)
    sock.sendall(head.encode() + body)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and whatever came with it (the socket's timeout bounds the wait)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    try:
        while True:  # the rest of a small error body
            sock.settimeout(0.5)
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return int(data.split(b" ", 2)[1]), data


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    env = {
        "KRL_API_TOKENS": f"{TOKEN},{SCOPED}=team-a-*",
        "KRL_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
        "KRL_BODY_MIN_RATE": "1000",
        "KRL_BODY_TIMEOUT": "6",
    }
    with ServiceProcess(env) as process:
        yield process


def test_unauthenticated_uploads_get_401_before_their_body_and_take_no_slot(
    service: ServiceProcess,
) -> None:
    # 20 uploads without a token announce 1 MB and send 14 bytes: each is answered
    # 401 at once, without waiting for the body, and none holds a slot meanwhile.
    uploads = [open_upload(service.port, token=None) for _ in range(5 * MAX_CONCURRENCY)]
    try:
        answers = [read_response(sock) for sock in uploads]
        assert [status for status, _ in answers] == [401] * len(uploads)
        # The connection is closed, not kept alive to read and discard the rest.
        assert all(b"connection: close" in data.lower() for _, data in answers)
        with httpx.Client(base_url=service.url, timeout=10, headers=AUTH) as client:
            answers = {client.post("/v1/solve", json=SOLVE).status_code for _ in range(10)}
            assert answers == {200}
    finally:
        for sock in uploads:
            sock.close()


def test_a_scoped_token_outside_its_runs_gets_403_before_its_body(
    service: ServiceProcess,
) -> None:
    sock = open_upload(service.port, token=SCOPED, path="/v1/runs/team-b-x/outcomes")
    with sock:
        status, data = read_response(sock)
    assert status == 403
    assert b'"forbidden"' in data


def test_a_trickled_body_is_answered_408_in_the_error_shape(service: ServiceProcess) -> None:
    # Authenticated, but one byte every 0.4 s: below 1000 bytes/s after the grace.
    sock = open_upload(service.port, token=TOKEN, length=5000)
    started = time.monotonic()
    with sock:
        try:
            for _ in range(40):
                sock.sendall(b" ")
                time.sleep(0.4)
        except OSError:
            pass  # the service answered and closed the connection
        status, data = read_response(sock)
    assert status == 408
    assert b'"body_timeout"' in data
    assert time.monotonic() - started < 15


def test_stalled_chunked_uploads_count_as_in_flight(service: ServiceProcess) -> None:
    # Chunked bodies used to be buffered before they counted: a flood of them never
    # reached the concurrency limit while the process's memory grew.
    uploads = [open_upload(service.port, token=TOKEN, length=None) for _ in range(MAX_CONCURRENCY)]
    try:
        with httpx.Client(base_url=service.url, timeout=10, headers=AUTH) as client:
            statuses = set()
            for _ in range(100):  # the uploads register asynchronously
                statuses.add(client.post("/v1/solve", json=SOLVE).status_code)
                if 429 in statuses:
                    break
                time.sleep(0.02)
            assert 429 in statuses
            metrics = client.get("/metrics").text
            assert f"krl_inflight_requests {MAX_CONCURRENCY + 1}.0" in metrics
    finally:
        for sock in uploads:
            sock.close()
