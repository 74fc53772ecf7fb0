"""Deterministic choice among equal values: the lowest tie rank wins (ranks come from a seed)."""
from __future__ import annotations

import numpy as np

from selection.ids import uniform01


def tie_ranks(image_ids, seed: int) -> np.ndarray:
    """(N,) rank of each image among equals: a seeded hash of its id, so the pool order is moot."""
    keys = np.array([uniform01(i, seed, "tie") for i in image_ids])
    ranks = np.empty(len(keys), dtype=np.int64)
    ranks[np.lexsort((np.arange(len(keys)), keys))] = np.arange(len(keys))
    return ranks


def argmax_available(values: np.ndarray, available: np.ndarray,
                     rank: np.ndarray | None = None) -> int | None:
    """Index of the largest value among `available`; ties go to the lowest rank (else index)."""
    idx = np.flatnonzero(available)
    if len(idx) == 0:
        return None
    v = values[idx]
    best = idx[v == v.max()]
    if rank is None or len(best) == 1:
        return int(best[0])
    return int(best[np.argmin(rank[best])])


def order_by_score(scores: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties by ascending rank."""
    return np.lexsort((rank, -np.asarray(scores, dtype=np.float64)))
