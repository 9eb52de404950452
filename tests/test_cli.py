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
