"""Typed configuration: one dataclass per area, composed here; YAML file + `a.b=value` overrides.

Each area owns its dataclass (`fsgr.data.config.DataConfig`, `fsgr.models.config.ModelConfig`,
`fsgr.recipe_config.TrainConfig`, ...); this module only composes them and turns YAML/overrides into instances.
Unknown keys and ill-typed values are refused with the dotted key named. The resolved config is saved with every run.
A config is a YAML path or the name of one shipped in the package (`fsgr/configs/NAME.yaml`: `demo`, `fsgr_coco`).
"""

from __future__ import annotations

# Deferred imports: fsgr.models.decoding (it imports torch) when a Config is built, so that `--help` stays torch-free.

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fsgr.data.config import DataConfig
from fsgr.errors import ConfigError
from fsgr.fields import rule_of
from fsgr.files import atomic_write_text
from fsgr.models.config import ModelConfig
from fsgr.packaged import packaged_config_path, packaged_configs
from fsgr.recipe_config import EvalConfig, ScstConfig, TrainConfig


INT64_MAX = 2**63 - 1


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
        from fsgr.models.decoding import check_eval_section

        check_eval_section(self.eval)      # across fields: eval.min_len <= eval.max_len


def check_values(cfg: Any, prefix: str = "") -> None:
    """Every field's own rule (`fsgr.fields.setting`, declared beside the field), all sections down: the first bad
    value is refused naming its key. None passes where the type allows it."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_values(value, f"{prefix}{f.name}.")
            continue
        rule = rule_of(f)
        problem = rule.problem(value) if rule is not None and value is not None else None
        if problem:
            raise ConfigError(f"{prefix}{f.name}={value!r}: {problem}")


def resolve_config(path_or_name: str | Path) -> Path:
    """A YAML file that exists, else a packaged config named `path_or_name` (with or without .yaml)."""
    path = Path(path_or_name)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and name in packaged_configs():
        return packaged_config_path(name)
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


def flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as `section.key -> value` (lists kept whole): what trackers record as a run's params and
    what a resume compares key by key."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_yaml(cfg) -> str:
    """The whole config as YAML, every key written (what config.yaml and `fsgr train --print-config` hold)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg, path: str | Path) -> None:
    atomic_write_text(path, config_yaml(cfg))


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
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if not -INT64_MAX <= value <= INT64_MAX:   # what a tensor, numpy or a C extension can hold
            raise ConfigError(f"{key}={value}: integer out of range (at most {INT64_MAX} in size)")
        return value
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads `2e-4` as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{key}={value}: must be a finite number")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported config type {tp!r}")
