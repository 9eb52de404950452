"""Captions tokenised once (with the on-disk cache) and global batches split over any number of processes."""

from __future__ import annotations

import numpy as np
import pytest

from fsgr.data.encoded import TokenizedCaptions, captions_key
from fsgr.data.records import ImageRecord
from fsgr.data.sampling import GlobalBatchSampler, split_sizes
from fsgr.data.text import encode_caption, tokenize_captions
from fsgr.data.vocab import Vocab
from fsgr.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def flickr_records(flickr):
    """300 Flickr8k images with their 5 real captions each (the text as the annotators' file has it)."""
    names = list(flickr)[:300]
    return [ImageRecord(image_id=i, path=f"/img/{n}", split="train", captions=tuple(flickr[n]),
                        annotation_ids=tuple(range(10 * i, 10 * i + len(flickr[n])))) for i, n in enumerate(names)]


def test_tokenised_once_then_loaded_from_the_cache(flickr_records, tmp_path):
    first = TokenizedCaptions.of(flickr_records, tmp_path)
    assert not first.from_cache and len(list(tmp_path.glob("captions-*.npz"))) == 1
    second = TokenizedCaptions.of(flickr_records, tmp_path)
    assert second.from_cache
    assert second.table == first.table and np.array_equal(second.word_index, first.word_index)
    words = tokenize_captions([c for r in flickr_records for c in r.captions])
    assert [second.words(c) for c in range(second.num_captions)] == words
    # another caption text (or another annotation id) is another key: never a stale entry
    edited = [flickr_records[0].__class__(**{**flickr_records[0].__dict__, "captions": ("a dog runs",) * 5}),
              *flickr_records[1:]]
    assert captions_key(edited) != captions_key(flickr_records)
    assert not TokenizedCaptions.of(edited, tmp_path).from_cache


def test_encoding_matches_one_caption_at_a_time(flickr_records):
    words = TokenizedCaptions.tokenize(flickr_records)
    vocab = Vocab.from_counts(words.word_counts(), min_freq=3)
    assert vocab == Vocab.build(tokenize_captions([c for r in flickr_records for c in r.captions]), min_freq=3)
    encoded = words.encode(vocab, max_len=10, length_policy="truncate", records=flickr_records)
    for c in range(words.num_captions):
        expected = encode_caption(words.words(c), vocab, 10, "truncate")
        assert encoded.flat_ids[encoded.offsets[c]:encoded.offsets[c + 1]].tolist() == expected
    assert encoded.caption_image.tolist() == [i for i, r in enumerate(flickr_records) for _ in r.captions]
    with pytest.raises(DataError, match=r"image \d+ annotation \d+: caption has \d+ words"):
        words.encode(vocab, max_len=10, length_policy="refuse", records=flickr_records)


def test_split_sizes_and_uneven_global_batches():
    assert split_sizes(10, 4) == [3, 3, 2, 2] and split_sizes(3, 2) == [2, 1]
    one = list(GlobalBatchSampler(23, 10, seed=5, epoch=2))
    assert len(one) == 2 and all(len(b) == 10 for b in one)
    ranks = [list(GlobalBatchSampler(23, 10, rank=r, world_size=4, seed=5, epoch=2)) for r in range(4)]
    for step in range(2):
        assert [len(ranks[r][step]) for r in range(4)] == [3, 3, 2, 2]
        assert [i for r in range(4) for i in ranks[r][step]] == one[step]   # the same items, in the same order
    # accumulation: 2 micro-batches of 5, each over 4 processes (2/1/1/1)
    micro = [list(GlobalBatchSampler(23, 10, micro_steps=2, rank=r, world_size=4, seed=5, epoch=2)) for r in range(4)]
    assert [len(micro[r][0]) for r in range(4)] == [2, 1, 1, 1]
    assert [i for m in range(2) for r in range(4) for i in micro[r][m]] == one[0]
    # resuming after one step yields the second step only
    assert list(GlobalBatchSampler(23, 10, seed=5, epoch=2, start_step=1)) == one[1:]
    with pytest.raises(ConfigError, match="cannot be split over 4 processes"):
        GlobalBatchSampler(23, 3, world_size=4)
