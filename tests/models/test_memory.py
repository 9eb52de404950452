"""Prototypical memory (PMA-Net) in the decoder: K-Means/kNN prototypes, banks, masks, decoding, state, DDP."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fsgr.errors import CheckpointError, ConfigError
from fsgr.models.config import DecoderConfig, PMAConfig
from fsgr.models.decoder import Decoder, xavier_init_
from fsgr.models.decoding import beam_search, greedy
from fsgr.models.memory import PAD_SCORE, LayerMemory, kmeans, knn_average
from fsgr.training.memory_hook import MemoryHook

PAD, BOS, EOS, V = 1, 2, 3, 23
SMALL = DecoderConfig(layers=2, d_model=32, heads=4, d_ff=64, max_len=12)
PMA = PMAConfig(enabled=True, num_prototypes=8, bank_iterations=4, tokens_per_step=6, refresh_every=2, knn=3,
                kmeans_iterations=15, bank_dtype="float32")


def _decoder(pma=PMA, seed=0):
    torch.manual_seed(seed)
    dec = Decoder(SMALL, vocab_size=V, pad_id=PAD, dropout=0.1, double_residual=True, pma=pma)
    xavier_init_(dec)
    return dec


def _captions():
    return torch.tensor([[BOS, 5, 6, 7, 8, EOS, PAD, PAD],
                         [BOS, 9, 9, 10, 11, 12, 13, EOS]])


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 9, 32, generator=g), torch.randn(1, 9, 32, generator=g)


def _train_steps(dec, steps, first=1):
    """Training-mode forwards + the trainer's memory hook (no optimiser: the weights stay put)."""
    memory, pos = _inputs()
    dec.train()
    hook = MemoryHook.for_decoder(dec)
    for step in range(first, first + steps):
        dec(_captions(), memory, pos)
        hook.after_step(step, "xe")
    return dec


def _brute_force_clusters(x, centres):
    """Nearest centre by explicit differences (no matmul trick): x (n, d), centres (k, d) -> (n,) ids."""
    return torch.stack([((x - c) ** 2).sum(-1) for c in centres], dim=1).argmin(1)


