"""Scoring one shard of the pool with a checkpoint: predict a batch, score each image."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clickpose.campaign.threads import torch_threads
from clickpose.poses import Poses
from selection import ImageScore, PoolScores, score_pool
from selection.scores import entropy, expected_clicks, least_confidence, random_score

SCORERS: dict[str, Callable[[str, Poses], ImageScore]] = {
    "least_confidence": least_confidence,
    "entropy": entropy,
    "expected_clicks": expected_clicks,
    "random": lambda image_id, _poses: random_score(image_id),
}


def scorer_for(name: str) -> Callable[[str, Poses], ImageScore]:
    if name not in SCORERS:
        raise ValueError(f"scorer '{name}' is unknown; use one of {', '.join(SCORERS)}")
    return SCORERS[name]


def model_predictor(checkpoint: str | Path, images: dict[str, Path], device: str | None = None,
                    embeddings: bool = False):
    """predict_batch_fn(keys) -> [Poses] with the checkpoint's model on `images[key]`, or
    with `embeddings` [(Poses, embedding)] from the same pass."""
    from clickpose.data import load_image
    from clickpose.model.checkpoint import load_model
    from clickpose.train.loop import pick_device

    model = load_model(checkpoint, pick_device(device))

    def predict_batch(keys: list[str]) -> list:
        if embeddings:
            return [model.predict_with_embedding(load_image(images[key])) for key in keys]
        return [model.predict(load_image(images[key])) for key in keys]

    return predict_batch


def with_embedding(scorer: Callable[[str, Poses], ImageScore]):
    """A scorer of (Poses, embedding) predictions: the score of the poses, carrying the
    embedding for the diversity strategies."""
    def score(image_id: str, prediction) -> ImageScore:
        poses, embedding = prediction
        return scorer(image_id, poses).model_copy(update={"embedding": embedding.tolist()})

    return score


def score_shard(checkpoint: str | Path, images: dict[str, Path], scorer: str,
                shard: tuple[int, int], batch_size: int = 8, device: str | None = None,
                progress: bool = False, threads: int | None = None,
                embeddings: bool = False) -> PoolScores:
    """The ImageScores of the pool images (keys of `images`) that shard (i, n) owns; with
    `embeddings`, each carries the image's embedding (clickpose.model.embedding)."""
    score = scorer_for(scorer)
    with torch_threads(threads):
        predict = model_predictor(checkpoint, images, device, embeddings)
        return score_pool(sorted(images), predict, with_embedding(score) if embeddings else score,
                          batch_size=batch_size, shard=shard, on_invalid="skip",
                          progress=progress)
