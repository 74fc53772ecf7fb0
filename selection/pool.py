"""Score an unlabeled pool in a stream of batches, one shard of it at a time.

Memory stays bounded: only one batch of predictions lives at a time and only the small
ImageScore records are kept. A shard (i, n) owns the images whose stable id hash falls in
bucket i of n, so n workers (a Prefect/Dask fan-out) each score a disjoint part and together
cover the pool exactly once, whatever order each one lists the ids in.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from tqdm.auto import tqdm

from selection.checks import PredictionError
from selection.ids import shard_of
from selection.results import ImageId, ImageScore, PoolScores, ScoringStats, SkippedImage

PredictBatchFn = Callable[[list[ImageId]], Sequence[Any]]
Scorer = Callable[[ImageId, Any], ImageScore]


def shard_ids(image_ids: Iterable[ImageId], shard: tuple[int, int] = (0, 1)) -> Iterator[ImageId]:
    """The ids that shard (i, n) owns, in the order given."""
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard is {shard}; expected (index, count) with 0 <= index < count")
    return (image_id for image_id in image_ids if n == 1 or shard_of(image_id, n) == i)


def _batches(ids: Iterator[ImageId], size: int) -> Iterator[list[ImageId]]:
    while batch := list(islice(ids, size)):
        yield batch


def _score_batch(batch, predictions, scorer: Scorer, on_invalid: str,
                 scores: list[ImageScore], stats: ScoringStats) -> None:
    for image_id, prediction in zip(batch, predictions):
        try:
            scores.append(scorer(image_id, prediction))
        except PredictionError as e:
            if on_invalid == "raise":
                raise
            stats.skipped.append(SkippedImage(image_id=image_id, error=str(e)))


def score_pool(
    image_ids: Iterable[ImageId],
    predict_batch_fn: PredictBatchFn,
    scorer: Scorer,
    batch_size: int = 16,
    shard: tuple[int, int] = (0, 1),
    on_invalid: str = "raise",
    progress: bool = False,
) -> PoolScores:
    """Score the images of one shard.

    predict_batch_fn(ids) -> one prediction per id (Poses, a list of passes, ...), in order;
    scorer(image_id, prediction) -> ImageScore. on_invalid='skip' records an image whose
    prediction cannot be scored (PredictionError: NaN, confidences outside [0, 1]) in
    stats.skipped and goes on; 'raise' stops at it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size is {batch_size}; use at least 1")
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid is '{on_invalid}'; use 'raise' or 'skip'")
    stats = ScoringStats(shard=shard)
    scores: list[ImageScore] = []
    total = len(image_ids) if isinstance(image_ids, Sequence) and shard[1] == 1 else None
    bar = tqdm(total=total, desc=f"scoring shard {shard[0]}/{shard[1]}", unit="img",
               disable=not progress)
    start = time.perf_counter()
    for batch in _batches(shard_ids(image_ids, shard), batch_size):
        t0 = time.perf_counter()
        predictions = predict_batch_fn(batch)
        t1 = time.perf_counter()
        if len(predictions) != len(batch):
            raise ValueError(f"predict_batch_fn returned {len(predictions)} predictions for "
                             f"{len(batch)} images; it must return one per image, in order")
        _score_batch(batch, predictions, scorer, on_invalid, scores, stats)
        del predictions  # free the batch before the next one is predicted
        stats.predict_seconds += t1 - t0
        stats.score_seconds += time.perf_counter() - t1
        stats.batches += 1
        bar.update(len(batch))
    bar.close()
    stats.seconds = time.perf_counter() - start
    stats.images = len(scores)
    return PoolScores(scores=scores, stats=[stats])


def merge_pool_scores(parts: Iterable[PoolScores]) -> PoolScores:
    """One PoolScores from the shards' results; an image scored twice is an error."""
    merged = PoolScores()
    seen: dict[ImageId, int] = {}
    for n, part in enumerate(parts):
        for s in part.scores:
            if s.image_id in seen:
                raise ValueError(
                    f"image {s.image_id!r} is scored in part {seen[s.image_id]} and part {n}; "
                    "score each shard (i, n) with the same n and distinct i"
                )
            seen[s.image_id] = n
        merged.scores.extend(part.scores)
        merged.stats.extend(part.stats)
    return merged