def _blobs(h=2, per=40, k=5, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(h, k, d, generator=g) * 6
    points = centres[:, :, None] + torch.randn(h, k, per, d, generator=g)
    return points.reshape(h, k * per, d)


# ------------------------------------------------------------------------------------------------ K-Means / kNN
@pytest.mark.parametrize("init", ["random", "kmeans++"])
def test_kmeans_centres_are_the_means_of_their_brute_force_clusters(init):
    x = _blobs()
    centres = kmeans(x, 5, iterations=30, generator=torch.Generator().manual_seed(3), init=init)
    assert centres.shape == (2, 5, 4)
    for head in range(2):
        ids = _brute_force_clusters(x[head], centres[head])
        for j in range(5):
            members = x[head][ids == j]
            assert len(members) > 0
            torch.testing.assert_close(centres[head, j], members.mean(0), atol=1e-5, rtol=1e-5)


def test_kmeans_reseeds_empty_clusters():
    # 60 identical points and 3 distinct far ones: a random init often takes 2+ copies of the repeated point, whose
    # duplicate centres own nothing; the re-seed must move them onto the far points
    far = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    x = torch.cat([torch.zeros(60, 2), far])[None].repeat(3, 1, 1)
    for seed in range(4):
        centres = kmeans(x, 4, iterations=5, generator=torch.Generator().manual_seed(seed))
        for head in range(3):
            got = sorted(map(tuple, centres[head].tolist()))
            assert got == sorted([(0.0, 0.0)] + list(map(tuple, far.tolist())))
    with pytest.raises(ValueError, match="between 1 and the number of points"):
        kmeans(x, 70, iterations=1, generator=torch.Generator())


def test_knn_average_is_the_mean_value_of_the_nearest_keys():
    g = torch.Generator().manual_seed(1)
    keys, values, queries = torch.randn(3, 50, 4, generator=g), torch.randn(3, 50, 5, generator=g), \
        torch.randn(3, 6, 4, generator=g)
    got = knn_average(queries, keys, values, knn=7)
    for head in range(3):
        for m in range(6):
            near = ((keys[head] - queries[head, m]) ** 2).sum(-1).argsort()[:7]
            torch.testing.assert_close(got[head, m], values[head, near].mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(knn_average(queries, keys, values, knn=500),   # knn > bank: every value
                               values.mean(1, keepdim=True).expand(3, 6, 5))


# ------------------------------------------------------------------------------------------------ banks
def _layer_memory(**kw):
    cfg = dataclasses.replace(PMA, **kw)
    return LayerMemory(cfg, d_model=8, heads=2)


def test_banks_hold_a_capped_sample_of_the_last_T_steps_and_never_pad():
    mem = _layer_memory(bank_iterations=3, tokens_per_step=4)
    for step in range(5):
        k = torch.full((2, 2, 3, 4), float(step))          # N=2 rows, h=2, L=3 tokens, dh=4; key value = step id
        scores = torch.rand(2, 3)
        scores[1, 2] = PAD_SCORE
        k[1, :, 2] = 999.0                                  # the pad token's key: must never reach a bank
        if step == 4:                                       # a step with fewer real tokens than the cap
            scores[:] = PAD_SCORE
            scores[0, 0] = 0.5
        mem.record(k, k + 0.5, mem.plan(scores))
        mem.commit()
    assert int(mem.commits) == 5
    valid = mem.bank_valid
    rows = mem.bank_k[valid]
    assert not (rows == 999.0).any() and torch.equal(mem.bank_v[valid], rows + 0.5)
    # T=3: slots hold steps 3, 4 (overwrote 0 and 1) and 2; step 4 has one real token
    assert sorted(rows[:, 0, 0].tolist()) == [2.0] * 4 + [3.0] * 4 + [4.0]
    assert float(mem.stage_score.max()) < 0        # the reservoir is empty after a commit


def test_reservoir_spans_every_forward_of_a_step():
    # two micro-batches (gradient accumulation) before one commit: the cap tokens kept are the best-scored of both
    mem = _layer_memory(tokens_per_step=3)
    first, second = torch.tensor([[0.9, 0.1, 0.5]]), torch.tensor([[0.2, 0.95, PAD_SCORE]])
    mem.record(torch.full((1, 2, 3, 4), 1.0), torch.zeros(1, 2, 3, 4), mem.plan(first))
    k2 = torch.arange(3.0).view(1, 1, 3, 1).expand(1, 2, 3, 4) + 10
    mem.record(k2, torch.zeros(1, 2, 3, 4), mem.plan(second))
    mem.commit()
    assert sorted(mem.bank_k[mem.bank_valid][:, 0, 0].tolist()) == [1.0, 1.0, 11.0]   # 0.9, 0.5 (first), 0.95


def test_refresh_prototypes_are_kmeans_centres_and_knn_values_of_the_bank():
    mem = _layer_memory(num_prototypes=4, bank_iterations=5, tokens_per_step=12, knn=3, kmeans_iterations=30)
    g = torch.Generator().manual_seed(0)
    blobs = _blobs(h=2, per=15, k=4, d=4, seed=2)                              # (2 heads, 60, 4)
    for step in range(5):
        k = blobs[:, step * 12:(step + 1) * 12].permute(1, 0, 2)[None].transpose(1, 2)   # (1, h, 12, dh)
        mem.record(k, -k * 2, mem.plan(torch.rand(1, 12, generator=g)))
        mem.commit()
    assert mem.refresh(torch.Generator().manual_seed(5)) == 4
    assert mem.proto_valid.all()
    keys = mem.bank_k[mem.bank_valid].transpose(0, 1)                          # (h, 60, dh)
    for head in range(2):
        ids = _brute_force_clusters(keys[head], mem.proto_k[head])
        for j in range(4):
            torch.testing.assert_close(mem.proto_k[head, j], keys[head][ids == j].mean(0), atol=1e-5, rtol=1e-5)
            near = ((keys[head] - mem.proto_k[head, j]) ** 2).sum(-1).argsort()[:3]
            torch.testing.assert_close(mem.proto_v[head, j], (-2 * keys[head][near]).mean(0), atol=1e-5, rtol=1e-5)


def test_fewer_bank_points_than_prototypes_gives_that_many_valid_prototypes():
    mem = _layer_memory(num_prototypes=8, tokens_per_step=3)
    mem.record(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4), mem.plan(torch.rand(1, 3)))
    mem.commit()
    assert mem.refresh(torch.Generator().manual_seed(0)) == 3
    assert mem.proto_valid.tolist() == [True] * 3 + [False] * 5 and not mem.proto_k[:, 3:].any()


# ------------------------------------------------------------------------------------------------ attention
def _plain_twin(dec):
    """The same weights without memory."""
    plain = Decoder(SMALL, vocab_size=V, pad_id=PAD, dropout=0.1, double_residual=True)
    plain.load_state_dict({k: v for k, v in dec.state_dict().items() if ".memory." not in k})
    return plain.eval()


def test_invalid_prototypes_are_invisible():
    dec = _decoder().eval()
    for layer in dec.layers:                      # garbage that would dominate any attention it took part in
        layer.memory.proto_k.fill_(50.0)
        layer.memory.proto_v.fill_(1e4)
        torch.nn.init.normal_(layer.memory.segment)
    memory, pos = _inputs()
    torch.testing.assert_close(dec(_captions(), memory, pos), _plain_twin(dec)(_captions(), memory, pos))


def test_valid_memory_is_visible_to_every_query_and_never_causal():
    dec = _train_steps(_decoder(), 2).eval()        # a refresh at step 2: valid prototypes
    assert dec.memory_prototypes() == 2 * 8
    memory, pos = _inputs()
    tokens = _captions()
    base = dec(tokens, memory, pos)
    changed_mem = dec.layers[0].memory
    changed_mem.proto_v[:, 0] += 3.0               # one prototype's values
    out = dec(tokens, memory, pos)
    real = tokens != PAD
    differs = (out - base).abs().amax(-1) > 1e-4
    assert torch.equal(differs, real)              # every real position, the first one included; pads untouched
    k = torch.randn(2, 4, 8, 8)
    mask = torch.ones(8, 8, dtype=torch.bool).tril()[None, None]
    _, _, full = changed_mem.extend(k, k, mask, real)
    assert full.shape == (2, 1, 8, 8 + 8)
    assert torch.equal(full[..., :8], real[:, None, :, None].expand(2, 1, 8, 8))
    changed_mem.proto_valid[3:] = False
    _, _, full = changed_mem.extend(k, k, mask, real)
    assert not full[..., 3:8].any() and torch.equal(full[..., 8:], mask.expand(2, 1, 8, 8))


def test_segment_embedding_switch():
    assert not any("segment" in n for n, _ in _decoder(dataclasses.replace(PMA, segment_embedding=False))
                   .named_parameters())
    dec = _train_steps(_decoder(), 2).eval()
    names = [n for n, _ in dec.named_parameters() if "segment" in n]
    assert names == ["layers.0.memory.segment", "layers.1.memory.segment"]
    memory, pos = _inputs()
    base = dec(_captions(), memory, pos)
    with torch.no_grad():
        dec.layers[1].memory.segment.normal_()
    assert not torch.allclose(dec(_captions(), memory, pos), base)
    pk, _ = dec.layers[1].memory.memory_kv(torch.float32)       # keys shifted, values not
    torch.testing.assert_close(pk - dec.layers[1].memory.proto_k, dec.layers[1].memory.segment.view(4, 1, 8)
                               .expand(4, 8, 8))


def test_memory_only_in_the_configured_layers():
    dec = _decoder(dataclasses.replace(PMA, layers=[1]))
    assert dec.layers[0].memory is None and dec.layers[1].memory is not None
    with pytest.raises(ConfigError, match=r"layer ids \[2\] outside the decoder's 2 layers"):
        _decoder(dataclasses.replace(PMA, layers=[0, 2]))
    assert _decoder(dataclasses.replace(PMA, enabled=False)).memory_prototypes() is None


# ------------------------------------------------------------------------------------------------ decoding
@pytest.mark.parametrize("layers", [None, [1]])
def test_incremental_decoding_with_memory_equals_teacher_forcing(layers):
    dec = _train_steps(_decoder(dataclasses.replace(PMA, layers=layers)), 2).eval()
    for mem in dec.memory_layers():
        torch.nn.init.normal_(mem.segment)
        mem.proto_valid[5:] = False                # some valid, some not
    memory, pos = _inputs()
    tokens = _captions()
    full = dec(tokens, memory, pos)
    assert not torch.allclose(full, _plain_twin(dec)(tokens, memory, pos))   # the memory does take part
    cache = dec.init_cache(memory, pos)
    for t in range(tokens.shape[1]):
        step, cache = dec.step(tokens[:, t], cache)
        torch.testing.assert_close(step, full[:, t], atol=1e-5, rtol=1e-5)
    assert cache.self_k[1].shape == (2, 4, tokens.shape[1], 8)          # prototypes are not in the cache


class _Model:
    def __init__(self, decoder):
        self.decoder, self.pad_id, self.bos_id, self.eos_id = decoder, PAD, BOS, EOS


class _Enc:
    def __init__(self, memory, pos):
        self.memory, self.memory_pos = memory, pos


def test_beam_search_and_greedy_with_memory():
    dec = _train_steps(_decoder(), 4).eval()
    model, enc = _Model(dec), _Enc(*_inputs())
    cached = beam_search(model, enc, beam_size=3, max_len=10, return_all=True)
    full = beam_search(model, enc, beam_size=3, max_len=10, return_all=True, use_cache=False)
    assert torch.equal(cached.tokens, full.tokens)
    torch.testing.assert_close(cached.seq_logprob, full.seq_logprob, atol=1e-4, rtol=1e-4)
    assert torch.equal(greedy(model, enc, max_len=10), greedy(model, enc, max_len=10, use_cache=False))
    plain = beam_search(_Model(_plain_twin(dec)), enc, beam_size=3, max_len=10, return_all=True)
    assert not torch.allclose(plain.seq_logprob, cached.seq_logprob)
    before = [m.bank_k.clone() for m in dec.memory_layers()]
    beam_search(model, enc, beam_size=3, max_len=10)                    # inference never touches the banks
    assert all(torch.equal(b, m.bank_k) for b, m in zip(before, dec.memory_layers()))


def test_decoding_in_train_mode_records_for_scst_unless_frozen():
    model, enc = _Model(_decoder()), _Enc(*_inputs())
    model.decoder.train()
    beam_search(model, enc, beam_size=2, max_len=6, grad=True)
    mem = model.decoder.layers[0].memory
    assert float(mem.stage_score.max()) >= 0                          # decoding steps were sampled
    MemoryHook.for_decoder(model.decoder).after_step(1, "scst")        # frozen_in_scst (default): nothing moves
    assert int(mem.commits) == 0 and not mem.bank_valid.any() and float(mem.stage_score.max()) < 0
    model.decoder.pma = dataclasses.replace(PMA, frozen_in_scst=False)
    beam_search(model, enc, beam_size=2, max_len=6, grad=True)
    MemoryHook.for_decoder(model.decoder).after_step(1, "scst")
    assert int(mem.commits) == 1 and int(mem.bank_valid.sum()) == PMA.tokens_per_step


# ------------------------------------------------------------------------------------------------ state
def test_state_dict_round_trip_resumes_banks_and_prototypes_exactly():
    a = _train_steps(_decoder(), 3)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    for name in ("bank_k", "bank_v", "bank_valid", "commits", "proto_k", "proto_v", "proto_valid"):
        assert f"layers.0.memory.{name}" in state
    assert not any("stage" in k for k in state)
    b = _decoder(seed=9)
    b.load_state_dict(state)
    for ma, mb in zip(a.memory_layers(), b.memory_layers()):
        for name in ("bank_k", "bank_v", "bank_valid", "commits", "proto_k", "proto_v", "proto_valid"):
            assert torch.equal(getattr(ma, name), getattr(mb, name)), name
    torch.manual_seed(11)
    _train_steps(a, 3, first=4)
    torch.manual_seed(11)
    _train_steps(b, 3, first=4)
    for ma, mb in zip(a.memory_layers(), b.memory_layers()):
        assert torch.equal(ma.proto_k, mb.proto_k) and torch.equal(ma.bank_k, mb.bank_k)


def test_captioner_refuses_a_checkpoint_without_or_with_other_memory():
    from test_captioner import _model, tiny_config

    from fsgr.models.clip import build_clip

    cfg = tiny_config()
    clip = build_clip(cfg.clip)
    on = dataclasses.replace(cfg, pma=dataclasses.replace(PMA))
    with_mem, without = _model(clip, on), _model(clip, cfg)
    with pytest.raises(CheckpointError, match="no prototypical-memory state"):
        with_mem.load_state_dict(without.state_dict())
    with pytest.raises(CheckpointError, match="holds prototypical-memory state"):
        without.load_state_dict(with_mem.state_dict())
    bigger = _model(clip, dataclasses.replace(cfg, pma=dataclasses.replace(PMA, num_prototypes=16)))
    with pytest.raises(CheckpointError, match=r"proto_k is \(4, 16, 8\) but model.pma gives \(4, 8, 8\)"):
        with_mem.load_state_dict(bigger.state_dict())
    ignored = set(with_mem._ddp_params_and_buffers_to_ignore)
    assert "decoder.layers.0.memory.bank_k" in ignored and not any("segment" in n for n in ignored)
    with_mem.load_state_dict(with_mem.state_dict())
    assert with_mem.memory_prototypes() == 0 and without.memory_prototypes() is None


def test_pma_config_file_and_summary():
    from pathlib import Path

    from fsgr.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "fsgr_coco_pma.yaml")
    p = cfg.model.pma
    assert p.enabled and p.num_prototypes == 1024 and p.bank_iterations == 1500 and p.layers is None
