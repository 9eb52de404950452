"""Decoding controls (min_len, length_penalty, no_repeat_ngram) in greedy, beam search and sampling, checked against a
plain-Python beam search that re-runs the decoder over each whole prefix (no cache, no batching)."""

from __future__ import annotations

import math

from types import SimpleNamespace

import pytest
import torch

from fsgr.errors import ConfigError
from fsgr.models.decoding import DecodeSettings, beam_search, decode, greedy, sample
from test_decoding import BOS, EOS, PAD, V, _check_after_eos, _model


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
    searched = {k: v for k, v in controls.items() if k != "length_penalty"}    # greedy ranks nothing
    g = greedy(model, enc, max_len=12, **searched)
    for image in range(3):
        assert g[image].tolist() == _reference_beam(model, enc, image, 1, 12, **controls)[0][0]
    # a settings' length_penalty (the eval config's) is allowed with one beam and changes nothing there
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


@pytest.mark.parametrize("bad, match", [({"beam_size": 0}, "beam_size 0"), ({"min_len": 30}, "min_len"),
                                        ({"no_repeat_ngram": -1}, "no_repeat_ngram"),
                                        ({"length_penalty": math.inf}, "length_penalty")])
def test_settings_refuse_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        DecodeSettings(**bad)


@pytest.mark.parametrize("bad, match", [
    ({"length_penalty": 30.0}, "between -10 and 10"), ({"length_penalty": math.nan}, "length_penalty"),
    ({"beam_size": 2.5}, "beam_size 2.5: must be an integer"), ({"do_sample": "yes"}, "true or false"),
    ({"temperature": 0.7}, "needs do_sample"), ({"seed": 3}, "needs do_sample"),
    ({"do_sample": True, "beam_size": 3}, "must be 1 with do_sample"),
    ({"do_sample": True, "beam_size": 1, "temperature": 0.0}, "temperature 0.0"),
    ({"do_sample": True, "beam_size": 1, "temperature": 1e308}, "temperature"),
    ({"do_sample": True, "beam_size": 1, "top_p": 0.0}, "top_p"),
    ({"do_sample": True, "beam_size": 1, "top_k": -1}, "top_k"),
    ({"do_sample": True, "beam_size": 1, "seed": -1}, "seed -1"),
    ({"do_sample": True, "beam_size": 1, "num_return_sequences": 101}, "at most 100"),
    ({"beam_size": 3, "num_return_sequences": 4}, "at most the beam size"),
    ({"beam_size": 1, "num_return_sequences": 2}, "at most the beam size")])
def test_settings_refuse_sampling_and_range_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        DecodeSettings(**bad)


def test_settings_checked_against_the_model():
    words = V - 2                                             # <pad> and <bos> are never generated
    assert DecodeSettings(beam_size=words).check_model(V, 25).beam_size == words
    for bad, match in [({"beam_size": words + 1}, f"the {words} words"), ({"max_len": 26}, "decoder.max_len"),
                       ({"do_sample": True, "beam_size": 1, "top_k": words + 1}, "top_k"),
                       ({"min_len": words, "max_len": 20, "no_repeat_ngram": 1}, "no_repeat_ngram 1")]:
        with pytest.raises(ConfigError, match=match):
            DecodeSettings(**bad).check_model(V, 25)


def test_hugging_face_names_map_onto_the_fields():
    section = DecodeSettings(beam_size=4, max_len=12)
    hf = DecodeSettings.from_config(section, num_beams=3, max_new_tokens=9, min_new_tokens=2, no_repeat_ngram_size=2)
    assert hf == DecodeSettings.from_config(section, beam_size=3, max_len=9, min_len=2, no_repeat_ngram=2)
    assert DecodeSettings.from_config(section, do_sample=True).beam_size == 1       # sampling has no beam
    with pytest.raises(TypeError, match="given twice"):
        DecodeSettings.from_config(section, num_beams=3, beam_size=3)
    with pytest.raises(TypeError, match="unknown decoding argument 'beams'"):
        DecodeSettings.from_config(section, beams=3)


