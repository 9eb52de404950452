"""Hostile but fair inputs to the CLI: each gets one clear line and the right exit status, never "internal error".

One parametrised case per probe: the command (placeholders filled from a tiny trained run and a few crafted files),
the expected exit status, and words the one-line message must hold. Exit 2 = usage/input refused before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from fsgr.cli import main



@pytest.fixture(scope="module")
def world(tmp_path_factory, write_hostile_checkpoint, training_helpers):
    """A tiny trained run (1 step) plus crafted files; returns the placeholder values."""
    from fsgr.config import load_config
    from fsgr.training import train

    tmp = tmp_path_factory.mktemp("probes")
    data = training_helpers.make_dataset(tmp / "data", n_train=10, n_val=2, n_test=2)
    tiny = training_helpers.tiny_config(data, tmp / "run", train={"max_steps": 1}, eval={"test_at_end": False})
    cfg = training_helpers.write_config(tmp / "tiny.yaml", tiny)
    train(load_config(cfg), progress=False)
    ckpt = tmp / "run" / "checkpoints" / "last.pt"
    img = tmp / "img.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(img)
    write_hostile_checkpoint(tmp / "evil.pt", tmp / "pwned")
    no_config = torch.load(ckpt, weights_only=True)
    del no_config["config"]
    from fsgr.core.checkpoint import atomic_save

    atomic_save({k: v for k, v in no_config.items() if k != "checksum"}, tmp / "noconfig.pt")
    refs = {"annotations": [{"image_id": 1, "caption": "a red square"}, {"image_id": 2, "caption": "a blue circle"}]}
    (tmp / "refs.json").write_text(json.dumps(refs))
    (tmp / "preds.json").write_text(json.dumps([{"image_id": 1, "caption": "a red square"},
                                                {"image_id": 2, "caption": "a circle"}]))
    (tmp / "preds_str.json").write_text(json.dumps([{"image_id": "1", "caption": "a red square"},
                                                    {"image_id": "2", "caption": "a circle"}]))
    (tmp / "refs_numbers.json").write_text(json.dumps({"annotations": [{"image_id": 1, "caption": 5},
                                                                       {"image_id": 2, "caption": None}]}))
    (tmp / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp / "deep.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    (tmp / "adir").mkdir()
    (tmp / "afile").write_text("x")
    return {"tmp": str(tmp), "cfg": str(cfg), "ckpt": str(ckpt), "img": str(img), "data": str(data)}


# (name, argv with {placeholders}, exit status, words the message holds)
PROBES = [
    # training values, refused where they enter (exit 2, before any work)
    ("batch-size-0", ["train", "{cfg}", "train.batch_size=0", "run.dir={tmp}/r1"], 2, ["train.batch_size", ">= 1"]),
    ("batch-size-negative", ["train", "{cfg}", "train.batch_size=-5", "run.dir={tmp}/r1"], 2, ["train.batch_size"]),
    ("grad-accum-0", ["train", "{cfg}", "train.grad_accum=0", "run.dir={tmp}/r1"], 2, ["train.grad_accum"]),
    ("lr-negative", ["train", "{cfg}", "train.lr=-0.1", "run.dir={tmp}/r1"], 2, ["train.lr"]),
    ("max-steps-negative", ["train", "{cfg}", "train.max_steps=-1", "run.dir={tmp}/r1"], 2, ["train.max_steps"]),
    ("max-epochs-0", ["train", "{cfg}", "train.max_epochs=0", "train.xe_least=3", "run.dir={tmp}/r1"], 2,
     ["train.max_epochs"]),
    ("scst-lr-negative", ["train", "{cfg}", "scst.lr=-1", "run.dir={tmp}/r1"], 2, ["scst.lr"]),
    ("eval-beam-0", ["train", "{cfg}", "eval.beam_size=0", "run.dir={tmp}/r1"], 2, ["eval.beam_size"]),
    ("eval-length-penalty-400", ["train", "{cfg}", "eval.length_penalty=400", "run.dir={tmp}/r1"], 2,
     ["eval.length_penalty"]),
    ("max-len-1", ["train", "{cfg}", "data.max_len=1", "run.dir={tmp}/r1"], 2, ["data.max_len"]),
    ("device-banana-train", ["train", "{cfg}", "--device", "banana", "run.dir={tmp}/r1"], 2, ["banana"]),
    ("device-cuda-on-cpu", ["train", "{cfg}", "--device", "cuda", "run.dir={tmp}/r1"], 2, ["cuda", "not available"]),
    ("run-dir-under-a-file", ["train", "{cfg}", "run.dir={tmp}/afile/run"], 2, ["run.dir", "afile", "is a file"]),
    ("demo-out-is-a-file", ["demo", "--out", "{tmp}/afile"], 2, ["--out", "afile", "not a folder"]),
    ("image-size-not-the-clips", ["train", "{cfg}", "data.image_size=7", "run.dir={tmp}/r1"], 2,
     ["data.image_size=7", "32x32"]),
    ("decoder-layers-0", ["train", "{cfg}", "model.decoder.layers=0", "run.dir={tmp}/r1"], 2,
     ["model.decoder.layers"]),
    ("dropout-1", ["train", "{cfg}", "model.dropout=1.5", "run.dir={tmp}/r1"], 2, ["model.dropout"]),
    ("check-data-max-len-0", ["check-data", "--format", "karpathy", "--annotations", "{data}", "--images", "{tmp}",
                              "--max-len", "0", "--quiet"], 2, ["--max-len 0"]),
    ("build-vocab-min-freq-negative", ["build-vocab", "--format", "karpathy", "--annotations", "{data}",
                                       "--min-freq", "-1", "--out", "{tmp}/v.json"], 2, ["--min-freq -1"]),
    ("config-is-a-directory", ["train", "{tmp}/adir"], 2, ["adir", "is a directory"]),
    ("config-deeply-nested", ["train", "{tmp}/deep.yaml"], 2, ["deep.yaml", "nested"]),
    # checkpoints
    ("checkpoint-missing", ["caption", "--checkpoint", "{tmp}/absent.pt", "{img}"], 2, ["absent.pt", "not found"]),
    ("checkpoint-is-a-directory", ["caption", "--checkpoint", "{tmp}/adir", "{img}"], 2, ["adir", "directory"]),
    ("checkpoint-runs-code", ["caption", "--checkpoint", "{tmp}/evil.pt", "{img}"], 2, ["evil.pt", "refused"]),
    ("checkpoint-without-config", ["caption", "--checkpoint", "{tmp}/noconfig.pt", "{img}"], 2,
     ["noconfig.pt", "no config"]),
    ("checkpoint-not-a-checkpoint", ["evaluate", "--checkpoint", "{tmp}/refs.json"], 2, ["refs.json", "checkpoint"]),
    # caption / evaluate / explain values
    ("caption-beam-above-vocab", ["caption", "--checkpoint", "{ckpt}", "--beam", "100000", "{img}"], 2,
     ["--beam 100000", "vocabulary"]),
    ("caption-device-banana", ["caption", "--checkpoint", "{ckpt}", "--device", "banana", "{img}"], 2, ["banana"]),
    ("caption-image-is-a-directory", ["caption", "--checkpoint", "{ckpt}", "{tmp}/adir"], 1, ["adir", "directory"]),
    # bulk --out: a file fsgr caption did not write is never modified (test_bulk checks every byte stays)
    ("caption-resume-into-an-image", ["caption", "--checkpoint", "{ckpt}", "--out", "{img}", "--resume", "{img}"], 2,
     ["img.png", "not a caption file written by"]),
    ("caption-resume-dev-null", ["caption", "--checkpoint", "{ckpt}", "--out", "/dev/null", "--resume", "{img}"], 2,
     ["/dev/null", "not a regular file"]),
    ("evaluate-beam-above-vocab", ["evaluate", "--checkpoint", "{ckpt}", "--beam", "100000"], 2, ["--beam", "vocab"]),
    ("evaluate-out-is-a-directory", ["evaluate", "--checkpoint", "{ckpt}", "--out", "{tmp}/adir"], 2,
     ["adir", "directory"]),
    ("evaluate-max-len-0", ["evaluate", "--checkpoint", "{ckpt}", "--max-len", "0"], 2, ["--max-len"]),
    # decoding values: one checker (DecodeSettings) for the CLI, the server and the Python API (issue 25, 4-5)
    ("caption-length-penalty-30", ["caption", "--checkpoint", "{ckpt}", "--length-penalty", "30", "{img}"], 2,
     ["--length-penalty 30", "between -10 and 10"]),
    ("caption-length-penalty-1e308", ["caption", "--checkpoint", "{ckpt}", "--length-penalty", "1e308", "{img}"], 2,
     ["--length-penalty 1e+308"]),
    ("caption-length-penalty-nan", ["caption", "--checkpoint", "{ckpt}", "--length-penalty", "nan", "{img}"], 2,
     ["--length-penalty nan"]),
    ("evaluate-length-penalty-400", ["evaluate", "--checkpoint", "{ckpt}", "--length-penalty", "400"], 2,
     ["--length-penalty 400"]),
    ("caption-beam-0", ["caption", "--checkpoint", "{ckpt}", "--num-beams", "0", "{img}"], 2, ["--num-beams", ">= 1"]),
    ("caption-temperature-without-sampling", ["caption", "--checkpoint", "{ckpt}", "--temperature", "0.5", "{img}"], 2,
     ["--temperature 0.5", "do_sample"]),
    ("caption-sampling-with-beams", ["caption", "--checkpoint", "{ckpt}", "--do-sample", "--num-beams", "3", "{img}"],
     2, ["--num-beams/--beam 3", "do_sample"]),
    ("caption-temperature-0", ["caption", "--checkpoint", "{ckpt}", "--do-sample", "--temperature", "0", "{img}"], 2,
     ["--temperature 0"]),
    ("caption-top-p-0", ["caption", "--checkpoint", "{ckpt}", "--do-sample", "--top-p", "0", "{img}"], 2,
     ["--top-p 0"]),
    ("caption-top-k-above-vocab", ["caption", "--checkpoint", "{ckpt}", "--do-sample", "--top-k", "100000", "{img}"],
     2, ["--top-k 100000", "words"]),
    ("caption-seed-negative", ["caption", "--checkpoint", "{ckpt}", "--do-sample", "--seed", "-1", "{img}"], 2,
     ["--seed -1"]),
    ("caption-more-sequences-than-beams", ["caption", "--checkpoint", "{ckpt}", "--num-beams", "2",
                                           "--num-return-sequences", "3", "{img}"], 2,
     ["--num-return-sequences 3", "beam size"]),
    ("explain-beam-above-vocab", ["explain", "--checkpoint", "{ckpt}", "{img}", "--out", "{tmp}/m.png", "--beam",
                                  "100000"], 2, ["--beam 100000", "vocabulary"]),
    ("explain-width-0", ["explain", "--checkpoint", "{ckpt}", "{img}", "--out", "{tmp}/m.png", "--width", "0"], 2,
     ["--width"]),
    ("explain-width-negative", ["explain", "--checkpoint", "{ckpt}", "{img}", "--out", "{tmp}/m.png", "--width",
                                "-3"], 2, ["--width"]),
    ("explain-width-huge", ["explain", "--checkpoint", "{ckpt}", "{img}", "--out", "{tmp}/m.png", "--width",
                            "10000000"], 2, ["--width"]),
    ("explain-top-0", ["explain", "--checkpoint", "{ckpt}", "{img}", "--out", "{tmp}/m.png", "--top", "0"], 2,
     ["--top"]),
    ("explain-out-under-a-file", ["explain", "--checkpoint", "{ckpt}", "{img}", "--out", "{tmp}/afile/m.png"], 2,
     ["afile"]),
    ("explain-out-unknown-format", ["explain", "--checkpoint", "{ckpt}", "{img}", "--out", "{tmp}/m.xyz"], 2,
     ["m.xyz", "format"]),
    ("explain-image-is-a-directory", ["explain", "--checkpoint", "{ckpt}", "{tmp}/adir", "--out", "{tmp}/m.png"], 2,
     ["adir", "directory"]),
    # score
    ("score-refs-is-a-directory", ["score", "--refs", "{tmp}/adir", "--preds", "{tmp}/preds.json"], 2,
     ["adir", "is a directory"]),
    ("score-refs-not-strings", ["score", "--refs", "{tmp}/refs_numbers.json", "--preds", "{tmp}/preds.json"], 2,
     ["refs_numbers.json", "not strings"]),
    ("score-id-types-differ", ["score", "--refs", "{tmp}/refs.json", "--preds", "{tmp}/preds_str.json"], 2,
     ["preds_str.json", "string", "integer"]),
    ("score-deeply-nested", ["score", "--refs", "{tmp}/deep.json", "--preds", "{tmp}/preds.json"], 2,
     ["deep.json", "nested"]),
    ("score-json-overwrites-input", ["score", "--refs", "{tmp}/refs.json", "--preds", "{tmp}/preds.json", "--json",
                                     "{tmp}/preds.json"], 2, ["--json", "preds.json", "input"]),
    ("score-json-under-a-file", ["score", "--refs", "{tmp}/refs.json", "--preds", "{tmp}/preds.json", "--json",
                                 "{tmp}/afile/out.json"], 2, ["afile"]),
    ("score-metrics-unknown", ["score", "--refs", "{tmp}/refs.json", "--preds", "{tmp}/preds.json", "--metrics",
                               "bogus"], 2, ["bogus", "clipscore", "refclipscore", "chair"]),
    ("compare-same-file-twice", ["compare", "--refs", "{tmp}/refs.json", "--preds", "{tmp}/preds.json",
                                 "{tmp}/preds.json"], 2, ["preds.json", "same file"]),
    ("compare-bootstrap-huge", ["compare", "--refs", "{tmp}/refs.json", "--preds", "{tmp}/preds.json",
                                "{tmp}/preds_str.json", "--bootstrap", "10000000"], 2, ["--bootstrap 10000000"]),
    ("compare-seed-negative", ["compare", "--refs", "{tmp}/refs.json", "--preds", "{tmp}/preds.json",
                               "{tmp}/preds_str.json", "--seed", "-1"], 2, ["--seed -1"]),
    ("ablate-bootstrap-huge", ["ablate", "{cfg}", "--variant", "a", "--bootstrap", "10000000", "--out", "{tmp}/r1"],
     2, ["--bootstrap 10000000"]),
    ("ablate-bootstrap-seed-negative", ["ablate", "{cfg}", "--variant", "a", "--bootstrap-seed", "-1", "--out",
                                        "{tmp}/r1"], 2, ["--bootstrap-seed -1"]),
    # the servers' results names hold no path: refused before a model is loaded or an image decoded
    ("caption-coco-results-a-path", ["caption", "--checkpoint", "{ckpt}", "--coco-results", "../../x", "{img}"], 2,
     ["--coco-results", "../../x"]),
    ("evaluate-coco-results-a-path", ["evaluate", "--checkpoint", "{ckpt}", "--coco-results", "../../x"], 2,
     ["--coco-results", "../../x"]),
    # data
    ("check-data-annotations-directory", ["check-data", "--format", "karpathy", "--annotations", "{tmp}/adir",
                                          "--images", "{tmp}", "--quiet"], 2, ["adir", "is a directory"]),
    ("check-data-json-overwrites-input", ["check-data", "--format", "karpathy", "--annotations",
                                          "{data}", "--images", "{tmp}", "--json", "{data}", "--quiet"], 2,
     ["--json", "input"]),
    ("build-vocab-m2-pkl-directory", ["build-vocab", "--from-m2-pkl", "{tmp}/adir", "--out", "{tmp}/v.json"], 2,
     ["adir", "is a directory"]),
    ("build-vocab-out-is-an-input", ["build-vocab", "--format", "karpathy", "--annotations", "{data}", "--out",
                                     "{data}"], 2, ["--out", "input"]),
    ("codebook-clip-is-a-directory", ["codebook", "--clip", "{tmp}/adir", "--classes", "coco80", "--out",
                                      "{tmp}/cb.pt"], 2, ["adir", "is a directory"]),
    ("codebook-clip-runs-code", ["codebook", "--clip", "{tmp}/evil.pt", "--classes", "coco80", "--out",
                                 "{tmp}/cb.pt"], 2, ["evil.pt", "refused"]),
    ("summary-bad-value", ["summary", "{cfg}", "train.batch_size=-1"], 2, ["train.batch_size"]),
    ("summary-unknown-key", ["summary", "{cfg}", "train.bogus=1"], 2, ["train.bogus"]),
    ("check-data-synthetic-absent", ["check-data", "--format", "synthetic", "--annotations", "{tmp}/noshapes",
                                     "--quiet"], 2, ["noshapes", "no synthetic shapes dataset"]),
    ("build-vocab-annotations-directory", ["build-vocab", "--format", "karpathy", "--annotations", "{tmp}/adir",
                                           "--out", "{tmp}/v.json"], 2, ["adir", "is a directory"]),
]


@pytest.mark.parametrize("argv, code, words", [p[1:] for p in PROBES], ids=[p[0] for p in PROBES])
def test_probe(world, capsys, argv, code, words):
    argv = [a.format(**world) for a in argv]
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "internal error" not in err and "Traceback" not in err, err[-2000:]
    assert rc == code, err[-2000:]
    message = next((line for line in lines if "error" in line or "refused" in line), lines[0] if lines else "")
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert not (Path(world["tmp"]) / "pwned").exists()
    assert not (Path(world["tmp"]) / "r1").exists()          # refused runs write nothing
    assert not (Path(world["tmp"]) / "noshapes").exists()    # a check never generates


def test_train_on_a_full_disk_after_an_epoch_exits_1(world, capsys, monkeypatch):
    """The checkpoint of a finished epoch cannot be written (ENOSPC, as a full disk raises it): the work was done and
    partly lost, so exit 1 (never 2, which says "refused before any work"), one line naming the file."""
    import errno
    import os

    def save_on_a_full_disk(obj, f):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    run_dir = Path(world["tmp"]) / "full-disk-run"
    rc = main(["train", world["cfg"], f"run.dir={run_dir}", "train.max_steps=1"])
    err = capsys.readouterr().err
    assert rc == 1, err[-2000:]
    assert "last.pt: no space left on device" in err and "internal error" not in err
    assert '"kind": "train"' in (run_dir / "metrics.jsonl").read_text()     # the step was trained, then the save failed
