"""Service configuration: environment variables with the `KRL_` prefix.

This is the only module that reads the environment (through pydantic-settings),
so every knob is documented in one place and validated at start-up: a typo in a
deployment fails the pod instead of silently running with a default.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


@dataclass(frozen=True)
class TokenGrant:
    """One API token and the run ids it may touch (fnmatch patterns; empty = all runs)."""

    token: str
    run_patterns: tuple[str, ...] = ()

    def allows(self, run_id: str) -> bool:
        """Whether this token may act on `run_id`."""
        if not self.run_patterns:
            return True
        return any(fnmatch.fnmatchcase(run_id, pattern) for pattern in self.run_patterns)


def parse_tokens(raw: str) -> tuple[TokenGrant, ...]:
    """Parse `KRL_API_TOKENS`: `tokenA=pattern1|pattern2,tokenB`.

    Tokens are separated by commas; a token may be limited to run ids matching
    any of its `|`-separated fnmatch patterns.
    """
    grants = []
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        token, _, patterns = entry.partition("=")
        token = token.strip()
        if not token:
            raise ValueError("KRL_API_TOKENS holds an entry without a token")
        scoped = tuple(p.strip() for p in patterns.split("|") if p.strip())
        grants.append(TokenGrant(token=token, run_patterns=scoped))
    return tuple(grants)


#: Why the memory store refuses several worker processes (settings and CLI both say it).
MEMORY_STORE_WORKERS_MESSAGE = (
    "the memory store (no KRL_REDIS_URL) lives in one process: with several workers each "
    "would keep its own runs and answer 404 for the others'; set KRL_REDIS_URL or use 1 worker"
)


class Settings(BaseSettings):
    """Every setting of the service; see the README's "Configuration" table."""

    model_config = SettingsConfigDict(env_prefix="KRL_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None, description="Redis URL; unset runs the embedded in-memory store."
    )
    redis_timeout: float = Field(default=0.5, gt=0, description="Socket timeout, seconds.")
    redis_cluster: bool = Field(default=False, description="Treat redis_url as a Redis Cluster.")
    api_tokens: Annotated[tuple[TokenGrant, ...], NoDecode] = Field(default=())
    max_prompts: int = Field(default=100_000, ge=1, description="Prompts per request, at most.")
    max_report_results: int = Field(
        default=8192,
        ge=1,
        description="Results per outcome report, at most: bounds the time one report "
        "holds Redis (RELIABILITY.md, 'Report size').",
    )
    max_run_prompts: int | None = Field(
        default=1_000_000,
        ge=1,
        description="Prompts one run may track; a report adding more is refused (422).",
    )
    max_step_ahead: int = Field(
        default=1_000_000,
        ge=1,
        description="Steps a report or allocation may lie beyond the run's last reported "
        "step (or beyond 0 before any report); further is refused (422 naming step).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    metrics_require_token: bool = False
    max_metric_runs: int = Field(default=100, ge=1, description="Runs with their own label.")
    metric_run_idle_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A run that has not reported for this long gives its label to a new run.",
    )
    metrics_token: str | None = Field(
        default=None,
        min_length=1,
        description="The scrape token: when set, /metrics needs exactly this bearer token.",
    )
    max_concurrency: int = Field(default=256, ge=1, description="In-flight requests before 429.")
    max_body_bytes: int = Field(default=16 * 2**20, ge=1024, description="Larger bodies: 413.")
    body_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a request body may take in all; slower: 408."
    )
    body_min_rate: float = Field(
        default=16384.0,
        gt=0,
        description="Bytes per second a body must average after its first 2 s; slower: 408.",
    )

    @model_validator(mode="after")
    def _one_process_for_the_memory_store(self) -> Settings:
        if self.workers > 1 and not self.redis_url:
            raise ValueError(MEMORY_STORE_WORKERS_MESSAGE)
        return self

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_tokens(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def auth_enabled(self) -> bool:
        """Tokens are configured, so `/v1` calls need one."""
        return bool(self.api_tokens)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
