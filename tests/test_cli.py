import subprocess
import sys

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

