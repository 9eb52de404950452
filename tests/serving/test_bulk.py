"""Bulk captioning (`fsgr caption --out FILE.jsonl`): rows, errors, resume after a cut-off file, shard coverage, COCO
results, and that its captions are the plain mode's."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from fsgr.cli import main as cli_main
from fsgr.serving.bulk import list_images, parse_shard, read_done, shard_of


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_images):
    """Two nested folders of images, a non-image file (ignored by the walk) and a broken JPEG (an error row)."""
    root = tmp_path_factory.mktemp("bulk")
    (root / "a").mkdir()
    (root / "b" / "c").mkdir(parents=True)
    for i, src in enumerate(tiny_images[:12]):
        shutil.copy(src, root / ("a" if i % 2 else "b/c") / src.name)
    (root / "notes.txt").write_text("not an image")
    (root / "a" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_errors_and_the_plain_modes_captions(tiny_checkpoint, folder, tmp_path, capsys):
    out = tmp_path / "caps.jsonl"
    rc = cli_main(["caption", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--workers", "1",
                   "--batch-size", "4", "--no-progress", str(folder)])
    err = capsys.readouterr().err
    assert rc == 1 and "1 image(s) failed" in err and "Traceback" not in err
    rows = _rows(out)
    paths = list_images([str(folder)])
    assert [r["path"] for r in rows] == paths and len(paths) == 13 and not any(p.endswith(".txt") for p in paths)
    bad = [r for r in rows if "error" in r]
    assert [r["path"] for r in bad] == [str(folder / "a" / "zz_broken.jpg")] and bad[0]["error"]
    good = [r for r in rows if "error" not in r]
    assert all(isinstance(r["logprob"], float) and r["logprob"] < 0 and 1 <= r["length"] <= 10 for r in good)
    # the same captions as the plain `path<TAB>caption` mode (and so as Captioner.caption)
    assert cli_main(["caption", "--checkpoint", str(tiny_checkpoint), *[r["path"] for r in good]]) == 0
    plain = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert plain == [[r["path"], r["caption"]] for r in good]
    # with the broken file among them: named on stderr, the others still printed in order, exit status 1
    assert cli_main(["caption", "--checkpoint", str(tiny_checkpoint), "--workers", "1", "--batch-size", "3",
                     *[r["path"] for r in rows]]) == 1
    captured = capsys.readouterr()
    assert [line.split("\t") for line in captured.out.splitlines()] == plain
    assert f"{bad[0]['path']}: {bad[0]['error']}" in captured.err and "1 of 13 image(s) failed" in captured.err


def test_resume_after_a_cut_off_file(tiny_checkpoint, folder, tmp_path, capsys):
    args = ["caption", "--checkpoint", str(tiny_checkpoint), "--workers", "0", "--no-progress", str(folder)]
    full = tmp_path / "full.jsonl"
    cli_main([*args, "--out", str(full)])
    lines = full.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    first = json.loads(lines[0])
    marked = json.dumps({**first, "caption": "ALREADY DONE"}) + "\n"     # proves done rows are not redone
    cut.write_text(marked + "".join(lines[1:5]) + lines[5][: len(lines[5]) // 2])   # killed mid-write
    assert cli_main([*args, "--out", str(cut)]) == 2                     # refuses to append without --resume
    assert "--resume" in capsys.readouterr().err
    cli_main([*args, "--out", str(cut), "--resume"])
    assert "5 already there" in capsys.readouterr().err
    resumed = _rows(cut)
    assert Counter(r["path"] for r in resumed) == Counter(r["path"] for r in _rows(full))
    assert resumed[0]["caption"] == "ALREADY DONE" and resumed[1:] == _rows(full)[1:]
    # nothing left: a second resume writes nothing
    cli_main([*args, "--out", str(cut), "--resume"])
    assert "wrote 0 row(s)" in capsys.readouterr().err and _rows(cut) == resumed


def test_read_done_drops_only_a_torn_last_line(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"path": "a", "caption": "x"}\n{"path": "b", "capt')
    assert read_done(f) == {"a"} and f.read_text() == '{"path": "a", "caption": "x"}\n'
    f.write_text('{"path": "a"}\ngarbage\n{"path": "c"}\n')
    with pytest.raises(Exception, match=r"x.jsonl:2"):
        read_done(f)


def test_shards_cover_every_image_exactly_once(tiny_checkpoint, folder, tmp_path, capsys):
    seen = Counter()
    for i in range(3):
        out = tmp_path / f"shard{i}.jsonl"
        cli_main(["caption", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--shard", f"{i}/3",
                  "--workers", "0", "--no-progress", str(folder)])
        rows = _rows(out)
        assert all(shard_of(r["path"], 3) == i for r in rows)
        seen.update(r["path"] for r in rows)
    assert set(seen) == set(list_images([str(folder)])) and set(seen.values()) == {1}
    assert cli_main(["caption", "--checkpoint", str(tiny_checkpoint), "--shard", "3/3", str(folder)]) == 2
    assert "--shard" in capsys.readouterr().err
    assert parse_shard(" 2 / 5 ") == (2, 5)


def test_coco_server_file_from_the_whole_jsonl(tiny_checkpoint, tiny_images, tmp_path, capsys):
    """--coco-results NAME (fsgr.evaluation.coco_files) in bulk mode: every row of --out, resumed ones included."""
    folder = tmp_path / "val2014"
    folder.mkdir()
    for i, src in enumerate(tiny_images[:4]):
        shutil.copy(src, folder / f"COCO_val2014_{391895 + i:012d}.jpg")
    out, results = tmp_path / "caps.jsonl", tmp_path / "results"
    args = ["caption", "--checkpoint", str(tiny_checkpoint), "--workers", "0", "--no-progress", "--out", str(out)]
    assert cli_main([*args, str(folder / "COCO_val2014_000000391895.jpg")]) == 0
    assert cli_main([*args, "--resume", "--coco-results", "tiny", "--results-dir", str(results), str(folder)]) == 0
    written = json.loads((results / "captions_val2014_tiny_results.json").read_text())
    assert [r["image_id"] for r in written] == [391895, 391896, 391897, 391898]
    assert [r["caption"] for r in written] == [r["caption"] for r in _rows(out)]
    assert cli_main(["caption", "--checkpoint", str(tiny_checkpoint), "--coco-results", "tiny",
                     str(tiny_images[0])]) == 2                           # not a COCO file name: refused first
    assert "COCO" in capsys.readouterr().err
