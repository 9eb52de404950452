"""The n-gram table behind BLEU, CIDEr-D and the reward against a plain Counter of word tuples (pycocoevalcap's
`precook`): every (sentence, n-gram) count, the id of every n-gram, and new sentences mapped onto a vocabulary.
The evaluation's table exists twice, in numpy (the reference) and in C (`_ngram_table.c`): both are checked here."""

import random
from collections import Counter

import numpy as np
import pytest

from fsgr.metrics import speedups
from fsgr.metrics.bleu import corpus_bleu
from fsgr.metrics.cider import corpus_cider_d
from fsgr.metrics.ngrams import _WORD_BITS, NgramVocab, encode_corpus
from fsgr.metrics.rouge import _odd_spacing, corpus_rouge_l

NOT_BUILT = pytest.mark.skipif(speedups.ngram_table is None, reason=f"not built: {speedups.missing}")
TABLES = [False, pytest.param(True, marks=NOT_BUILT)]


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


def _first_seen_ngrams(sentences, offsets, n=4):
    """The C table's ids: each order's n-grams numbered in order of first occurrence, from offsets[k - 1]."""
    ngram_of = {}
    for k in range(1, n + 1):
        seen = {}
        for sentence in sentences:
            words = sentence.split()
            for i in range(len(words) - k + 1):
                seen.setdefault(tuple(words[i:i + k]), offsets[k - 1] + len(seen))
        ngram_of.update({i: g for g, i in seen.items()})
        assert offsets[k] == offsets[k - 1] + len(seen)
    return ngram_of


@pytest.mark.parametrize("native", TABLES)
def test_encode_corpus_counts_each_order_per_reference_image_and_candidate(flickr, native):
    names = list(flickr)[:50]
    refs = [flickr[n][1:] for n in names] + [["a a a a", "a a", "b"], ["x"]]
    cands = [flickr[n][0] for n in names] + ["a a a b", ""]
    rows = encode_corpus(refs, cands, native=native)
    assert rows.n_refs.tolist() == [4] * 50 + [3, 1]
    assert rows.ref_lengths.tolist() == [len(r.split()) for rs in refs for r in rs]
    assert rows.cand_lengths.tolist() == [len(c.split()) for c in cands]
    sentences = [r for rs in refs for r in rs] + cands
    ngram_of = _first_seen_ngrams(sentences, rows.offsets) if native else _vocab_ngrams(NgramVocab(sentences))
    words = [w for s in sentences for w in s.split()]
    assert [ngram_of[i] for i in rows.words.tolist()] == [(w,) for w in words]
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
        for d, key in enumerate(order.group_key.tolist()):  # a group's rows: its references of its image, in order
            span = range(order.group_start[d], order.group_start[d + 1])
            assert all(order.ref_ngram[r] == key & mask for r in span)
            assert [ref_image[order.ref_sentence[r]] for r in span] == [key >> rows.id_bits] * len(span)
            refs_of_group = order.ref_sentence[span.start:span.stop].tolist()
            assert refs_of_group == sorted(set(refs_of_group))
        if k == 1:  # by hand: "a" is 4 times in the first reference of image 50
            assert groups[50, ("a",)] == 4 and groups[50, ("b",)] == 1 and (51, ("x",)) in groups
        cand = {(key >> rows.id_bits, ngram_of[key & mask]): c
                for key, c in zip(order.cand_key.tolist(), order.cand_count.tolist())}
        assert cand == {(i, ng): c for i, text in enumerate(cands) for ng, c in _precook(text).items() if len(ng) == k}
        for key, group in zip(order.cand_key.tolist(), order.cand_group.tolist()):
            assert (group >= 0) == ((key >> rows.id_bits, ngram_of[key & mask]) in expected)
            assert group < 0 or order.group_key[group] == key
        # the toolkit's order (its precook's): each sentence's n-grams as they first occur in it
        assert [(key >> rows.id_bits, ngram_of[key & mask]) for key in order.cand_key.tolist()] == \
            [(i, ng) for i, text in enumerate(cands) for ng in _precook(text) if len(ng) == k]
        assert [(order.ref_sentence[r], ngram_of[order.ref_ngram[r]]) for r in order.ref_order.tolist()] == \
            [(s, ng) for s, counts in enumerate(ref_sentences) for ng in counts if len(ng) == k]




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


