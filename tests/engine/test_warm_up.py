from knapsack_service.engine import warm_up


def test_warm_up_runs_every_kernel():
    assert warm_up() >= 0.0
