"""The configs shipped in the package (`fsgr/configs/NAME.yaml`), found without importing the config machinery, so
that `fsgr --help` lists them cheaply."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def packaged_configs() -> list[str]:
    """Names of the configs shipped in the package (`fsgr train NAME`)."""
    return sorted(p.name[:-5] for p in resources.files("fsgr").joinpath("configs").iterdir() if p.name.endswith(".yaml"))


def packaged_config_path(name: str) -> Path:
    return Path(str(resources.files("fsgr").joinpath("configs", f"{name}.yaml")))
