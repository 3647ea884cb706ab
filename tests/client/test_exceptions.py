"""How answers and transport failures map onto the client's exception tree."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from knapsack_client import (
    InvalidRequest,
    KnapsackClient,
    KnapsackError,
    RunNotFound,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
)
from knapsack_client._calls import get_run, quote_segment
from knapsack_client._exceptions import (
    error_from_response,
    map_transport_error,
    parse_retry_after,
)


def answer(status: int, body: object = None, **headers: str) -> httpx.Response:
    request = httpx.Request("POST", "http://krl/v1/runs/r/outcomes")
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def service_error(code: str, details: object = None) -> dict[str, object]:
    return {"error": {"code": code, "message": code, "details": details}}


def test_success_is_no_error() -> None:
    assert error_from_response(answer(200, {"accepted": 1})) is None


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, service_error("unauthorized"), Unauthorized),
        (403, service_error("forbidden"), Unauthorized),
        (404, service_error("run_not_found"), RunNotFound),
        (400, service_error("bad_request"), InvalidRequest),
        (413, service_error("body_too_large"), InvalidRequest),
        (422, service_error("invalid_request"), InvalidRequest),
        (429, service_error("overloaded"), ServiceUnavailable),
        (503, service_error("store_unavailable"), ServiceUnavailable),
        (502, None, ServiceUnavailable),
        (500, service_error("internal"), ServerError),
    ],
)
def test_status_maps_to_its_exception(status: int, body: object, kind: type) -> None:
    error = error_from_response(answer(status, body))
    assert type(error) is kind
    assert error is not None and error.status == status


def test_unknown_route_404_is_not_a_bad_report() -> None:
    # A wrong base URL must not make the journal drop reports as invalid.
    error = error_from_response(answer(404, {"detail": "Not Found"}))
    assert type(error) is KnapsackError


def test_error_keeps_code_message_and_details() -> None:
    details = [{"field": "results.2.successes", "message": "exceeds trials"}]
    error = error_from_response(answer(422, service_error("invalid_request", details)))
    assert isinstance(error, InvalidRequest)
    assert error.code == "invalid_request"
    assert error.field == "results.2.successes"
    assert error.details == details


def test_non_json_error_body_is_tolerated() -> None:
    request = httpx.Request("GET", "http://krl/v1/runs/r")
    error = error_from_response(httpx.Response(502, text="<html>bad gateway", request=request))
    assert isinstance(error, ServiceUnavailable)
    assert "bad gateway" in error.message


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    date = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(10.0)
    error = error_from_response(answer(503, service_error("unavailable"), **{"Retry-After": "7"}))
    assert isinstance(error, ServiceUnavailable) and error.retry_after == 7.0


def test_transport_errors_map_by_kind() -> None:
    request = httpx.Request("GET", "http://krl/")
    assert type(map_transport_error(httpx.ConnectError("x", request=request))) is (
        ServiceUnavailable
    )
    assert type(map_transport_error(httpx.ReadTimeout("x", request=request))) is (
        ServiceUnavailable
    )
    assert type(map_transport_error(httpx.UnsupportedProtocol("x", request=request))) is (
        KnapsackError
    )


def test_run_ids_are_one_escaped_segment() -> None:
    assert quote_segment("a/b c") == "a%2Fb%20c"
    assert quote_segment("..") == "%2E%2E"
    assert quote_segment("run-7") == "run-7"


def sent_headers(client: KnapsackClient) -> httpx.Headers:
    """The headers of a request the client would send."""
    return client._build(client._http, get_run("run")).headers


def test_configuration_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRL_URL", "http://from-env:1/")
    monkeypatch.setenv("KRL_TOKEN", "env-token")
    from_env = KnapsackClient()
    assert from_env.base_url == "http://from-env:1"
    assert sent_headers(from_env)["Authorization"] == "Bearer env-token"
    explicit = KnapsackClient("http://explicit:2", token="")
    assert explicit.base_url == "http://explicit:2"
    assert "Authorization" not in sent_headers(explicit)
    with httpx.Client(base_url="http://in-process") as http:
        assert KnapsackClient(http_client=http).base_url == "http://in-process"
    for client in (from_env, explicit):
        client.close()


def test_timeout_accepts_seconds_or_httpx_timeout() -> None:
    with KnapsackClient("http://x", timeout=2.5) as seconds:
        assert seconds.timeout == httpx.Timeout(2.5)
    custom = httpx.Timeout(1.0, connect=0.2)
    with KnapsackClient("http://x", timeout=custom) as given:
        assert given.timeout is custom
