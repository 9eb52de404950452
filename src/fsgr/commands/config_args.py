"""The `CONFIG [key=value ...]` arguments of the verbs that build a run from a config (train, summary, ablate)."""

from __future__ import annotations

from fsgr.packaged import packaged_configs


def add_config_arguments(parser, overrides_help: str, required: bool = True) -> None:
    parser.add_argument("config", nargs=None if required else "?",
                        help=f"a YAML path or a packaged config name ({', '.join(packaged_configs())})")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help=f"{overrides_help} (YAML values; `fsgr.config.apply_overrides`, docs/training.md)")
