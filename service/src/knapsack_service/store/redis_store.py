"""The production store: Redis (standalone, or a Redis Cluster client passed in).

Layout of one run (every key carries the run's hash tag, see `keys.py`):

| key                  | type       | content                                          |
| -------------------- | ---------- | ------------------------------------------------ |
| `krl:{r}:cfg`        | string     | settings JSON; its presence means the run exists |
| `krl:{r}:meta`       | hash       | run counters, the rates' moments (`MOMENT_FIELDS`) |
| `krl:{r}:p`          | hash       | prompt id -> 60-byte record (`records.py`)       |
| `krl:{r}:steps`      | sorted set | steps with a summary, score = step               |
| `krl:{r}:s:<step>`   | hash       | per-step summary counters                        |
| `krl:{r}:rids`       | sorted set | applied report ids, score = unix seconds         |
| `krl:{r}:acks`       | hash       | report id -> digest, accepted count, step        |
| `krl:{r}:plans`      | hash       | plan key -> a step's kept plan (`step_plans.py`) |
| `krl:{r}:plan_t`     | sorted set | plan keys, score = unix seconds they were kept   |
| `krl:runs`           | set        | every run id (outside the runs' slots)           |

On a Redis Cluster every script and every multi-key command names only keys of one
run, so it runs on the master owning that run's slot; `krl:runs` is only ever touched
by single-key commands (`put_settings`' pipeline sends SET and SADD as two commands,
which a cluster pipeline routes to their two masters).

Every read of a batch is one pipeline (GET + HMGET of the records + HMGET of the run's
rate moments, one round trip); every report is
one script, applied all or nothing and deduplicated by report id inside the script, so a
retry by anyone (client, service, redis-py) can never apply it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources

import redis.asyncio as aioredis
from redis import exceptions as rex

from knapsack_client.rules import RUN_COUNTERS
from knapsack_service.store.base import (
    NO_MOMENTS,
    REPORT_ID_RETENTION_SECONDS,
    STEP_TOTAL_FIELDS,
    ApplyResult,
    PlanClaim,
    PromptBatch,
    RateMoments,
    ReportToApply,
    StoreMemory,
)
from knapsack_service.store.cluster import build_cluster_client, is_cluster_url
from knapsack_service.store.errors import (
    CounterOverflow,
    OutcomeUnknown,
    PromptLimitReached,
    ReportConflict,
    ReportExpired,
    RunNotFound,
    StoreError,
    StoreUnavailable,
)
from knapsack_service.store.keys import RUNS_KEY, RunKeys
from knapsack_service.store.records import (
    EMPTY_RECORD_BYTES,
    decode_records,
)
from knapsack_service.store.redis_client import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    POOL_HEADROOM,
    build_client,
    pool_size_for,
)

_RUN_NOT_FOUND = "KRL_RUN_NOT_FOUND"
_UNAVAILABLE = (
    rex.ConnectionError,  # includes BusyLoadingError (LOADING) and MaxConnectionsError
    rex.TimeoutError,
    rex.ClusterError,  # includes ClusterDownError, MasterDownError
    rex.RedisClusterException,  # no reachable seed, SlotNotCoveredError, ...
    rex.TryAgainError,  # a multi-key command during a slot migration
    rex.ReadOnlyError,  # a replica answering after a failover
    rex.OutOfMemoryError,  # maxmemory reached: writes refused until memory is freed
    asyncio.TimeoutError,
    OSError,
)


#: Errors that mean a multi-key command mixed hash slots: a bug in the key layout,
#: never an outage, so they must not hide behind `StoreUnavailable`.
_CROSS_SLOT = (rex.ClusterCrossSlotError, rex.CrossSlotTransactionError)
_CLIENT_CROSS_SLOT_MESSAGE = "must map to the same key slot"


#: Texts of redis-py errors raised before a command could reach Redis: no connection
#: could be made or taken from the pool, so a write certainly did not happen.
_NOT_SENT_MARKERS = ("connecting to", "No connection available", "Too many connections")


def _may_have_run(error: BaseException) -> bool:
    """Whether a failed write may still have been applied by Redis.

    A timeout or a connection lost while waiting for the reply leaves the command
    running (a long script finishes inside Redis whatever the client does); only
    failures to connect or to get a connection prove it never left.
    """
    if isinstance(error, rex.MaxConnectionsError):
        return False
    if isinstance(error, rex.ConnectionError | rex.TimeoutError | asyncio.TimeoutError | OSError):
        return not any(marker in str(error) for marker in _NOT_SENT_MARKERS)
    return False


def translate_redis_error(
    error: BaseException, run_id: str | None = None, *, write: bool = False
) -> StoreError:
    """Map a redis-py (or socket) error onto the store's exception tree.

    This is the only place that knows redis-py's exceptions. Cluster trouble
    (CLUSTERDOWN, MASTERDOWN, TRYAGAIN, an uncovered slot, no reachable seed) is an
    outage like a refused connection; a cross-slot error is a bug and stays a plain
    `StoreError`. For a write (`write=True`), an outage after the command was sent
    is `OutcomeUnknown`: it may have been applied.
    """
    if isinstance(error, rex.ResponseError) and str(error).startswith(_RUN_NOT_FOUND):
        return RunNotFound(run_id or "")
    if isinstance(error, _CROSS_SLOT) or (
        isinstance(error, rex.RedisClusterException) and _CLIENT_CROSS_SLOT_MESSAGE in str(error)
    ):
        return StoreError(f"redis cross-slot command: {type(error).__name__}: {error}")
    if isinstance(error, _UNAVAILABLE):
        if write and _may_have_run(error):
            return OutcomeUnknown(f"redis reply lost: {type(error).__name__}: {error}")
        return StoreUnavailable(f"redis unavailable: {type(error).__name__}: {error}")
    if isinstance(error, rex.ResponseError) and str(error).startswith("BUSY"):
        # A script or module command is running past lua-time-limit.
        return StoreUnavailable(f"redis busy: {error}")
    return StoreError(f"redis error: {type(error).__name__}: {error}")


@contextlib.contextmanager
def _translated(run_id: str | None = None, *, write: bool = False) -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except (rex.RedisError, rex.RedisClusterException, asyncio.TimeoutError, OSError) as error:
        # RedisClusterException is not a RedisError: it needs naming here.
        raise translate_redis_error(error, run_id, write=write) from error


def _report_refusal(error: rex.ResponseError, report: ReportToApply) -> StoreError | None:
    """The store error of a refusal reply of `apply_report.lua`, None for other errors."""
    # error() raised inside a script gets " script: <sha>, on @user_script:<line>."
    # appended; the code and its number come first.
    code, value = [*str(error).split(), "", ""][:2]
    if code == "KRL_CONFLICT":
        return ReportConflict(report.report_id)
    if code == "KRL_EXPIRED":
        return ReportExpired(report.step, int(value))
    if code == "KRL_OVERFLOW":
        index = int(value) - 1
        return CounterOverflow(index, report.groups[index].prompt_id)
    if code == "KRL_PROMPT_LIMIT" and report.max_prompts is not None:
        return PromptLimitReached(report.max_prompts, int(value))
    return None


#: Fields of the run's meta hash holding its `RateMoments`, in the dataclass's order
#: (written by `lua/apply_report.lua` as round-trip decimal doubles).
MOMENT_FIELDS = ("rate_count", "rate_sum", "rate_square_sum", "inverse_trials_sum")


def _moments(values: Sequence[bytes | None]) -> RateMoments:
    """The run's moments from an HMGET of `MOMENT_FIELDS` (none yet: no reports)."""
    if values[0] is None:
        return NO_MOMENTS
    return RateMoments(*(float(value or b"0") for value in values))


