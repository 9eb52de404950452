"""The n-gram table behind BLEU, CIDEr-D and the reward against a plain Counter of word tuples (pycocoevalcap's
`precook`): every (sentence, n-gram) count, the id of every n-gram, and new sentences mapped onto a vocabulary."""

import random
from collections import Counter

import numpy as np

from fsgr.metrics.ngrams import _WORD_BITS, NgramVocab, encode_corpus


def _precook(sentence, n=4):
    words = sentence.split()
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def _decode(rows, id_to_ngram, n_sentences):
    got = [Counter() for _ in range(n_sentences)]
    for s, g, o, c in zip(rows.sentence.tolist(), rows.ngram.tolist(), rows.order.tolist(), rows.count.tolist()):
        ngram = id_to_ngram[g]
        assert len(ngram) == o
        assert ngram not in got[s]  # one row per (sentence, n-gram)
        got[s][ngram] = c
    return got


def _vocab_ngrams(vocab):
    """The word tuple behind every known id, read from the vocabulary's own tables (n-gram = (prefix id, word))."""
    words = {i: w for w, i in vocab.word_ids.items()}
    ngram_of = {i: (w,) for i, w in words.items()}
    for level, keys in enumerate(vocab.keys):
        for rank, key in enumerate(keys.tolist()):
            last_word = words[key & ((1 << _WORD_BITS) - 1)]
            ngram_of[vocab.offsets[level + 1] + rank] = ngram_of[key >> _WORD_BITS] + (last_word,)
    assert len(set(ngram_of.values())) == len(ngram_of) == vocab.size  # one id per n-gram
    return ngram_of


