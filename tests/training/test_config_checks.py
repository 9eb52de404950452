"""Every config value is checked where it enters, once, before any run file is written (issue 25 item 8): each
reproduction of the issue through `fsgr train`, refused in one line naming the key, exit 2, run.dir untouched."""

from __future__ import annotations

import pytest

from fsgr.cli import main as cli_main


@pytest.mark.parametrize("override,needle", [
    ("train.adam_betas=[0.9]", "train.adam_betas=[0.9]: must hold 2 values"),
    ("train.adam_betas=[1.5,0.9]", "train.adam_betas=[1.5, 0.9]: each value must be >= 0.0 and < 1.0"),
    ("train.seed=-1", "train.seed=-1: must be >= 0"),
    ("train.lr=inf", "train.lr=inf: must be a finite number"),
    ("train.lr=.nan", "train.lr=nan: must be a finite number"),
    ("train.batch_size=99999999999999999999999", "train.batch_size=99999999999999999999999: integer out of range"),
    ("train.batch_size=5000", "train.batch_size=5000: more than the training split holds (24 images"),
    ("scst.enabled=true", "scst.batch_images=40: more than the training split's 24 images"),
    ("eval.metrics=bogus", "eval.metrics='bogus': unknown metric(s) ['bogus']: choose from bleu, meteor, rouge"),
    ("eval.val_metrics=meteor,bogus", "eval.val_metrics='meteor,bogus': unknown metric(s) ['bogus']"),
    ("eval.val_metrics=bleu", "eval.val_metrics='bleu' (eval.metrics when unset): must include cider"),
    ("eval.min_len=30", "eval.min_len=30: must be between 0 and max_len (8)"),
    ("eval.beam_size=5000", "eval.beam_size=5000: larger than the "),     # the vocabulary, once it is built
    ("data.images=/nonexistent", "data.images=/nonexistent: no such file or folder"),
    ("data.vocab=/nonexistent/vocab.json", "data.vocab=/nonexistent/vocab.json: no such file or folder"),
])
def test_train_refuses_a_bad_value_up_front_naming_the_key(tmp_path, tiny_run_config, capsys, override, needle):
    cfg = tiny_run_config(tmp_path, scst={"batch_images": 40})
    assert cli_main(["train", str(cfg), override, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()                       # nothing written: not even the run directory


def test_load_config_refuses_an_eval_min_len_above_max_len():
    from fsgr.config import load_config
    from fsgr.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^eval.min_len=8: must be between 0 and max_len \(6\)$"):
        load_config("demo", ["eval.max_len=6", "eval.min_len=8"])
    assert load_config("demo", ["eval.max_len=6", "eval.min_len=6"]).eval.min_len == 6


def test_every_packaged_config_passes_its_own_checks():
    from fsgr.config import load_config, packaged_configs

    for name in packaged_configs():
        load_config(name)


def test_train_refuses_clip_sizes_the_weights_do_not_have_before_writing_the_run(tmp_path, capsys):
    # issue 24 item 3: the demo CLIP has 6 blocks; `model.clip.vision_layers=4` trained and saved a checkpoint that
    # `fsgr caption` could not load. Now: refused at set-up, naming both values, nothing in run.dir.
    small = [f"data.synthetic.root={tmp_path / 'shapes'}", "data.synthetic.num_train=8", "data.synthetic.num_val=2",
             "data.synthetic.num_test=2", "data.workers=0", "data.cache_dir=null", "train.batch_size=10",
             "scst.enabled=false", f"run.dir={tmp_path / 'run'}"]
    assert cli_main(["train", "demo", *small, "model.clip.vision_layers=4", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model.clip.vision_layers=4: the CLIP at demo has vision_layers=6" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
