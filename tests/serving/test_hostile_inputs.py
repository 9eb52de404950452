"""Issue 25's smaller reproductions on `fsgr caption`: a bad FSGR_MAX_IMAGE_PIXELS is refused once, before any work
(not by every image); the limit is said in units that show the difference; a newline in a failing image's path does
not split its one-line error."""

from __future__ import annotations

import json

from PIL import Image

from fsgr.cli import main


def test_a_bad_pixel_limit_is_refused_before_any_work(tiny_checkpoint, tiny_images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FSGR_MAX_IMAGE_PIXELS", "abc")
    out = tmp_path / "caps.jsonl"
    assert main(["caption", "--checkpoint", str(tiny_checkpoint), "--out", str(out), str(tiny_images[0])]) == 2
    captured = capsys.readouterr()
    assert captured.err == "fsgr: error: FSGR_MAX_IMAGE_PIXELS='abc': expected a number of pixels (0 = no limit)\n"
    assert not out.exists() and captured.out == ""


def test_a_newline_in_a_path_keeps_its_error_on_one_line(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FSGR_MAX_IMAGE_PIXELS", "1000")
    path = tmp_path / "two\nlines.png"
    Image.new("RGB", (40, 30)).save(path)
    assert main(["caption", "--checkpoint", str(tiny_checkpoint), str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (f"{json.dumps(str(path))}: refused, 40x30 = 1,200 pixels is above the limit of 1,000 pixels "
                        f"(set FSGR_MAX_IMAGE_PIXELS to raise it, 0 for no limit)")
    assert lines[1:] == ["fsgr caption: 1 of 1 image(s) failed"]
