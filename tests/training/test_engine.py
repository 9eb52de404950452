"""End-to-end training tests on a tiny real FSGR model (CLIP width 64, 4x4 patches) and tiny real JPEG data."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from fsgr.cli import main as cli_main
from fsgr.config import load_config
from fsgr.errors import CheckpointError
from fsgr.training import train
from fsgr.core.checkpoint import load_checkpoint
from fsgr.training.engine import NonFiniteLossError
from fsgr.training.logging import read_metrics


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_run_config):
    """XE for one epoch (with the patch contrastive loss), then one SCST epoch (sample mode), then test."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg_path = tiny_run_config(tmp, train={"max_epochs": 1, "xe_most": 1, "contrastive_weight": 0.25},
                    scst={"enabled": True, "mode": "sample"})
    summary = train(load_config(cfg_path), progress=False)
    return tmp / "run", summary


def _rows(run: Path, kind: str) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == kind]


def test_a_finished_run_writes_every_file(trained):
    run, summary = trained
    assert summary["status"] == "finished" and summary["phase"] == "done"
    for rel in ("config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.jsonl", "summary.json",
                "predictions/val_xe0.json", "predictions/val_scst0.json", "predictions/test_best.json"):
        assert (run / rel).is_file(), rel
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())


def test_train_rows_carry_phase_step_loss_and_lr_every_step(trained):
    run, _ = trained
    train_rows = _rows(run, "train")
    assert {r["phase"] for r in train_rows} == {"xe", "scst"}
    assert all({"phase", "step", "loss", "lr"} <= set(r) and r["lr"] > 0 for r in train_rows)
    xe = [r for r in train_rows if r["phase"] == "xe"]
    assert [r["step"] for r in xe] == list(range(1, len(xe) + 1))        # log_every = 1
    assert all("reward" in r for r in train_rows if r["phase"] == "scst")


def test_xe_loss_is_nll_plus_weighted_supcon(trained):
    run, _ = trained
    xe = [r for r in _rows(run, "train") if r["phase"] == "xe"]
    assert all(r["contrastive"] > 0 for r in xe)                          # SupCon is on and reported
    assert all(abs(r["loss"] - (r["nll"] + 0.25 * r["contrastive"])) < 1e-5 for r in xe)


def test_lr_rows_once_per_epoch_with_the_backbone_scale(trained):
    run, _ = trained
    lr_rows = _rows(run, "lr")
    assert [(r["phase"], r["epoch"]) for r in lr_rows] == [("xe", 0), ("scst", 0)]
    assert lr_rows[0]["lr"]["backbone"] == pytest.approx(0.1 * lr_rows[0]["lr"]["captioner"])


def test_validation_each_epoch_then_test_on_the_best_checkpoint(trained):
    run, summary = trained
    evals = _rows(run, "eval")
    assert [(r["split"], r["phase"]) for r in evals] == [("val", "xe"), ("val", "scst"), ("test", summary["best_phase"])]
    assert all("CIDEr" in r["scores"] for r in evals) and "loss" in evals[0]
    preds = json.loads((run / "predictions" / "val_xe0.json").read_text())
    assert len(preds) == 6 and all(set(p) == {"image_id", "caption"} for p in preds)
    assert set(summary["test"]) >= {"BLEU-4", "CIDEr"}


def test_summary_names_the_scst_recipe(trained):
    _, summary = trained
    assert summary["scst_mode"] == "sample" and "mean-of-others" in summary["scst_recipe"]


def test_last_checkpoint_holds_state_vocab_config_and_rng(trained):
    run, _ = trained
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ck["state"]["phase"] == "done" and ck["vocab_itos"][:4] == ["<unk>", "<pad>", "<bos>", "<eos>"]
    assert ck["config"]["train"]["contrastive_weight"] == 0.25 and len(ck["rng"]) == 1


def _images(tiny_data, n: int) -> list[Path]:
    return sorted(tiny_data.parent.glob("img_*.jpg"))[:n]


