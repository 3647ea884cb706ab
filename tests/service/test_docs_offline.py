"""`/docs` renders with the network cut off: headless Chromium shows the routes.

Issue 13, section 7: the page loaded Swagger UI from cdn.jsdelivr.net, so on an
air-gapped cluster it was blank. Chromium (Debian's `chromium`, installed by
`scripts/setup-system.sh`) loads the page from a real uvicorn on loopback with every
other host unresolvable, runs its scripts, and the DOM it dumps must list the routes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import httpx
import pytest

from tests.support.service_process import ServiceProcess

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The network, cut off: no name but the loopback address resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--virtual-time-budget=15000",
]


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess() as process:
        yield process


def rendered_dom(url: str) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (scripts/setup-system.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="krl-chromium-") as profile:
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_docs_render_the_routes_without_a_network(service: ServiceProcess) -> None:
    page = httpx.get(f"{service.url}/docs").text
    assert "cdn.jsdelivr.net" not in page and "/docs/assets/swagger-ui-bundle.js" in page
    dom = rendered_dom(f"{service.url}/docs")
    assert 'id="swagger-ui"' in dom
    for path in (
        "/v1/solve",
        "/v1/runs/{run_id}/allocations",
        "/v1/runs/{run_id}/outcomes",
        "/v1/runs/{run_id}/prompts/lookup",
        "/v1/runs/{run_id}/summary",
        "/healthz",
    ):
        assert f'data-path="{path}"' in dom, path
