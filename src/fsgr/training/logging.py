"""Run-directory logging: metrics.jsonl (one JSON object per logged step and per evaluation) and TensorBoard events.
Only rank 0 constructs one; other ranks get `NullLogger`."""

from __future__ import annotations

# Deferred imports: tensorboard is heavy and only rank 0's logger needs it.

import json
import math
from pathlib import Path
from typing import Any


class MetricsLogger:
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.jsonl"
        self._file = open(self.path, "a", buffering=1)
        self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, row: dict[str, Any], tb_step: int) -> None:
        self._file.write(json.dumps(row, sort_keys=False) + "\n")
        prefix = f"{row.get('kind', 'train')}/{row.get('phase', '')}"
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                if key not in ("step", "epoch", "step_in_epoch"):
                    self._tb.add_scalar(f"{prefix}/{key}", value, tb_step)
            elif isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        self._tb.add_scalar(f"{prefix}/{key}/{k}", v, tb_step)

    def close(self) -> None:
        self._tb.flush()
        self._tb.close()
        self._file.close()


class NullLogger:
    def log(self, row: dict[str, Any], tb_step: int) -> None:
        pass

    def close(self) -> None:
        pass


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
