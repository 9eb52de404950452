import pytest

from fsgr.config import Config, load_config, save_config
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
