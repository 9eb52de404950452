"""Decoding controls (min_len, length_penalty, no_repeat_ngram) in greedy, beam search and sampling, checked against a
plain-Python beam search that re-runs the decoder over each whole prefix (no cache, no batching)."""

from __future__ import annotations

import math

import pytest
import torch

from fsgr.errors import ConfigError
from fsgr.models.decoding import DecodeSettings, beam_search, decode, greedy, sample
from test_decoding import BOS, EOS, PAD, _check_after_eos, _model


def _reference_beam(model, enc, image: int, k: int, max_len: int, min_len=0, length_penalty=0.0, no_repeat_ngram=0):
    """One image, one prefix at a time: -> [(words, summed log-prob)] best first (words without <bos>)."""
    beams = [([], 0.0, False)]                       # (words, score, finished)
    memory = enc.memory[image:image + 1]
    for _ in range(max_len):
        candidates = []
        for words, score, done in beams:
            if done:
                candidates.append((words + [PAD], score, True, len([w for w in words if w != PAD])))
                continue
            with torch.no_grad():
                lp = model.decoder(torch.tensor([[BOS] + words]), memory, enc.memory_pos)[0, -1].tolist()
            for w, value in enumerate(lp):
                if w in (PAD, BOS) or (w == EOS and len(words) < min_len):
                    continue
                n = no_repeat_ngram
                if n and any(words[i:i + n] == words[len(words) - n + 1:] + [w] for i in range(len(words) - n + 1)):
                    continue
                candidates.append((words + [w], score + value, w == EOS, len(words) + 1))
        rank = lambda c: c[1] / c[3] ** length_penalty if length_penalty else c[1]  # noqa: E731
        candidates.sort(key=rank, reverse=True)
        beams = [(w, s, d) for w, s, d, _ in candidates[:k]]
        if all(d for _, _, d in beams):
            break
    return [(w + [PAD] * (max_len - len(w)), s) for w, s, _ in beams]


CONTROLS = [{}, {"min_len": 6}, {"no_repeat_ngram": 2}, {"no_repeat_ngram": 1}, {"length_penalty": 1.0},
            {"min_len": 3, "no_repeat_ngram": 3, "length_penalty": 0.6}]


@pytest.mark.parametrize("controls", CONTROLS)
def test_beam_search_matches_the_reference(controls):
    model, enc = _model(1, eos_boost=2.5)
    res = beam_search(model, enc, beam_size=3, max_len=12, return_all=True, **controls)
    _check_after_eos(res.tokens)
    for image in range(3):
        ref = _reference_beam(model, enc, image, 3, 12, **controls)
        assert res.tokens[image].tolist() == [w for w, _ in ref]
        torch.testing.assert_close(res.seq_logprob[image], torch.tensor([s for _, s in ref]), atol=1e-4, rtol=0)
    nocache = beam_search(model, enc, beam_size=3, max_len=12, return_all=True, use_cache=False, **controls)
    assert torch.equal(nocache.tokens, res.tokens)


@pytest.mark.parametrize("controls", CONTROLS)
def test_greedy_matches_the_reference_with_one_beam(controls):
    model, enc = _model(2, eos_boost=1.5)
    g = greedy(model, enc, max_len=12, **controls)
    for image in range(3):
        assert g[image].tolist() == _reference_beam(model, enc, image, 1, 12, **controls)[0][0]
    one = decode(model, enc, DecodeSettings(beam_size=1, max_len=12, **controls), return_all=True)
    assert torch.equal(one.tokens[:, 0], g)
    torch.testing.assert_close(one.token_logprobs.sum(-1), one.seq_logprob)


def test_defaults_are_the_plain_search():
    model, enc = _model(3, eos_boost=1.0)
    plain = beam_search(model, enc, beam_size=4, max_len=15, return_all=True)
    neutral = beam_search(model, enc, beam_size=4, max_len=15, return_all=True, min_len=0, length_penalty=0.0,
                          no_repeat_ngram=0)
    assert torch.equal(plain.tokens, neutral.tokens) and torch.equal(plain.seq_logprob, neutral.seq_logprob)
    via_settings = decode(model, enc, DecodeSettings(beam_size=4, max_len=15))
    assert torch.equal(via_settings.tokens, plain.tokens[:, 0])


def _repeats(row: list[int], n: int) -> bool:
    words = [w for w in row if w not in (PAD, EOS)]
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def test_no_repeat_ngram_changes_a_caption_that_repeated():
    model, enc = _model(5)                                       # no <eos> boost: long captions that loop
    plain = beam_search(model, enc, beam_size=3, max_len=20).tokens
    assert any(_repeats(row, 2) for row in plain.tolist())       # the premise: some caption repeats a bigram
    fixed = beam_search(model, enc, beam_size=3, max_len=20, no_repeat_ngram=2).tokens
    for before, after in zip(plain.tolist(), fixed.tolist()):
        assert not _repeats(after, 2)
        assert (before != after) == _repeats(before, 2)
    assert not any(_repeats(row, 2) for row in greedy(model, enc, max_len=20, no_repeat_ngram=2).tolist())


def test_min_len_lengthens_a_short_caption():
    model, enc = _model(6, eos_boost=4.0)                        # <eos> early
    lengths = lambda t: [row.index(EOS) if EOS in row else len(row) for row in t.tolist()]  # noqa: E731
    short = lengths(beam_search(model, enc, beam_size=3, max_len=20).tokens)
    assert min(short) < 5
    longer = lengths(beam_search(model, enc, beam_size=3, max_len=20, min_len=5).tokens)
    assert all(n >= 5 for n in longer) and longer != short
    assert all(n >= 5 for n in lengths(greedy(model, enc, max_len=20, min_len=5)))


def test_length_penalty_prefers_longer_captions():
    model, enc = _model(6, eos_boost=2.0)
    lengths = lambda r: (r.tokens != PAD).sum(-1).float().mean().item()   # noqa: E731
    plain = beam_search(model, enc, beam_size=4, max_len=20)
    penalised = beam_search(model, enc, beam_size=4, max_len=20, length_penalty=2.0)
    assert lengths(penalised) > lengths(plain)
    # the reported score stays the summed log-prob, so the plain search's best is never below the penalised one's
    assert (plain.seq_logprob >= penalised.seq_logprob - 1e-5).all()


def test_sampling_obeys_the_controls():
    model, enc = _model(7, eos_boost=3.0)
    torch.manual_seed(0)
    tokens, lps = sample(model, enc, num_samples=6, max_len=14, min_len=4, no_repeat_ngram=1)
    for row in tokens.reshape(-1, 14).tolist():
        words = [w for w in row if w not in (PAD, EOS)]
        assert len(words) >= 4 and len(set(words)) == len(words)
    assert torch.isfinite(lps).all() and (lps <= 0).all()
    torch.manual_seed(0)
    plain, _ = sample(model, enc, num_samples=6, max_len=14)
    assert not torch.equal(plain, tokens)


@pytest.mark.parametrize("bad, match", [({"beam_size": 0}, "beam size"), ({"min_len": 30}, "min_len"),
                                        ({"no_repeat_ngram": -1}, "no_repeat_ngram"),
                                        ({"length_penalty": math.inf}, "length_penalty")])
def test_settings_refuse_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        DecodeSettings(**bad)