def test_captioner_gives_the_same_captions_for_paths_and_pil_images(trained, tiny_data):
    import fsgr

    run, _ = trained
    cap = fsgr.Captioner.from_checkpoint(run / "checkpoints" / "best.pt", device="cpu")
    images = _images(tiny_data, 2)
    from_paths = cap.caption([str(p) for p in images])
    assert from_paths == cap.caption([Image.open(p) for p in images])
    assert all(isinstance(c, str) for c in from_paths)


def test_caption_verb_names_bad_files_and_captions_the_rest(trained, tiny_data, tmp_path, capsys):
    import fsgr

    run, _ = trained
    best = run / "checkpoints" / "best.pt"
    image = _images(tiny_data, 1)[0]
    expected = fsgr.Captioner.from_checkpoint(best, device="cpu").caption([str(image)])[0]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    rc = cli_main(["caption", "--checkpoint", str(best), str(image), str(bad), str(tmp_path / "missing.jpg")])
    out, err = capsys.readouterr()
    assert rc == 1
    assert out.splitlines() == [f"{image}\t{expected}"]
    assert "broken.jpg" in err and "missing.jpg" in err and "Traceback" not in err


def test_explain_verb_draws_a_png(trained, tiny_data, tmp_path):
    run, _ = trained
    png = tmp_path / "map.png"
    assert cli_main(["explain", "--checkpoint", str(run / "checkpoints" / "best.pt"), str(_images(tiny_data, 1)[0]),
                     "--out", str(png)]) == 0
    drawn = Image.open(png)
    assert drawn.format == "PNG" and drawn.width == 448 and drawn.height > 448


