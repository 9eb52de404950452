"""Config fields that carry their own check, declared beside the field: `batch_size: int = setting(50, ge=1)`.

`fsgr.config` checks every field of a Config when one is built (YAML, overrides, a checkpoint's config) and refuses a
bad value in one line naming its dotted key. Types, finiteness of floats and the int64 bound of integers are checked
for every field by `fsgr.config`; a `setting` adds what is particular to its field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional

UINT32_MAX = 2**32 - 1   # the largest seed numpy's and Python's generators all take


@dataclass(frozen=True)
class Rule:
    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    length: Optional[int] = None    # a list of exactly this many values (the bounds then hold for each value)
    check: Optional[Callable[[Any], Optional[str]]] = None   # a further check: what is wrong, or None

    def problem(self, value: Any) -> Optional[str]:
        """What is wrong with `value` (not None), or None."""
        values = value if isinstance(value, (list, tuple)) else [value]
        if self.length is not None and len(values) != self.length:
            return f"must hold {self.length} values, got {len(values)}"
        bounds = [(self.ge, ">=", lambda v, b: v >= b), (self.gt, ">", lambda v, b: v > b),
                  (self.le, "<=", lambda v, b: v <= b), (self.lt, "<", lambda v, b: v < b)]
        for v in values:
            if not all(ok(v, bound) for bound, _, ok in bounds if bound is not None):
                need = " and ".join(f"{sign} {bound}" for bound, sign, _ in bounds if bound is not None)
                return f"must be {need}" if len(values) == 1 and value is v else f"each value must be {need}"
        return self.check(value) if self.check else None


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            ge: Optional[float] = None, gt: Optional[float] = None, le: Optional[float] = None,
            lt: Optional[float] = None, length: Optional[int] = None,
            check: Optional[Callable[[Any], Optional[str]]] = None):
    """A dataclass field whose value must satisfy the given bounds (None is always allowed where the type is
    Optional)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"rule": Rule(ge=ge, gt=gt, le=le, lt=lt, length=length, check=check)})


def rule_of(f: dataclasses.Field) -> Optional[Rule]:
    return f.metadata.get("rule")