def _load_script(name: str) -> str:
    return resources.files("knapsack_service.store").joinpath("lua", name).read_text("utf-8")


def _encode(text: str) -> bytes:
    # Ids arrive from JSON, which can carry lone surrogates; keep them byte-exact.
    return text.encode("utf-8", "surrogatepass")


def _encode_all(texts: Sequence[str]) -> list[bytes] | list[str]:
    """`_encode` of every text; all-ASCII batches (the usual ids) stay str.

    ASCII text is the same bytes under any UTF-8 error handler, and the connection's
    packer hands str to hiredis, which encodes it in C: one check of the joined ids
    instead of a Python call per id.
    """
    texts = list(texts)
    if "".join(texts).isascii():
        return texts
    return [_encode(text) for text in texts]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _decodes_responses(client: aioredis.Redis | aioredis.RedisCluster) -> bool:
    try:
        return bool(client.get_encoder().decode_responses)
    except AttributeError:
        return bool(client.connection_pool.connection_kwargs.get("decode_responses", False))


class RedisStore:
    """`Store` backed by Redis; safe for any number of service processes."""

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        *,
        close_client: bool = True,
        report_id_retention_seconds: int = REPORT_ID_RETENTION_SECONDS,
    ) -> None:
        """Wrap an existing client (decode_responses must be off: records are binary).

        Args:
            client: A `redis.asyncio.Redis` or `redis.asyncio.RedisCluster`.
            close_client: Close the client in `close()`.
            report_id_retention_seconds: How long report ids are kept for dedup.

        """
        if _decodes_responses(client):
            raise ValueError("the store needs a client with decode_responses=False")
        self._client = client
        self._close_client = close_client
        self._retention = int(report_id_retention_seconds)
        # register_script once: the AsyncScript runs EVALSHA and reloads the script
        # on NoScriptError (after a Redis restart or failover).
        self._apply_script = client.register_script(_load_script("apply_report.lua"))
        self._allocation_script = client.register_script(_load_script("record_allocation.lua"))
        self._summary_script = client.register_script(_load_script("read_summary.lua"))
        self._delete_script = client.register_script(_load_script("delete_run.lua"))
        self._plan_script = client.register_script(_load_script("claim_plan.lua"))

    @classmethod
    def from_url(
        cls,
        url: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        cluster: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> RedisStore:
        """A store on a new client for `url` (closed by `close()`).

        Args:
            url: `redis://`, `rediss://`, or a cluster URL (`redis+cluster://`, see
                `knapsack_service.store.cluster`).
            timeout: Socket connect and read timeout, seconds.
            cluster: Treat a plain `redis://` URL as a seed of a Redis Cluster.
            max_connections: Connections of the pool (per node on a cluster); see
                `pool_size_for`.

        """
        if cluster or is_cluster_url(url):
            client = build_cluster_client(url, timeout, max_connections)
            return cls(client, close_client=True)
        return cls(build_client(url, timeout, max_connections), close_client=True)

    @property
    def client(self) -> aioredis.Redis | aioredis.RedisCluster:
        """The underlying redis-py client."""
        return self._client

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless Redis answers PING."""
        with _translated():
            await self._client.ping()

    async def close(self) -> None:
        """Close the client if this store owns it."""
        if self._close_client:
            with contextlib.suppress(rex.RedisError, OSError):
                await self._client.aclose()

    async def put_settings(self, run_id: str, settings_json: str) -> bool:
        """Create or replace a run's settings; True if the run was created."""
        keys = RunKeys(run_id)
        with _translated(run_id, write=True):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(keys.settings, settings_json.encode("utf-8"), get=True)
                pipe.sadd(RUNS_KEY, _encode(run_id))
                previous, _ = await pipe.execute()
        return previous is None

    async def get_settings(self, run_id: str) -> str | None:
        """The run's settings JSON, or None."""
        with _translated(run_id):
            raw = await self._client.get(RunKeys(run_id).settings)
        return None if raw is None else raw.decode("utf-8")

    async def read_batch(
        self, run_id: str, prompt_ids: Sequence[str]
    ) -> tuple[str | None, PromptBatch]:
        """Settings, the run's rate moments and the records of `prompt_ids`, one round trip.

        A plain pipeline, not a script: Redis serves HMGET of 1,024 fields about four
        times faster than the same reads inside Lua, and all the keys share the run's
        slot, so it works on a cluster too. Unseen prompts get the empty record and
        the batch is decoded with one numpy view.
        """
        keys = RunKeys(run_id)
        with _translated(run_id):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(keys.settings)
                pipe.hmget(keys.meta, MOMENT_FIELDS)
                if prompt_ids:  # HMGET needs at least one field
                    pipe.hmget(keys.prompts, _encode_all(prompt_ids))
                settings, moments, *rest = await pipe.execute()
        values = rest[0] if rest else []
        blob = b"".join([value if value is not None else EMPTY_RECORD_BYTES for value in values])
        batch = decode_records(blob, _moments(moments))
        if len(batch) != len(prompt_ids):
            raise StoreError(f"read {len(batch)} records for {len(prompt_ids)} prompt ids")
        return (None if settings is None else settings.decode("utf-8")), batch

    async def apply_report(self, run_id: str, report: ReportToApply) -> ApplyResult:
        """Apply a report atomically and exactly once (see `lua/apply_report.lua`)."""
        keys = RunKeys(run_id)
        args: list[bytes | str] = [
            _encode(report.report_id),
            str(int(report.step)),
            repr(float(report.decay)),
            str(self._retention),
            str(len(report.groups)),
            report.digest,
            "" if report.max_prompts is None else str(int(report.max_prompts)),
        ]
        for group in report.groups:
            tokens = group.mean_response_tokens
            args += (
                group.prompt_id.encode("utf-8", "surrogatepass"),  # `_encode`, inlined
                str(int(group.successes)),
                str(int(group.trials)),
                "" if tokens is None else repr(float(tokens)),
                "1" if group.zero_variance else "0",
            )
        try:
            with _translated(run_id, write=True):
                reply = await self._apply_script(
                    keys=[*keys.fixed(), keys.summary(report.step)], args=args
                )
        except StoreError as error:
            cause = error.__cause__
            refused = isinstance(cause, rex.ResponseError)
            refusal = _report_refusal(cause, report) if refused else None
            if refusal is None:
                raise
            raise refusal from cause
        accepted, duplicate, *totals = reply
        step_totals = (
            dict(zip(STEP_TOTAL_FIELDS, map(int, totals), strict=True)) if totals else None
        )
        return ApplyResult(
            accepted=int(accepted), duplicate=bool(duplicate), step_totals=step_totals
        )

    async def record_allocation(
        self, run_id: str, step: int, increments: Mapping[str, int]
    ) -> None:
        """Add an allocation's increments to its step summary (`lua/record_allocation.lua`)."""
        keys = RunKeys(run_id)
        args: list[str] = [str(int(step))]
        for field, value in increments.items():
            args += [field, str(value)]
        with _translated(run_id, write=True):
            await self._allocation_script(
                keys=[keys.settings, keys.meta, keys.steps, keys.summary(step)], args=args
            )

    async def claim_plan(self, run_id: str, key: str, plan: bytes) -> PlanClaim:
        """Keep `plan` under `key` unless one is kept already (`lua/claim_plan.lua`)."""
        keys = RunKeys(run_id)
        with _translated(run_id):
            reply = await self._plan_script(
                keys=[keys.settings, keys.plans, keys.plan_times],
                args=[_encode(key), plan, str(self._retention)],
            )
        if int(reply[0]):
            return PlanClaim(created=True, plan=plan)
        return PlanClaim(created=False, plan=bytes(reply[1]))

    async def read_counters(self, run_id: str) -> dict[str, int | None]:
        """The run's counters; raises `RunNotFound` for a missing run."""
        keys = RunKeys(run_id)
        with _translated(run_id):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.exists(keys.settings)
                pipe.hgetall(keys.meta)
                pipe.hlen(keys.prompts)
                exists, meta, prompts = await pipe.execute()
        if not exists:
            raise RunNotFound(run_id)
        fields = {
            key.decode(): int(value)
            for key, value in meta.items()
            if key.decode() not in MOMENT_FIELDS  # doubles, not counters
        }
        counters: dict[str, int | None] = {name: fields.get(name, 0) for name in RUN_COUNTERS}
        counters["prompts"] = int(prompts)
        counters["last_step"] = fields.get("last_step")
        return counters

    async def read_summary(
        self, run_id: str, last: int | None = None
    ) -> list[tuple[int, dict[str, int]]]:
        """(step, raw counters) of the last `last` steps (or all), ascending step."""
        if last is not None and last < 0:
            raise ValueError("last must be non-negative")
        if last == 0:
            # Still answer RunNotFound for a missing run.
            if await self.get_settings(run_id) is None:
                raise RunNotFound(run_id)
            return []
        keys = RunKeys(run_id)
        with _translated(run_id):
            flat = await self._summary_script(
                keys=[keys.settings, keys.steps], args=[keys.summary_prefix, last or 0]
            )
        summaries = []
        for step, pairs in zip(flat[::2], flat[1::2], strict=True):
            fields = {pairs[i].decode(): int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
            summaries.append((int(step), fields))
        return summaries

    async def delete_run(self, run_id: str) -> bool:
        """Remove every key of the run (and only those); True if anything existed."""
        keys = RunKeys(run_id)
        with _translated(run_id, write=True):
            removed = await self._delete_script(
                keys=[*keys.fixed(), keys.plans, keys.plan_times], args=[keys.summary_prefix]
            )
            listed = await self._client.srem(RUNS_KEY, _encode(run_id))
        return bool(removed) or bool(listed)

    async def list_runs(self) -> list[str]:
        """Ids of every run created and not deleted, sorted."""
        with _translated():
            members = await self._client.smembers(RUNS_KEY)
        return sorted(_decode(member) for member in members)

    async def memory_usage(self) -> StoreMemory:
        """`used_memory` and `maxmemory` from INFO memory; a cluster's fullest node.

        Redis with `noeviction` refuses writes once `maxmemory` is reached, so the
        service exports both for an alert well before that (deploy/prometheus).
        """
        with _translated():
            info = await self._client.info("memory")
        nodes = (
            list(info.values()) if info and isinstance(next(iter(info.values())), dict) else [info]
        )
        usages = [
            StoreMemory(int(node.get("used_memory", 0)), int(node.get("maxmemory", 0)))
            for node in nodes
        ]
        return max(usages, key=lambda m: m.used_bytes / m.max_bytes if m.max_bytes else 0.0)


__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "MOMENT_FIELDS",
    "POOL_HEADROOM",
    "REPORT_ID_RETENTION_SECONDS",
    "RedisStore",
    "build_client",
    "pool_size_for",
    "translate_redis_error",
]
