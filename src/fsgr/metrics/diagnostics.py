"""Caption diagnostics of one system (on PTB-tokenised captions): lengths, vocabulary, distinct-n, repetition,
captions that end on a function word (the SCST "bad ending": "a man riding a wave on a"), and the share copied
verbatim from the training captions.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

# determiners, prepositions, conjunctions and auxiliaries: a caption ending on one of these is cut off
FUNCTION_WORDS = frozenset(
    "a an the some this that these those its his her their of with in on at to into onto by for from near "
    "over under and or while is are as".split())


def has_repeated_ngram(words: list[str]) -> bool:
    """A word twice in a row ("a a"), or a bigram with a content word twice ("a wave on a wave"); bigrams of two
    function words ("in a" in "a man in a hat and a woman in a coat") repeat in ordinary English and do not count."""
    if any(u == v for u, v in zip(words, words[1:])):
        return True
    bigrams = [b for b in zip(words, words[1:]) if not (b[0] in FUNCTION_WORDS and b[1] in FUNCTION_WORDS)]
    return len(set(bigrams)) < len(bigrams)


def caption_diagnostics(tokens: list[str], train_captions: set[str] | None = None) -> dict:
    """Diagnostics of tokenised captions (space-joined words, one per image). `train_captions`: the tokenised
    training captions, for the share copied verbatim."""
    sentences = [t.split() for t in tokens]
    lengths = np.array([len(s) for s in sentences], dtype=np.int64)
    unigrams = Counter(w for s in sentences for w in s)
    bigrams = Counter(b for s in sentences for b in zip(s, s[1:]))
    n = max(len(sentences), 1)
    out = {
        "captions": len(sentences),
        "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
        "median_length": float(np.median(lengths)) if len(lengths) else 0.0,
        "length_histogram": {str(k): int(v) for k, v in sorted(Counter(lengths.tolist()).items())},
        "vocabulary": len(unigrams),
        "distinct_1": len(unigrams) / max(sum(unigrams.values()), 1),
        "distinct_2": len(bigrams) / max(sum(bigrams.values()), 1),
        "repeated_ngram_share": sum(has_repeated_ngram(s) for s in sentences) / n,
        "function_word_ending_share": sum(bool(s) and s[-1] in FUNCTION_WORDS for s in sentences) / n,
    }
    if train_captions is not None:
        out["copied_from_training_share"] = sum(" ".join(s) in train_captions for s in sentences) / n
    return out
