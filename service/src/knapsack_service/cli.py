"""`knapsack-service serve`: run the app under uvicorn with `KRL_` settings."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from knapsack_service.settings import MEMORY_STORE_WORKERS_MESSAGE, get_settings


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until interrupted."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="knapsack-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default=settings.host, help="bind address (KRL_HOST)")
    serve.add_argument("--port", type=int, default=settings.port, help="port (KRL_PORT)")
    serve.add_argument(
        "--workers",
        type=int,
        default=settings.workers,
        help="uvicorn worker processes (KRL_WORKERS)",
    )
    args = parser.parse_args(argv)
    if args.command == "serve" and args.workers > 1 and not settings.redis_url:
        parser.error(f"--workers {args.workers}: {MEMORY_STORE_WORKERS_MESSAGE}")
    if args.command == "serve":
        uvicorn.run(
            "knapsack_service.main:app_from_environment",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
