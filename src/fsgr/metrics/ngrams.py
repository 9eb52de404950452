"""n-gram counting shared by BLEU, CIDEr-D and the SCST reward, in flat numpy arrays, so the metrics are array
operations instead of per-n-gram Python loops.

Sentences are split on white space (`str.split()`), as pycocoevalcap's `precook` does. Words get integer ids; an
n-gram's id is looked up level by level from the pair (id of its first n-1 words, id of its last word), so no word
tuple is ever hashed. `NgramVocab.own_rows` / `encode` give rows of (sentence, n-gram id, order, count) (the
reward); `encode_corpus` counts each order of one evaluation by (image, n-gram, reference) (scoring): in C where
the package's extension is built (`_ngram_table.c`), else with this module's numpy code (`_numpy_table`), the
reference that the tests hold the C table to.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import count, repeat

import numpy as np

from fsgr.metrics import speedups

MAX_N = 4
_WORD_BITS = 21  # up to 2,097,152 distinct words; key = prefix_id << 21 | word_id stays inside int64


def _first_of_runs(sorted_values: np.ndarray) -> np.ndarray:
    """[N] bool: True where a sorted value differs from the one before (the first of each run of equal values)."""
    new = np.empty(len(sorted_values), dtype=bool)
    new[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new[1:])
    return new


def dense_ranks(key: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each key among the distinct keys, the distinct keys sorted) of non-negative int64 keys below `bound`.

    The positions ride in the low bits of the keys, so numpy's fast sort of plain integers (vectorised, unstable:
    the keys are all distinct then) does an argsort's work; keys too wide for that take an argsort."""
    n = len(key)
    pos_bits = max(n - 1, 1).bit_length()
    if max(bound - 1, 1).bit_length() + pos_bits <= 63:
        packed = np.sort((key << pos_bits) | np.arange(n, dtype=np.int64))
        order, sorted_key = packed & ((1 << pos_bits) - 1), packed >> pos_bits
    else:
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
    new = _first_of_runs(sorted_key)
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.cumsum(new) - 1
    return ranks, sorted_key[new]


def find_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(where each key is in `sorted_keys` (a valid index even when it is absent), whether it is there)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
    index = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return index, sorted_keys[index] == keys


def count_runs(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values of `key` sorted, how often each occurs)."""
    sorted_key = np.sort(key)
    starts = np.flatnonzero(_first_of_runs(sorted_key))
    return sorted_key[starts], np.diff(starts, append=len(sorted_key))


def count_runs_first(key: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count_runs` plus the first `position` of each distinct value (`position` increasing along `key`)."""
    by_key = np.argsort(key, kind="stable")  # (stable: a run's first element is its first position)
    sorted_key = key[by_key]
    starts = np.flatnonzero(_first_of_runs(sorted_key))
    return sorted_key[starts], np.diff(starts, append=len(sorted_key)), position[by_key[starts]]


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


@dataclass
class NgramRows:
    """Flat n-gram counts of a list of sentences, sorted by (sentence, n-gram id)."""

    sentence: np.ndarray  # [R] int64: which sentence
    ngram: np.ndarray  # [R] int64: n-gram id (ids >= vocab.size are private to one `encode` call)
    order: np.ndarray  # [R] int64: n (1..MAX_N)
    count: np.ndarray  # [R] int64: term frequency of the n-gram in the sentence
    lengths: np.ndarray  # [S] int64: words per sentence
    id_limit: int  # every id in `ngram` is below this


