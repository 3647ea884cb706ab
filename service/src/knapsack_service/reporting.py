"""From an outcome report on the wire to the groups the store applies.

Non-binary rewards are turned into counts here, with the run's
`success_threshold`, so the store only ever sees (successes, trials) and a
zero-variance flag: a group whose rewards are all equal gives GRPO no gradient
whatever the threshold says (API.md, "Runs").
"""

from __future__ import annotations

from knapsack_client import OutcomeReport, PromptResult
from knapsack_service.store import GroupOutcome


def to_group(result: PromptResult, success_threshold: float) -> GroupOutcome:
    """One prompt's group as counts."""
    if result.rewards is not None:
        rewards = result.rewards
        successes = sum(1 for reward in rewards if reward >= success_threshold)
        trials = len(rewards)
        zero_variance = max(rewards) == min(rewards)
    else:
        successes, trials = result.successes or 0, result.trials or 0
        zero_variance = successes in (0, trials)
    return GroupOutcome(
        prompt_id=result.prompt_id,
        successes=successes,
        trials=trials,
        mean_response_tokens=result.mean_response_tokens,
        zero_variance=zero_variance,
    )


def to_groups(report: OutcomeReport, success_threshold: float) -> tuple[GroupOutcome, ...]:
    """Every group of a report, in order.

    The counts case (no rewards) is `to_group` inlined with positional arguments: a
    report carries hundreds of groups and this loop runs on every one of them.
    """
    make = GroupOutcome
    groups = []
    append = groups.append
    for result in report.results:
        if result.rewards is None:
            successes, trials = result.successes or 0, result.trials or 0
            append(
                make(
                    result.prompt_id,
                    successes,
                    trials,
                    result.mean_response_tokens,
                    successes == 0 or successes == trials,
                )
            )
        else:
            append(to_group(result, success_threshold))
    return tuple(groups)
