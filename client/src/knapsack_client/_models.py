"""Wire models of the knapsack-rl HTTP API, version 1 (`docs/API.md`).

They are defined once, here, and the service imports them: a trainer that installs
only this package validates exactly what the service validates. Requests forbid
unknown fields so that a typo (`max_N`) is a 422 naming the field instead of a
silently ignored setting; responses allow extra fields so that older clients keep
working against newer services.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from knapsack_client._fields import (
    MAX_GROUP_SIZE,
    MAX_RESPONSE_TOKENS,
    MAX_REWARDS_PER_GROUP,
    MAX_WORKERS,
    NUMBER,
    BetaParameter,
    Budget,
    GroupSize,
    Identifier,
    NonNegativeFinite,
    PositiveFinite,
    Rate,
    Step,
    Successes,
    Trials,
    Window,
    Workers,
)
from knapsack_client.rules import (
    DEFAULT_GROUP_SIZE,
    DEFAULT_SUCCESS_THRESHOLD,
    Shard,
)

#: A strategy's wire name. The service's engine registers the strategies (today
#: "uniform", "filter", "knapsack", "knapsack-bayes"); a name it does not know is a
#: 422 naming "strategy", so a new strategy needs no change here.
Strategy = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,63}$")]


class FieldError(ValueError):
    """A cross-field check that failed, naming the field to blame.

    Model-level validators have no field location of their own; the service reads
    `field` from the error's context so a 422 still names the offending field.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- solve


class SolveRequest(_Request):
    """`POST /v1/solve`: allocate for success rates the caller already knows.

    `success_rates[i]` is None for a prompt never seen (it gets `default_n`, except
    under `knapsack-bayes`, which values it through its posterior). With `costs`,
    `budget` is in the unit of the costs and the solver keeps `sum(n * costs) <=
    budget`; without, `sum(n) == budget` exactly.
    """

    success_rates: list[Rate | None] | None = Field(
        default=None, description="Per-prompt success rate in [0, 1]; null = never seen."
    )
    budget: NonNegativeFinite = Field(description="Total rollouts (or total cost with costs).")
    min_n: GroupSize = 2
    max_n: GroupSize = 128
    strategy: Strategy = "knapsack"
    workers: Workers = 1
    split_groups: bool = True
    fallback: bool = False
    positive_n: GroupSize | None = Field(default=None, description="n for p = 1 (default min_n).")
    negative_n: GroupSize | None = Field(default=None, description="n for p = 0 (default min_n).")
    default_n: GroupSize = DEFAULT_GROUP_SIZE
    costs: list[PositiveFinite] | None = None
    posterior: list[tuple[BetaParameter, BetaParameter]] | None = None

    @model_validator(mode="after")
    def _check_consistency(self) -> SolveRequest:
        if self.min_n > self.max_n:
            raise FieldError("max_n", f"min_n ({self.min_n}) must not exceed max_n ({self.max_n})")
        if self.success_rates is None and self.posterior is None:
            raise FieldError(
                "success_rates", "success_rates is required (or posterior with knapsack-bayes)"
            )
        if self.strategy == "knapsack-bayes" and self.posterior is None:
            raise FieldError("posterior", "posterior is required with strategy knapsack-bayes")
        count = self.prompt_count
        if count == 0:
            raise FieldError("success_rates", "success_rates must not be empty")
        rates, posterior = self.success_rates, self.posterior
        if rates is not None and posterior is not None and len(posterior) != len(rates):
            raise FieldError(
                "posterior",
                f"posterior has {len(self.posterior)} entries, success_rates {count}",
            )
        if self.costs is not None and len(self.costs) != count:
            raise FieldError("costs", f"costs has {len(self.costs)} entries, expected {count}")
        if self.costs is None and not float(self.budget).is_integer():
            raise FieldError("budget", "budget must be a whole number of rollouts without costs")
        return self

    @property
    def prompt_count(self) -> int:
        """Number of prompts in the request."""
        if self.success_rates is not None:
            return len(self.success_rates)
        return len(self.posterior or ())


class SolveResponse(_Response):
    """Answer of `POST /v1/solve`; `n[i]` belongs to prompt i."""

    n: list[int]
    value: float
    strategy: Strategy
    solve_seconds: float
    shards: list[Shard] | None = None
    imbalance: int | None = None
    cost: float | None = None


# --------------------------------------------------------------------------- runs


class WindowEstimator(_Request):
    """The paper's estimate: success rate over a prompt's last `window` outcomes."""

    kind: Literal["window"] = "window"
    window: Window = 16
    min_observations: Window = 8

    @model_validator(mode="after")
    def _check(self) -> WindowEstimator:
        if self.min_observations > self.window:
            raise FieldError("min_observations", "min_observations must not exceed window")
        return self


