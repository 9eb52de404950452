"""OpenAI CLIP's byte-level BPE tokenizer, standard library only.

Token ids equal OpenAI's `clip.tokenize` (tested on all 4,585 RAM tags and on tricky Unicode text) without its runtime
dependencies: `regex` (its `\\p{L}`/`\\p{N}` pre-tokeniser is replaced by an equivalent scanner over
`unicodedata` categories) and `ftfy` (its text clean-up is reimplemented below for well-formed Unicode: HTML entities,
C1 controls, Latin ligatures, full/half-width forms, curly quotes, line breaks, surrogates, terminal escapes, control
characters, NFC). Not reimplemented: ftfy's mojibake repair (`fix_encoding`), which only changes text that was decoded
with the wrong codec (e.g. 'cafÃ©'); such text tokenises as it is written. Doing it ourselves keeps the ids the same on
every machine, whatever is installed.

The BPE merges ship in `fsgr/assets/bpe_simple_vocab_16e6.txt.gz` (MIT licence, OpenAI).
"""

from __future__ import annotations

import gzip
import html
import html.entities
import re
import unicodedata
from functools import lru_cache
from importlib import resources
from typing import Iterable

import torch

SOT, EOT = "<|startoftext|>", "<|endoftext|>"


@lru_cache()
def bytes_to_unicode() -> dict[int, str]:
    """OpenAI's reversible map from the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


# --- text clean-up: ftfy.fix_text's fixers for well-formed text (ftfy: MIT licence, Robyn Speer) -------------------

_SINGLE_QUOTES = re.compile("[\u02bc\u2018-\u201b]")
_DOUBLE_QUOTES = re.compile("[\u201c-\u201f]")
_C1_CONTROLS = re.compile(r"[\x80-\x9f]")
_ANSI_ESCAPES = re.compile("\033\\[((?:\\d|;)*)([a-zA-Z])")
_HTML_ENTITY = re.compile(r"&#?[0-9A-Za-z]{1,24};")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_LIGATURES = str.maketrans({
    "Ĳ": "IJ", "ĳ": "ij", "ŉ": "ʼn", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǆ": "DŽ", "ǅ": "Dž", "ǆ": "dž",
    "Ǉ": "LJ", "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj",
    "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "ſt", "ﬆ": "st",
})
_WIDTH = {0x3000: " "}
_WIDTH.update({i: unicodedata.normalize("NFKC", chr(i)) for i in range(0xFF01, 0xFFF0)
               if unicodedata.normalize("NFKC", chr(i)) != chr(i)})
_CONTROL = dict.fromkeys([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070), 0xFEFF,
                          *range(0xFFF9, 0xFFFD)])


def _build_html_entities() -> dict[str, str]:
    # ';'-terminated HTML5 entities, plus the all-caps spelling of lower-case ones ('&EACUTE;' -> 'É'), as ftfy does
    entities = {}
    for name, char in html.entities.html5.items():
        if name.endswith(";"):
            entities["&" + name] = char
            if name == name.lower():
                upper = "&" + name.upper()
                if html.unescape(upper) == upper:
                    entities[upper] = char.upper()
    return entities


_HTML_ENTITIES = _build_html_entities()


def _unescape_entity(match: re.Match) -> str:
    entity = match.group(0)
    if entity in _HTML_ENTITIES:
        return _HTML_ENTITIES[entity]
    if entity.startswith("&#"):
        out = html.unescape(entity)
        return entity if ";" in out else out
    return entity


def _c1_to_windows_1252(match: re.Match) -> str:
    char = match.group(0)
    try:
        return bytes([ord(char)]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d are unassigned in cp1252: ftfy keeps them
        return char


def _surrogate_pair(match: re.Match) -> str:
    hi, lo = match.group(0)
    return chr(0x10000 + (ord(hi) - 0xD800) * 0x400 + (ord(lo) - 0xDC00))


def _fix_segment(text: str, unescape: bool) -> str:
    while True:
        before = text
        if unescape:
            text = _HTML_ENTITY.sub(_unescape_entity, text)
        text = _C1_CONTROLS.sub(_c1_to_windows_1252, text)
        text = text.translate(_LIGATURES).translate(_WIDTH)
        text = _SINGLE_QUOTES.sub("'", _DOUBLE_QUOTES.sub('"', text))
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
        text = text.replace("\u0085", "\n")
        if _SURROGATE.search(text):
            text = _SURROGATE.sub("\ufffd", _SURROGATE_PAIR.sub(_surrogate_pair, text))
        text = _ANSI_ESCAPES.sub("", text).translate(_CONTROL)
        text = unicodedata.normalize("NFC", text)
        if text == before:
            return text


def fix_text(text: str) -> str:
    """ftfy.fix_text without mojibake repair: line by line; HTML entities are decoded only on lines without '<'."""
    out, pos = [], 0
    unescape = True
    while pos < len(text):
        end = text.find("\n", pos) + 1 or len(text)
        segment = text[pos:end]
        if unescape and "<" in segment:
            unescape = False  # like ftfy, once a line looks like HTML the rest of the text is left escaped
        out.append(_fix_segment(segment, unescape))
        pos = end
    return "".join(out)


def basic_clean(text: str) -> str:
    text = fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def whitespace_clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# --- pre-tokeniser: OpenAI's regex without the `regex` package --------------------------------------------------------
# OpenAI: <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+  (IGNORECASE)

_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")


@lru_cache(maxsize=65536)
def _char_class(ch: str) -> str:
    """'L' letter, 'N' number, 'S' whitespace (as `regex` defines \\s), 'O' anything else."""
    cat = unicodedata.category(ch)
    if cat[0] in "LN":
        return cat[0]
    if ch.isspace() and ch not in "\x1c\x1d\x1e\x1f":  # `regex`'s \s is Unicode White_Space: no FS/GS/RS/US
        return "S"
    return "O"


def _casefold_eq(text: str, pos: int, word: str) -> bool:
    # IGNORECASE in `regex` uses simple case folding: after lower(), only LONG S (U+017F) still folds onto an ASCII letter
    if pos + len(word) > len(text):
        return False
    piece = text[pos:pos + len(word)].replace("\u017f", "s")
    return piece == word


def pre_tokenize(text: str) -> list[str]:
    """Split lower-cased, cleaned text exactly as OpenAI's regex does (`re.findall` semantics: first alternative wins)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith(SOT, i):
            out.append(SOT); i += len(SOT); continue
        if text.startswith(EOT, i):
            out.append(EOT); i += len(EOT); continue
        if text[i] == "'":
            match = next((w for w in _CONTRACTIONS if _casefold_eq(text, i + 1, w)), None)
            if match is not None:
                out.append(text[i:i + 1 + len(match)]); i += 1 + len(match); continue
        kind = _char_class(text[i])
        if kind == "S":
            i += 1
            continue
        if kind == "N":
            out.append(text[i]); i += 1; continue
        j = i + 1
        while j < n and _char_class(text[j]) == kind:
            j += 1
        out.append(text[i:j])
        i = j
    return out


