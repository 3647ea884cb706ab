"""Numba kernels of the cost-aware solver (`solve.solve_cost_aware`).

Units go in order of marginal gain per cost while they fit, then a bounded local
search of 1-remove/1-add swaps with refills; gains are `_kernels`' (point or Beta).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from knapsack_service.engine._kernels import prompt_constants, unit_gain


@njit(cache=True, nogil=True)
def _better_ratio(r: np.ndarray, i: int, j: int) -> bool:
    return r[i] > r[j] or (r[i] == r[j] and i < j)


@njit(cache=True, nogil=True)
def _sift_ratio(heap: np.ndarray, r: np.ndarray, k: int, size: int) -> None:
    item = heap[k]
    while True:
        child = 2 * k + 1
        if child >= size:
            break
        if child + 1 < size and _better_ratio(r, heap[child + 1], heap[child]):
            child += 1
        if _better_ratio(r, heap[child], item):
            heap[k] = heap[child]
            k = child
        else:
            break
    heap[k] = item


@njit(cache=True, nogil=True)
def _fill_by_ratio(
    mode: int,
    x0: np.ndarray,
    x1: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    costs: np.ndarray,
    n: np.ndarray,
    room: float,
) -> float:
    # Add units in gain/cost order while they fit; a prompt whose next unit does not
    # fit is dropped for good (room only shrinks). Returns the room left.
    m = lo.size
    r = np.empty(m)
    heap = np.empty(m, np.int64)
    size = 0
    for i in range(m):
        if n[i] < hi[i] and costs[i] <= room:
            g = unit_gain(mode, prompt_constants(mode, x0[i], x1[i]), lo[i], n[i])
            if g > 0.0:
                r[i] = g / costs[i]
                heap[size] = i
                size += 1
    for k in range(size // 2 - 1, -1, -1):
        _sift_ratio(heap, r, k, size)
    while size > 0:
        i = heap[0]
        if costs[i] <= room:
            n[i] += 1
            room -= costs[i]
            g = 0.0
            if n[i] < hi[i]:
                g = unit_gain(mode, prompt_constants(mode, x0[i], x1[i]), lo[i], n[i])
            if g > 0.0:
                r[i] = g / costs[i]
            else:
                size -= 1
                heap[0] = heap[size]
        else:
            size -= 1
            heap[0] = heap[size]
        _sift_ratio(heap, r, 0, size)
    return room


@njit(cache=True, nogil=True)
def solve_cost(
    mode: int,
    x0: np.ndarray,
    x1: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    costs: np.ndarray,
    room: float,
    max_swaps: int,
    candidates: int,
) -> np.ndarray:
    """Cost-aware allocation: ratio greedy, then 1-remove/1-add swaps and refills.

    `room` is the budget left after every prompt got lo[i] units. Swap search looks
    at the `candidates` best additions (by gain) and cheapest removals (by loss),
    so one round is O(M + candidates^2).
    """
    m = lo.size
    n = lo.copy()
    room = _fill_by_ratio(mode, x0, x1, lo, hi, costs, n, room)
    add_gain = np.empty(m)
    drop_loss = np.empty(m)
    for _ in range(max_swaps):
        for i in range(m):
            c = prompt_constants(mode, x0[i], x1[i])
            add_gain[i] = unit_gain(mode, c, lo[i], n[i]) if n[i] < hi[i] else -1.0
            drop_loss[i] = unit_gain(mode, c, lo[i], n[i] - 1) if n[i] > lo[i] else np.inf
        adds = np.argsort(-add_gain)[: min(candidates, m)]
        drops = np.argsort(drop_loss)[: min(candidates, m)]
        best = 0.0
        best_add = -1
        best_drop = -1
        for ia in range(adds.size):
            i = adds[ia]
            if add_gain[i] <= best:
                break
            for jd in range(drops.size):
                j = drops[jd]
                if drop_loss[j] == np.inf or add_gain[i] - drop_loss[j] <= best:
                    break
                if i != j and costs[i] <= room + costs[j]:
                    best = add_gain[i] - drop_loss[j]
                    best_add = i
                    best_drop = j
                    break
        # Relative tolerance: a swap must improve by more than rounding noise, or two
        # equal-gain units could be swapped back and forth.
        if best_add < 0 or best <= 1e-12 * add_gain[best_add]:
            break
        n[best_drop] -= 1
        n[best_add] += 1
        room = room + costs[best_drop] - costs[best_add]
        room = _fill_by_ratio(mode, x0, x1, lo, hi, costs, n, room)
    return n