class LastVisitEstimator(_Request):
    """The paper code's estimate, the default: the last visit's, or the last window's.

    The mean of the prompt's last visit when that visit had at least `window`
    outcomes, else of its last `window` outcomes; fewer than `min_observations`
    outcomes in all count as unseen.
    """

    kind: Literal["last-visit"] = "last-visit"
    window: Window = 16
    min_observations: Window = 8

    @model_validator(mode="after")
    def _check(self) -> LastVisitEstimator:
        if self.min_observations > self.window:
            raise FieldError("min_observations", "min_observations must not exceed window")
        return self


class BetaEstimator(_Request):
    """A Beta(a, b) posterior per prompt, evidence decayed by `decay` per step or visit.

    `plug_in_from`: a posterior this strong (a + b) or more is valued at its mean.
    Defaults from `bench/sweep_bayes.py` (BENCHMARKS.md): decay per visit (a prompt is
    seen once an epoch), plug-in from 4 (the expectation over a diffuse posterior
    flattens Value in N), and the "pooled" prior: fitted by the method of moments to
    the rates of every prompt of the run (the store keeps their moments), so unseen
    prompts start at the run's typical rate and a prompt's estimate never depends on
    the ids asked with it (0.846 against 0.833 for a flat [1, 1] there).
    """

    kind: Literal["beta"] = "beta"
    decay: Annotated[float, NUMBER, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.9
    decay_unit: Literal["step", "visit"] = "visit"
    prior: tuple[BetaParameter, BetaParameter] | Literal["pooled"] = "pooled"
    plug_in_from: PositiveFinite | None = 4.0


def _estimator_kind(value: object) -> str:
    """`kind` defaults to "window" (API.md), so `{"window": 30}` is a window estimator."""
    if isinstance(value, dict):
        return str(value.get("kind", "window"))
    return str(getattr(value, "kind", "window"))


Estimator = Annotated[
    Annotated[WindowEstimator, Tag("window")]
    | Annotated[LastVisitEstimator, Tag("last-visit")]
    | Annotated[BetaEstimator, Tag("beta")],
    Discriminator(_estimator_kind),
]


class RunSettings(_Request):
    """`PUT /v1/runs/{run_id}`: every field has a default, so `{}` creates a run."""

    strategy: Strategy = "knapsack"
    budget: Budget | None = Field(
        default=None, description="Default rollouts per step; else prompts * default_n."
    )
    min_n: GroupSize = 2
    max_n: GroupSize = 128
    default_n: GroupSize = DEFAULT_GROUP_SIZE
    positive_n: GroupSize = 2
    negative_n: GroupSize = 2
    fallback: bool = True
    success_threshold: Rate = DEFAULT_SUCCESS_THRESHOLD
    estimator: Estimator = Field(default_factory=LastVisitEstimator)

    @model_validator(mode="after")
    def _check(self) -> RunSettings:
        if self.min_n > self.max_n:
            raise FieldError("max_n", f"min_n ({self.min_n}) must not exceed max_n ({self.max_n})")
        return self


class RunCounters(_Response):
    """Cumulative counters of a run."""

    reports: int = 0
    duplicate_reports: int = 0
    results: int = 0
    rollouts: int = 0
    successes: int = 0
    allocations: int = 0
    prompts: int = 0
    last_step: int | None = None


class RunInfo(_Response):
    """Answer of `PUT`/`GET /v1/runs/{run_id}`."""

    run_id: str
    settings: RunSettings
    counters: RunCounters = Field(default_factory=RunCounters)
    created: bool = False


class AllocationRequest(_Request):
    """`POST /v1/runs/{run_id}/allocations`; unset fields default to the run's settings."""

    step: Step
    prompts: list[Identifier] = Field(min_length=1)
    budget: Budget | None = None
    workers: Workers = 1
    split_groups: bool = True
    min_n: GroupSize | None = None
    max_n: GroupSize | None = None
    strategy: Strategy | None = None


class Allocation(_Response):
    """One prompt's group size, with the estimate it was chosen for."""

    prompt_id: str
    n: int
    p_hat: float | None = None


class AllocationResponse(_Response):
    """Answer of `POST /v1/runs/{run_id}/allocations`."""

    step: int
    allocations: list[Allocation]
    shards: list[Shard] | None = None
    imbalance: int | None = None
    strategy: Strategy
    budget: int
    value: float = 0.0
    solve_seconds: float = 0.0
    degraded: bool = False
    reason: str | None = None


class PromptResult(_Request):
    """One prompt's group outcome: counts, or one reward per rollout.

    Its cross-field rule (`problem`) runs once per report in `OutcomeReport`, not
    per result: reports carry thousands of results, and a Python validator per
    result cost more than the rest of the validation together.
    """

    prompt_id: Identifier
    successes: Successes | None = None
    trials: Trials | None = None
    # Binary rewards may be sent as true/false: they count as 1.0/0.0.
    rewards: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None, min_length=1, max_length=MAX_REWARDS_PER_GROUP
    )
    mean_response_tokens: (
        Annotated[float, NUMBER, Field(ge=0.0, le=MAX_RESPONSE_TOKENS, allow_inf_nan=False)] | None
    ) = None

    def problem(self) -> tuple[str, str] | None:
        """The field to blame and why, when the result is not one group outcome."""
        if self.rewards is not None:
            if self.successes is not None or self.trials is not None:
                return "rewards", "send either rewards or successes/trials, not both"
            return None
        if self.successes is None or self.trials is None:
            return "trials", "successes and trials are required (or rewards)"
        if self.successes > self.trials:
            return "successes", f"successes ({self.successes}) exceed trials ({self.trials})"
        return None