def _default_bpe_path():
    return resources.files("fsgr").joinpath("assets/bpe_simple_vocab_16e6.txt.gz")


class SimpleTokenizer:
    """OpenAI's BPE: bytes -> unicode symbols -> merges by rank; ids 49406/49407 are start/end of text."""

    def __init__(self, bpe_path=None):
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        with resources.as_file(_default_bpe_path()) if bpe_path is None else _nullctx(bpe_path) as path:
            with gzip.open(path) as fh:
                merges_text = fh.read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in merges_text[1:49152 - 256 - 2 + 1]]
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab.extend("".join(m) for m in merges)
        vocab.extend([SOT, EOT])
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {SOT: SOT, EOT: EOT}

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word[:-1], word[1:]))
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        text = whitespace_clean(basic_clean(text)).lower()
        for token in pre_tokenize(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")


class _nullctx:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False


@lru_cache()
def default_tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def tokenize(texts: str | list[str], context_length: int = 77, truncate: bool = False):
    """Token ids (LongTensor [B, context_length]) as OpenAI's `clip.tokenize`: [SOT] + BPE + [EOT], zero-padded.

    A text longer than the context raises ValueError naming it, unless `truncate` (then its last id becomes EOT)."""
    if isinstance(texts, str):
        texts = [texts]
    tok = default_tokenizer()
    sot, eot = tok.encoder[SOT], tok.encoder[EOT]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [sot] + tok.encode(text) + [eot]
        if len(ids) > context_length:
            if not truncate:
                raise ValueError(f"text {text!r} is {len(ids)} tokens, longer than the context length {context_length}")
            ids = ids[:context_length]
            ids[-1] = eot
        result[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return result
