from types import SimpleNamespace

import pytest
import torch

from fsgr.models.config import DecoderConfig
from fsgr.models.decoder import Decoder
from fsgr.models.decoding import beam_search, greedy, sample

PAD, BOS, EOS, V = 1, 2, 3, 17


def _model(seed=0, eos_boost=0.0):
    torch.manual_seed(seed)
    dec = Decoder(DecoderConfig(layers=2, d_model=32, heads=4, d_ff=64, max_len=25), V, PAD, 0.1, True).eval()
    with torch.no_grad():
        dec.out.weight.mul_(8.0)               # peakier distributions than at init, so captions differ per image
        dec.out.weight[EOS] += eos_boost * dec.out.weight[EOS].sign()
    model = SimpleNamespace(decoder=dec, bos_id=BOS, eos_id=EOS, pad_id=PAD)
    memory = torch.randn(3, 9, 32)
    return model, SimpleNamespace(memory=memory, memory_pos=torch.randn(1, 9, 32))


def _teacher_forced_logprob(model, encoded, words, rows=None):
    """Sum of log p(w_t) of a generated sequence (no <bos>) rescored with a full forward pass."""
    rows = torch.arange(words.shape[0]) if rows is None else rows
    tokens = torch.cat([torch.full((words.shape[0], 1), BOS), words], dim=1)
    with torch.no_grad():
        lp = model.decoder(tokens[:, :-1], encoded.memory[rows], encoded.memory_pos)
    lp = lp.gather(2, words[..., None])[..., 0]
    return (lp * (words != PAD)).sum(1), lp


def _check_after_eos(tokens):
    for row in tokens.reshape(-1, tokens.shape[-1]).tolist():
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1:])
        assert PAD not in row[: row.index(EOS) if EOS in row else len(row)]


def test_greedy_shapes_cache_equality_and_beam1_equals_greedy():
    model, enc = _model(eos_boost=2.0)
    g = greedy(model, enc, max_len=20)
    assert g.shape == (3, 20) and g.dtype == torch.long
    _check_after_eos(g)
    assert torch.equal(g, greedy(model, enc, max_len=20, use_cache=False))
    b1 = beam_search(model, enc, beam_size=1, max_len=20)
    assert torch.equal(b1.tokens, g)


@pytest.mark.parametrize("eos_boost", [0.0, 3.0])
def test_beam_with_cache_equals_without_and_scores_are_rescorable(eos_boost):
    model, enc = _model(1, eos_boost)
    a = beam_search(model, enc, beam_size=4, max_len=15, return_all=True)
    b = beam_search(model, enc, beam_size=4, max_len=15, return_all=True, use_cache=False)
    assert a.tokens.shape == (3, 4, 15) and a.token_logprobs.shape == (3, 4, 15) and a.seq_logprob.shape == (3, 4)
    assert torch.equal(a.tokens, b.tokens)
    torch.testing.assert_close(a.seq_logprob, b.seq_logprob, atol=1e-4, rtol=1e-4)
    _check_after_eos(a.tokens)
    # beams are sorted best-first; the score is the sum of the kept token log-probs (0 after <eos>) ...
    assert (a.seq_logprob[:, :-1] >= a.seq_logprob[:, 1:]).all()
    torch.testing.assert_close(a.token_logprobs.sum(-1), a.seq_logprob, atol=1e-4, rtol=1e-4)
    assert (a.token_logprobs[a.tokens == PAD] == 0).all()
    # ... and equals the teacher-forced log-prob of the returned sequence
    words = a.tokens.reshape(12, 15)
    total, _ = _teacher_forced_logprob(model, enc, words, torch.arange(3).repeat_interleave(4))
    torch.testing.assert_close(total.view(3, 4), a.seq_logprob, atol=1e-4, rtol=1e-4)
    # beams of an image are distinct; the best beam is never worse than greedy's caption
    for i in range(3):
        assert len({tuple(r) for r in a.tokens[i].tolist()}) == 4
    greedy_total, _ = _teacher_forced_logprob(model, enc, greedy(model, enc, max_len=15))
    assert (a.seq_logprob[:, 0] >= greedy_total - 1e-4).all()
    best = beam_search(model, enc, beam_size=4, max_len=15)
    assert torch.equal(best.tokens, a.tokens[:, 0]) and best.seq_logprob.shape == (3,)


def test_early_exit_when_every_beam_has_ended():
    model, enc = _model(2, eos_boost=200.0)         # <eos> is (nearly) certain at the first step
    calls = []
    step = model.decoder.step
    model.decoder.step = lambda tokens, cache: (calls.append(1), step(tokens, cache))[1]
    res = beam_search(model, enc, beam_size=3, max_len=20, return_all=True)
    assert (res.tokens[:, 0, 0] == EOS).all() and res.tokens.shape == (3, 3, 20)
    assert (res.tokens[:, 0, 1:] == PAD).all() and (res.seq_logprob[:, 0] > -1e-3).all()
    # every beam of every image holds <eos>; decoding stopped at the step where the last one ended
    ends = (res.tokens == EOS).float().argmax(-1)
    assert ((res.tokens == EOS).sum(-1) == 1).all()
    assert len(calls) == int(ends.max()) + 1 < 20


def test_inference_mode_and_grad_mode():
    model, enc = _model(3, eos_boost=1.0)
    res = beam_search(model, enc, beam_size=3, max_len=8)
    assert res.token_logprobs.is_inference()
    res = beam_search(model, enc, beam_size=3, max_len=8, return_all=True, grad=True)
    assert res.token_logprobs.requires_grad
    res.token_logprobs.sum().backward()
    assert model.decoder.out.weight.grad is not None and model.decoder.out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="exceeds the decoder's position table"):
        greedy(model, enc, max_len=26)


def test_sampling_is_differentiable_and_consistent():
    model, enc = _model(4, eos_boost=2.0)
    torch.manual_seed(0)
    tokens, lps = sample(model, enc, num_samples=5, max_len=12)
    assert tokens.shape == (3, 5, 12) and lps.shape == (3, 5, 12) and lps.requires_grad
    _check_after_eos(tokens)
    assert (lps[tokens == PAD] == 0).all()
    words = tokens.reshape(15, 12)
    _, tf = _teacher_forced_logprob(model, enc, words, torch.arange(3).repeat_interleave(5))
    torch.testing.assert_close(lps.detach().reshape(15, 12), tf.detach() * (words != PAD), atol=1e-4, rtol=1e-4)
    assert len({tuple(r) for r in words.tolist()}) > 3              # samples differ
    lps.sum().backward()
    assert model.decoder.word_emb.weight.grad.abs().sum() > 0
    # near-zero temperature is greedy
    cold, _ = sample(model, enc, num_samples=2, max_len=12, temperature=1e-4)
    g = greedy(model, enc, max_len=12)
    assert torch.equal(cold[:, 0], g) and torch.equal(cold[:, 1], g)


def test_sampling_with_the_cache_equals_sampling_without():
    model, enc = _model(4, eos_boost=2.0)
    torch.manual_seed(3)
    cached, cached_lps = sample(model, enc, num_samples=5, max_len=12)
    torch.manual_seed(3)
    plain, plain_lps = sample(model, enc, num_samples=5, max_len=12, use_cache=False)
    assert torch.equal(cached, plain)
    torch.testing.assert_close(cached_lps, plain_lps, atol=1e-5, rtol=1e-5)
