"""Result records of scoring and selection, serialisable to JSON (pydantic).

Every score is per image, higher = more useful to label. The per-person details keep the
index of the person in the prediction the score was computed on, so the annotator can show
persons worst first.
"""
from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, Field, computed_field, field_validator

ImageId = int | str


def _finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"'{field}' is {value}; scores and costs must be finite numbers")
    return value


class PersonScore(BaseModel):
    index: int                                            # person index in the scored Poses
    score: float                                          # higher = worse, look at it first
    parts: dict[str, float] = Field(default_factory=dict)  # the numbers behind the score

    @field_validator("score")
    @classmethod
    def _check_score(cls, v: float) -> float:
        return _finite(v, "score")


class ImageScore(BaseModel):
    image_id: ImageId
    method: str
    score: float                      # higher = more useful to label
    cost: float | None = None         # predicted clicks to label the image, when known
    # What the predicted clicks can be learned from (selection.click_features), when known.
    cost_features: dict[str, float] = Field(default_factory=dict)
    persons: list[PersonScore] = Field(default_factory=list)
    parts: dict[str, float] = Field(default_factory=dict)
    note: str = ""                    # why the score is what it is, when it is a special case
    # The image's embedding, kept when the diversity strategies will need it (select_batch's
    # embeddings), so that it travels with the score through shards and merges.
    embedding: list[float] | None = None

    @field_validator("score")
    @classmethod
    def _check_score(cls, v: float) -> float:
        return _finite(v, "score")

    @field_validator("cost")
    @classmethod
    def _check_cost(cls, v: float | None) -> float | None:
        if v is not None and (_finite(v, "cost") < 0):
            raise ValueError(f"'cost' is {v}; a number of clicks cannot be negative")
        return v

    @field_validator("embedding")
    @classmethod
    def _check_embedding(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not all(math.isfinite(x) for x in v):
            raise ValueError("'embedding' holds a NaN or infinite value; an image's embedding "
                             "must be finite numbers")
        return v

    def persons_worst_first(self) -> list[PersonScore]:
        return sorted(self.persons, key=lambda p: (-p.score, p.index))


class SelectedImage(BaseModel):
    image_id: ImageId
    rank: int                         # 0 = chosen first
    score: float
    cost: float | None = None
    reason: str
    persons: list[PersonScore] = Field(default_factory=list)  # worst first
    uncalibrated_cost: float | None = None  # the predicted clicks before calibration, if any
    cost_features: dict[str, float] = Field(default_factory=dict)  # ImageScore.cost_features

    @property
    def predicted_clicks(self) -> float | None:
        """The scorer's own prediction (before any calibration): what a later round
        calibrates against the clicks the image took."""
        return self.cost if self.uncalibrated_cost is None else self.uncalibrated_cost


class Selection(BaseModel):
    strategy: str
    seed: int
    budget_images: int | None = None
    budget_clicks: float | None = None
    items: list[SelectedImage] = Field(default_factory=list)
    pool_size: int = 0                # candidates after excluding labeled images
    labeled_excluded: int = 0
    total_score: float = 0.0
    total_cost: float | None = None   # predicted clicks of the chosen images, when known
    # selection.click_calibration.ClickCalibration as a dict, when the costs were calibrated
    calibration: dict | None = None
    took_whole_pool: bool = False
    message: str = ""

    @computed_field
    @property
    def image_ids(self) -> list[ImageId]:
        return [item.image_id for item in self.items]

    @property
    def is_empty(self) -> bool:
        return not self.items

    def save(self, path: str | Path) -> None:
        from clickpose.io import atomic_write_text

        atomic_write_text(Path(path), self.model_dump_json(indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Selection:
        return cls.model_validate_json(Path(path).read_text())


class SkippedImage(BaseModel):
    image_id: ImageId
    error: str


class ScoringStats(BaseModel):
    shard: tuple[int, int] = (0, 1)   # (index, count)
    images: int = 0                   # images scored in this shard
    batches: int = 0
    skipped: list[SkippedImage] = Field(default_factory=list)
    seconds: float = 0.0
    predict_seconds: float = 0.0
    score_seconds: float = 0.0

    @computed_field
    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


class PoolScores(BaseModel):
    scores: list[ImageScore] = Field(default_factory=list)
    stats: list[ScoringStats] = Field(default_factory=list)  # one per shard merged in

    def by_id(self) -> dict[ImageId, ImageScore]:
        return {s.image_id: s for s in self.scores}

    def embeddings(self) -> dict[ImageId, list[float]]:
        """The embeddings the scores carry, by image id (select_batch's `embeddings`)."""
        return {s.image_id: s.embedding for s in self.scores if s.embedding is not None}

    def save(self, path: str | Path) -> None:
        from clickpose.io import atomic_write_text

        atomic_write_text(Path(path), self.model_dump_json())

    @classmethod
    def load(cls, path: str | Path) -> PoolScores:
        return cls.model_validate_json(Path(path).read_text())
