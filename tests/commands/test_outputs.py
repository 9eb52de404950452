"""Issue 25: no verb modifies a file it did not create. A user's file at an output path is refused (exit 2, one line,
left byte-identical); the verb's own earlier output is replaced, so re-running a command into it works."""

import json
from pathlib import Path

import pytest
from PIL import Image

from fsgr.cli import main as fsgr
from fsgr.commands.checks import output_file
from fsgr.errors import ConfigError

USER_BYTES = b"my notes, not fsgr's\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory, training_helpers):
    """A tiny trained run (1 step), refs/preds for the scorers, a COCO-named image and a nocaps image-info file."""
    from fsgr.config import load_config
    from fsgr.training import train

    tmp = tmp_path_factory.mktemp("outputs")
    data = training_helpers.make_dataset(tmp / "data", n_train=10, n_val=2, n_test=2)
    tiny = training_helpers.tiny_config(data, tmp / "run", train={"max_steps": 1}, eval={"test_at_end": False})
    cfg = training_helpers.write_config(tmp / "tiny.yaml", tiny)
    train(load_config(cfg), progress=False)
    img = tmp / "COCO_val2014_000000000042.jpg"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(img)
    (tmp / "nocaps_info.json").write_text(json.dumps({"images": [{"id": 7, "file_name": img.name}]}))
    (tmp / "refs.json").write_text(json.dumps({"annotations": [{"image_id": 1, "caption": "a red square"},
                                                               {"image_id": 2, "caption": "a blue circle"}]}))
    (tmp / "preds.json").write_text(json.dumps([{"image_id": 1, "caption": "a red square"},
                                                {"image_id": 2, "caption": "a circle"}]))
    return {"tmp": tmp, "cfg": str(cfg), "ckpt": str(tmp / "run" / "checkpoints" / "last.pt"), "img": str(img),
            "data": data}


def user_file(path: Path) -> Path:
    path.write_bytes(USER_BYTES)
    return path


