"""Data problems: one issue names the file, the ids, the field and the fix."""
from __future__ import annotations

from dataclasses import dataclass, field

# How many issues a DataError message spells out before summarising the rest.
MAX_LISTED_ISSUES = 10


@dataclass(frozen=True)
class DataIssue:
    """One problem in a dataset folder, e.g. a keypoint list of the wrong length."""

    file: str  # the file at fault: annotations.json or an image
    reason: str  # what is wrong and how to fix it
    image_id: int | None = None
    annotation_id: int | None = None
    field: str | None = None  # the JSON field at fault, when there is one
    where: str | None = None  # a position when the entry has no usable id, e.g. "images[3]"

    def __str__(self) -> str:
        parts = [self.file]
        if self.annotation_id is not None:
            ann = f"annotation {self.annotation_id}"
            parts.append(ann + (f" (image {self.image_id})" if self.image_id is not None else ""))
        elif self.image_id is not None:
            parts.append(f"image {self.image_id}")
        if self.where is not None:
            parts.append(self.where)
        text = ": ".join(parts) + ": "
        if self.field is not None:
            text += f"'{self.field}' "
        return text + self.reason


class DataError(ValueError):
    """A dataset folder that cannot be used as it is; `issues` lists every problem found."""

    def __init__(self, message: str, issues: list[DataIssue] | None = None):
        super().__init__(message)
        self.issues = list(issues or [])

    @classmethod
    def from_issues(cls, issues: list[DataIssue]) -> DataError:
        lines = [str(i) for i in issues[:MAX_LISTED_ISSUES]]
        more = len(issues) - len(lines)
        head = f"{len(issues)} problem(s) in the dataset" if len(issues) > 1 else None
        text = "\n".join(([head] if head else []) + lines)
        if more > 0:
            text += (f"\n... and {more} more; `clickpose check-data DIR` lists them all, "
                     "`--skip-bad` trains on the rest")
        return cls(text, issues)


@dataclass
class DataReport:
    """What a lenient load (skip_bad=True) left out, and why."""

    issues: list[DataIssue] = field(default_factory=list)
    skipped_image_ids: list[int] = field(default_factory=list)
    skipped_annotation_ids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    def lines(self) -> list[str]:
        return [str(i) for i in self.issues]

    def __str__(self) -> str:
        if self.ok:
            return "no problems found"
        head = (f"skipped {len(self.skipped_image_ids)} image(s) and "
                f"{len(self.skipped_annotation_ids)} annotation(s):")
        return "\n".join([head] + ["  " + line for line in self.lines()])
