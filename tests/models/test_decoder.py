import pytest
import torch

from fsgr.models.config import DecoderConfig
from fsgr.models.decoder import Decoder, xavier_init_

PAD, BOS, EOS = 1, 2, 3
SMALL = DecoderConfig(layers=2, d_model=32, heads=4, d_ff=64, max_len=12)


def _decoder(seed=0, double_residual=True):
    torch.manual_seed(seed)
    dec = Decoder(SMALL, vocab_size=23, pad_id=PAD, dropout=0.1, double_residual=double_residual)
    return dec.eval()


def _captions():
    # <bos> w.. <eos> <pad>..., two lengths
    return torch.tensor([[BOS, 5, 6, 7, 8, EOS, PAD, PAD],
                         [BOS, 9, 9, 10, 11, 12, 13, EOS]])


def test_shapes_and_embedding_sizes_come_from_the_vocabulary():
    dec = _decoder()
    memory, pos = torch.randn(2, 9, 32), torch.randn(1, 9, 32)
    out = dec(_captions(), memory, pos)
    assert out.shape == (2, 8, 23) and out.dtype == torch.float32
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 8))
    assert dec.word_emb.num_embeddings == 23 and dec.out.out_features == 23 and dec.out.bias is None
    assert dec.word_emb.padding_idx == PAD and dec.pos_emb.num_embeddings == SMALL.max_len + 1
    assert dec.out.weight.data_ptr() != dec.word_emb.weight.data_ptr()      # untied
    with pytest.raises(ValueError, match="exceeds decoder.max_len 12"):
        dec(torch.full((1, 13), 5), memory[:1], pos)


@pytest.mark.parametrize("double_residual", [True, False])
def test_incremental_decoding_equals_teacher_forcing(double_residual):
    dec = _decoder(1, double_residual)
    xavier_init_(dec)   # REF init: non-zero <pad> row, so pad masking must do the work
    memory, pos = torch.randn(2, 9, 32), torch.randn(1, 9, 32)
    tokens = _captions()
    full = dec(tokens, memory, pos)
    cache = dec.init_cache(memory, pos)
    for t in range(tokens.shape[1]):
        step, cache = dec.step(tokens[:, t], cache)
        torch.testing.assert_close(step, full[:, t], atol=1e-5, rtol=1e-5)
    assert cache.length == tokens.shape[1] and len(cache.self_k) == SMALL.layers
    assert cache.self_k[0].shape == (2, 4, tokens.shape[1], 8) and cache.cross_k[0].shape == (2, 4, 9, 8)


def test_causal_and_pad_positions():
    dec = _decoder(2)
    memory, pos = torch.randn(2, 9, 32), torch.randn(1, 9, 32)
    tokens = _captions()
    base = dec(tokens, memory, pos)
    changed = tokens.clone()
    changed[:, 4] = 17
    out = dec(changed, memory, pos)
    torch.testing.assert_close(out[:, :4], base[:, :4])            # the future never leaks into the past
    assert not torch.allclose(out[:, 4:6], base[:, 4:6])
    # pad positions are zeroed before the head: uniform distribution there
    torch.testing.assert_close(base[0, 6:], torch.full((2, 23), -torch.log(torch.tensor(23.0))))
    # embedding: pad tokens take position 0 (the zero row of the sinusoid table at init)
    emb = dec.embed(tokens)
    torch.testing.assert_close(emb[0, 6], dec.word_emb.weight[PAD] + dec.pos_emb.weight[0])
    assert torch.count_nonzero(dec.word_emb.weight[PAD]) == 0 and torch.count_nonzero(dec.pos_emb.weight[0]) == 0


def test_xavier_init_overwrites_embeddings_like_ref():
    dec = _decoder()
    xavier_init_(dec)
    assert torch.count_nonzero(dec.word_emb.weight[PAD]) > 0       # B11: REF's init makes <pad> non-zero
    bound = (6 / (23 + 32)) ** 0.5
    assert dec.word_emb.weight.abs().max() <= bound


def test_paper_size_parameter_count():
    dec = Decoder(DecoderConfig(), vocab_size=10201, pad_id=PAD, dropout=0.1, double_residual=True)
    assert sum(p.numel() for p in dec.parameters()) == 23_092_224          # spec section 12, 3 layers
    dec4 = Decoder(DecoderConfig(layers=4), vocab_size=10201, pad_id=PAD, dropout=0.1, double_residual=True)
    assert sum(p.numel() for p in dec4.parameters()) == 27_298_304         # REF's 4 layers (B13)