def refused(capsys, argv, path: Path, verb: str) -> None:
    assert fsgr([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"exists and was not written by fsgr {verb}: remove it or choose another path" in err and str(path) in err
    assert path.read_bytes() == USER_BYTES


def test_json_reports_score_compare_check_data_check_semantics(world, capsys):
    tmp = world["tmp"]
    refs, preds = tmp / "refs.json", tmp / "preds.json"
    notes = user_file(tmp / "notes.txt")
    refused(capsys, ["score", "--refs", refs, "--preds", preds, "--json", notes], notes, "score")
    refused(capsys, ["compare", "--refs", refs, "--preds", preds, preds, "--names", "a,b", "--json", notes], notes,
            "compare")
    refused(capsys, ["check-semantics", world["cfg"], "--json", notes], notes, "check-semantics")
    report = tmp / "scores.json"
    for _ in range(2):            # the second run replaces the first one's report
        assert fsgr(["score", "--refs", str(refs), "--preds", str(preds), "--metrics", "bleu", "--json",
                     str(report)]) == 0
    assert json.loads(report.read_text())["signature"].startswith("fsgr:")
    forged = tmp / "forged.json"   # a "signature" that is not fsgr's does not make a file fsgr's
    forged.write_text(json.dumps({"signature": "mine"}))
    with pytest.raises(ConfigError, match="not written by fsgr score"):
        output_file("--json", str(forged), verb="score", kind="signed-json")
    deep = tmp / "deep.json"       # too deeply nested for json: refused in one line, no traceback
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for kind in ("signed-json", "pretrain-log"):
        with pytest.raises(ConfigError, match="not written by fsgr score"):
            output_file("--json", str(deep), verb="score", kind=kind)


def test_check_data_and_build_vocab_rerun_into_their_own_files(world, tmp_path, capsys):
    data = world["data"]
    vocab, report = tmp_path / "v.json", tmp_path / "r.json"
    base = ["--format", "karpathy", "--annotations", str(data)]
    for _ in range(2):
        assert fsgr(["build-vocab", *base, "--out", str(vocab), "--min-freq", "1"]) == 0
        assert fsgr(["check-data", *base, "--images", str(data.parent), "--vocab", str(vocab), "--json",
                     str(report)]) == 0
    notes = user_file(tmp_path / "notes.json")
    refused(capsys, ["build-vocab", *base, "--out", notes, "--min-freq", "1"], notes, "build-vocab")
    refused(capsys, ["check-data", *base, "--json", notes], notes, "check-data")


def test_evaluate_predictions_and_scores(world, capsys):
    tmp = world["tmp"]
    notes = user_file(tmp / "preds_notes.json")
    refused(capsys, ["evaluate", "--checkpoint", world["ckpt"], "--out", notes], notes, "evaluate")
    out = tmp / "eval" / "preds.json"
    for _ in range(2):
        assert fsgr(["evaluate", "--checkpoint", world["ckpt"], "--split", "test", "--out", str(out)]) == 0
    capsys.readouterr()
    user_file(Path(f"{out}.scores.json"))     # its sibling is no longer fsgr's: neither file is replaced
    assert fsgr(["evaluate", "--checkpoint", world["ckpt"], "--out", str(out)]) == 2
    assert Path(f"{out}.scores.json").read_bytes() == USER_BYTES
    assert "not written by fsgr evaluate" in capsys.readouterr().err


def test_caption_server_files(world, capsys):
    tmp = world["tmp"]
    results = tmp / "results"
    results.mkdir()
    coco = user_file(results / "captions_val2014_mine_results.json")
    nocaps = user_file(tmp / "nocaps.json")
    base = ["caption", "--checkpoint", world["ckpt"], world["img"]]
    refused(capsys, [*base, "--coco-results", "mine", "--results-dir", results], coco, "caption")
    refused(capsys, [*base, "--nocaps-results", nocaps, "--nocaps-info", tmp / "nocaps_info.json"], nocaps, "caption")
    nocaps.unlink()
    coco.unlink()
    for _ in range(2):
        assert fsgr([*base, "--coco-results", "mine", "--results-dir", str(results), "--nocaps-results", str(nocaps),
                     "--nocaps-info", str(tmp / "nocaps_info.json")]) == 0
    assert [r["image_id"] for r in json.loads(coco.read_text())] == [42]
    assert [r["image_id"] for r in json.loads(nocaps.read_text())] == [7]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_explain_marks_its_picture(world, capsys, suffix):
    tmp = world["tmp"]
    notes = tmp / f"notes{suffix}"
    Image.new("RGB", (8, 8)).save(notes)         # a real picture of the user's: still not explain's
    before = notes.read_bytes()
    argv = ["explain", "--checkpoint", world["ckpt"], world["img"], "--out", str(notes)]
    assert fsgr(argv) == 2 and notes.read_bytes() == before
    assert "not written by fsgr explain" in capsys.readouterr().err
    out = tmp / f"explained{suffix}"
    for _ in range(2):
        assert fsgr([*argv[:-1], str(out)]) == 0
    assert out.stat().st_size > 0


def test_pretrain_clip_log_and_weights(tmp_path, capsys):
    notes = user_file(tmp_path / "notes.txt")
    refused(capsys, ["pretrain-clip", "--out", tmp_path / "clip.pt", "--log", notes], notes, "pretrain-clip")
    refused(capsys, ["pretrain-clip", "--out", notes], notes, "pretrain-clip")
    log = tmp_path / "log.jsonl"        # rows as pretrain-clip appends them: recognised, appended to again
    log.write_text(json.dumps({"event": "data", "pool": 8}) + "\n" + json.dumps({"step": 1, "loss": 2.0}) + "\n")
    output_file("--log", str(log), verb="pretrain-clip", kind="pretrain-log")
    with log.open("a") as f:
        f.write("a line of mine\n")
    with pytest.raises(ConfigError, match="not written by fsgr pretrain-clip"):
        output_file("--log", str(log), verb="pretrain-clip", kind="pretrain-log")


def test_devices_and_empty_files_stay_allowed(tmp_path):
    empty = tmp_path / "empty.json"
    empty.touch()
    for path in ("/dev/null", str(empty)):
        output_file("--json", path, verb="score", kind="signed-json")
