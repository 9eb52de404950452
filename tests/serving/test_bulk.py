"""Bulk captioning (`fsgr caption --out FILE.jsonl`): rows, errors, the header row, resume (cut-off files, retried
errors, path spellings, another checkpoint), files it did not write left alone, a full disk, shards, listings,
merging, torchrun, COCO results, and that its captions are the plain mode's."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from fsgr.cli import main as cli_main
from fsgr.core.checkpoint import atomic_save, checkpoint_sha256
from fsgr.serving import bulk
from fsgr.serving.bulk import list_images, parse_shard, read_caption_file, shard_of


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


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rows(path):
    """The caption rows (every row, header rows left out)."""
    return [r for r in _lines(path) if "fsgr" not in r]


def _caption(ckpt, *args):
    return cli_main(["caption", "--checkpoint", str(ckpt), "--workers", "0", "--no-progress", *map(str, args)])


def test_rows_errors_header_and_the_plain_modes_captions(tiny_checkpoint, folder, tmp_path, capsys):
    out = tmp_path / "caps.jsonl"
    rc = cli_main(["caption", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--workers", "1",
                   "--batch-size", "4", "--no-progress", str(folder)])
    err = capsys.readouterr().err
    assert rc == 1 and "1 image(s) failed" in err and "Traceback" not in err
    head = _lines(out)[0]
    assert head["fsgr"] == "caption-jsonl" and head["part"] is None and head["inputs"] == 13
    assert head["checkpoint_sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert head["checkpoint_sha256"] == checkpoint_sha256(tiny_checkpoint) and head["decoding"]["beam_size"] == 3
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
    full = tmp_path / "full.jsonl"
    _caption(tiny_checkpoint, "--out", full, folder)
    lines = full.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    first = json.loads(lines[1])
    marked = json.dumps({**first, "caption": "ALREADY DONE"}) + "\n"     # proves done rows are not redone
    cut.write_text(lines[0] + marked + "".join(lines[2:6]) + lines[6][: len(lines[6]) // 2])   # killed mid-write
    assert _caption(tiny_checkpoint, "--out", cut, folder) == 2                     # no appending without --resume
    assert "--resume" in capsys.readouterr().err
    _caption(tiny_checkpoint, "--out", cut, "--resume", folder)
    assert "5 already there" in capsys.readouterr().err
    resumed = _rows(cut)
    assert Counter(r["path"] for r in resumed) == Counter(r["path"] for r in _rows(full))
    assert resumed[0]["caption"] == "ALREADY DONE" and resumed[1:] == _rows(full)[1:]
    assert sum("fsgr" in r for r in _lines(cut)) == 2          # the resume recorded itself
    # the broken JPEG's error row is retried by each resume (still broken: exit 1), and is there once
    assert _caption(tiny_checkpoint, "--out", cut, "--resume", folder) == 1
    assert "wrote 1 row(s)" in capsys.readouterr().err and _rows(cut) == resumed


def test_read_caption_file_validates_everything_and_modifies_nothing(tmp_path):
    f = tmp_path / "x.jsonl"
    head = json.dumps(bulk.header("ab" * 32)) + "\n"
    text = head + '{"path": "/a", "caption": "x"}\n{"path": "/b", "error": "bad"}\n{"path": "/b", "capt'
    f.write_text(text)
    file = read_caption_file(f)
    assert file.done == {"/a"} and file.errors == ["/b"] and file.end == len(text) - len('{"path": "/b", "capt')
    assert f.read_text() == text                                        # the torn line is cut only when appending
    f.write_text(head + '{"path": "/a"}\ngarbage\n{"path": "/c", "caption": "y"}\n')
    with pytest.raises(Exception, match=r"x.jsonl:2: not a caption row"):
        read_caption_file(f)
    f.write_text('{"path": "/a", "caption": "x"}\n')                   # rows, but no header: not ours
    with pytest.raises(Exception, match=r"not a caption file written by `fsgr caption --out`"):
        read_caption_file(f)


def test_never_modifies_a_file_it_did_not_write(tiny_checkpoint, tiny_images, tmp_path, capsys):
    """Issue 25.1: an image, a one-line COCO JSON and a pretty-printed predictions JSON given as --out --resume, and
    /dev/null: refused in one line before any work, every byte left as it was."""
    image = tmp_path / "x.jpg"
    shutil.copy(tiny_images[0], image)
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(2000)]}))
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"image_id": 1, "caption": "a red square"}], indent=2))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    for target, source in [(image, image), (image, tiny_images[1]), (refs, tiny_images[1]), (preds, tiny_images[1]),
                           (empty, tiny_images[1])]:
        before = target.read_bytes()
        assert _caption(tiny_checkpoint, "--out", target, "--resume", source) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(target) in err and "Traceback" not in err, err
        assert target.read_bytes() == before, target
    for flags in (["--resume"], []):
        assert _caption(tiny_checkpoint, "--out", "/dev/null", *flags, tiny_images[0]) == 2
        err = capsys.readouterr().err
        assert "/dev/null: not a regular file" in err and "Errno" not in err


def test_resume_retries_errors_keys_absolute_paths_and_then_writes_coco_results(tiny_checkpoint, tiny_images,
                                                                                 tmp_path, monkeypatch, capsys):
    """Issues 25.3 and 25.11: images deleted mid-run become error rows; once restored, --resume (given the folder
    spelt another way) captions exactly those, the file ends with one row per image and no error row, exit 0, and
    --coco-results works from it."""
    folder = tmp_path / "val2014"
    folder.mkdir()
    names = [f"COCO_val2014_{391895 + i:012d}.jpg" for i in range(8)]
    for name, src in zip(names, tiny_images):
        shutil.copy(src, folder / name)
    away = tmp_path / "away"
    away.mkdir()
    for name in names[1::2]:
        shutil.move(folder / name, away / name)
    monkeypatch.chdir(tmp_path)
    out, results = tmp_path / "caps.jsonl", tmp_path / "results"
    # the missing files as listed paths (error rows), the others from the folder
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"val2014/{n}\n" for n in names[1::2]))
    assert _caption(tiny_checkpoint, "--out", out, "--files-from", listing, "val2014") == 1
    assert len([r for r in _rows(out) if "error" in r]) == 4
    for name in names[1::2]:
        shutil.move(away / name, folder / name)
    capsys.readouterr()
    assert _caption(tiny_checkpoint, "--out", out, "--resume", "--coco-results", "tiny", "--results-dir", results,
                    str(folder), "./val2014") == 0
    assert "wrote 4 row(s)" in capsys.readouterr().err
    rows = _rows(out)
    assert sorted(r["path"] for r in rows) == sorted(str(folder / n) for n in names)
    assert not any("error" in r for r in rows)
    written = json.loads((results / "captions_val2014_tiny_results.json").read_text())
    assert sorted(r["image_id"] for r in written) == list(range(391895, 391903))
    # nothing left to do, whatever the spelling
    assert _caption(tiny_checkpoint, "--out", out, "--resume", "val2014") == 0
    assert "wrote 0 row(s)" in capsys.readouterr().err and _rows(out) == rows


def test_resume_with_another_checkpoint_is_refused_unless_asked(tiny_checkpoint, tiny_images, tmp_path, capsys):
    """Issue 25.12: the header records the checkpoint's SHA-256."""
    other = tmp_path / "other.pt"
    payload = torch.load(tiny_checkpoint, weights_only=True, map_location="cpu")
    payload["config"]["run"]["name"] = "another"            # same weights, another file
    atomic_save({k: v for k, v in payload.items() if k != "checksum"}, other)
    out = tmp_path / "caps.jsonl"
    assert _caption(tiny_checkpoint, "--out", out, tiny_images[0]) == 0
    before = out.read_bytes()
    assert _caption(other, "--out", out, "--resume", tiny_images[1]) == 2
    err = capsys.readouterr().err
    assert "another checkpoint" in err and "--other-checkpoint" in err and out.read_bytes() == before
    assert _caption(other, "--out", out, "--resume", "--other-checkpoint", tiny_images[1]) == 0
    heads = [r for r in _lines(out) if "fsgr" in r]
    assert [h["checkpoint_sha256"] for h in heads] == [checkpoint_sha256(tiny_checkpoint), checkpoint_sha256(other)]


