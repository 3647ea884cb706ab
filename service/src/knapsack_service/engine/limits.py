"""`Limits`: the per-prompt group limits of one allocation, checked once.

Every strategy and kernel reads the same five numbers; they travel together as one
value instead of five positional integers, and the rules that resolve them (the
defaults of positive_n / negative_n, the cap at max_n) live here only.
"""

from __future__ import annotations

from dataclasses import dataclass

from knapsack_client.rules import DEFAULT_GROUP_SIZE
from knapsack_service.engine.errors import EngineInputError


def check_count(value: int, field: str) -> int:
    """A non-negative whole number (bools refused), or an input error naming `field`."""
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise EngineInputError(
            f"{field} must be a non-negative integer, got {value!r}", field=field
        )
    return int(value)


@dataclass(frozen=True, slots=True)
class Limits:
    """Group limits, already checked and resolved.

    Attributes:
        min_n: smallest group of a prompt the strategy serves.
        max_n: largest group any prompt gets.
        default_n: group of an unseen prompt, capped at max_n.
        positive_n: group of a p = 1 prompt (min_n unless given; 0 = skip), capped.
        negative_n: group of a p = 0 prompt (min_n unless given; 0 = skip), capped.
    """

    min_n: int
    max_n: int
    default_n: int
    positive_n: int
    negative_n: int

    @classmethod
    def check(
        cls,
        min_n: int,
        max_n: int,
        default_n: int = DEFAULT_GROUP_SIZE,
        positive_n: int | None = None,
        negative_n: int | None = None,
    ) -> Limits:
        """Validate and resolve the wire values; input errors name their field."""
        low = check_count(min_n, "min_n")
        high = check_count(max_n, "max_n")
        if low > high:
            raise EngineInputError(f"min_n ({low}) must not exceed max_n ({high})", field="min_n")
        default = min(check_count(default_n, "default_n"), high)
        positive = check_count(low if positive_n is None else positive_n, "positive_n")
        negative = check_count(low if negative_n is None else negative_n, "negative_n")
        return cls(low, high, default, min(positive, high), min(negative, high))