def _hard_corpus(flickr):
    """Real captions, plus what str.split() has to get right: other ASCII white space, empty and one-word
    candidates, repeated words, a candidate longer than ROUGE-L's 63-word fast path, words sharing prefixes."""
    names = list(flickr)[:300]
    refs = [flickr[n][1:] for n in names]
    cands = [flickr[n][0] for n in names]
    refs += [["a a a a", "a  a", "b\ta\x1cb"], ["x"], ["the dog " * 40, "dog the"], ["ab a b", "a ba"], [" x y "]]
    cands += ["a a a b", "", "the dog " * 35, "a b ab", "x\x0by\x1fx y"]
    refs += [[chr(97 + k % 26)] for k in range(60)]  # one-letter sentences: more words than half the characters
    cands += [chr(98 + k % 25) for k in range(60)]
    return refs, cands


@NOT_BUILT
def test_compiled_and_numpy_tables_give_the_same_scores(flickr):
    refs, cands = _hard_corpus(flickr)
    by_table = {}
    for native in (False, True):
        rows = encode_corpus(refs, cands, native=native)
        by_table[native] = (corpus_bleu(refs, cands, rows=rows), corpus_rouge_l(refs, cands, rows=rows),
                            corpus_cider_d(refs, cands, rows=rows))
        assert rows.offsets[-1] < 1 << rows.id_bits
        if native:  # ROUGE-L's spacing check, made as the C table splits
            sentences = [r for rs in refs for r in rs] + cands
            n_words = np.array([len(x.split()) for x in sentences])
            assert np.array_equal(rows.odd_spacing, _odd_spacing(sentences, n_words))
            assert rows.odd_spacing.sum() >= 7
    (bleu_a, rouge_a, cider_a), (bleu_b, rouge_b, cider_b) = by_table[False], by_table[True]
    assert bleu_a == bleu_b and rouge_a[0] == rouge_b[0] and np.array_equal(rouge_a[1], rouge_b[1])
    # (CIDEr-D adds in the toolkit's order whatever the table's layout: the same floats)
    assert cider_a[0] == cider_b[0] and np.array_equal(cider_a[1], cider_b[1])
    assert cider_a[0] > 0.1 and bleu_a[0] > 0.3  # a real corpus, not zeros everywhere
    empty = [encode_corpus([], [], native=native) for native in (False, True)]
    assert [len(t.orders[0].group_key) for t in empty] == [0, 0] and [len(t.words) for t in empty] == [0, 0]


@NOT_BUILT
def test_a_non_ascii_sentence_does_not_take_the_corpus_off_the_compiled_table():
    """One sentence holding a non-ASCII character (Unicode white space inside: U+2003, the PTB tokenizer's U+00A0)
    goes to the C table as its str.split() words; the same table as numpy's, the rest of the corpus untouched."""
    refs = [["caf\u00e9 au lait", "a\u00a0b  c"], ["a dog runs", "22\u00a03/4 inch dog"]]
    cands = ["caf\u00e9\u2003au", "a dog 22\u00a03/4"]
    rows = encode_corpus(refs, cands, native=True)
    reference = encode_corpus(refs, cands, native=False)
    assert rows.ref_lengths.tolist() == [3, 3, 3, 4] and rows.cand_lengths.tolist() == [2, 4]
    assert rows.odd_spacing.tolist() == [False, True, False, True, True, True]  # split(" ") != split()
    assert corpus_cider_d(refs, cands, rows=rows)[0] == corpus_cider_d(refs, cands, rows=reference)[0] > 0
    for a, b in zip(rows.orders, reference.orders):
        assert sorted(a.cand_count.tolist()) == sorted(b.cand_count.tolist())
        assert sorted(a.group_max.tolist()) == sorted(b.group_max.tolist())


def test_asking_for_the_compiled_table_where_it_is_not_built_fails_loudly(monkeypatch):
    monkeypatch.setattr(speedups, "ngram_table", None)
    monkeypatch.setattr(speedups, "missing", "No module named 'fsgr.metrics._speedups'")
    with pytest.raises(RuntimeError, match="not built here: No module named"):
        encode_corpus([["a dog"]], ["a dog"], native=True)
    assert encode_corpus([["a dog"]], ["a dog"]).cand_lengths.tolist() == [2]  # (None: the numpy table)
