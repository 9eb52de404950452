"""Codebook files: built with a CLIP text tower, saved, reloaded, and refused when they do not match."""

import json

import pytest
import torch
import torch.nn.functional as F

from fsgr.cli import main as cli_main
from fsgr.commands.checks import output_file
from fsgr.errors import CheckpointError, DataError
from fsgr.models.clip import load_clip, save_clip, tokenize, weights_fingerprint
from fsgr.models.codebook import Codebook, build_codebook, load_codebook, read_class_names, save_codebook

@pytest.fixture(scope="module")
def clip_file(clip, tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "tiny_clip.pt"
    save_clip(clip, path)
    return path


def test_shipped_class_lists():
    ram, coco = read_class_names("ram"), read_class_names("coco80")
    assert len(ram) == 4585 and ram[:2] == ["3D CG rendering", "3D glasses"] and "rubik's cube" in ram
    assert len(coco) == 80 and coco[0] == "person" and "toothbrush" in coco


def test_class_file_parsing_and_errors(tmp_path):
    good = tmp_path / "classes.txt"
    good.write_text("dog\n\n  red car  \ncat\n", encoding="utf-8")
    assert read_class_names(good) == ["dog", "red car", "cat"]
    dup = tmp_path / "dup.txt"
    dup.write_text("dog\ncat\ndog\n")
    with pytest.raises(DataError, match=r"'dog' appears twice \(entries 1 and 3\)"):
        read_class_names(dup)
    with pytest.raises(DataError, match="not found"):
        read_class_names(tmp_path / "absent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(DataError, match="empty"):
        read_class_names(empty)


def test_build_codebook_embeds_template_texts(clip):
    names = ["dog", "traffic light", "rubik's cube"]
    cb = build_codebook(clip, names, template="a photo of a {}.", batch_size=2)   # two batches
    with torch.no_grad():
        expected = F.normalize(clip.encode_text(tokenize([f"a photo of a {n}." for n in names])), dim=-1)
    assert cb.names == names and cb.size == 3 and cb.embed_dim == 32 and cb.embeddings.dtype == torch.float32
    assert torch.allclose(cb.embeddings, expected, atol=1e-6)
    assert torch.allclose(cb.embeddings.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert cb.clip_fingerprint == weights_fingerprint(clip)
    other = build_codebook(clip, names, template="{}")
    assert not torch.allclose(other.embeddings, cb.embeddings, atol=1e-3)
    with pytest.raises(DataError, match="no '\\{\\}'"):
        build_codebook(clip, names, template="a photo")


def test_save_load_round_trip_and_checks(clip, tmp_path):
    cb = build_codebook(clip, ["dog", "cat", "bird", "fish"])
    path = tmp_path / "cb.pt"
    save_codebook(cb, path)
    fp = weights_fingerprint(clip)
    loaded = load_codebook(path, expected_size=4, expected_fingerprint=fp, expected_dim=32)
    assert loaded.names == cb.names and loaded.template == cb.template and torch.equal(loaded.embeddings, cb.embeddings)
    with pytest.raises(CheckpointError, match=r"codebook has 4 concepts but the model is configured for 4585"):
        load_codebook(path, expected_size=4585)
    with pytest.raises(CheckpointError, match=rf"embedded with CLIP weights {fp}, but the model's CLIP is 0123456789abcdef"):
        load_codebook(path, expected_fingerprint="0123456789abcdef")
    with pytest.raises(CheckpointError, match="32-d but the CLIP embeds to 512-d"):
        load_codebook(path, expected_dim=512)


def test_reference_bare_tensor_is_accepted_without_fingerprint(tmp_path):
    raw = torch.randn(80, 32) * 3   # not normalised
    path = tmp_path / "coco_clip_text.pth"
    torch.save(raw.half(), path)
    with pytest.warns(UserWarning, match="no CLIP fingerprint"):
        cb = load_codebook(path, expected_size=80, expected_fingerprint="0123456789abcdef")
    assert cb.names is None and cb.clip_fingerprint is None and cb.size == 80
    assert torch.allclose(cb.embeddings, F.normalize(raw.half().float(), dim=-1))
    with pytest.raises(CheckpointError, match="80 concepts but the model is configured for 4585"):
        load_codebook(path, expected_size=4585)


def test_other_files_are_refused(tmp_path):
    for name, obj, pattern in (("dict.pt", {"text_embeddings": torch.zeros(3, 4)}, "not a codebook.*text_embeddings"),
                               ("cube.pt", torch.zeros(2, 3, 4), r"must be \(C, E\) floats")):
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError, match=pattern):
            load_codebook(tmp_path / name)
    with pytest.raises(CheckpointError, match="not found"):
        load_codebook(tmp_path / "absent.pt")


def test_cli_writes_codebook_for_shipped_and_custom_lists(clip, clip_file, tmp_path, capsys):
    out = tmp_path / "coco.pt"
    assert cli_main(["codebook", "--clip", str(clip_file), "--classes", "coco80", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cb = load_codebook(out, expected_size=80, expected_fingerprint=weights_fingerprint(load_clip(clip_file)))
    assert summary["classes"] == 80 and summary["clip_fingerprint"] == cb.clip_fingerprint == weights_fingerprint(clip)
    assert cb.names == read_class_names("coco80")
    expected = build_codebook(clip, cb.names[:3]).embeddings
    assert torch.allclose(cb.embeddings[:3], expected, atol=1e-6)

    classes = tmp_path / "mine.txt"
    classes.write_text("zebra\ngiraffe\n")
    out2 = tmp_path / "mine.pt"
    assert cli_main(["codebook", "--clip", str(clip_file), "--classes", str(classes), "--out", str(out2),
                     "--template", "{} in the wild"]) == 0
    cb2 = load_codebook(out2)
    assert cb2.names == ["zebra", "giraffe"] and cb2.template == "{} in the wild"


def test_cli_errors_are_one_line(clip_file, tmp_path, capsys):
    code = cli_main(["codebook", "--clip", str(clip_file), "--classes", str(tmp_path / "nope.txt"),
                     "--out", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nope.txt" in err and "class list not found" in err
    code = cli_main(["codebook", "--clip", str(tmp_path / "noclip.pt"), "--classes", "coco80",
                     "--out", str(tmp_path / "x.pt")])
    assert code == 2 and "CLIP checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_codebook_dataclass_len():
    cb = Codebook(names=["a", "b"], embeddings=torch.eye(2))
    assert len(cb) == 2 and cb.embed_dim == 2


def test_permuted_codebook_moves_every_object_row_and_keeps_background_rows():
    from fsgr.models.codebook import Codebook, permute_object_rows

    names = ["background", "red circle", "blue square", "green star", "striped background", "red star"]
    emb = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    book = Codebook(names=names, embeddings=emb)
    permuted = permute_object_rows(book, seed=3)
    assert permuted.names == names and torch.equal(permuted.embeddings[[0, 4]], emb[[0, 4]])
    objects = [1, 2, 3, 5]
    moved = permuted.embeddings[objects]
    assert all(not torch.equal(moved[i], emb[objects[i]]) for i in range(4))       # every object row moved
    assert sorted(map(tuple, moved.tolist())) == sorted(map(tuple, emb[objects].tolist()))   # among themselves
    assert torch.equal(permute_object_rows(book, seed=3).embeddings, permuted.embeddings)   # seeded


def test_codebook_replaces_only_its_own_file(clip_file, tmp_path, capsys):
    """Issue 25: a file `fsgr codebook` did not write (here a CLIP weights file) is refused and left as it was; the
    verb's own earlier codebook is replaced."""
    out = tmp_path / "book.pt"
    for _ in range(2):
        assert cli_main(["codebook", "--clip", str(clip_file), "--classes", "coco80", "--out", str(out)]) == 0
    assert load_codebook(out).size == 80
    other = tmp_path / "weights.pt"
    other.write_bytes(clip_file.read_bytes())
    assert cli_main(["codebook", "--clip", str(clip_file), "--classes", "coco80", "--out", str(other)]) == 2
    assert "exists and was not written by fsgr codebook" in capsys.readouterr().err
    assert other.read_bytes() == clip_file.read_bytes()
    output_file("--out", str(other), verb="pretrain-clip", kind="clip-weights")   # save_clip's: pretrain-clip's own
