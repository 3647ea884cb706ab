"""The client package stays light: httpx and pydantic only."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("knapsack_service", "numpy", "numba", "torch", "fastapi", "redis")


def test_importing_the_client_imports_no_service_or_numerics() -> None:
    code = (
        "import sys, knapsack_client, knapsack_client.cli\n"
        f"loaded = sorted(m for m in {FORBIDDEN!r} if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_public_names_are_exported() -> None:
    import knapsack_client

    for name in (
        "KnapsackClient",
        "AsyncKnapsackClient",
        "RetryPolicy",
        "KnapsackError",
        "ServiceUnavailable",
        "InvalidRequest",
        "RunNotFound",
        "Unauthorized",
        "derive_report_id",
        "AllocationResponse",
        "PromptResult",
    ):
        assert name in knapsack_client.__all__
        assert hasattr(knapsack_client, name)
