"""Where a run's numbers go: RUN_DIR/metrics.jsonl always (one JSON object per logged step and per evaluation), and the
experiment trackers named in `train.loggers`: TensorBoard, MLflow, Weights & Biases (extras fsgr[tensorboard],
fsgr[mlflow], fsgr[wandb]); `train.loggers` unset = TensorBoard where it is installed.

Each tracker is one small class with four methods (`log_params`, `log_metrics`, `log_file`, `close`); `RunLogger`
feeds them all. Only rank 0 builds a RunLogger (the other ranks get `NullLogger`). A tracker's run id is kept in
RUN_DIR/trackers.json, so `--resume` continues the same MLflow run / W&B run instead of opening a new one.
"""

from __future__ import annotations

# Deferred imports: each tracker's package is imported when a run opens it (they are extras, and heavy).

import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from fsgr.config import flatten
from fsgr.errors import ConfigError
from fsgr.files import atomic_write_text

TRACKERS = ("tensorboard", "mlflow", "wandb")
LOGGERS = ("jsonl", *TRACKERS)
_STEP_KEYS = ("step", "epoch", "step_in_epoch")
_MLFLOW_BATCH = 100        # MLflow's limit of params (and a safe size of metrics) per log_batch call
_MLFLOW_PARAM_CHARS = 6000  # MLflow's longest param value


def tracker_names(loggers: Optional[Iterable[str]]) -> list[str]:
    """The trackers a run opens for `train.loggers` (jsonl is always on and not a tracker): the names given, each once,
    every one installed, else a ConfigError saying which extra to install; None = TensorBoard if installed."""
    if loggers is None:
        return ["tensorboard"] if _installed("tensorboard") else []
    names = list(dict.fromkeys(n for n in loggers if n != "jsonl"))
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"train.loggers: unknown logger {name!r}; choose from {', '.join(LOGGERS)}")
        if not _installed(name):
            raise ConfigError(f"train.loggers: {name} is not installed: pip install 'fsgr[{name}]'")
    return names


def _installed(module: str) -> bool:
    if module in sys.modules:        # (None there: an import blocked on purpose)
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def flat_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl row's finite numbers under `KIND/PHASE/key` (`eval/xe/scores/CIDEr`, `train/scst/loss`), the
    names every tracker shows; the step counters are the x axis, not metrics."""
    prefix = f"{row.get('kind', 'train')}/{row.get('phase', '')}"
    out = {}
    for key, value in row.items():
        if key in _STEP_KEYS:
            continue
        if _is_number(value):
            out[f"{prefix}/{key}"] = float(value)
        elif isinstance(value, dict):
            out.update({f"{prefix}/{key}/{k}": float(v) for k, v in value.items() if _is_number(v)})
    return out


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class TensorBoardTracker:
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log_params(self, params: dict[str, Any]) -> None:
        self._writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params.items()))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)

    def log_file(self, path: Path) -> None:
        pass   # TensorBoard has no artefacts; summary.json and the checkpoints sit beside its events in RUN_DIR

    def close(self, status: str) -> None:
        self._writer.flush()
        self._writer.close()


class MlflowTracker:
    """MLflow through its client (no global active run): the tracking URI is `train.tracking_uri`, else MLflow's own
    ($MLFLOW_TRACKING_URI or its default); the experiment is `train.tracking_project`."""

    def __init__(self, run_dir: Path, ids: dict, tracking_uri: str, experiment: str, run_name: str):
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=tracking_uri or None)
        saved = ids.get("mlflow") or {}
        if saved.get("run_id"):
            self.run_id = saved["run_id"]
            self._client.update_run(self.run_id, status="RUNNING")
            self.new = False
        else:
            found = self._client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self._client.create_experiment(experiment)
            self.run_id = self._client.create_run(experiment_id, run_name=run_name).info.run_id
            self.new = True
        ids["mlflow"] = {"run_id": self.run_id, "tracking_uri": self._client.tracking_uri}

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, (json.dumps(v) if isinstance(v, (list, dict)) else str(v))[:_MLFLOW_PARAM_CHARS])
                 for k, v in params.items()]
        for start in range(0, len(items), _MLFLOW_BATCH):
            self._client.log_batch(self.run_id, params=items[start:start + _MLFLOW_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_mlflow_key(k), v, now, step) for k, v in metrics.items()]
        for start in range(0, len(items), _MLFLOW_BATCH):
            self._client.log_batch(self.run_id, metrics=items[start:start + _MLFLOW_BATCH])

    def log_file(self, path: Path) -> None:
        self._client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self._client.set_terminated(self.run_id, status=status)


def _mlflow_key(key: str) -> str:
    """MLflow keys allow letters, digits, `_ - . / ` and spaces: anything else (e.g. a metric named `CIDEr@5`) -> `_`."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


