"""Bearer-token authentication with per-token run scopes.

Tokens are compared in constant time (`hmac.compare_digest` against every
configured token, without stopping at the first match) so response timing does
not reveal a token's prefix. Tokens are never logged.
"""

from __future__ import annotations

import hmac
import re

from knapsack_service.errors import ApiError
from knapsack_service.settings import Settings, TokenGrant

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_SEGMENT_ESCAPE = re.compile(r"%(2F|25)")
_UNESCAPED = {"2F": "/", "25": "%"}
_RUNS_PREFIX = "/v1/runs/"


def unescape_segment(segment: str) -> str:
    """A run id from its path segment: the middleware keeps `/` and `%` escaped there.

    (`middleware._keep_escaped_slashes` writes them as %2F and %25 so that a run id
    holding a slash still routes as one segment.)
    """
    return _SEGMENT_ESCAPE.sub(lambda m: _UNESCAPED[m.group(1)], segment)


def run_id_of_path(path: str) -> str | None:
    """The run id of a `/v1/runs/{run_id}...` path (as the middleware rewrote it), or None."""
    if not path.startswith(_RUNS_PREFIX):
        return None
    return unescape_segment(path[len(_RUNS_PREFIX) :].partition("/")[0]) or None


def find_grant(grants: tuple[TokenGrant, ...], authorization: str | None) -> TokenGrant:
    """The grant of the presented bearer token; 401 when it is missing or unknown."""
    if not authorization:
        raise ApiError(401, "unauthorized", "missing bearer token", headers=_CHALLENGE)
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401, "unauthorized", "expected 'Authorization: Bearer <token>'", headers=_CHALLENGE
        )
    presented_bytes = presented.strip().encode()
    found: TokenGrant | None = None
    for grant in grants:
        if hmac.compare_digest(grant.token.encode(), presented_bytes) and found is None:
            found = grant
    if found is None:
        raise ApiError(401, "unauthorized", "unknown token", headers=_CHALLENGE)
    return found


def check_run_access(grant: TokenGrant, run_id: str) -> None:
    """403 when the token is limited to other runs."""
    if not grant.allows(run_id):
        raise ApiError(403, "forbidden", "this token may not access this run")


def check_scrape_access(settings: Settings, authorization: str | None) -> None:
    """Who may read `/metrics`: it lists every tenant's run ids.

    With `KRL_METRICS_TOKEN` set, only that token (a scrape token of its own, which
    grants nothing under `/v1`); else, with `KRL_METRICS_REQUIRE_TOKEN` and API
    tokens, only an API token without run scopes (403 for a scoped one: it may not
    see other tenants' runs); else anyone.
    """
    if settings.metrics_token is not None:
        grant = TokenGrant(token=settings.metrics_token)
        find_grant((grant,), authorization)
        return
    if settings.metrics_require_token and settings.auth_enabled:
        grant = find_grant(settings.api_tokens, authorization)
        if grant.run_patterns:
            raise ApiError(403, "forbidden", "a run-scoped token may not read every run's metrics")
