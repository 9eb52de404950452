"""Typed configuration: one dataclass per area, composed here; YAML file + `a.b=value` overrides.

Each area owns its dataclass (`fsgr.data.config.DataConfig`, `fsgr.models.config.ModelConfig`,
`fsgr.recipe_config.TrainConfig`, ...); this module only composes them and turns YAML/overrides into instances.
Unknown keys and ill-typed values are refused with the dotted key named. The resolved config is saved with every run.
A config is a YAML path or the name of one shipped in the package (`fsgr/configs/NAME.yaml`: `demo`, `fsgr_coco`).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fsgr.data.config import DataConfig
from fsgr.errors import ConfigError
from fsgr.files import atomic_write_text
from fsgr.models.config import ModelConfig
from fsgr.recipe_config import EvalConfig, ScstConfig, TrainConfig


@dataclass
class RunConfig:
    dir: str = "runs/default"  # run directory: config.yaml, checkpoints/, metrics.jsonl, predictions/, TensorBoard
    name: str = ""
    # the folder that relative data paths of this config are relative to; empty = the working directory. Training
    # records its working directory here, so a checkpoint finds its data from anywhere (`fsgr.data.config.resolved`)
    base_dir: str = ""


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scst: ScstConfig = field(default_factory=ScstConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        check_values(self)


def _at_least(low):
    return lambda v: v >= low, f">= {low}"


def _above(low):
    return lambda v: v > low, f"> {low}"


# Values with a range, checked whenever a Config is built (YAML, overrides, a checkpoint's config): a bad one is refused
# here, naming the key, instead of failing deep inside a run. None is allowed where the type is Optional.
VALUE_RULES = {
    "train.batch_size": _at_least(1), "train.grad_accum": _at_least(1), "train.max_epochs": _at_least(1),
    "train.max_steps": _at_least(0), "train.log_every": _at_least(1), "train.lr": _at_least(0.0),
    "train.backbone_lr_scale": _at_least(0.0), "train.lr_warmup_epochs": _at_least(0), "train.lr_gamma": _above(0.0),
    "train.adam_eps": _above(0.0), "train.contrastive_weight": _at_least(0.0),
    "train.contrastive_temperature": _above(0.0), "train.contrastive_base_temperature": _above(0.0),
    "train.contrastive_chunk": _at_least(1), "train.grad_clip": _above(0.0), "train.patience": _at_least(1),
    "train.xe_least": _at_least(0), "train.xe_most": _at_least(1),
    "scst.num_samples": _at_least(1), "scst.max_len": _at_least(1), "scst.lr": _at_least(0.0),
    "scst.lr_gamma": _above(0.0), "scst.batch_images": _at_least(1), "scst.max_epochs": _at_least(1),
    "eval.beam_size": _at_least(1), "eval.max_len": _at_least(1), "eval.batch_images": _at_least(1),
    "eval.max_images": _at_least(1), "eval.java_timeout": _above(0.0),
    "data.min_freq": _at_least(1), "data.max_len": _at_least(3), "data.image_size": _at_least(1),
    "data.workers": _at_least(0), "data.prefetch_factor": _at_least(1),
    "model.dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"), "model.encoder.heads": _at_least(1),
    "model.decoder.layers": _at_least(1), "model.decoder.heads": _at_least(1), "model.decoder.max_len": _at_least(3),
    "model.semantic.topk": _at_least(1), "model.semantic.codebook_size": _at_least(1),
}


def check_values(cfg: "Config") -> None:
    for key, (ok, requirement) in VALUE_RULES.items():
        value = cfg
        for name in key.split("."):
            value = getattr(value, name)
        if value is not None and not ok(value):
            raise ConfigError(f"{key}={value!r}: must be {requirement}")


def packaged_configs() -> list[str]:
    """Names of the configs shipped in the package (`fsgr train NAME`)."""
    return sorted(p.name[:-5] for p in resources.files("fsgr").joinpath("configs").iterdir() if p.name.endswith(".yaml"))


def resolve_config(path_or_name: str | Path) -> Path:
    """A YAML file that exists, else a packaged config named `path_or_name` (with or without .yaml)."""
    path = Path(path_or_name)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and name in packaged_configs():
        return Path(str(resources.files("fsgr").joinpath("configs", f"{name}.yaml")))
    raise ConfigError(f"{path}: config file not found (packaged configs: {', '.join(packaged_configs())})")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of the nested config dict `raw` with `key=value` overrides applied in order; `raw` is left as it was.

    The one override grammar of every verb: `key` is dotted (`train.lr`), `value` is read as YAML (`3e-4`, `[0.9,
    0.98]`, `true`, `null` for None); an empty value (`run.name=`) is the empty string. Keys and types are checked when
    the dict becomes a Config (`from_dict`)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.max_steps=40")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {key}: {value!r} is not a YAML value: {' '.join(str(exc).split())}") from None
        _set_dotted(raw, key, parsed)
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (a path or a packaged name; the defaults when `path` is None) and apply `a.b=value`
    overrides in order."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = resolve_config(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
        except RecursionError:
            raise ConfigError(f"{path}: nested too deeply to be a config") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    raw = apply_overrides(raw, list(overrides))
    return from_dict(Config, raw)


def from_dict(cls, raw: dict[str, Any], prefix: str = ""):
    """Build dataclass `cls` from a nested dict, checking keys and value types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; valid keys here: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
    return cls(**kwargs)


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _coerce(tp, value, key: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `2e-4` as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported config type {tp!r}")