def test_every_beam_score_is_finite_with_the_widest_beam_and_large_penalties():
    model, enc = _model(8, eos_boost=1.0)
    for penalty in (-10.0, 10.0):
        res = decode(model, enc, DecodeSettings(beam_size=V - 2, max_len=12, length_penalty=penalty), return_all=True)
        assert torch.isfinite(res.seq_logprob).all()
        _check_after_eos(res.tokens)


def _sampled(model, enc, **kw):
    return decode(model, enc, DecodeSettings(**{"beam_size": 1, "max_len": 14, "do_sample": True, **kw}),
                  return_all=True)


def test_sampling_is_reproducible_per_image_and_leaves_the_global_rng_alone():
    model, enc = _model(9, eos_boost=1.5)
    state = torch.get_rng_state()
    first = _sampled(model, enc, num_return_sequences=4, seed=11)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.tokens, _sampled(model, enc, num_return_sequences=4, seed=11).tokens)
    assert not torch.equal(first.tokens, _sampled(model, enc, num_return_sequences=4, seed=12).tokens)
    # an image's samples do not depend on the batch it is in
    alone = _sampled(model, SimpleNamespace(memory=enc.memory[2:], memory_pos=enc.memory_pos),
                     num_return_sequences=4, seed=11)
    assert torch.equal(alone.tokens[0], first.tokens[2])
    _check_after_eos(first.tokens)
    torch.testing.assert_close(first.token_logprobs.sum(-1), first.seq_logprob)


def test_sampled_words_follow_the_model_distribution():
    """One step from a fixed distribution, many draws: the frequencies match the probabilities (inverse CDF)."""
    model, enc = _model(10, eos_boost=0.5)
    res = _sampled(model, SimpleNamespace(memory=enc.memory[:1], memory_pos=enc.memory_pos), max_len=1,
                   num_return_sequences=100, seed=0)
    draws = torch.cat([res.tokens[0, :, 0]] + [
        _sampled(model, SimpleNamespace(memory=enc.memory[:1], memory_pos=enc.memory_pos), max_len=1,
                 num_return_sequences=100, seed=s).tokens[0, :, 0] for s in range(1, 40)])
    with torch.no_grad():
        probs = model.decoder(torch.tensor([[BOS]]), enc.memory[:1], enc.memory_pos)[0, -1].exp()
    probs[[PAD, BOS]] = 0
    probs /= probs.sum()
    freq = torch.bincount(draws, minlength=V).float() / draws.numel()
    assert freq[PAD] == 0 and freq[BOS] == 0
    assert (freq - probs).abs().max() < 0.03                  # 4,000 draws: a few standard errors


def test_top_k_and_top_p_keep_only_the_most_likely_words():
    model, enc = _model(11, eos_boost=0.5)
    one = SimpleNamespace(memory=enc.memory[:1], memory_pos=enc.memory_pos)
    with torch.no_grad():
        lp = model.decoder(torch.tensor([[BOS]]), enc.memory[:1], enc.memory_pos)[0, -1]
    lp[[PAD, BOS]] = float("-inf")
    order = lp.argsort(descending=True).tolist()
    top2 = set(_sampled(model, one, max_len=1, top_k=2, num_return_sequences=100, seed=1).tokens[0, :, 0].tolist())
    assert top2 == set(order[:2])
    probs = torch.softmax(lp, -1)[order]
    nucleus = int((probs.cumsum(0) < 0.5).sum()) + 1        # the fewest most-likely words holding half
    top_p = set(_sampled(model, one, max_len=1, top_p=0.5, num_return_sequences=100, seed=1).tokens[0, :, 0].tolist())
    assert top_p <= set(order[:nucleus]) and order[0] in top_p


def test_the_eval_config_declares_the_same_length_penalty_range():
    from dataclasses import fields

    from fsgr.fields import rule_of
    from fsgr.models.decoding import LENGTH_PENALTY_RANGE
    from fsgr.recipe_config import EvalConfig

    rule = rule_of(next(f for f in fields(EvalConfig) if f.name == "length_penalty"))
    assert (rule.ge, rule.le) == LENGTH_PENALTY_RANGE