def _sentences(flickr, k=600):
    real = [c for name in list(flickr)[:k // 5] for c in flickr[name]]
    rng = random.Random(3)
    odd = ["", " ", "a", "a a a a a a a a", "a b a b a b a b", "x\u00a0y z", "  spaced   out\twords ", "a -lrb- b"]
    odd += [" ".join(rng.choice("ab") for _ in range(rng.randint(0, 12))) for _ in range(50)]
    return real + odd


def test_rows_equal_precook_on_real_and_repetitive_text(flickr):
    sentences = _sentences(flickr)
    vocab = NgramVocab(sentences)
    rows = vocab.own_rows()
    assert np.all(np.diff(rows.sentence * rows.id_limit + rows.ngram) > 0)  # sorted by (sentence, n-gram)
    assert _decode(rows, _vocab_ngrams(vocab), len(sentences)) == [_precook(s) for s in sentences]
    assert rows.lengths.tolist() == [len(s.split()) for s in sentences]


def test_encode_maps_new_sentences_onto_the_vocabulary(flickr):
    sentences = _sentences(flickr)
    vocab = NgramVocab(sentences[:400])
    known = _vocab_ngrams(vocab)
    known_ngrams = set(known.values())
    new = sentences[400:] + ["zebra unicorn a dog", "a dog zebra unicorn", "unicorn unicorn", "zebra unicorn"]
    rows = vocab.encode(new)
    expected = [_precook(s) for s in new]
    private = {}  # id -> n-gram, for the n-grams the vocabulary does not hold
    got = [Counter() for _ in new]
    for s, g, o, c in zip(rows.sentence.tolist(), rows.ngram.tolist(), rows.order.tolist(), rows.count.tolist()):
        if g < vocab.size:
            got[s][known[g]] = c
        else:  # unseen: must be an n-gram of this sentence missing from the vocabulary with this count
            options = {ng for ng, k in expected[s].items() if len(ng) == o and k == c and ng not in known_ngrams}
            private.setdefault(g, options)
            private[g] &= options
            assert private[g], (new[s], o, c)
            got[s][("private", g)] = c
    for s, counts in enumerate(expected):
        assert {ng: c for ng, c in counts.items() if ng in known_ngrams} == {
            ng: c for ng, c in got[s].items() if ng[0] != "private"}
        assert sum(1 for ng in counts if ng not in known_ngrams) == sum(1 for ng in got[s] if ng[0] == "private")
    assert ("zebra", "unicorn") not in known_ngrams
    triples = list(zip(rows.sentence.tolist(), rows.ngram.tolist(), rows.order.tolist()))

    def unseen_bigrams(k):
        return {g for s, g, o in triples if s == k and o == 2 and g >= vocab.size}

    zebra_unicorn = unseen_bigrams(len(new) - 1)  # "zebra unicorn": its one bigram
    assert len(zebra_unicorn) == 1  # the same unseen bigram gets the same id in every sentence:
    assert zebra_unicorn <= unseen_bigrams(len(new) - 4) and zebra_unicorn <= unseen_bigrams(len(new) - 3)


def test_more_than_65536_distinct_words():
    """The word-id sort has a radix path for up to 65,536 distinct words and a general one past it."""
    rng = random.Random(11)
    words = [f"w{i}" for i in range(70_000)]
    sentences = [" ".join(words[i:i + 7]) for i in range(0, 70_000, 7)]
    sentences += [" ".join(rng.choice(words[:30]) for _ in range(9)) for _ in range(300)]
    vocab = NgramVocab(sentences)
    assert len(vocab.word_ids) == 70_000
    assert _decode(vocab.own_rows(), _vocab_ngrams(vocab), len(sentences)) == [_precook(s) for s in sentences]


def test_encode_corpus_counts_each_order_per_reference_image_and_candidate(flickr):
    names = list(flickr)[:50]
    refs = [flickr[n][1:] for n in names] + [["a a a a", "a a", "b"], ["x"]]
    cands = [flickr[n][0] for n in names] + ["a a a b", ""]
    rows = encode_corpus(refs, cands)
    assert rows.n_refs.tolist() == [4] * 50 + [3, 1]
    assert rows.ref_lengths.tolist() == [len(r.split()) for rs in refs for r in rs]
    assert rows.cand_lengths.tolist() == [len(c.split()) for c in cands]
    ngram_of = _vocab_ngrams(NgramVocab([r for rs in refs for r in rs] + cands))  # the same ids
    ref_sentences = [_precook(r) for rs in refs for r in rs]
    ref_image = [i for i, rs in enumerate(refs) for _ in rs]
    for k, order in enumerate(rows.orders, start=1):
        got = {(s, ngram_of[g]): c for s, g, c in zip(order.ref_sentence.tolist(), order.ref_ngram.tolist(),
                                                      order.ref_count.tolist())}
        assert got == {(s, ng): c for s, counts in enumerate(ref_sentences) for ng, c in counts.items()
                       if len(ng) == k}
        mask = (1 << rows.id_bits) - 1
        groups = {(key >> rows.id_bits, ngram_of[key & mask]): m
                  for key, m in zip(order.group_key.tolist(), order.group_max.tolist())}
        expected = {}
        for s, counts in enumerate(ref_sentences):
            for ng, c in counts.items():
                if len(ng) == k:
                    expected[ref_image[s], ng] = max(expected.get((ref_image[s], ng), 0), c)
        assert groups == expected
        if k == 1:  # by hand: "a" is 4 times in the first reference of image 50
            assert groups[50, ("a",)] == 4 and groups[50, ("b",)] == 1 and (51, ("x",)) in groups
        cand = {(key >> rows.id_bits, ngram_of[key & mask]): c
                for key, c in zip(order.cand_key.tolist(), order.cand_count.tolist())}
        assert cand == {(i, ng): c for i, text in enumerate(cands) for ng, c in _precook(text).items() if len(ng) == k}
        for key, group in zip(order.cand_key.tolist(), order.cand_group.tolist()):
            assert (group >= 0) == ((key >> rows.id_bits, ngram_of[key & mask]) in expected)
            assert group < 0 or order.group_key[group] == key




def test_dense_ranks_and_count_runs_against_numpy_unique():
    """Both ways of ranking (positions packed under the keys, or an argsort when the keys are too wide for that)."""
    from fsgr.metrics.ngrams import count_runs, dense_ranks, find_sorted

    rng = np.random.default_rng(0)
    for keys, bound in ((rng.integers(0, 50, 1000), 50), (rng.integers(0, 1 << 40, 500) * 7, 7 << 40),
                        (rng.integers(0, 1 << 60, 300), 1 << 60), (np.zeros(0, dtype=np.int64), 1)):
        distinct, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        ranks, got = dense_ranks(keys, bound)
        assert np.array_equal(got, distinct) and np.array_equal(ranks, inverse.ravel())
        run_keys, run_counts = count_runs(keys)
        assert np.array_equal(run_keys, distinct) and np.array_equal(run_counts, counts)
        index, found = find_sorted(distinct, np.concatenate([keys, [bound + 1]]))
        assert found[:-1].all() and not found[-1] and np.array_equal(distinct[index[:-1]], keys)
