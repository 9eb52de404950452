import json
import pickle

import pytest

from fsgr.data.text import PUNCTUATION, encode_caption, tokenize_caption, tokenize_captions
from fsgr.data.vocab import SPECIALS, Vocab, vocab_from_records
from fsgr.data.records import ImageRecord
from fsgr.errors import DataError


# ---- text ------------------------------------------------------------------------------------------------------------

def test_tokenize_lowercases_and_drops_reference_punctuation():
    assert tokenize_caption("A Man riding a horse, on the BEACH.") == ["a", "man", "riding", "a", "horse", "on",
                                                                        "the", "beach"]
    assert tokenize_caption("Is it a dog? Yes; it is!") == ["is", "it", "a", "dog", "yes", "it", "is"]
    assert tokenize_caption("   ") == []
    assert tokenize_caption("...") == []
    # PTB splits contractions the way the scorer does
    assert tokenize_caption("The dog's bone") == ["the", "dog", "'s", "bone"]
    assert tokenize_captions(["One.", "Two dogs"]) == [["one"], ["two", "dogs"]]
    assert "." in PUNCTUATION and ".." not in PUNCTUATION


def _vocab():
    return Vocab([*SPECIALS, "a", "dog", "runs"])


def test_encode_adds_bos_eos_and_maps_oov_to_unk():
    v = _vocab()
    assert encode_caption(["a", "dog", "flies"], v, 54) == [2, 4, 5, 0, 3]


def test_encode_truncate_keeps_eos_and_refuse_names_caption():
    v = _vocab()
    words = ["a", "dog", "runs", "a", "dog"]
    assert encode_caption(words, v, max_len=5, policy="truncate") == [2, 4, 5, 6, 3]
    assert encode_caption(words, v, max_len=7, policy="refuse") == [2, 4, 5, 6, 4, 5, 3]   # exactly fits
    with pytest.raises(DataError, match=r"image 7 annotation 99: caption has 5 words.*max_len=6"):
        encode_caption(words, v, max_len=6, policy="refuse", name="image 7 annotation 99")


# ---- vocab -----------------------------------------------------------------------------------------------------------

def test_build_specials_then_frequency_then_alphabetical_with_min_freq():
    caps = [["b", "a", "c"]] * 3 + [["a", "d", "zz"]] * 2 + [["e"]]
    v = Vocab.build(caps, min_freq=2)
    # a:5, b:3, c:3 (tie -> alphabetical), d:2, zz:2 ; e:1 dropped
    assert v.itos == ["<unk>", "<pad>", "<bos>", "<eos>", "a", "b", "c", "d", "zz"]
    assert (v.unk_id, v.pad_id, v.bos_id, v.eos_id) == (0, 1, 2, 3)
    assert v.stoi["zz"] == 8 and len(v) == 9
    assert v.encode(["a", "e", "zz"]) == [4, 0, 8]
    assert Vocab.build(caps, min_freq=4).itos[4:] == ["a"]


def test_decode_stops_at_eos_skips_specials_and_collapses_repeats():
    v = _vocab()
    assert v.decode([2, 4, 5, 5, 1, 6, 3, 4, 4]) == "a dog runs"
    assert v.decode([2, 4, 5, 5, 6, 3], collapse_repeats=False) == "a dog dog runs"
    assert v.decode([4, 0, 0]) == "a <unk>"
    with pytest.raises(DataError, match="token id 99 is outside the vocabulary"):
        v.decode([4, 99])


def test_save_load_and_checkpoint_dict_round_trip(tmp_path):
    v = Vocab.build([["x", "y", "y"]] * 5, min_freq=5)
    p = tmp_path / "v.json"
    v.save(p)
    w = Vocab.load(p)
    assert w == v and w.itos == v.itos and w.freqs == {"y": 10, "x": 5}
    assert json.loads(p.read_text())["itos"][:4] == list(SPECIALS)
    assert Vocab.from_dict(v.to_dict()) == v


def test_bad_vocab_files_are_refused(tmp_path):
    with pytest.raises(DataError, match="vocabulary file not found"):
        Vocab.load(tmp_path / "nope.json")
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"itos": ["a", "b"]}))
    with pytest.raises(DataError, match="first four entries"):
        Vocab.load(p)
    p.write_text(json.dumps({"itos": [*SPECIALS, "a", "a"]}))
    with pytest.raises(DataError, match="appears twice"):
        Vocab.load(p)
    p.write_text("not json")
    with pytest.raises(DataError, match="neither a vocabulary JSON nor a pickle"):
        Vocab.load(p)


def test_m2_vocab_pkl_import(real_data, tmp_path):
    v = Vocab.load(real_data / "m2_vocab.pkl")
    assert len(v) == 10201
    assert v.itos[:4] == list(SPECIALS)
    assert v.itos[4:10] == ["a", "on", "of", "the", "in", "with"]
    assert v.stoi["the"] == 7 and max(v.stoi.values()) == 10200
    assert v.freqs["a"] > v.freqs["on"] > 0
    # and it converts to our JSON losslessly
    v.save(tmp_path / "m2.json")
    assert Vocab.load(tmp_path / "m2.json").itos == v.itos


class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_anything_but_a_vocab(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(Evil(), protocol=3))
    with pytest.raises(DataError, match="refusing to load (posix|os).system"):
        Vocab.load(p)
    # a plain pickled dict with itos works too (torchtext-style state)
    q = tmp_path / "plain.pkl"
    q.write_bytes(pickle.dumps({"itos": [*SPECIALS, "cat"], "stoi": {"cat": 4}}, protocol=3))
    assert Vocab.load(q).itos[4] == "cat"
    q.write_bytes(pickle.dumps({"itos": [*SPECIALS, "cat"], "stoi": {"cat": 7}}, protocol=3))
    with pytest.raises(DataError, match="disagrees with itos"):
        Vocab.load(q)


def test_vocab_from_records_uses_only_the_given_splits():
    recs = [ImageRecord(1, "a.jpg", "train", ("A red car.",) * 5, tuple(range(5))),
            ImageRecord(2, "b.jpg", "val", ("A blue bus.",) * 5, tuple(range(5, 10)))]
    assert vocab_from_records(recs, ("train",), 5).itos[4:] == ["a", "car", "red"]
    assert vocab_from_records(recs, ("train", "val"), 5).itos[4:] == ["a", "blue", "bus", "car", "red"]
    with pytest.raises(DataError, match="no captions in split"):
        vocab_from_records(recs, ("test",), 5)