class NgramVocab:
    """The n-grams (1..n words) of a fixed set of sentences. Built once; `encode` maps other sentences onto it,
    giving n-grams it has never seen fresh ids of their own (they match nothing but still have a norm)."""

    def __init__(self, sentences: list[str], n: int = MAX_N) -> None:
        self.n = n
        flat, marker = _split(sentences)
        # word ids in order of first occurrence, given as each word is met (one pass, the per-word work in C)
        first_seen: defaultdict[str | None, int] = defaultdict(count().__next__)
        first_seen[marker] = _BREAK_ID
        words = np.fromiter(map(first_seen.__getitem__, flat), dtype=np.int64, count=len(flat))
        del first_seen[marker]
        self.word_ids: dict[str, int] = dict(first_seen)
        if len(self.word_ids) >= 1 << _WORD_BITS:
            raise ValueError(f"too many distinct words for the n-gram index: {len(self.word_ids)}")
        # word -> id, and both sentence markers -> _BREAK_ID (`encode` never uses _BREAK if it is a word here)
        self._lookup = {**self.word_ids, None: _BREAK_ID}
        self._lookup.setdefault(_BREAK, _BREAK_ID)
        self.keys: list[np.ndarray] = []  # level k (n = k + 2): sorted keys of the known n-grams
        self.offsets: list[int] = [0, len(self.word_ids)]  # first id of each level (n = 1, 2, ...)
        words, lengths = self._without_breaks(words, len(sentences))
        rem = self._remaining(lengths)
        # per order n = 1, 2, ...: where each n-gram starts, and its id (an n-gram is the pair (id of its first n-1
        # words, last word); ids are ranks among the level's distinct pairs, after the ids of the lower orders)
        self.positions: list[np.ndarray] = [np.arange(len(words), dtype=np.int64)]
        self.ids: list[np.ndarray] = [words]
        level_ids = words
        for order in range(2, n + 1):
            pos = np.flatnonzero(rem >= order)
            key = (level_ids[pos] << _WORD_BITS) | words[pos + order - 1]
            ranks, distinct_keys = dense_ranks(key, self.offsets[-1] << _WORD_BITS)
            ids = self.offsets[-1] + ranks
            self.keys.append(distinct_keys)
            self.offsets.append(self.offsets[-1] + len(distinct_keys))
            level_ids = np.full(len(words), -1, dtype=np.int64)
            level_ids[pos] = ids
            self.positions.append(pos)
            self.ids.append(ids)
        self.words = words  # [W] word id of every word of the sentences, in order (ROUGE-L's LCS uses them)
        self.lengths = lengths  # [S] words per sentence
        self.size = self.offsets[-1]

    def _word_array(self, flat: list, n_sentences: int, private: dict[str, int]):
        """(word ids of `_split`'s words without the markers, words per sentence); unknown words get ids in
        `private` after the vocabulary's."""
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
        return self._without_breaks(arr, n_sentences)

    @staticmethod
    def _without_breaks(arr: np.ndarray, n_sentences: int) -> tuple[np.ndarray, np.ndarray]:
        """(word ids without the sentence markers, words per sentence)."""
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
            idx, hit = find_sorted(self.keys[order - 2], key)
            ids = np.empty(len(key), dtype=np.int64)
            ids[hit] = self.offsets[order - 1] + idx[hit]
            if not hit.all():
                inverse, miss_keys = dense_ranks(key[~hit], next_private << _WORD_BITS)
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
        sentence_of_word = np.repeat(np.arange(len(self.lengths), dtype=np.int64), self.lengths)
        return self._rows(self.ids, [sentence_of_word[pos] for pos in self.positions], self.lengths, self.size)

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
        id_bits = int(limit).bit_length()
        if len(lengths).bit_length() + id_bits > 63:
            raise ValueError(f"too many sentences and n-grams for the n-gram index: {len(lengths)}, {int(limit)}")
        keys, counts = count_runs((sentence << id_bits) | ngram)
        sentence, ngram = keys >> id_bits, keys & ((1 << id_bits) - 1)
        return NgramRows(sentence=sentence, ngram=ngram, order=order_of[ngram], count=counts, lengths=lengths,
                         id_limit=int(limit))