def test_evaluate_verb_prints_and_writes_scores(trained, tmp_path, capsys):
    run, _ = trained
    preds = tmp_path / "preds.json"
    assert cli_main(["evaluate", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--split", "test", "--beam", "2",
                     "--out", str(preds)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["split"] == "test" and report["num_images"] == 6 and "CIDEr" in report
    # same precision (CPU: fp32), beam and checkpoint as the trainer's final test: the same scores
    assert report["precision"] == "fp32" and report["CIDEr"] == trained[1]["test"]["CIDEr"]
    assert len(json.loads(preds.read_text())) == 6
    assert json.loads((tmp_path / "preds.json.scores.json").read_text())["CIDEr"] == report["CIDEr"]


def test_evaluate_takes_positional_overrides_like_every_verb(trained, tmp_path, capsys):
    best = str(trained[0] / "checkpoints" / "best.pt")
    # the checkpoint as the first word or as --checkpoint; key=value anywhere after it
    assert cli_main(["evaluate", best, "eval.max_images=2", "--split", "test", "--beam", "1", "eval.metrics=bleu"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out.strip().splitlines()[-1])
    assert report["num_images"] == 2 and "BLEU-4" in report and "CIDEr" not in report and "deprecated" not in err
    assert cli_main(["evaluate", "--checkpoint", best, "--split", "test", "eval.max_images=3", "--beam", "1"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["num_images"] == 3
    # --set is the old spelling: it still works and says once that it is deprecated
    assert cli_main(["evaluate", best, "--set", "eval.max_images=1", "--set", "eval.beam_size=1", "--split", "test"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["num_images"] == 1 and err.count("--set is deprecated") == 1


@pytest.mark.parametrize("words,needle", [
    (["train.lr=1"], "name a checkpoint"),
    (["{best}", "model.dropout=0"], "model.dropout"),
    (["{best}", "eval.nope=1"], "eval.nope"),
    (["{best}", "noequals"], "key=value"),
])
def test_evaluate_refuses_bad_overrides_in_one_line(trained, capsys, words, needle):
    best = str(trained[0] / "checkpoints" / "best.pt")
    assert cli_main(["evaluate", *[w.format(best=best) for w in words]]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_resume_is_bit_exact_mid_epoch(tmp_path, tiny_run_config):
    # dropout, Gumbel noise and the contrastive loss all ON: every RNG state must be restored.
    common = {"max_epochs": 2, "xe_most": 2, "contrastive_weight": 0.25}
    full = tiny_run_config(tmp_path, "full", train=common)
    part = tiny_run_config(tmp_path, "part", train=common)
    train(load_config(full, ["train.max_steps=16"]), progress=False)          # 12 steps/epoch: stops in epoch 1
    first = train(load_config(part, ["train.max_steps=7"]), progress=False)   # stops mid-epoch 0
    assert first["status"] == "max_steps"
    with pytest.raises(CheckpointError, match="train.lr"):
        train(load_config(part, ["train.max_steps=16", "train.lr=0.5"]), resume=True, progress=False)
    train(load_config(part, ["train.max_steps=16"]), resume=True, progress=False)
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert sorted(a) == sorted(b) == list(range(1, 17))
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6
    assert len({round(v, 6) for v in a.values()}) > 8      # the losses really change from step to step


def test_new_run_refuses_existing_run_dir(tmp_path, tiny_run_config):
    cfg = tiny_run_config(tmp_path, train={"max_steps": 1})
    train(load_config(cfg), progress=False)
    with pytest.raises(Exception, match="--resume"):
        train(load_config(cfg), progress=False)


@pytest.mark.parametrize("artefact", ["metrics.jsonl", "config.yaml", "summary.json", "predictions/val_xe0.json"])
def test_new_run_refuses_a_run_dir_holding_any_artefact(tmp_path, tiny_run_config, artefact):
    cfg = tiny_run_config(tmp_path, train={"max_steps": 1})
    (tmp_path / "run" / artefact).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "run" / artefact).write_text("{}")
    with pytest.raises(Exception, match=f"holds a run already.*{artefact.split('/')[0]}.*--resume"):
        train(load_config(cfg), progress=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [artefact.split("/")[0]]


def test_resume_without_a_checkpoint_creates_nothing(tmp_path, tiny_run_config, capsys):
    cfg = tiny_run_config(tmp_path, train={"max_steps": 1})
    assert cli_main(["train", str(cfg), "--resume", "--no-progress"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_non_finite_loss_stops_with_image_ids(tmp_path, tiny_run_config):
    cfg = tiny_run_config(tmp_path, train={"lr": 1e30, "lr_warmup_epochs": 0})
    with pytest.raises(NonFiniteLossError, match=r"batch image ids \[\d+.*(checkpoint|no checkpoint)"):
        train(load_config(cfg), progress=False)


def test_scst_beam_mode(tmp_path, tiny_run_config):
    cfg = tiny_run_config(tmp_path, train={"max_epochs": 1, "xe_most": 1, "max_steps": 14, "contrastive_weight": 0.0},
               scst={"enabled": True, "mode": "beam", "num_samples": 3})
    summary = train(load_config(cfg), progress=False)
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    scst = [r for r in rows if r["phase"] == "scst"]
    assert len(scst) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) and 0 <= r["reward"] for r in scst)
    assert summary["scst_mode"] == "beam" and "<eos> dropped" in summary["scst_recipe"]
    assert scst[0]["lrs"] == {"captioner": pytest.approx(1e-5)}    # backbone frozen in SCST


def _one_and_two_processes(tmp_path, tiny_run_config, launch, over):
    """Train the same config in one process and under torchrun with two (gloo, CPU); their per-step train rows."""
    one = tiny_run_config(tmp_path, "one")
    two = tiny_run_config(tmp_path, "two")
    train(load_config(one, over), progress=False)
    launch.train(two, over, processes=2)
    assert load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["world_size"] == 2
    rows = [{r["step"]: r for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["kind"] == "train"}
            for run in ("one", "two")]
    return rows[0], rows[1]


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path, tiny_run_config, launch):
    a, b = _one_and_two_processes(tmp_path, tiny_run_config, launch, ["train.max_steps=4", *launch.no_noise,
                                                                      "train.batch_size=20", "data.batching=caption"])
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    assert max(abs(a[s]["loss"] - b[s]["loss"]) for s in a) <= 1e-4


@pytest.mark.slow
def test_ddp_uneven_global_batches_match_one_process(tmp_path, tiny_run_config, launch):
    # 3 images (15 captions) per XE step and 3 images per SCST step over 2 processes: 2 + 1 each step. Beam-mode
    # SCST: sampling would draw from each process's own generator. 24 training images: 8 XE steps, then SCST.
    over = ["train.max_steps=10", *launch.no_noise, "train.batch_size=15", "data.batching=image", "train.max_epochs=1",
            "train.xe_most=1", "scst.enabled=true", "scst.mode=beam", "scst.num_samples=2", "scst.batch_images=3"]
    a, b = _one_and_two_processes(tmp_path, tiny_run_config, launch, over)
    assert sorted(a) == sorted(b) == list(range(1, 11))
    assert [a[s]["phase"] for s in sorted(a)] == ["xe"] * 8 + ["scst"] * 2
    for s in a:
        assert abs(a[s]["loss"] - b[s]["loss"]) <= 1e-4, (s, a[s], b[s])
    assert max(abs(a[s]["reward"] - b[s]["reward"]) for s in (9, 10)) <= 1e-4


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGUSR1, 138)])
def test_a_signal_saves_and_exits_with_its_code(tmp_path, tiny_run_config, launch, signum, code):
    # saved and resumable, but not a success: `fsgr train ... && fsgr evaluate ...` must stop
    cfg = tiny_run_config(tmp_path, train={"max_epochs": 50, "xe_most": 50, "xe_least": 50})
    proc = subprocess.Popen(launch.command(cfg, []), env=launch.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and '"kind": "train"' in metrics.read_text()):
        time.sleep(0.2)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and "--resume" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "interrupted" and summary["signal"] == signal.Signals(signum).name
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]
    assert state["global_step"] == summary["global_step"] >= 1


def test_gradient_accumulation_matches_one_big_batch(tmp_path, tiny_run_config):
    # prompt dropout draws per-image masks from one stream per forward pass, so micro-batches draw others: off here
    over = ["train.max_steps=3", "model.dropout=0.0", "model.semantic.gumbel=false", "train.contrastive_weight=0",
            "train.batch_size=20", "model.backbone.prompts.dropout=0.0"]
    train(load_config(tiny_run_config(tmp_path, "big"), over), progress=False)
    train(load_config(tiny_run_config(tmp_path, "acc"), [*over, "train.grad_accum=2"]), progress=False)
    a, b = _losses(tmp_path / "big"), _losses(tmp_path / "acc")
    assert sorted(a) == sorted(b) == [1, 2, 3]
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-5


def test_max_steps_at_an_epoch_end_is_not_a_finished_run(tmp_path, tiny_run_config):
    # 12 steps per epoch: the step budget runs out exactly when epoch 0 ends, with one XE epoch still to go
    cfg = tiny_run_config(tmp_path, train={"max_epochs": 2, "xe_most": 2, "contrastive_weight": 0.0, "max_steps": 12})
    summary = train(load_config(cfg), progress=False)
    assert summary["status"] == "max_steps" and summary["phase"] == "xe" and summary["epoch"] == 1
    assert "test" not in summary                                  # test is scored once, at the real end only
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert not [r for r in rows if r["kind"] == "eval" and r["split"] == "test"]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]
    assert state["status"] == "max_steps" and state["global_step"] == 12


def test_train_rows_lr_is_the_captioner_lr_in_both_phases(trained):
    # `lr` is the LR that train.lr / scst.lr set (the captioner group), whatever the group order; `lrs` has them all
    run, _ = trained
    rows = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    assert {r["phase"] for r in rows} == {"xe", "scst"}
    assert all(r["lr"] == r["lrs"]["captioner"] for r in rows)
    assert all(r["lrs"]["backbone"] == pytest.approx(0.1 * r["lr"]) for r in rows if r["phase"] == "xe")


def test_validation_loss_uses_the_offline_patch_labels(tmp_path, tiny_run_config):
    # every patch of every image gets its own label: no patch has a positive, so SupCon is exactly 0 with these
    # labels (the semantic head's online ids, 12 concepts over 16 patches, always have positives)
    import numpy as np

    ids = np.arange(1000, 1036)
    labels = np.arange(len(ids) * 16).reshape(len(ids), 16)
    npz = tmp_path / "labels.npz"
    np.savez(npz, image_ids=ids, labels=labels)
    cfg = tiny_run_config(tmp_path, train={"max_epochs": 1, "xe_most": 1, "contrastive_weight": 0.25},
               data={"patch_labels": str(npz)}, eval={"test_at_end": False})
    train(load_config(cfg), progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all(r["contrastive"] == 0.0 for r in rows if r["kind"] == "train")
    (val,) = [r for r in rows if r["kind"] == "eval"]
    assert val["contrastive"] == 0.0 and val["loss"] == pytest.approx(val["nll"])


def test_train_verb_takes_overrides_after_its_flags(tmp_path, tiny_run_config, capsys):
    # `fsgr train CONFIG --resume train.max_steps=N` is how a stopped run gets a bigger budget
    cfg = str(tiny_run_config(tmp_path, train={"contrastive_weight": 0.0}))
    assert cli_main(["train", cfg, "--no-progress", "train.max_steps=1"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["global_step"] == 1
    assert cli_main(["train", cfg, "train.log_every=1", "--resume", "--no-progress", "train.max_steps=2"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["global_step"] == 2
    with pytest.raises(SystemExit) as exit_:                                  # anything else is still refused
        cli_main(["train", cfg, "--resume", "--bogus-flag"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --bogus-flag" in capsys.readouterr().err


def test_evaluate_and_caption_refuse_a_beam_below_one(trained, tiny_data, capsys):
    # beam 0 used to decode greedily while `evaluate` reported the config's beam (0 is falsy) as the one used
    best = str(trained[0] / "checkpoints" / "best.pt")
    image = str(sorted(tiny_data.parent.glob("img_*.jpg"))[0])
    assert cli_main(["evaluate", "--checkpoint", best, "--beam", "0"]) == 2
    assert "--beam" in capsys.readouterr().err
    assert cli_main(["caption", "--checkpoint", best, "--beam", "-1", image]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--beam" in err
    assert cli_main(["caption", "--checkpoint", best, "--batch-size", "0", image]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--batch-size" in err and "internal error" not in err


def test_explain_and_caption_convert_images_the_same_way(trained, tmp_path):
    # a 16-bit grey PNG: PIL's own convert("RGB") clips it to white; fsgr's one conversion rescales it (x / 257)
    import numpy as np

    import fsgr
    from fsgr.data.images import open_image, to_rgb

    cap = fsgr.Captioner.from_checkpoint(trained[0] / "checkpoints" / "best.pt", device="cpu")
    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((40, 40), 30000, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    shown = np.asarray(cap.explain(str(path)).image)
    assert shown.shape == (40, 40, 3) and abs(int(shown.mean()) - 30000 // 257) <= 1
    assert np.array_equal(shown, np.asarray(to_rgb(open_image(path))))
    assert torch.equal(cap.preprocess(str(path)), cap.preprocess(Image.open(path)))


def test_explain_writes_the_format_its_extension_names(trained, tiny_data, tmp_path, capsys):
    best = str(trained[0] / "checkpoints" / "best.pt")
    image = str(sorted(tiny_data.parent.glob("img_*.jpg"))[0])
    for name, fmt in (("map.jpg", "JPEG"), ("map.JPEG", "JPEG"), ("map.png", "PNG")):
        assert cli_main(["explain", "--checkpoint", best, image, "--out", str(tmp_path / name)]) == 0
        assert Image.open(tmp_path / name).format == fmt
    assert cli_main(["explain", "--checkpoint", best, image, "--out", str(tmp_path / "map")]) == 2
    assert "extension" in capsys.readouterr().err and not (tmp_path / "map").exists()


def test_caption_quotes_paths_holding_a_tab_or_newline(trained, tiny_data, tmp_path, capsys):
    best = str(trained[0] / "checkpoints" / "best.pt")
    source = sorted(tiny_data.parent.glob("img_*.jpg"))[0]
    odd = tmp_path / "a\tb\nc.jpg"
    odd.write_bytes(source.read_bytes())
    plain = tmp_path / "plain.jpg"
    plain.write_bytes(source.read_bytes())
    assert cli_main(["caption", "--checkpoint", best, str(odd), str(plain)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    quoted, caption = lines[0].split("\t")
    assert json.loads(quoted) == str(odd) and caption and lines[1].split("\t")[0] == str(plain)


def test_a_format_1_checkpoint_still_captions(trained, tiny_data, tmp_path):
    # written as fsgr wrote checkpoints before format 2 (plain torch.save, numpy RNG arrays, no checksum)
    import numpy as np

    import fsgr

    best = trained[0] / "checkpoints" / "best.pt"
    payload = load_checkpoint(best)
    old = {k: v for k, v in payload.items() if k != "checksum"}
    old["format_version"] = 1
    old["rng"] = [{**r, "numpy": (r["numpy"][0], np.asarray(r["numpy"][1], dtype=np.uint32), *r["numpy"][2:])}
                  for r in payload["rng"]]
    v1 = tmp_path / "v1.pt"
    torch.save(old, v1)
    images = [str(p) for p in sorted(tiny_data.parent.glob("img_*.jpg"))[:3]]
    assert fsgr.Captioner.from_checkpoint(v1).caption(images) == fsgr.Captioner.from_checkpoint(best).caption(images)


def test_a_checkpoint_finds_its_relative_data_from_another_directory(tmp_path, monkeypatch, capsys, tiny_kit):
    work, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    data = tiny_kit.make_dataset(work / "data", n_train=10, n_val=2, n_test=2)
    elsewhere.mkdir()
    cfg = tiny_kit.config(Path("data") / data.name, Path("runs") / "rel", train={"max_steps": 1},
                          eval={"test_at_end": False})
    cfg["data"]["images"] = "data"
    tiny_kit.write(work / "rel.yaml", cfg)
    monkeypatch.chdir(work)
    assert cli_main(["train", "rel.yaml", "--no-progress"]) == 0
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    ckpt = work / "runs" / "rel" / "checkpoints" / "last.pt"
    assert cli_main(["evaluate", "--checkpoint", str(ckpt), "--split", "val", "--beam", "1"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["num_images"] == 2
    assert list(elsewhere.iterdir()) == []                           # nothing written where it ran


def test_an_epoch_without_a_whole_global_batch_is_refused_naming_both_sizes():
    from types import SimpleNamespace

    from fsgr.data.sampling import GlobalBatchSampler
    from fsgr.errors import ConfigError
    from fsgr.training import setup

    loader = SimpleNamespace(batch_sampler=GlobalBatchSampler(num_items=3, global_batch=5))
    with pytest.raises(ConfigError, match=r"training split \(3 items\) is smaller than one global batch \(5\)"):
        setup.steps_per_epoch(loader)
    assert setup.steps_per_epoch(SimpleNamespace(batch_sampler=GlobalBatchSampler(12, 5))) == 2


def test_a_run_that_died_before_its_first_checkpoint_starts_again_with_the_same_command(tmp_path, tiny_run_config,
                                                                                         capsys):
    cfg, run = str(tiny_run_config(tmp_path, train={"max_steps": 2}, eval={"test_at_end": False})), tmp_path / "run"
    dies = ["train", cfg, "train.lr=1e30", "--no-progress"]        # a non-finite loss in its first epoch
    for attempt in range(2):                                        # the same command runs again (and dies again)
        assert cli_main(dies) == 1                                  # steps were trained: a failure, not a refusal
        err = capsys.readouterr().err
        assert "non-finite" in err and "holds a run already" not in err
        assert (run / "config.yaml").is_file() and not list(run.glob("checkpoints/*.pt"))
    for resume in ([], ["--resume"]):                                # fixed, with or without --resume
        shutil.rmtree(run / "checkpoints", ignore_errors=True)
        (run / "metrics.jsonl").write_text('{"kind": "stale row"}\n')
        assert cli_main(["train", cfg, "--no-progress", *resume]) == 0
        assert "stopped before its first checkpoint; starting it again" in capsys.readouterr().err
        assert (run / "checkpoints" / "last.pt").is_file() and "stale row" not in (run / "metrics.jsonl").read_text()
