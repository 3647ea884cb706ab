"""Numba kernels of `balance.py` (jitted functions over arrays only)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def split_consecutive(
    counts: np.ndarray, workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut the rollouts, laid end to end in index order, into `workers` pieces.

    Worker w gets T // W rollouts, plus one for w < T % W. Returns parallel arrays
    (worker, index, amount) of the non-empty pieces, sorted by worker then index.
    """
    m = counts.size
    total = 0
    for i in range(m):
        total += counts[i]
    pieces = 0
    for i in range(m):
        if counts[i] > 0:
            pieces += 1
    cap = pieces + workers
    worker = np.empty(cap, np.int64)
    index = np.empty(cap, np.int64)
    amount = np.empty(cap, np.int64)
    base = total // workers
    rest = total % workers
    w = 0
    room = base + (1 if rest > 0 else 0)
    k = 0
    for i in range(m):
        left = counts[i]
        while left > 0:
            while room == 0:
                w += 1
                room = base + (1 if w < rest else 0)
            take = min(left, room)
            worker[k] = w
            index[k] = i
            amount[k] = take
            k += 1
            left -= take
            room -= take
    return worker[:k].copy(), index[:k].copy(), amount[:k].copy()


@njit(cache=True, nogil=True)
def assign_lpt(counts: np.ndarray, order: np.ndarray, workers: int) -> np.ndarray:
    """Worker of each group under LPT: in `order`, each group to the least loaded worker.

    A binary heap keyed by (load, worker id) keeps it O(M log W) and deterministic.
    """
    load = np.zeros(workers, np.int64)
    heap = np.arange(workers)
    owner = np.full(counts.size, -1, np.int64)
    for t in range(order.size):
        i = order[t]
        if counts[i] == 0:
            continue
        w = heap[0]
        owner[i] = w
        load[w] += counts[i]
        k = 0
        while True:
            child = 2 * k + 1
            if child >= workers:
                break
            right = child + 1
            if right < workers and (
                load[heap[right]] < load[heap[child]]
                or (load[heap[right]] == load[heap[child]] and heap[right] < heap[child])
            ):
                child = right
            c = heap[child]
            if load[c] < load[w] or (load[c] == load[w] and c < w):
                heap[k] = c
                k = child
            else:
                break
        heap[k] = w
    return owner
