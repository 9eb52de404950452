"""Caption text -> words -> ids.

Words come from the metrics PTB tokenizer (`fsgr.metrics.tokenizer.ptb_tokenize`), so training and scoring see the
same words and nothing needs spaCy (the reference used spaCy `en_core_web_sm`, whose model name broke installs).
The reference then drops a fixed list of punctuation tokens (M2's `data/field.py`); we drop the same list.
"""

from __future__ import annotations

from typing import Literal, Sequence

from fsgr.errors import DataError
from fsgr.metrics.tokenizer import ptb_tokenize

# The reference's punctuation list (M2 `data/field.py`, nopoints=False: ".." is kept). Same as pycocoevalcap's.
PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", "-lrb-", "-rrb-", "-lcb-", "-rcb-",
     ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

LengthPolicy = Literal["truncate", "refuse"]


def tokenize_captions(raws: Sequence[str]) -> list[list[str]]:
    """Many captions at once (one tokenizer call): lower-case words, punctuation tokens dropped."""
    if not raws:
        return []
    joined = ptb_tokenize([str(r) for r in raws])
    if len(joined) != len(raws):
        raise DataError(f"PTB tokenizer returned {len(joined)} lines for {len(raws)} captions")
    return [[w for w in line.lower().split() if w not in PUNCTUATION] for line in joined]


def tokenize_caption(raw: str) -> list[str]:
    """One caption -> lower-case words (PTB tokenisation, reference punctuation dropped)."""
    return tokenize_captions([raw])[0]


def encode_caption(words: Sequence[str], vocab, max_len: int = 54, policy: LengthPolicy = "truncate",
                   name: str = "") -> list[int]:
    """[<bos>, w1..wk, <eos>] with OOV -> <unk>. `max_len` counts <bos>/<eos>.

    policy 'truncate' keeps the first max_len-2 words (the <eos> is kept); 'refuse' raises DataError naming the
    caption (`name`, e.g. "image 42 annotation 7", helps find it).
    """
    if max_len < 3:
        raise DataError(f"max_len={max_len}: needs room for <bos>, one word and <eos>")
    room = max_len - 2
    if len(words) > room:
        if policy == "refuse":
            where = f"{name}: " if name else ""
            text = " ".join(words)
            raise DataError(f"{where}caption has {len(words)} words + <bos>/<eos> > max_len={max_len} "
                            f"(length_policy=refuse): {text[:120]!r}")
        if policy != "truncate":
            raise DataError(f"unknown length policy {policy!r}: use 'truncate' or 'refuse'")
        words = words[:room]
    return [vocab.bos_id, *vocab.encode(words), vocab.eos_id]
