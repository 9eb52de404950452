"""One problem found in a dataset: what `fsgr check-data` lists and what readers raise (as DataError) when strict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from fsgr.errors import DataError


@dataclass(frozen=True)
class Problem:
    kind: str                           # short tag: missing-image, broken-image, empty-caption, split-overlap, ...
    reason: str
    file: str = ""
    image_id: Optional[int] = None
    annotation_id: Optional[int] = None

    def line(self) -> str:
        parts = [self.kind]
        if self.file:
            parts.append(f"file={self.file}")
        if self.image_id is not None:
            parts.append(f"image_id={self.image_id}")
        if self.annotation_id is not None:
            parts.append(f"annotation_id={self.annotation_id}")
        return " ".join(parts) + f": {self.reason}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "reason": self.reason, "file": self.file, "image_id": self.image_id,
                "annotation_id": self.annotation_id}


def report(problems: Optional[list[Problem]], problem: Problem) -> None:
    """Collect into `problems` (check-data), or raise at once (training: fail on the first problem)."""
    if problems is None:
        raise DataError(problem.line())
    problems.append(problem)