class WandbTracker:
    """Weights & Biases: `wandb.init` with the run id kept in trackers.json (`resume="allow"`), files under RUN_DIR/wandb;
    offline with WANDB_MODE=offline (`wandb sync RUN_DIR/wandb/offline-run-*` uploads it later)."""

    def __init__(self, run_dir: Path, ids: dict, project: str, run_name: str):
        import wandb

        saved = ids.get("wandb") or {}
        self.new = not saved.get("id")
        self._run = wandb.init(project=project, name=run_name, id=saved.get("id"), resume="allow", dir=str(run_dir))
        ids["wandb"] = {"id": self._run.id, "project": project}
        # the optimiser step is a metric that every other one is plotted against (as Lightning's WandbLogger does):
        # W&B's own `step` must grow from one call to the next, which a resumed run (rows again at its last step)
        # and several rows per step would break
        self._run.define_metric("global_step")
        self._run.define_metric("*", step_metric="global_step")

    def log_params(self, params: dict[str, Any]) -> None:
        self._run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._run.log({**metrics, "global_step": step})

    def log_file(self, path: Path) -> None:
        self._run.save(str(Path(path).resolve()), base_path=str(Path(path).resolve().parent), policy="now")

    def close(self, status: str) -> None:
        self._run.finish(exit_code=0 if status == "FINISHED" else 1)


class RunLogger:
    """metrics.jsonl and the run's trackers. `log(row, step)` each row; `log_file(path)` an artefact (summary.json, the
    list of checkpoints); `close(status)` with the run's end state ("finished", "max_steps", "interrupted", or anything
    else for a failure)."""

    def __init__(self, run_dir: Path, config: dict[str, Any], loggers: Optional[list[str]] = None,
                 tracking_uri: str = "", project: str = "fsgr"):
        self.path = run_dir / "metrics.jsonl"
        self._file = open(self.path, "a", buffering=1)
        self._ids_path = run_dir / "trackers.json"
        ids = json.loads(self._ids_path.read_text()) if self._ids_path.is_file() else {}
        run_name = config.get("run", {}).get("name") or run_dir.resolve().name
        self.trackers = []
        for name in tracker_names(loggers):
            try:
                if name == "tensorboard":
                    tracker = TensorBoardTracker(run_dir)
                elif name == "mlflow":
                    tracker = MlflowTracker(run_dir, ids, tracking_uri, project, run_name)
                else:
                    tracker = WandbTracker(run_dir, ids, project, run_name)
            except Exception as exc:   # noqa: BLE001 - a tracker's own error (store, URI, login), named in one line
                self.close("failed")
                raise ConfigError(f"train.loggers: {name} could not open its run: {type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())}") from exc
            if getattr(tracker, "new", True):   # a resumed tracker run keeps the params of its start
                tracker.log_params(flatten(config))
            self.trackers.append(tracker)
        if ids:
            atomic_write_text(self._ids_path, json.dumps(ids, indent=2))

    def log(self, row: dict[str, Any], step: int) -> None:
        self._file.write(json.dumps(row, sort_keys=False) + "\n")
        metrics = flat_metrics(row)
        if metrics:
            for tracker in self.trackers:
                tracker.log_metrics(metrics, step)

    def log_file(self, path: Path) -> None:
        for tracker in self.trackers:
            tracker.log_file(path)

    def close(self, status: str = "finished") -> None:
        mlflow_status = {"finished": "FINISHED", "max_steps": "KILLED", "interrupted": "KILLED"}.get(status, "FAILED")
        for tracker in self.trackers:
            tracker.close(mlflow_status)
        self._file.close()


class NullLogger:
    def log(self, row: dict[str, Any], step: int) -> None:
        pass

    def log_file(self, path: Path) -> None:
        pass

    def close(self, status: str = "finished") -> None:
        pass


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