@dataclass
class OrderCounts:
    """The n-grams of one order in an evaluation: counted in each reference and in each candidate, and grouped by
    (image, n-gram) over the image's references. A key is image << id_bits | n-gram id. The candidates' n-grams and
    `ref_order` follow the toolkit's order (its `precook`'s: each sentence's n-grams as they first occur in it), in
    which CIDEr-D adds up its norms and products, so that its sums are the toolkit's to the last bit."""

    ref_sentence: np.ndarray  # [G] int64: the reference sentence of each row (one n-gram in one reference)
    ref_count: np.ndarray  # [G] int64: its count there
    ref_ngram: np.ndarray  # [G] int64: its n-gram id
    group_key: np.ndarray  # [D] int64: each distinct (image, n-gram) of the references, grouped by image
    group_start: np.ndarray  # [D + 1] int64: its rows are group_start[d]..group_start[d + 1] - 1
    group_max: np.ndarray  # [D] int64: its highest count in one reference (BLEU's clipping)
    cand_key: np.ndarray  # [C] int64: each distinct (image, n-gram) of the candidates, by image, in the toolkit's order
    cand_count: np.ndarray  # [C] int64: its count in the candidate
    cand_group: np.ndarray  # [C] int64: the group with the same key, or -1 when no reference of the image has it
    ref_order: np.ndarray  # [G] int64: the rows reference by reference, each in the toolkit's order


def reference_images(n_refs: np.ndarray) -> np.ndarray:
    """[R] the image of each reference sentence, from the references per image [I] (grouped by image, in order)."""
    return np.repeat(np.arange(len(n_refs), dtype=np.int64), n_refs)


def first_references(n_refs: np.ndarray) -> np.ndarray:
    """[I] the index of each image's first reference sentence (where its run of references starts)."""
    return np.cumsum(n_refs) - n_refs


@dataclass
class CorpusRows:
    """The n-grams of one evaluation: references (grouped by image, in order) and one candidate per image."""

    orders: list[OrderCounts]  # n = 1..MAX_N
    ref_lengths: np.ndarray  # [R] words per reference
    cand_lengths: np.ndarray  # [I] words per candidate
    n_refs: np.ndarray  # [I] references per image
    id_bits: int  # every n-gram id is below 1 << id_bits
    offsets: list[int]  # the ids of order k + 1 are offsets[k]..offsets[k + 1] - 1
    words: np.ndarray  # [W] word ids of the references' words then the candidates', in order
    odd_spacing: np.ndarray | None = None  # [S] bool, references then candidates: split(" ") is not split()

    @property
    def ref_image(self) -> np.ndarray:
        """[R] the image of each reference sentence."""
        return reference_images(self.n_refs)

    @property
    def first_ref(self) -> np.ndarray:
        """[I] the index of each image's first reference sentence (where its run of references starts)."""
        return first_references(self.n_refs)


def encode_corpus(refs: list[list[str]], cands: list[str], n: int = MAX_N, native: bool | None = None) -> CorpusRows:
    """The n-gram table of tokenised references (a list per image) and candidates (one per image).

    `native`: None takes the C table (`fsgr.metrics.speedups.ngram_table`, compiled at install) when it is built,
    else this module's numpy table, the reference; True or False insists on one (True raises when it is not
    built). Both give the same n-grams, counts, groups and matches; only the order of ids and groups differs."""
    if len(refs) != len(cands):
        raise ValueError(f"{len(refs)} reference lists for {len(cands)} candidates")
    if native and speedups.ngram_table is None:
        raise RuntimeError(f"the compiled n-gram table is not built here: {speedups.missing or 'switched off'}")
    ref_sentences = [r for rs in refs for r in rs]
    sentences = ref_sentences + list(cands)
    n_refs = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    if native is not False and speedups.ngram_table is not None:
        return _native_table(sentences, n_refs, n)
    return _numpy_table(sentences, n_refs, n)


