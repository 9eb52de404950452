"""Our stdlib BPE tokenizer against OpenAI's own (`openai-clip`'s simple_tokenizer with ftfy + regex)."""

import random

import pytest
import torch

from fsgr.models.clip import tokenize
from fsgr.models.codebook import read_class_names
from fsgr.models.tokenizer import EOT, SOT, default_tokenizer, pre_tokenize

from openai_reference import openai_tokenize, openai_tokenizer

TRICKY = [
    "A photo of a dog.", "don't STOP'S it'Ll 'RE 'vE", "''s'''t", "ſ 'ſ", "café naïve résumé", "cafe\u0301",
    "ﬁsh ﬂag ﬃ ﬅ", "ＬＯＵＤ　ＮＯＩＳＥＳ１２３", "“quoted” ‘single’ ʼn", "it&rsquo;s &amp;amp; &lt;b&gt; &EACUTE; &#x2019; &#8217;",
    "<b>it&rsquo;s</b>\nnext &rsquo; line", "line1\r\nline2\u2028x\u0085y", "\x1b[31mred\x1b[0m", "tab\tsep  multiple   spaces",
    "日本語のテキスト 中文 한국어", "emoji 🐶🐱 👍🏽", "12345 3.14 1,000 ²³ ½ Ⅻ ①", "Ελληνικά Кириллица עברית العربية",
    "x\u200by zero width", "mixed-case CamelCase", "<|startoftext|> <|endoftext|>", "snake_case_words", "ǅ ĳ Ǳ",
    "\ufeffbom", "e.g. U.S.A.", "a" * 30, "rubik's cube", "  leading and trailing  ", "NBSP\u00a0here", "\u3000ideo",
    "\u2014dash\u2013", "I\u0307 ß ẞ ǰ Σσς", "\x1c\x1d\x1e\x1f", "\x7f\x00ctl", "&nosemicolon &amp", "",
]


def _random_texts(n: int, seed: int = 0) -> list[str]:
    # well-formed text over Latin, punctuation, CJK symbols, full/half width forms and the cases the regex special-cases
    rng = random.Random(seed)
    pool = [chr(c) for c in [*range(32, 127), *range(0x370, 0x400), *range(0x2000, 0x2070), *range(0x3000, 0x3040),
                             *range(0xFF00, 0xFFF0), 0x1F600, 0x1F44D, 0x2028, 0xFEFF, 0x17F, 0xE9, 0xFC]]
    pool += [" ", "'", "s", "t", "re", "&", "amp;", "#", "<"]
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 25))) for _ in range(n)]


@pytest.fixture(scope="module")
def ram_tags():
    return read_class_names("ram")


@pytest.fixture(scope="module")
def coco80():
    return read_class_names("coco80")


def test_all_ram_tags_equal_openai(ram_tags):
    assert len(ram_tags) == 4585
    ours = tokenize(ram_tags)
    assert ours.dtype == torch.long and ours.shape == (4585, 77)
    assert torch.equal(ours, openai_tokenize(ram_tags))


def test_coco80_with_template_equal_openai(coco80):
    texts = [f"a photo of a {name}." for name in coco80]
    assert torch.equal(tokenize(texts), openai_tokenize(texts))


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_text_equal_openai(text):
    assert default_tokenizer().encode(text) == openai_tokenizer().encode(text)


def test_random_wellformed_text_equal_openai():
    texts = _random_texts(400)
    ours, ref = default_tokenizer(), openai_tokenizer()
    mismatched = [t for t in texts if ours.encode(t) != ref.encode(t)]
    assert not mismatched, [ascii(t) for t in mismatched[:5]]


def test_special_tokens_and_padding():
    ids = tokenize(["a dog", "a cat sitting"])
    tok = default_tokenizer()
    assert ids[0, 0] == tok.encoder[SOT] == 49406
    assert (ids.argmax(dim=-1) == torch.tensor([3, 4])).all()  # EOT (49407) is the largest id: encode_text pools there
    assert ids[0, 4:].eq(0).all()
    assert tok.decode(ids[1, 1:4].tolist()).strip() == "a cat sitting"


def test_pre_tokenizer_contractions_and_classes():
    assert pre_tokenize("it's 42-b ok") == ["it", "'s", "4", "2", "-", "b", "ok"]
    assert pre_tokenize(f"{SOT}x{EOT}") == [SOT, "x", EOT]


def test_too_long_text_is_refused_or_truncated():
    text = "dog " * 100
    with pytest.raises(ValueError, match="longer than the context length 77"):
        tokenize(text)
    ids = tokenize(text, truncate=True)
    assert ids.shape == (1, 77) and ids[0, -1] == 49407 and ids[0].ne(0).all()
