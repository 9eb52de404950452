"""n-gram counting shared by BLEU, CIDEr-D and the SCST reward: every sentence becomes rows of (sentence, n-gram id,
order, count) in flat numpy arrays, so the metrics are array operations instead of per-n-gram Python loops.

Sentences are split on white space (`str.split()`), as pycocoevalcap's `precook` does. Words get integer ids; an
n-gram's id is looked up level by level from the pair (id of its first n-1 words, id of its last word), so no word
tuple is ever hashed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count, repeat

import numpy as np

MAX_N = 4
_WORD_BITS = 21  # up to 2,097,152 distinct words; key = prefix_id << 21 | word_id stays inside int64


def _group(key: np.ndarray):
    """Sort-based grouping (numpy's hash-based unique is slower here): (sorted distinct keys, inverse, first, count)."""
    order = np.argsort(key, kind="stable")
    sk = key[order]
    new = np.empty(len(sk), dtype=bool)
    new[:1] = True
    new[1:] = sk[1:] != sk[:-1]
    starts = np.flatnonzero(new)
    inverse = np.empty(len(key), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    count = np.diff(np.append(starts, len(sk)))
    return sk[starts], inverse, order[starts], count


_BREAK = "\x00"  # between sentences, to split them all at once: not white space, so a word of its own
_BREAK_ID = -2


def _split(sentences: list[str], reserved=()) -> tuple[list, str | None]:
    """Every word of every sentence (`str.split()`, as the toolkit's `precook`), with a marker between sentences,
    and the marker: `_BREAK`, so that one split of the joined text does it all, unless a sentence (or `reserved`)
    holds that character; then None, sentence by sentence."""
    joined = f" {_BREAK} ".join(sentences)
    if _BREAK not in reserved and joined.count(_BREAK) == max(len(sentences) - 1, 0):
        return joined.split(), _BREAK
    flat: list = []
    for k, sentence in enumerate(sentences):
        if k:
            flat.append(None)
        flat.extend(sentence.split())
    return flat, None


def _stable_argsort(values: np.ndarray, bound: int) -> np.ndarray:
    """Stable argsort of non-negative integers below `bound` (numpy sorts uint16 stably by radix: much faster)."""
    if bound <= 1 << 16:
        return np.argsort(values.astype(np.uint16), kind="stable")
    return np.argsort(values, kind="stable")


@dataclass
class NgramRows:
    """Flat n-gram counts of a list of sentences, sorted by (sentence, n-gram id)."""

    sentence: np.ndarray  # [R] int64: which sentence
    ngram: np.ndarray  # [R] int64: n-gram id (ids >= vocab.size are private to one `encode` call)
    order: np.ndarray  # [R] int64: n (1..MAX_N)
    count: np.ndarray  # [R] int64: term frequency of the n-gram in the sentence
    lengths: np.ndarray  # [S] int64: words per sentence
    id_limit: int  # every id in `ngram` is below this

    def subset(self, first: int, stop: int) -> "NgramRows":
        """The rows of sentences first..stop-1, renumbered from 0."""
        lo, hi = np.searchsorted(self.sentence, [first, stop])
        return NgramRows(self.sentence[lo:hi] - first, self.ngram[lo:hi], self.order[lo:hi], self.count[lo:hi],
                         self.lengths[first:stop], self.id_limit)


class NgramVocab:
    """The n-grams (1..n words) of a fixed set of sentences. Built once; `encode` maps other sentences onto it,
    giving n-grams it has never seen fresh ids of their own (they match nothing but still have a norm)."""

    def __init__(self, sentences: list[str], n: int = MAX_N) -> None:
        self.n = n
        flat, marker = _split(sentences)
        # ids in order of first occurrence (dict/zip/map keep the per-word work in C)
        distinct = dict.fromkeys(flat)
        distinct.pop(marker, None)
        self.word_ids: dict[str, int] = dict(zip(distinct, count()))
        if len(self.word_ids) >= 1 << _WORD_BITS:
            raise ValueError(f"too many distinct words for the n-gram index: {len(self.word_ids)}")
        # word -> id, and both sentence markers -> _BREAK_ID (`encode` never uses _BREAK if it is a word here)
        self._lookup = {**self.word_ids, None: _BREAK_ID}
        self._lookup.setdefault(_BREAK, _BREAK_ID)
        self.keys: list[np.ndarray] = []  # level k (n = k + 2): sorted keys of the known n-grams
        self.offsets: list[int] = [0, len(self.word_ids)]  # first id of each level (n = 1, 2, ...)
        word_arr, lengths = self._word_array(flat, len(sentences), None)
        level_ids = word_arr
        rem = self._remaining(lengths)
        sent_of_pos = np.repeat(np.arange(len(sentences), dtype=np.int64), lengths)
        all_ids, all_sent = [word_arr], [sent_of_pos]  # per order n = 1, 2, ...
        # Word positions sorted by the id of the (n-1)-gram starting there: the n-gram keys taken in this order
        # are already sorted by their prefix, which makes their stable sort (timsort) several times faster.
        by_prefix = _stable_argsort(word_arr, len(self.word_ids))
        for order in range(2, n + 1):
            starts = by_prefix[rem[by_prefix] >= order]  # where an n-gram starts, by prefix id
            key = (level_ids[starts] << _WORD_BITS) | word_arr[starts + order - 1]
            sort = np.argsort(key, kind="stable")
            by_prefix, key = starts[sort], key[sort]
            new = np.empty(len(key), dtype=bool)
            new[:1] = True
            new[1:] = key[1:] != key[:-1]
            self.keys.append(key[new])
            next_ids = np.full(len(word_arr), -1, dtype=np.int64)
            next_ids[by_prefix] = self.offsets[-1] + np.cumsum(new) - 1  # rank among the distinct keys
            self.offsets.append(self.offsets[-1] + len(self.keys[-1]))
            pos = np.flatnonzero(rem >= order)
            ids = next_ids[pos]
            level_ids = next_ids
            all_ids.append(ids)
            all_sent.append(sent_of_pos[pos])
        self._own = (all_ids, all_sent, lengths)
        self.words = word_arr  # [W] word id of every word of the sentences, in order (ROUGE-L's LCS uses them)
        self.size = self.offsets[-1]

    def _word_array(self, flat: list, n_sentences: int, private: dict[str, int] | None):
        """(word ids of `_split`'s words without the markers, words per sentence); unknown words get ids in
        `private` after the vocabulary's (or a KeyError when `private` is None)."""
        if private is None:
            arr = np.fromiter(map(self._lookup.__getitem__, flat), dtype=np.int64, count=len(flat))
        else:
            arr = np.fromiter(map(self._lookup.get, flat, repeat(-1)), dtype=np.int64, count=len(flat))
            if (arr == -1).any():
                unknown = [flat[i] for i in np.flatnonzero(arr == -1)]
                table = self.word_ids
                for w in unknown:
                    if w not in private:
                        private[w] = len(table) + len(private)
                arr[arr == -1] = [private[w] for w in unknown]
                if len(table) + len(private) >= 1 << _WORD_BITS:
                    raise ValueError("too many distinct words for the n-gram index")
        if n_sentences == 0:
            return arr, np.zeros(0, dtype=np.int64)
        is_break = arr == _BREAK_ID
        lengths = np.diff(np.flatnonzero(is_break), prepend=-1, append=len(arr)) - 1
        return arr[~is_break], lengths

    @staticmethod
    def _remaining(lengths: np.ndarray) -> np.ndarray:
        """For each word position: words left in its sentence, itself included."""
        total = int(lengths.sum())
        ends = np.repeat(np.cumsum(lengths), lengths)
        return ends - np.arange(total, dtype=np.int64)

    @staticmethod
    def _keys(prefix_ids: np.ndarray, word_arr: np.ndarray, order: int, valid: np.ndarray) -> np.ndarray:
        """Keys of the n-grams starting at the valid positions: (id of the first order-1 words, last word)."""
        pos = np.flatnonzero(valid)
        return (prefix_ids[pos] << _WORD_BITS) | word_arr[pos + order - 1]

    def encode(self, sentences: list[str]) -> NgramRows:
        flat, _ = _split(sentences, reserved=self.word_ids)
        private_words: dict[str, int] = {}
        word_arr, lengths = self._word_array(flat, len(sentences), private_words)
        rem = self._remaining(lengths)
        sent_of_pos = np.repeat(np.arange(len(sentences), dtype=np.int64), lengths)
        next_private = self.size + len(private_words)
        # unigrams: known words keep their id, unknown words get a private id (offset past all known ids)
        uni = np.where(word_arr < len(self.word_ids), word_arr, word_arr - len(self.word_ids) + self.size)
        all_ids, all_sent = [uni], [sent_of_pos]  # per order n = 1, 2, ...
        level_ids = uni
        for order in range(2, self.n + 1):
            valid = rem >= order
            pos = np.flatnonzero(valid)
            key = (level_ids[pos] << _WORD_BITS) | word_arr[pos + order - 1]
            known = self.keys[order - 2]
            idx = np.searchsorted(known, key)
            idx_clip = np.minimum(idx, max(len(known) - 1, 0))
            hit = (idx < len(known)) & (known[idx_clip] == key) if len(known) else np.zeros(len(key), bool)
            ids = np.empty(len(key), dtype=np.int64)
            ids[hit] = self.offsets[order - 1] + idx[hit]
            if not hit.all():
                miss_keys, inverse, _, _ = _group(key[~hit])
                ids[~hit] = next_private + inverse
                next_private += len(miss_keys)
            next_ids = np.full(len(word_arr), -1, dtype=np.int64)
            next_ids[pos] = ids
            level_ids = next_ids
            all_ids.append(ids)
            all_sent.append(sent_of_pos[pos])
        return self._rows(all_ids, all_sent, lengths, next_private)

    def own_rows(self) -> NgramRows:
        """The rows of the sentences the vocabulary was built from (no second lookup)."""
        all_ids, all_sent, lengths = self._own
        return self._rows(all_ids, all_sent, lengths, self.size)

    def _rows(self, all_ids, all_sent, lengths, id_count) -> NgramRows:
        ngram = np.concatenate(all_ids)
        sentence = np.concatenate(all_sent)
        limit = np.int64(id_count + 1)
        # n of every id: known ids by level, private ids from the rows themselves
        order_of = np.zeros(int(limit), dtype=np.int64)
        for n_, (lo, hi) in enumerate(zip(self.offsets[:-1], self.offsets[1:]), start=1):
            order_of[lo:hi] = n_
        private = ngram >= self.size
        if private.any():
            orders = np.repeat(np.arange(1, len(all_ids) + 1), [len(ids) for ids in all_ids])
            order_of[ngram[private]] = orders[private]
        # (stable = timsort: the keys come as four runs, one per order, already sorted by sentence and only
        # shuffled inside each sentence, which it sorts several times faster than the default quicksort)
        key = sentence * limit
        key += ngram
        key.sort(kind="stable")
        new = np.empty(len(key), dtype=bool)
        new[:1] = True
        new[1:] = key[1:] != key[:-1]
        starts = np.flatnonzero(new)
        counts = np.diff(starts, append=len(key))
        sentence, ngram = np.divmod(key[starts], limit)
        return NgramRows(sentence=sentence, ngram=ngram, order=order_of[ngram], count=counts, lengths=lengths,
                         id_limit=int(limit))


@dataclass
class CorpusRows:
    """The n-grams of one evaluation: references (grouped by image, in order) and one candidate per image."""

    ref: NgramRows
    cand: NgramRows
    n_refs: np.ndarray  # [I] references per image
    ref_image: np.ndarray  # [R] image of each reference sentence
    width: int  # every n-gram id is below this
    words: np.ndarray | None = None  # [W] word ids of the references' words then the candidates', in order
    _ref_index: tuple | None = field(default=None, repr=False)

    def ref_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(order, sorted keys) of the reference rows by key = image * width + n-gram id, computed once: BLEU's
        clipping maxima, CIDEr-D's document frequencies and its candidate-reference matches all read it."""
        if self._ref_index is None:
            key = self.ref_image[self.ref.sentence] * np.int64(self.width) + self.ref.ngram
            # (stable = timsort: rows come sorted by sentence and n-gram, so the keys are a few sorted runs per image)
            order = np.argsort(key, kind="stable")
            self._ref_index = (order, key[order])
        return self._ref_index


def encode_corpus(refs: list[list[str]], cands: list[str], n: int = MAX_N) -> CorpusRows:
    if len(refs) != len(cands):
        raise ValueError(f"{len(refs)} reference lists for {len(cands)} candidates")
    ref_sentences = [r for rs in refs for r in rs]
    sentences = ref_sentences + list(cands)
    vocab = NgramVocab(sentences, n)
    rows = vocab.own_rows()
    n_ref = len(ref_sentences)
    n_refs = np.fromiter((len(rs) for rs in refs), dtype=np.int64, count=len(refs))
    return CorpusRows(ref=rows.subset(0, n_ref), cand=rows.subset(n_ref, len(sentences)), n_refs=n_refs,
                      ref_image=np.repeat(np.arange(len(refs), dtype=np.int64), n_refs), width=rows.id_limit,
                      words=vocab.words)