def _native_table(sentences: list[str], n_refs: np.ndarray, n: int) -> CorpusRows:
    """The C table. It splits bytes at ASCII white space, so a sentence holding a non-ASCII character (where
    str.split() also splits at Unicode white space, such as the U+00A0 the PTB tokenizer writes into "22 3/4") is
    handed over as its str.split() words one space apart, in UTF-8 (the same words: UTF-8 bytes >= 0x80 are never
    white space), and its split(" ") flag for ROUGE-L is taken from the sentence itself: that sentence alone costs
    Python time, not the corpus."""
    char_lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    text = "".join(sentences)
    others = [] if text.isascii() else [k for k, s in enumerate(sentences) if not s.isascii()]
    if others:
        pieces = list(sentences)
        for k in others:
            pieces[k] = " ".join(sentences[k].split())
            char_lengths[k] = len(pieces[k].encode("utf-8", "surrogatepass"))
        text = "".join(pieces)
    words, lengths, odd_spacing, offsets, id_bits, orders = speedups.ngram_table(
        text.encode("utf-8", "surrogatepass"), char_lengths, n_refs, n)
    odd_spacing = np.frombuffer(odd_spacing, dtype=bool)
    for k in others:
        odd_spacing[k] = sentences[k].split(" ") != sentences[k].split()
    lengths = np.frombuffer(lengths, dtype=np.int64)
    n_ref = int(n_refs.sum())
    return CorpusRows(
        orders=[OrderCounts(*_views(*order)) for order in orders],
        ref_lengths=lengths[:n_ref], cand_lengths=lengths[n_ref:], n_refs=n_refs, id_bits=id_bits, offsets=offsets,
        words=np.frombuffer(words, dtype=np.int64), odd_spacing=odd_spacing)


def _views(block: bytearray, offsets: tuple[int, ...], counts: tuple[int, ...]) -> list[np.ndarray]:
    data = np.frombuffer(block, dtype=np.int64)
    return [data[o:o + c] for o, c in zip(offsets, counts)]


def _numpy_table(sentences: list[str], n_refs: np.ndarray, n: int) -> CorpusRows:
    vocab = NgramVocab(sentences, n)
    n_images, n_ref = len(n_refs), int(n_refs.sum())
    ref_image, first_ref = reference_images(n_refs), first_references(n_refs)
    sentence_of_word = np.repeat(np.arange(len(vocab.lengths), dtype=np.int64), vocab.lengths)
    n_ref_words = int(vocab.lengths[:n_ref].sum())
    id_bits = max(vocab.size, 1).bit_length()
    ref_bits = max(int(n_refs.max(initial=1)) - 1, 1).bit_length()  # a reference's index within its image
    if max(n_images, 1).bit_length() + id_bits + ref_bits > 63:
        raise ValueError(f"too many images and n-grams for the n-gram index: {n_images}, {vocab.size}")
    id_mask, ref_mask = (1 << id_bits) - 1, (1 << ref_bits) - 1
    orders = []
    for pos, ids in zip(vocab.positions, vocab.ids):
        cut = int(np.searchsorted(pos, n_ref_words))  # references' n-grams first, then the candidates'
        sentence = sentence_of_word[pos[:cut]]
        image = ref_image[sentence]
        # one sort by (image, n-gram, reference): runs are the rows, runs of the high bits the (image, n-gram) groups;
        # a row's first position orders it as the toolkit meets it (positions run sentence by sentence)
        row_key, ref_count, row_first = count_runs_first(
            (((image << id_bits) | ids[:cut]) << ref_bits) | (sentence - first_ref[image]), pos[:cut])
        row_group = row_key >> ref_bits
        starts = np.flatnonzero(_first_of_runs(row_group))
        group_key = row_group[starts]
        cand_key, cand_count, cand_first = count_runs_first(
            ((sentence_of_word[pos[cut:]] - n_ref) << id_bits) | ids[cut:], pos[cut:])
        in_order = np.argsort(cand_first)
        cand_key, cand_count = cand_key[in_order], cand_count[in_order]
        group, hit = find_sorted(group_key, cand_key)
        orders.append(OrderCounts(
            ref_sentence=first_ref[row_group >> id_bits] + (row_key & ref_mask), ref_count=ref_count,
            ref_ngram=row_group & id_mask, group_key=group_key, group_start=np.append(starts, len(row_key)),
            group_max=np.maximum.reduceat(ref_count, starts) if len(starts) else np.zeros(0, dtype=np.int64),
            cand_key=cand_key, cand_count=cand_count, cand_group=np.where(hit, group, -1),
            ref_order=np.argsort(row_first)))
    return CorpusRows(orders=orders, ref_lengths=vocab.lengths[:n_ref], cand_lengths=vocab.lengths[n_ref:],
                      n_refs=n_refs, id_bits=id_bits, offsets=vocab.offsets,
                      words=vocab.words)
