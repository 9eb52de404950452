import subprocess
import sys

import pytest

from fsgr.cli import VERBS, build_parser, main


def test_every_verb_has_help(capsys):
    parser = build_parser()
    for verb in VERBS:
        try:
            parser.parse_args([verb, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
        out = capsys.readouterr().out
        assert "usage: fsgr " + verb in out


def test_help_imports_no_torch():
    # every verb module is imported to build --help; none may pull torch in at import time
    code = "import sys; from fsgr.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_user_error_is_one_line_without_traceback(tmp_path, capsys):
    rc = main(["train", str(tmp_path / "absent.yaml")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "absent.yaml" in err and "Traceback" not in err



def test_a_verb_builds_only_its_parser_and_says_the_same_help(capsys):
    """`fsgr VERB ...` builds that verb's parser alone (no other command module imported); its help is the full
    parser's, and an unknown verb still gets the full parser's error."""
    code = ("import sys; from fsgr.cli import main\n"
            "try:\n    main(['score', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('fsgr.commands.') and m not in ('fsgr.commands.checks', 'fsgr.commands.metric_args')),"
            " file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr.strip() == "['fsgr.commands.score']"
    try:
        build_parser().parse_args(["score", "--help"])
    except SystemExit:
        pass
    assert proc.stdout == capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["scor"])
    assert info.value.code == 2 and "invalid choice: 'scor'" in capsys.readouterr().err


def test_version_names_fsgr_torch_cuda_and_the_extension():
    import torch

    from fsgr import __version__
    from fsgr.metrics import speedups

    out = subprocess.run([sys.executable, "-m", "fsgr", "--version"], capture_output=True, text=True, check=True).stdout
    assert f"fsgr {__version__}\n" in out and f"torch {torch.__version__}, CUDA " in out
    assert ("CUDA none" in out) == (torch.version.cuda is None)
    assert ("C extension: built" in out) == (speedups.compiled is not None)


def test_packaged_configs_are_listed_from_the_package(capsys):
    from fsgr.packaged import packaged_config_path, packaged_configs

    names = packaged_configs()
    assert len(names) >= 5 and {"demo", "fsgr_coco", "fsgr_flickr8k"} <= set(names)
    assert main(["train", "--list-configs"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{n}\t{packaged_config_path(n)}" for n in names]
    for verb in ("train", "summary", "ablate"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([verb, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert all(n in out for n in names), verb
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert all(n in out for n in names)


@pytest.mark.parametrize("name", __import__("fsgr.packaged").packaged.packaged_configs())
def test_print_config_prints_the_resolved_yaml_and_touches_no_data(name, tmp_path, monkeypatch, capsys):
    import yaml

    from fsgr.config import Config, from_dict, load_config

    monkeypatch.chdir(tmp_path)
    assert main(["train", name, "train.lr=0.003", "--print-config", "eval.beam_size=2"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert from_dict(Config, printed) == load_config(name, ["train.lr=0.003", "eval.beam_size=2"])
    assert printed["train"]["lr"] == 0.003 and printed["eval"]["beam_size"] == 2
    assert "adam_betas" in printed["train"] and "synthetic" in printed["data"]      # every default filled in
    assert list(tmp_path.iterdir()) == []                                           # no data made, no run dir
