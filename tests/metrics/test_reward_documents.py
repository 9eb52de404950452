"""scst.reward_documents: the CIDEr-D reward's document frequencies over training captions (M2/RSTNet:
`Cider(PTBTokenizer.tokenize(captions))`, each caption a document) or over images (one document per image)."""

from __future__ import annotations

import numpy as np
import pytest

from fsgr.metrics.reward import CiderDReward


def test_caption_documents_are_each_caption_its_own_image(flickr):
    names = list(flickr)[:200]
    refs = {k: flickr[n][1:] for k, n in enumerate(names)}
    cands = [flickr[n][0] for n in names]
    ids = list(refs)
    by_caption = CiderDReward(refs, tokenized=True, documents="captions")
    by_image = CiderDReward(refs, tokenized=True, documents="images")
    # the M2 construction: every caption a key of its own, so "images" counts captions
    singles = CiderDReward({(k, j): [c] for k, caps in refs.items() for j, c in enumerate(caps)}, tokenized=True)
    caption_df, image_df, single_df = by_caption.tf_idf, by_image.tf_idf, singles.tf_idf
    assert caption_df.log_documents == pytest.approx(np.log(800)) and image_df.log_documents == pytest.approx(np.log(200))
    assert single_df.log_documents == caption_df.log_documents
    assert by_caption.vocab.size == singles.vocab.size
    assert np.array_equal(caption_df.log_df, single_df.log_df)
    assert (caption_df.log_df >= image_df.log_df).all() and (caption_df.log_df > image_df.log_df).any()
    a, b = by_caption(ids, cands), by_image(ids, cands)
    assert np.isfinite(a).all() and not np.allclose(a, b)
    with pytest.raises(ValueError, match="documents"):
        CiderDReward(refs, documents="sentences")