class OutcomeReport(_Request):
    """`POST /v1/runs/{run_id}/outcomes`: applied all or nothing, once per report_id."""

    report_id: Identifier
    step: Step
    results: list[PromptResult] = Field(min_length=1)
    worker: Annotated[str, Field(max_length=256)] | None = None

    @model_validator(mode="after")
    def _check_results(self) -> OutcomeReport:
        for index, result in enumerate(self.results):
            problem = result.problem()
            if problem is not None:
                raise FieldError(f"results.{index}.{problem[0]}", problem[1])
        return self


class OutcomeAck(_Response):
    """Answer of `POST /v1/runs/{run_id}/outcomes`."""

    accepted: int
    duplicate: bool


class LookupRequest(_Request):
    """`POST /v1/runs/{run_id}/prompts/lookup`."""

    prompt_ids: list[Identifier] = Field(min_length=1)
    step: Step | None = Field(
        default=None,
        description="Estimate as an allocation at this step would; default the run's "
        "last reported step.",
    )


class PromptStats(_Response):
    """Raw cumulative counts of one prompt and the run's current estimate."""

    prompt_id: str
    successes: int = 0
    trials: int = 0
    p_hat: float | None = None
    last_step: int | None = None
    window_successes: int = 0
    window_trials: int = 0
    posterior: tuple[float, float] | None = None
    mean_response_tokens: float | None = None


class LookupResponse(_Response):
    """Answer of `POST /v1/runs/{run_id}/prompts/lookup`."""

    prompts: list[PromptStats]


class DifficultyBucket(_Response):
    """Prompts and rollouts allocated in one band of estimated success rate."""

    prompts: int = 0
    rollouts: int = 0


class StepSummary(_Response):
    """What one training step spent and got (the paper's Figures 2, 5 and 7)."""

    step: int
    rollouts: int = 0
    groups: int = 0
    successes: int = 0
    effective_rollouts: int = 0
    effective_ratio: float | None = None
    all_success_groups: int = 0
    all_failure_groups: int = 0
    all_success_share: float | None = None
    all_failure_share: float | None = None
    zero_variance_groups: int = 0
    allocated_rollouts: int = 0
    allocated_prompts: int = 0
    budget_histogram: dict[str, int] = Field(default_factory=dict)
    difficulty_buckets: dict[str, DifficultyBucket] = Field(default_factory=dict)


class RunSummary(_Response):
    """Answer of `GET /v1/runs/{run_id}/summary`."""

    run_id: str
    steps: list[StepSummary]


class ErrorDetail(_Response):
    """Body of every error answer."""

    code: str
    message: str
    details: object | None = None


class ErrorResponse(_Response):
    """`{"error": {"code", "message", "details"}}`."""

    error: ErrorDetail


__all__ = [
    "MAX_GROUP_SIZE",
    "MAX_RESPONSE_TOKENS",
    "MAX_REWARDS_PER_GROUP",
    "MAX_WORKERS",
    "Allocation",
    "AllocationRequest",
    "AllocationResponse",
    "BetaEstimator",
    "DifficultyBucket",
    "ErrorDetail",
    "ErrorResponse",
    "Estimator",
    "FieldError",
    "LastVisitEstimator",
    "LookupRequest",
    "LookupResponse",
    "OutcomeAck",
    "OutcomeReport",
    "PromptResult",
    "PromptStats",
    "RunCounters",
    "RunInfo",
    "RunSettings",
    "RunSummary",
    "Shard",
    "SolveRequest",
    "SolveResponse",
    "StepSummary",
    "Strategy",
    "WindowEstimator",
]
