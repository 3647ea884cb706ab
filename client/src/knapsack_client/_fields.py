"""Field types of the wire models: bounds, and how numbers are validated fast.

Apart from `_models.py` so that the rules of a number (what counts as one, which
bounds hold) sit in one short module; the models only name these types.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, GetPydanticSchema, Strict, WithJsonSchema
from pydantic_core import core_schema

from knapsack_client.rules import RING_OUTCOMES

#: Largest group size one prompt may get. Far beyond the paper's 93 (Fig. 5); it
#: bounds the solver's work and keeps every count inside 32 bits.
MAX_GROUP_SIZE = 4096
#: Largest number of workers an allocation may be balanced over.
MAX_WORKERS = 4096
#: Largest number of rewards one prompt's group may report.
MAX_REWARDS_PER_GROUP = MAX_GROUP_SIZE
#: Largest mean response length a report may carry. Far beyond any model's context;
#: the store keeps the mean as float32, where 1e39 would become infinity for good.
MAX_RESPONSE_TOKENS = 10_000_000


def whole_number(low: int, high: int) -> Any:
    """An integer field: a JSON integer, or a float with no fraction (3.0), in [low, high].

    JSON Schema's "integer" takes 3.0, so a strict int (which refuses it) would
    narrow the contract, while pydantic's lax int also takes `true` as 1 and "3"
    as 3. This union of a strict int and a strict, whole float refuses both inside
    pydantic-core: the Python check it replaces ran once per value (per result of
    a report). The float branch, the only one that calls Python (`int`), runs only
    for float input.
    """

    def core(_source: Any, _handler: Any) -> core_schema.CoreSchema:
        return core_schema.union_schema(
            [
                core_schema.int_schema(strict=True, ge=low, le=high),
                core_schema.no_info_after_validator_function(
                    int,
                    core_schema.float_schema(
                        strict=True, ge=low, le=high, multiple_of=1, allow_inf_nan=False
                    ),
                ),
            ],
            mode="left_to_right",
            custom_error_type="whole_number",
            custom_error_message=f"Input should be a whole number from {low} to {high}",
        )

    return Annotated[
        int,
        GetPydanticSchema(core),
        WithJsonSchema({"type": "integer", "minimum": low, "maximum": high}),
    ]


#: For float fields: a strict float takes every JSON number (ints too) and refuses
#: booleans and numeric strings inside pydantic-core, where a Python validator
#: would run for each value (1024 success rates: about 13 us against 300-900 us).
NUMBER = Strict()
#: Largest step, budget or count: every one fits a signed 32-bit integer.
MAX_INT32 = 2**31 - 1

Identifier = Annotated[str, Field(min_length=1, max_length=256)]
Rate = Annotated[float, NUMBER, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
GroupSize = whole_number(0, MAX_GROUP_SIZE)
NonNegativeFinite = Annotated[float, NUMBER, Field(ge=0.0, allow_inf_nan=False)]
PositiveFinite = Annotated[float, NUMBER, Field(gt=0.0, allow_inf_nan=False)]
BetaParameter = Annotated[float, NUMBER, Field(gt=0.0, le=1e9, allow_inf_nan=False)]
Step = whole_number(0, MAX_INT32)
Budget = whole_number(0, MAX_INT32)
Workers = whole_number(1, MAX_WORKERS)
Window = whole_number(1, RING_OUTCOMES)
Successes = whole_number(0, MAX_INT32)
Trials = whole_number(1, MAX_INT32)
