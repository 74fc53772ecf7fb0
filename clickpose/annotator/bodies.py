"""Bodies of the annotator's API requests: unknown fields, NaN and infinities are refused."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ClickBody(_Body):
    person: int
    keypoint: int | str = Field(description="index or name in the task's schema")
    x: float
    y: float
    visible: int = 2


class VisibilityBody(_Body):
    person: int
    keypoint: int | str
    v: int


class BoxBody(_Body):
    box: list[float] = Field(min_length=4, max_length=4, description="x0, y0, x1, y1 pixels")


class PersonBody(_Body):
    person: int
