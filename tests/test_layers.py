"""The layering contract, checked on every import statement of the package (function-level ones included).

    metrics < data < models < config < core < serving, training < demo < CLI

`metrics` imports no other fsgr package; `data` may use `metrics` (one tokenizer); `models` imports neither `data`,
`training`, `demo` nor the CLI; `core` (model factory, checkpoint file, assets, device, process group) imports neither
training nor serving; serving (the module defining Captioner, `fsgr.serving`) imports nothing from `training`;
`training` imports no CLI and no `demo`; nothing but the CLI and `demo` imports `fsgr.demo`. Imports sit at the top of modules, except in
modules that say why they defer (a `# Deferred imports:` comment in the module or its package's __init__).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "fsgr"

# layer -> the module prefixes that belong to it (longest prefix wins)
LAYER_OF_PREFIX = {
    "fsgr.errors": "base", "fsgr.files": "base",       # error types; the one atomic write and path checks
    "fsgr.fields": "base",                             # config fields that declare their own range
    "fsgr.logs": "base",                               # the `fsgr` logger
    "fsgr.packaged": "base",                           # names of the packaged configs (cheap, for --help)
    "fsgr.__version__": "base",
    "fsgr.metrics": "metrics",
    "fsgr.data": "data",
    "fsgr.models": "models",
    "fsgr.config": "config", "fsgr.recipe_config": "config",
    "fsgr.core": "core",
    "fsgr.inference": "serving", "fsgr.serving": "serving", "fsgr.export": "serving",
    "fsgr.evaluation": "evaluation",                 # COCO files in and out, CLIPScore (needs a model), scoring
    "fsgr.training": "training",
    "fsgr.demo": "demo",
    "fsgr.cli": "cli", "fsgr.commands": "cli", "fsgr.__main__": "cli", "fsgr": "cli",   # the package root: public API
}
BELOW = {   # layer -> the layers it may import (besides its own)
    "base": set(),
    "metrics": {"base"},
    "data": {"base", "metrics"},
    "models": {"base"},
    "config": {"base", "metrics", "data", "models"},   # composes data.config and models.config; eval.metrics names
    "core": {"base", "metrics", "data", "models", "config"},
    "serving": {"base", "metrics", "data", "models", "config", "core"},
    "evaluation": {"base", "metrics", "data", "models", "config", "core"},
    "training": {"base", "metrics", "data", "models", "config", "core"},
    "demo": {"base", "metrics", "data", "models", "config", "core", "serving", "evaluation", "training"},
    "cli": {"base", "metrics", "data", "models", "config", "core", "serving", "evaluation", "training", "demo"},
}


def layer_of(module: str) -> str:
    best = max((p for p in LAYER_OF_PREFIX if module == p or module.startswith(p + ".")), key=len)
    return LAYER_OF_PREFIX[best]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(source: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level: not inside a function) of every import statement in the source."""
    tree = ast.parse(source)
    in_function = {id(inner) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for inner in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from fsgr.training import setup` imports the submodule fsgr.training.setup
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            out.append((name, node.lineno, id(node) not in in_function))
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_walk_sees_the_whole_package():
    names = {module_name(p) for p in SOURCES}
    assert {"fsgr.inference", "fsgr.core.build", "fsgr.training.engine", "fsgr.models.decoder"} <= names


def violations(module: str, source: str) -> list[str]:
    mine = layer_of(module)
    wrong = []
    for name, line, _ in imports(source):
        if not name.startswith("fsgr."):
            continue
        theirs = layer_of(name)
        if theirs != mine and theirs not in BELOW[mine]:
            wrong.append(f"{module}:{line} ({mine}) imports {name} ({theirs})")
    return wrong


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layers(path):
    wrong = violations(module_name(path), path.read_text())
    assert not wrong, "; ".join(wrong)


def _declares_deferral(path: Path) -> bool:
    marker = "# Deferred imports:"
    return marker in path.read_text() or marker in (path.parent / "__init__.py").read_text()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_function_level_imports_only_where_declared(path):
    inner = [f"{name} (line {line})" for name, line, top in imports(path.read_text()) if not top]
    if inner:
        assert _declares_deferral(path), f"{path.name} imports inside functions without saying why: {inner[:3]}"


def test_the_checker_catches_wrong_imports_at_any_depth():
    deferred = "def f():\n    from fsgr.training.setup import build_data\n"
    assert violations("fsgr.models.decoder", deferred)                      # models -> training, inside a function
    assert violations("fsgr.inference", "from fsgr.training import evaluation\n")   # serving -> training
    assert violations("fsgr.training.setup", "import fsgr.demo.run\n")      # training -> demo
    assert violations("fsgr.metrics.score", "from fsgr.data.vocab import Vocab\n")  # metrics -> data
    assert violations("fsgr.models.captioner", "from fsgr import Captioner\n")      # models -> the public API
    assert not violations("fsgr.demo.run", "from fsgr.training.engine import train\n")
    assert [top for _, _, top in imports(deferred)] == [False, False]