def test_a_full_disk_names_the_file_and_leaves_no_empty_one(tiny_checkpoint, tiny_images, tmp_path, monkeypatch,
                                                           capsys):
    """Issue 25.15: ENOSPC on the header (no file left) and after two rows (those two kept, resumable)."""
    real = bulk._append
    calls = {"n": 0, "fail_at": 1}

    def disk_fills(fd, data):
        calls["n"] += 1
        if calls["n"] >= calls["fail_at"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(bulk, "_append", disk_fills)
    out = tmp_path / "caps.jsonl"
    images = [str(p) for p in tiny_images[:5]]
    assert _caption(tiny_checkpoint, "--out", out, "--batch-size", "2", *images) == 1
    err = capsys.readouterr().err
    assert f"{out}: no space left on device" in err and "no file was left" in err and not out.exists()
    calls.update(n=0, fail_at=4)                                   # header, two rows, then the disk is full
    assert _caption(tiny_checkpoint, "--out", out, "--batch-size", "2", *images) == 1
    assert "holds the 2 row(s) written before" in capsys.readouterr().err and len(_rows(out)) == 2
    monkeypatch.setattr(bulk, "_append", real)
    assert _caption(tiny_checkpoint, "--out", out, "--resume", *images) == 0
    assert [r["path"] for r in _rows(out)] == images


def test_shards_cover_every_image_once_whatever_the_spelling(tiny_checkpoint, folder, tmp_path, monkeypatch,
                                                             capsys):
    """Issue 25.11: shards 0/3, 1/3, 2/3 given `bulk`, `./bulk` and the absolute path; then merged."""
    monkeypatch.chdir(folder.parent)
    spellings = [folder.name, f"./{folder.name}", str(folder)]
    seen = Counter()
    parts = tmp_path / "parts"
    for i, spelling in enumerate(spellings):
        out = parts / f"shard{i}.jsonl"
        _caption(tiny_checkpoint, "--out", out, "--shard", f"{i}/3", spelling)
        rows = _rows(out)
        assert all(shard_of(r["path"], 3) == i and os.path.isabs(r["path"]) for r in rows)
        seen.update(r["path"] for r in rows)
    assert set(seen) == set(list_images([str(folder)])) and set(seen.values()) == {1}
    assert _caption(tiny_checkpoint, "--shard", "3/3", folder) == 2
    assert "--shard" in capsys.readouterr().err
    assert parse_shard(" 2 / 5 ") == (2, 5)
    # --merge: every input once, one file (the sources were spelt differently: the same keys)
    merged = tmp_path / "all.jsonl"
    assert cli_main(["caption", "--merge", str(parts), "--out", str(merged)]) == 1      # the broken JPEG's row
    assert Counter(r["path"] for r in _rows(merged)) == seen
    assert _lines(merged)[0]["inputs"] == 13
    # a missing part, and a part given twice, are refused
    (parts / "shard2.jsonl").rename(tmp_path / "shard2.jsonl")
    assert cli_main(["caption", "--merge", str(parts), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "part(s) 2 of 3 are missing" in capsys.readouterr().err
    shutil.copy(parts / "shard1.jsonl", parts / "shard1-copy.jsonl")
    assert cli_main(["caption", "--merge", str(parts), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "part 1/3 again" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()


def test_files_from_a_file_or_stdin_and_the_shard_before_the_disk(tiny_checkpoint, tiny_images, tmp_path,
                                                                  monkeypatch, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in tiny_images[:3]) + "\n")
    out = tmp_path / "caps.jsonl"
    assert _caption(tiny_checkpoint, "--out", out, "--files-from", listing) == 0
    assert [r["path"] for r in _rows(out)] == [str(p) for p in tiny_images[:3]]
    monkeypatch.setattr(sys, "stdin", io.StringIO(listing.read_text()))
    assert _caption(tiny_checkpoint, "--files-from", "-") == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == [str(p) for p in tiny_images[:3]]
    # a listing's files are sharded by their own key, as listed (these do not exist: no walk, no error)
    names = [f"/nowhere/{i}.jpg" for i in range(30)]
    for i in range(3):
        assert list_images(names, (i, 3)) == [n for n in names if shard_of(n, 3) == i]
    assert _caption(tiny_checkpoint, "--files-from", tmp_path / "absent.txt") == 2
    assert "absent.txt" in capsys.readouterr().err


def test_torchrun_ranks_caption_shards_and_rank0_merges(tiny_checkpoint, folder, tmp_path):
    """`fsgr caption --out` under torchrun (2 gloo processes): one file, the one-process rows."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get(
        "PYTHONPATH")])))
    out, one = tmp_path / "two.jsonl", tmp_path / "one.jsonl"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "fsgr", "caption", "--checkpoint", str(tiny_checkpoint), "--workers",
           "0", "--no-progress", "--out", str(out), str(folder)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "1 image(s) failed" in proc.stderr, proc.stderr[-3000:]  # the broken JPEG
    _caption(tiny_checkpoint, "--out", one, folder)
    assert sorted(_rows(out), key=lambda r: r["path"]) == sorted(_rows(one), key=lambda r: r["path"])
    parts = sorted((tmp_path / "two.jsonl.parts").iterdir())
    assert [p.name for p in parts] == ["part-00000-of-00002.jsonl", "part-00001-of-00002.jsonl"]
    assert [len(_rows(p)) for p in parts] == [7, 6]
    # a file it did not write, as --out --resume: every rank refuses before any captions, nothing written
    foreign = tmp_path / "refs.json"
    foreign.write_text('{"annotations": []}')
    cmd[cmd.index("--out") + 1:cmd.index("--out") + 2] = [str(foreign), "--resume"]
    cmd[cmd.index("--master_port") + 1] = str(port + 1)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "exitcode: 2" in proc.stderr, proc.stderr[-3000:]     # torchrun exits 1 itself
    assert "rank 0: " + str(foreign) in proc.stderr and "not a caption file written by" in proc.stderr
    assert foreign.read_text() == '{"annotations": []}' and not (tmp_path / "refs.json.parts").exists()


def test_an_export_folders_identity_covers_every_file(tmp_path):
    """--model DIR: the recorded identity is a SHA-256 over each file's name and content (a swapped word changes it)."""
    from types import SimpleNamespace

    from fsgr.commands.caption import model_sha256

    folder = tmp_path / "export"
    (folder / "sub").mkdir(parents=True)
    (folder / "vocab.json").write_text('["a", "b"]')
    (folder / "sub" / "model.bin").write_bytes(b"\x00\x01")
    args = SimpleNamespace(checkpoint=None, model=str(folder))
    first = model_sha256(args)
    assert first == model_sha256(args) and len(first) == 64
    (folder / "vocab.json").write_text('["b", "a"]')
    assert model_sha256(args) != first
    (folder / "vocab.json").write_text('["a", "b"]')
    (folder / "sub" / "model.bin").rename(folder / "model.bin")         # same bytes, another name
    assert model_sha256(args) != first
