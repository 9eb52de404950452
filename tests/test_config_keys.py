"""No config key that does nothing: every field of every config dataclass is read somewhere in the package."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

from fsgr.config import Config

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fsgr"


def config_keys(cls=Config, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys.extend(config_keys(hints[f.name], f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def attributes_read() -> set[str]:
    """Every `x.name` read (not assigned) in the package, and every getattr(x, "name") constant."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) >= 2 \
                    and isinstance(node.args[1], ast.Constant):
                names.add(node.args[1].value)
    return names


def test_every_config_key_is_read():
    read = attributes_read()
    unread = [k for k in config_keys() if k.rsplit(".", 1)[-1] not in read]
    assert not unread, f"config keys that nothing reads (honour or remove them): {unread}"


def test_the_walk_covers_nested_sections():
    keys = config_keys()
    assert {"data.synthetic.num_train", "model.backbone.prompts.num_tokens", "train.lr", "eval.beam_size"} <= set(keys)
