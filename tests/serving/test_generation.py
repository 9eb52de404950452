"""`Captioner.caption` / `generate` with Hugging Face generate()'s controls on the tiny checkpoint: the default
captions are the plain search's (checked against a prefix-at-a-time reference), the old names still work, sampling is
reproducible for a seed, and the precision is fixed per Captioner."""

from __future__ import annotations

import pytest
import torch

from fsgr.errors import ConfigError
from fsgr.inference import Captioner


def _reference_beam(captioner, image_path, k: int, max_len: int) -> str:
    """The best caption of a plain-Python beam search: one prefix at a time through the decoder, no cache, no batch."""
    model, vocab = captioner.model, captioner.vocab
    with torch.no_grad():
        enc = model.encode(captioner.preprocess(image_path)[None])
    beams = [([], 0.0, False)]
    for _ in range(max_len):
        candidates = []
        for words, score, done in beams:
            if done:
                candidates.append((words, score, True))
                continue
            with torch.no_grad():
                lp = model.decoder(torch.tensor([[model.bos_id] + words]), enc.memory, enc.memory_pos)[0, -1]
            for w, value in enumerate(lp.tolist()):
                if w not in (model.pad_id, model.bos_id):
                    candidates.append((words + [w], score + value, w == model.eos_id))
        beams = sorted(candidates, key=lambda c: c[1], reverse=True)[:k]
        if all(done for _, _, done in beams):
            break
    return vocab.decode(beams[0][0], collapse_repeats=True)


def test_default_captions_are_the_plain_search(captioner, tiny_images):
    paths = [str(p) for p in tiny_images[:4]]
    e = captioner.cfg.eval
    default = captioner.caption(paths)
    assert default == [_reference_beam(captioner, p, e.beam_size, e.max_len) for p in paths]
    assert captioner.caption(paths, num_beams=1) == [_reference_beam(captioner, p, 1, e.max_len) for p in paths]
    # Hugging Face names and fsgr's older ones are the same controls
    hf = captioner.caption(paths, num_beams=2, max_new_tokens=8, min_new_tokens=3, no_repeat_ngram_size=2)
    assert hf == captioner.caption(paths, beam_size=2, max_len=8, min_len=3, no_repeat_ngram=2)
    assert captioner.caption(paths[0]) == default[:1]                      # one image: a list of one


def test_num_return_sequences_gives_the_best_beams(captioner, tiny_images):
    paths = [str(p) for p in tiny_images[:2]]
    lists = captioner.caption(paths, num_beams=3, num_return_sequences=2)
    generated = captioner.generate(torch.stack([captioner.preprocess(p) for p in paths]), num_beams=3,
                                   num_return_sequences=2)
    assert lists == [[text for text, _ in c.beams[:2]] for c in generated]
    assert [first for first, _ in lists] == captioner.caption(paths, num_beams=3)


def test_sampling_gives_distinct_captions_and_the_same_again_for_a_seed(captioner, tiny_images):
    paths = [str(p) for p in tiny_images[:3]]
    state = torch.get_rng_state()
    drawn = captioner.caption(paths, do_sample=True, num_return_sequences=4, seed=7)
    assert torch.equal(torch.get_rng_state(), state)                      # no global RNG touched
    assert all(len(captions) == 4 == len(set(captions)) for captions in drawn)
    assert captioner.caption(paths, do_sample=True, num_return_sequences=4, seed=7, batch_size=2) == drawn
    assert captioner.caption(paths[2], do_sample=True, num_return_sequences=4, seed=7) == drawn[2:]
    assert captioner.caption(paths, do_sample=True, num_return_sequences=4, seed=8) != drawn
    # top_k=1 keeps only the most likely word at each step: greedy's caption
    assert captioner.caption(paths, do_sample=True, top_k=1, seed=1) == captioner.caption(paths, num_beams=1)
    generated = captioner.generate(torch.stack([captioner.preprocess(p) for p in paths]), do_sample=True,
                                   num_return_sequences=4, seed=7, temperature=1.5)
    assert all(len(c.sequences) == 4 and all(lp < 0 for _, lp in c.sequences) for c in generated)


