import pytest

from fsgr.config import Config, apply_overrides, load_config, save_config
from fsgr.errors import ConfigError


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-4\n  batch_size: 10\nmodel:\n  semantic:\n    gumbel: false\n")
    cfg = load_config(path, ["train.max_steps=40", "run.dir=runs/x", "model.dropout=0.0", "train.lr=3e-4"])
    assert isinstance(cfg, Config)
    assert cfg.train.max_steps == 40 and cfg.train.batch_size == 10
    assert cfg.train.lr == pytest.approx(3e-4)   # "1e-4"-style strings from YAML 1.1 still become floats
    assert cfg.model.semantic.gumbel is False and cfg.model.dropout == 0.0
    assert cfg.run.dir == "runs/x"
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg


@pytest.mark.parametrize("override,needle", [
    ("train.nope=1", "train.nope"),
    ("train.batch_size=abc", "train.batch_size"),
    ("data.batching=pairs", "data.batching"),
    ("model.semantic.gumbel=3", "model.semantic.gumbel"),
    ("noequals", "key=value"),
])
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(None, [override])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_packaged_configs_resolve_by_name_and_configs_dir_is_the_same_files():
    from pathlib import Path

    from fsgr.config import packaged_configs, resolve_config

    assert {"demo", "fsgr_coco", "fsgr_coco_pma"} <= set(packaged_configs())
    by_name = load_config("demo")
    assert by_name.data.format == "synthetic" and by_name.model.clip.path == "demo"
    assert load_config("fsgr_coco.yaml") == load_config("fsgr_coco")
    # the checkout's configs/ is the packaged directory itself (one source), not a copy kept in step
    repo_configs = Path(__file__).resolve().parents[1] / "configs"
    assert repo_configs.resolve() == resolve_config("demo").parent.resolve()


def test_unknown_config_name_lists_the_packaged_ones():
    with pytest.raises(ConfigError, match="packaged configs: .*fsgr_coco"):
        load_config("no_such_recipe")


def test_apply_overrides_returns_a_new_dict_and_reads_values_as_yaml():
    raw = {"train": {"lr": 1e-4, "adam_betas": [0.9, 0.98]}}
    out = apply_overrides(raw, ["train.lr=3e-4", "train.adam_betas=[0.8, 0.9]", "run.name=", "data.vocab=null",
                                "train.lr=0.0005"])
    assert raw == {"train": {"lr": 1e-4, "adam_betas": [0.9, 0.98]}}           # the input is untouched
    assert out["train"] == {"lr": 0.0005, "adam_betas": [0.8, 0.9]}              # in order: the last one wins
    assert out["run"] == {"name": ""} and out["data"] == {"vocab": None}      # empty = "", null = None
    # the same grammar as load_config's
    cfg = load_config(None, ["run.name=", "data.vocab=null"])
    assert cfg.run.name == "" and cfg.data.vocab is None


@pytest.mark.parametrize("override,needle", [
    ("train.lr.x=1", "'lr' is a value"), ("=3", "key=value"), ("train.adam_betas=[0.9", "not a YAML value"),
])
def test_apply_overrides_refuses_in_one_line(override, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        apply_overrides({"train": {"lr": 1.0}}, [override])
    assert "\n" not in str(info.value)
