"""Dependencies of the routes, as `Annotated` aliases a handler simply declares."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Header, Path, Request

from knapsack_service.auth import check_run_access, find_grant, unescape_segment
from knapsack_service.errors import invalid_field
from knapsack_service.settings import TokenGrant
from knapsack_service.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    """The app's state, built in the lifespan.

    Dependencies here are `async def` although they never await: FastAPI runs a plain
    `def` dependency in the threadpool, a hop that costs more than the work itself.
    """
    return request.app.state.krl


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_grant(
    state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> TokenGrant | None:
    """The caller's token grant; None when the service runs without tokens."""
    if not state.settings.auth_enabled:
        return None
    return find_grant(state.settings.api_tokens, authorization)


GrantDep = Annotated[TokenGrant | None, Depends(get_grant)]


def _is_utf8_run_segment(raw_path: bytes | None) -> bool:
    """Whether the run id as sent (`/v1/runs/<id>/...`) percent-decodes to valid UTF-8.

    Servers decode a path with replacement characters, so `team-a-%FF` and
    `team-a-%FE` would both name the run `team-a-\ufffd`: one run for two ids.
    """
    parts = (raw_path or b"").split(b"/", 4)
    if len(parts) < 4:
        return True
    try:
        unquote_to_bytes(parts[3]).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def get_run_id(
    request: Request,
    grant: GrantDep,
    run_id: Annotated[str, Path(description="Run id, 1 to 256 characters, percent-encoded.")],
) -> str:
    """The run id of the path, exactly as the client sent it, checked against the token.

    The middleware keeps `/` and `%` inside a path segment escaped (as %2F and %25)
    so run ids containing slashes route correctly; they are undone here. An id whose
    escapes are not UTF-8 is refused rather than decoded with replacements.
    """
    if not _is_utf8_run_segment(request.scope.get("raw_path")):
        raise invalid_field("run_id", "percent-escapes must decode to UTF-8")
    run_id = unescape_segment(run_id)
    if not 1 <= len(run_id) <= 256:
        raise invalid_field("run_id", "must be 1 to 256 characters")
    if grant is not None:
        check_run_access(grant, run_id)
    return run_id


RunIdDep = Annotated[str, Depends(get_run_id)]