@pytest.mark.parametrize("kw, match", [({"num_beams": 10_000}, "larger than the"), ({"length_penalty": 30}, "between"),
                                       ({"max_new_tokens": 500}, "decoder.max_len"),
                                       ({"temperature": 0.5}, "needs do_sample"), ({"top_k": 10_000, "do_sample": True},
                                                                                "top_k"),
                                       ({"batch_size": 0}, "batch_size")])
def test_bad_values_are_refused_before_any_image_is_read(captioner, kw, match):
    with pytest.raises(ConfigError, match=match):
        captioner.caption("/nonexistent/image.jpg", **kw)
    with pytest.raises(TypeError, match="unknown decoding argument"):
        captioner.caption("/nonexistent/image.jpg", beams=3)


def test_precision_is_fixed_per_captioner(tiny_checkpoint, captioner, tiny_images):
    assert captioner.precision == "fp32"                                 # the tiny run trained in fp32 on the CPU
    bf16 = Captioner.from_checkpoint(tiny_checkpoint, device="cpu", precision="bf16")
    assert bf16.precision == "bf16" and bf16.amp_dtype is torch.bfloat16
    paths = [str(p) for p in tiny_images[:3]]
    texts = bf16.caption(paths)
    assert all(isinstance(t, str) and t for t in texts)
    x = torch.stack([captioner.preprocess(p) for p in paths])
    scores = [c.logprob for c in bf16.generate(x)]
    assert all(s < 0 for s in scores) and scores != [c.logprob for c in captioner.generate(x)]   # it ran in bf16
    assert Captioner.from_checkpoint(tiny_checkpoint, device="cpu", precision="train").precision == "fp32"
    with pytest.raises(ConfigError, match="precision 'fp64'"):
        Captioner.from_checkpoint(tiny_checkpoint, device="cpu", precision="fp64")


def test_the_cli_takes_the_same_controls_and_says_the_precision(tiny_checkpoint, captioner, tiny_images, tmp_path,
                                                                capsys):
    from fsgr.cli import main
    from fsgr.serving.bulk import read_caption_file

    paths = [str(p) for p in tiny_images[:2]]
    sampling = ["--do-sample", "--num-return-sequences", "3", "--seed", "5", "--top-p", "0.9"]
    assert main(["caption", "--checkpoint", str(tiny_checkpoint), "--workers", "0", *sampling, *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = captioner.caption(paths, do_sample=True, num_return_sequences=3, seed=5, top_p=0.9)
    assert lines == [f"{p}\t{c}" for p, captions in zip(paths, expected) for c in captions]
    out = tmp_path / "captions.jsonl"
    assert main(["caption", "--checkpoint", str(tiny_checkpoint), "--workers", "0", "--no-progress", "--out", str(out),
                 "--precision", "bf16", "--num-beams", "3", "--num-return-sequences", "2", *paths]) == 0
    written = read_caption_file(out)
    assert written.header["precision"] == "bf16" and written.header["decoding"]["num_return_sequences"] == 2
    for row in written.rows.values():
        assert len(row["captions"]) == 2 and row["captions"][0]["caption"] == row["caption"]


def test_the_server_takes_the_same_controls_and_says_the_precision(captioner, tiny_images):
    pytest.importorskip("starlette", reason="the serve extra (pip install fsgr[serve]) is not installed")
    pytest.importorskip("multipart", reason="the serve extra (pip install fsgr[serve]) is not installed")
    from starlette.testclient import TestClient

    from fsgr.serving.server import create_app

    data = tiny_images[0].read_bytes()
    fields = {"do_sample": "on", "num_return_sequences": "3", "seed": "5", "temperature": "1.2"}
    with TestClient(create_app(captioner)) as client:
        body = client.post("/api/caption", files={"image": ("a.jpg", data)}, data=fields).json()
        again = client.post("/api/caption", files={"image": ("a.jpg", data)}, data=fields).json()
        health = client.get("/healthz").json()
    expected = captioner.caption(str(tiny_images[0]), do_sample=True, num_return_sequences=3, seed=5,
                                 temperature=1.2)[0]
    assert [c["caption"] for c in body["captions"]] == expected == [c["caption"] for c in again["captions"]]
    assert body["precision"] == health["precision"] == "fp32" and body["decoding"]["do_sample"] is True
