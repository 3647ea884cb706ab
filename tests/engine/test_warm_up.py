"""warm_up() compiles every kernel the wrappers call, so the first request does not."""

import math

from knapsack_service.engine import (
    _kernels,
    _kernels_balance,
    _kernels_cost,
    _kernels_knapsack,
    warm_up,
)

#: The kernels called from Python (the others are compiled into these).
ENTRY_KERNELS = [
    _kernels.solve_heap,
    _kernels.count_bracket,
    _kernels.sample_gains,
    _kernels.select_open_units,
    _kernels.take_in_index_order,
    _kernels.point_values,
    _kernels.beta_values,
    _kernels.beta_gains,
    _kernels.beta_moments,
    _kernels_cost.solve_cost,
    _kernels_balance.split_consecutive,
    _kernels_balance.assign_lpt,
    _kernels_knapsack.knapsack_small,
    _kernels_knapsack.plan_knapsack,
    _kernels_knapsack.fixed_counts,
    _kernels_knapsack.fallback_needs,
]


def test_warm_up_compiles_every_entry_kernel():
    seconds = warm_up()  # the compile time it reports, for the service's start-up log
    assert math.isfinite(seconds)
    cold = [kernel.__name__ for kernel in ENTRY_KERNELS if not kernel.signatures]
    assert cold == []
