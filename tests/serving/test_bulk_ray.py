"""`fsgr caption --engine ray` (fsgr.serving.bulk_ray) on a real local Ray cluster (2 CPUs): every image exactly once,
the plain path's captions, finished parts not redone on resume, error parts redone, parts merged into one file."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

ray = pytest.importorskip("ray", reason="the fsgr[ray] extra (pip install 'ray[data]') is not installed")

from fsgr.cli import main as cli_main  # noqa: E402
from fsgr.serving.bulk import list_images, read_caption_file  # noqa: E402
from fsgr.serving.bulk_ray import caption_with_ray  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _rows(path):
    return [r for r in map(json.loads, path.read_text().splitlines()) if "fsgr" not in r]


def test_ray_refuses_decoding_values_before_the_job_starts(tiny_checkpoint, tiny_images, tmp_path, capsys):
    # first in this file: no Ray cluster is running yet, and the refusal must not start one
    out = tmp_path / "parts"
    args = ["caption", "--checkpoint", str(tiny_checkpoint), "--engine", "ray", "--out", str(out), "--no-progress",
            str(tiny_images[0])]
    assert cli_main([*args, "--beam", "5000"]) == 2
    err = capsys.readouterr().err
    assert "--num-beams/--beam 5000: larger than the" in err and len(err.strip().splitlines()) == 1, err
    assert cli_main([*args, "--min-len", "30", "--max-len", "10"]) == 2
    assert "--min-new-tokens/--min-len 30: must be between 0 and max_len (10)" in capsys.readouterr().err
    assert not out.exists() and not ray.is_initialized()


def test_ray_parts_equal_the_plain_path_and_resume(local_ray, tiny_checkpoint, tiny_images, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for src in tiny_images[:9]:
        shutil.copy(src, folder / src.name)
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "parts"
    args = ["caption", "--checkpoint", str(tiny_checkpoint), "--engine", "ray", "--out", str(out), "--part-size", "4",
            "--ray-actors", "2", "--beam", "2", "--workers", "1", "--no-progress", str(folder)]
    assert cli_main(args) == 1                                    # the broken JPEG: an error row, exit 1
    assert "1 image(s) failed" in capsys.readouterr().err
    parts = sorted(out.iterdir())
    assert [p.name for p in parts] == [f"part-0000{k}-of-00003.jsonl" for k in range(3)]
    rows = [r for p in parts for r in _rows(p)]
    paths = list_images([str(folder)])
    assert Counter(r["path"] for r in rows) == Counter(paths) and len(paths) == 10    # every image exactly once
    # each caption is the plain path's, same checkpoint and settings
    plain = tmp_path / "plain.jsonl"
    cli_main(["caption", "--checkpoint", str(tiny_checkpoint), "--workers", "0", "--no-progress", "--beam", "2",
              "--out", str(plain), str(folder)])
    assert sorted(rows, key=lambda r: r["path"]) == sorted(_rows(plain), key=lambda r: r["path"])
    heads = [read_caption_file(p).header for p in parts]
    assert {h["checkpoint_sha256"] for h in heads} == {read_caption_file(plain).header["checkpoint_sha256"]}
    assert [h["part"] for h in heads] == [[0, 3], [1, 3], [2, 3]] and heads[0]["decoding"]["beam_size"] == 2
    assert {h["precision"] for h in heads} == {read_caption_file(plain).header["precision"]} == {"fp32"}
    # resume: the finished parts are not redone (marked), the part with the error row is
    finished = parts[0]
    marked = finished.read_text().replace('"caption": "', '"caption": "KEPT ', 1)
    finished.write_text(marked)
    (folder / "zz_broken.jpg").unlink()
    shutil.copy(tiny_images[9], folder / "zz_broken.jpg")           # the broken file, restored
    assert cli_main(args) == 2 and "--resume" in capsys.readouterr().err
    assert cli_main([*args, "--resume"]) == 0
    assert "8 already there" in capsys.readouterr().err and finished.read_text() == marked
    merged = tmp_path / "all.jsonl"
    assert cli_main(["caption", "--merge", str(out), "--out", str(merged)]) == 0
    assert sorted(r["path"] for r in _rows(merged)) == sorted(paths)
    assert not any("error" in r for r in _rows(merged))


def test_ray_python_function_refuses_foreign_parts(local_ray, tiny_checkpoint, tiny_images, tmp_path):
    out = tmp_path / "parts"
    out.mkdir()
    foreign = out / "part-00000-of-00001.jsonl"
    foreign.write_text('{"image_id": 1, "caption": "mine"}\n')
    with pytest.raises(Exception, match="not a caption file written by"):
        caption_with_ray(tiny_checkpoint, [str(p) for p in tiny_images[:2]], out, resume=True)
    assert foreign.read_text() == '{"image_id": 1, "caption": "mine"}\n'
    counts = caption_with_ray(tiny_checkpoint, [str(p) for p in tiny_images[:2]], tmp_path / "fresh", actors=1)
    assert counts.written == 2 and counts.failed == 0
