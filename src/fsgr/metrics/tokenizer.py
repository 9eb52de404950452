"""A pure-Python reproduction of the Stanford PTBTokenizer exactly as the COCO caption toolkit runs it.

pycocoevalcap's `PTBTokenizer` joins the captions with newlines, runs
`java -cp stanford-corenlp-3.4.1.jar edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase`, splits the
output on newlines and spaces and drops the tokens in `PUNCTUATIONS`. `ptb_tokenize` gives the same strings without
Java: a JFlex-style longest-match lexer whose rules follow CoreNLP 3.4.1's `PTBLexer.flex` (default options:
PTB3 escaping, LaTeX quotes, `-LRB-` brackets, no Americanisation, untokenizable characters deleted), checked
against the real jar by `tests/metrics/test_ptb_tokenizer.py`.

Two paths, the same tokens: `_fast_line` takes a common caption (ASCII words, spaced or attached punctuation, 's
and n't) with string operations, in C where `fsgr.metrics.speedups.fast_lines` is built (`_fast_lines.c`), caption
by caption; every other caption goes to `_lex`, the rules themselves, compiled for the characters of the captions
that need them (`_cut`: a caption with an accent or U+00A0 costs no compile of the complete Unicode rules).

Quirks of the toolkit that this keeps on purpose, because they move the official numbers:
- brackets become `-lrb-`/`-rrb-`/`-lcb-`/`-lsb-`... after lower-casing, and the toolkit's punctuation list only
  holds the upper-case `-LRB-` forms, so the lower-case ones stay in the text and count as words;
- `cannot`, `gonna`, `gotta`, `lemme`, `gimme`, `wanna`, `'tis`, `'twas` are split (`can not`, `gon na`, ...);
- a few token classes keep a non-breaking space inside one token (`5\xa01/2`, phone numbers, SGML tags);
- characters outside the Basic Multilingual Plane (emoji) are deleted, as Java's UTF-16 lexer cannot read them.
- the end of a caption sees the start of the next one (the toolkit lexes one newline-joined file): `A.` before
  a line starting with `The` loses its period.

One deliberate difference: the toolkit replaces only `\\n` inside a caption by a space, so a caption holding `\\r`,
U+2028/U+2029, U+000B/U+000C or U+0085 gives Java an extra line and shifts every later caption onto the wrong
image. We treat those characters as spaces (what the toolkit meant); see docs/metrics.md.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache

import numpy as np

from fsgr.metrics import speedups

# pycocoevalcap/tokenizer/ptbtokenizer.py: the tokens it removes after tokenising.
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])

# Java line terminators that the toolkit does not replace (they would split a caption in two): spaces for us.
_EXTRA_NEWLINE_CHARS = "\r\u2028\u2029\u000b\u000c\u0085"
_EXTRA_NEWLINES = str.maketrans(dict.fromkeys(_EXTRA_NEWLINE_CHARS, " "))


# ---------------------------------------------------------------------------------------------------------------
# Character classes (JFlex [:letter:], [:digit:], [:uppercase:] over the UTF-16 code units Java's lexer sees)

def _ranges(categories: tuple[str, ...], code_points: list[int]) -> str:
    """Regex class body of the given (sorted, BMP) code points whose general category is in `categories`
    (surrogates are "Cs").

    Members are written as themselves (letters and digits are never special inside a class): the escaped form
    made the rules' 20,000-character patterns several times slower to compile."""
    out: list[list[int]] = []
    for cp in code_points:
        if unicodedata.category(chr(cp)) in categories:
            if out and out[-1][1] == cp - 1:
                out[-1][1] = cp
            else:
                out.append([cp, cp])
    for a, b in out:
        if not (chr(a).isalnum() and chr(b).isalnum()):
            raise AssertionError(f"class member U+{a:04X}..U+{b:04X} is not a letter or digit")
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in out)


@lru_cache(maxsize=8)
def _classes(alphabet: frozenset[str] | None) -> dict[str, str]:
    """The letter, digit and upper-case classes: over the whole BMP (`alphabet` None), or over ASCII and the BMP
    characters of `alphabet` alone (see `_cut`)."""
    if alphabet is None:
        code_points = list(range(0x10000))
    else:
        code_points = list(range(0x80)) + sorted(ord(ch) for ch in alphabet if 0x80 <= ord(ch) < 0x10000)
    return {
        "L": _ranges(("Lu", "Ll", "Lt", "Lm", "Lo"), code_points),
        "D": _ranges(("Nd",), code_points),
        "U": _ranges(("Lu",), code_points),
    }


# ---------------------------------------------------------------------------------------------------------------
# Macros (PTBLexer.flex of CoreNLP 3.4.1). `(?i:...)` marks JFlex %caseless literals; character classes stay
# case-sensitive, as in JFlex. Alternatives are ordered longest-first where Python's leftmost-first matching would
# otherwise stop short of JFlex's longest match.

_MACRO = re.compile(r"\{([A-Z][A-Z0-9]*)\}")
_NEVER = "(?:(?!))"  # a match that always fails (a group, so that a quantifier may follow it)


def _cut(pattern: str, alphabet: frozenset[str] = frozenset()) -> str:
    """`pattern` cut to what can match text written in ASCII and the characters of `alphabet`: the other members and
    ranges leave its character classes (a class left empty never matches; a negated one left empty matches any
    character) and any other non-ASCII character outside a class becomes `_NEVER`. The same matches on such text, and
    `re` compiles it far faster: a class holding a character past U+00FF is built as a 64 KiB bitmap. Non-ASCII
    characters must be written as themselves, not as regex escapes."""
    out, i = [], 0
    kept = sorted(alphabet)

    def keep(ch: str) -> bool:
        return ch.isascii() or ch in alphabet

    def atom() -> str:  # the character or escape at i
        if pattern[i] != "\\":
            return pattern[i]
        if pattern[i + 1] in "uUxN":
            raise AssertionError(f"a character escape in a lexer pattern (write the character): {pattern!r}")
        return pattern[i:i + 2]

    while i < len(pattern):
        if pattern[i] != "[":
            a = atom()
            out.append(a if keep(a) else _NEVER)
            i += len(a)
            continue
        i += 1
        negated = pattern[i] == "^"
        i += negated
        if pattern[i] == "]":
            raise AssertionError(f"a class starting with ']' in a lexer pattern: {pattern!r}")
        members = []
        while pattern[i] != "]":
            first = atom()
            i += len(first)
            if pattern[i] == "-" and pattern[i + 1] != "]":  # a range first-last
                i += 1
                last = atom()
                i += len(last)
                if first.isascii():
                    members.append(first + "-" + (last if last.isascii() else "\x7f"))
                members += [ch for ch in kept if first[-1] <= ch <= last[-1]]  # (an escape: its character)
            elif keep(first):
                members.append(first)
        i += 1
        if members:
            out.append("[" + "^" * negated + "".join(members) + "]")
        else:
            out.append("(?s:.)" if negated else _NEVER)
    return "".join(out)


def _expand(pattern: str, macros: dict[str, str]) -> str:
    """`pattern` with each `{NAME}` of a defined macro replaced by `(?:its expansion)` (expansions hold none)."""
    return _MACRO.sub(lambda ref: "(?:" + macros[ref[1]] + ")" if ref[1] in macros else ref[0], pattern)


def _macros(alphabet: frozenset[str] | None = None) -> dict[str, str]:
    """The macros; with an `alphabet`, cut to ASCII and its characters (`_cut`; see `_get_rules`)."""
    c = _classes(alphabet)

    def cut(pattern: str) -> str:
        return pattern if alphabet is None else _cut(pattern, alphabet)
    m: dict[str, str] = {}

    def d(name, pattern):
        pattern = _expand(cut(pattern), m)
        if _MACRO.search(pattern):
            raise AssertionError(f"unexpanded macro in {name}: {pattern}")
        m[name] = pattern

    d("LETTERCLS", "[" + c["L"] + "]")
    digit_chars = c["D"] + "\u07c0-\u07c9"
    d("DIGIT", "[" + digit_chars + "]")
    d("UPPER", "[" + c["U"] + "]")
    d("SGML", r"<\/?[A-Za-z!?][^>\r\n]*>")
    d("SPMDASH", "&(?i:md|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]")
    d("SPAMP", r"&(?i:amp);")
    d("SPPUNC", r"&(?:(?i:ht|tl|ur|lr|qc|ql|qr|odq|cdq)|#[0-9]+);")
    d("SPLET", r"&[aeiouAEIOU](?i:acute|grave|uml);")
    d("SPACE", "[ \t\u00a0\u2000-\u200a\u3000]")
    d("SPACES", "{SPACE}+")
    d("NEWLINE", "\r\n|\r|\n|\u2028|\u2029|\u000b|\u000c|\u0085")
    d("SPACENL", "{SPACE}|{NEWLINE}")
    d("SPACENLS", "(?:{SPACENL})+")
    d("SENTEND", "{SPACENL}(?:{SPACENL}|[A-Z]|{SGML})")
    d("DATE", r"{DIGIT}{1,2}[\-\/]{DIGIT}{1,2}[\-\/]{DIGIT}{2,4}")
    d("NUM", "{DIGIT}*(?:[.:,\u00ad\u066b\u066c]{DIGIT}+)+|{DIGIT}+")
    d("NUMBER", r"[\-+]?{NUM}")
    d("SUBSUPNUM", "[\u207a\u207b\u208a\u208b]?(?:[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+|[\u2080-\u2089]+)")
    d("FRAC", "(?:{DIGIT}{1,4}[- \u00a0])?{DIGIT}{1,4}(?:\\\\?\\/|\u2044){DIGIT}{1,4}")
    d("FRAC2", "[\u00bc\u00bd\u00be\u2153-\u215e]")
    d("DOLSIGN", r"[A-Z]*\$|#")
    d("DOLSIGN2", "[\u00a2\u00a3\u00a4\u00a5\u0080\u20a0\u20ac\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]")
    # letters JFlex's [:letter:] misses (combining marks, ...); written as one class with LETTERCLS/DIGIT below
    # wherever only single characters are alternatives: the same strings, and far fewer character sets for `re`
    # to build (most of the time of compiling the rules)
    extra_letters = (
        "\u00ad\u0237-\u024f\u02c2-\u02c5\u02d2-\u02df\u02e5-\u02ff\u0300-\u036f"
        "\u0370-\u037d\u0384\u0385\u03cf\u03f6\u03fc-\u03ff\u0483-\u0487\u04cf\u04f6-\u04ff\u0510-\u0525"
        "\u055a-\u055f\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7\u0615-\u061a\u063b-\u063f\u064b-\u065e"
        "\u0670\u06d6-\u06ef\u06fa-\u06ff\u070f\u0711\u0730-\u074f\u0750-\u077f\u07a6-\u07b1\u07ca-\u07f5\u07fa"
        "\u0900-\u0903\u093c\u093e-\u094e\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09bc-\u09c4\u09c7\u09c8"
        "\u09cb-\u09cd\u09d7\u09e2\u09e3\u0a01-\u0a03\u0a3c\u0a3e-\u0a4f\u0a81-\u0a83\u0abc-\u0acf\u0b82"
        "\u0bbe-\u0bc2\u0bc6-\u0bc8\u0bca-\u0bcd\u0c01-\u0c03\u0c3e-\u0c56\u0d3e-\u0d44\u0d46-\u0d48\u0e30-\u0e3a"
        "\u0e47-\u0e4e\u0eb1-\u0ebc\u0ec8-\u0ecd"
    )
    d("LETTER", "[" + c["L"] + extra_letters + "]|{SPLET}")
    d("LETTERORDIGIT", "[" + c["L"] + extra_letters + digit_chars + "]|{SPLET}")
    d("WORD", "(?:{LETTER})(?:{LETTERORDIGIT})*(?:[.!?](?:{LETTER})(?:{LETTERORDIGIT})*)*")
    d("APOS", "['\u0092\u2019]|&(?i:apos);")
    d("APOSETCETERA", "{APOS}|[\u0091\u2018\u201b]")
    d("HYPHEN", "[-_\u058a\u2010\u2011]")
    d("LD", "[" + c["L"] + digit_chars + "]")
    d("THING", "(?:[dDoOlL](?:{APOSETCETERA})(?:{LD}))?(?:{LD})+"
      "(?:{HYPHEN}(?:[dDoOlL](?:{APOSETCETERA})(?:{LD}))?(?:{LD})+)*")
    d("THINGA", "[A-Z]+(?:(?:[+&]|{SPAMP})[A-Z]+)+")
    d("THING3", r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?\/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}")
    d("ACRO", r"(?:(?i:canada|sino|korean|eu|japan|non)-(?i:u\.s)|(?i:u\.s\.-)(?:(?i:u\.s\.s\.r)|(?i:u\.k)))"
      r"|[A-Za-z](?:\.[A-Za-z])*")
    d("ACRO2", r"(?:(?i:canada|sino|korean|eu|japan|non)-(?i:u\.s)|(?i:u\.s\.-)(?:(?i:u\.s\.s\.r)|(?i:u\.k)))"
      r"|[A-Za-z](?:\.[A-Za-z])+")
    d("HTHING", "[A-Za-z0-9][A-Za-z0-9.,\u00ad]*(?:-(?:{ACRO2}\\.|[A-Za-z0-9\u00ad]+))+")
    d("REDAUX", "{APOS}(?:[msdMSD]|(?i:re|ve|ll))")
    d("SWORD", "[A-Za-z\u00ad]*[A-MO-Za-mo-z]\u00ad*")
    d("SREDAUX", "(?i:n)(?:{APOSETCETERA})(?i:t)")
    # (longer alternatives first: Python takes the first alternative that matches, JFlex the longest)
    d("APOWORD", "[A-HJ-XZn](?:{APOSETCETERA})(?:{LETTERCLS}){2}(?:{LETTERCLS})*"
      "|(?:{LETTERCLS}){2,}(?<=[aeiouyAEIOUY])(?:{APOSETCETERA})[aeiouA-Z](?:{LETTERCLS})*"
      "|(?:{APOS})(?i:n)(?:{APOS})?|[lLdDjJ](?:{APOS})|(?i:dunkin)(?:{APOS})|(?i:somethin)(?:{APOS})"
      "|(?i:ol)(?:{APOS})|(?:{APOS})(?i:em)"
      "|(?:{APOS})[2-9]0(?i:s)|(?:{APOS})(?i:till?)"
      "|(?:{APOS})(?i:cause)|(?i:cont'd)\\.?|(?i:nor'easter)|(?i:c'mon)|(?i:e'er)|(?i:s'mores)"
      "|(?i:ev'ry)|(?i:li'l)|(?i:nat'l)")
    d("APOWORD2", "(?i:y)(?:{APOS})")
    d("FULLURL", r"(?i:https?)://[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]")
    d("LIKELYURL", r"(?:(?:(?i:www)\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})"
      r"|(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(?i:com|net|org|edu))"
      r"(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?")
    d("EMAIL", "[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00a0]*@(?:[^ \t\n\f\r\"<>|().\u00a0]+\\.)*"
      "[^ \t\n\f\r\"<>|().\u00a0]+")
    d("TWITTER", "@[a-zA-Z_][a-zA-Z_0-9]*|#(?:{LETTER})+")
    d("ABMONTH", "(?i:jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)")
    d("ABDAYS", "(?i:mon|tues|tue|thurs|thu|wed|fri)")
    d("ABSTATE", "(?i:ala|ariz)|A(?i:rk)|(?i:calif|colo|conn|dak|del|fla|ga)|I(?i:ll)|(?i:ind|kans|kan|ky|la)"
      "|M(?i:ass)|(?i:md|mich|minn)|M(?i:iss)|(?i:mont|mo|neb|nev|okla)|O(?i:re)|(?i:penn|pa|tenn|tex|va|vt)"
      "|W(?i:ash)|(?i:wisc|wis|wyo)")
    d("ABCOMP", "(?i:inc|cos|co|corp|ppty|ppties|pptys|pty|pties|ptys|ltd|plc|bancorp|dept|bhd|assn|univ|intl|sys)")
    d("ABNUM", "(?i:tel|est|ext|sq|ft)")
    d("ABPTIT", r"(?i:jr|sr|bros|ed\.d|ph\.d|blvd|rd|esq)")
    d("ABBREV1", r"(?:{ABMONTH}|{ABDAYS}|{ABSTATE}|{ABCOMP}|{ABNUM}|{ABPTIT}|(?i:etc|al|seq))\.")
    d("ABTITLE", "(?i:mrs|mr|ms)|M(?i:iss)|(?i:drs|dr|profs|prof|sens|sen|reps|rep|attys|atty|lt|col|gen|messrs"
      "|govs|gov|adm|rev|maj|sgt|cpl|pvt|mt|capt|ste|st|ave|pres|lieut|hon|brig|comdr|cmdr|pfc|spc|supts|supt"
      "|det)")
    d("ABCOMP2", "(?i:invt|elec|natl|mfg|mtg)")
    d("ABBREV4", r"{ACRO}|{ABTITLE}|(?i:vs|alex|wm|jos|cie|a\.k\.a|cf|treas)|{ABCOMP2}")
    d("ABBREV2", r"(?:{ABBREV4})\.")
    d("ABBREV3", r"(?i:ca|figs|fig|prop|nos|no|art|bldg|pp|op)\.")
    d("ACRONYM", r"(?:{ACRO})\.")
    d("PHONE", "(?:\\([0-9]{2,3}\\)[ \u00a0]?|(?:\\+\\+?)?(?:[0-9]{2,4}[\\- \u00a0])?[0-9]{2,4}[\\- \u00a0])"
      "[0-9]{3,4}[\\- \u00a0]?[0-9]{3,5}|(?:(?:\\+\\+?)?[0-9]{2,4}\\.)?[0-9]{2,4}\\.[0-9]{3,4}\\.[0-9]{3,5}")
    d("HYPHENS", r"\-+")
    d("LDOTS", "\\.{3,5}|(?:\\.[ \u00a0]){2,4}\\.|[\u0085\u2026]")
    d("FNMARKS", "@+|#+|_+")
    d("ASTS", r"\*+|(?:\\\*){1,3}")
    d("INSENTP", "[,;:\u3001]")
    d("QUOTES", "''|[`\u2018\u2019\u201a\u201b\u201c\u201d\u0091\u0092\u0093\u0094\u201e\u201f\u2039\u203a"
      "\u00ab\u00bb]{1,2}|{APOS}")
    d("DBLQUOT", "\"|&(?i:quot);")
    d("TBSPEC", "-(?i:rrb|lrb|rcb|lcb|rsb|lsb)-|(?i:c\\.d\\.s)|(?i:pro-)|(?i:anti-)|(?i:s)(?:&|&(?i:amp);)(?i:p-500)"
      "|(?i:s)(?:&|&(?i:amp);)(?i:ls)|(?i:cap)(?:{APOS})(?i:n)|(?i:c)(?:{APOS})(?i:est)")
    d("TBSPEC2", "{APOS}[0-9][0-9]")
    d("SMILEY", "[<>]?[:;=][\\-o\\*']?[\\(\\)DPdpO\\\\{@\\|\\[\\]]")
    d("ASIANSMILEY", "[\\^x=~<>]\\.\\[\\^x=~<>]|[\\-\\^x=~<>']_[\\-\\^x=~<>']|\\([\\-\\^x=~<>'][_.]?[\\-\\^x=~<>']\\)"
      "|\\([\\^x=~<>']-[\\^x=~<>'`]\\)")
    d("MISCSYMBOL", "[+%&~\\^|\\\\\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00b3\u00b4-\u00ba\u00d7\u00f7"
      "\u0387\u05be\u05c0\u05c3\u05c6\u05f3\u05f4\u0600-\u0603\u0606-\u060a\u060c\u0614\u061b\u061e\u066a\u066d"
      "\u0703-\u070d\u07f6\u07f7\u07f8\u0964\u0965\u0e4f\u1fbd\u2016\u2017\u2020-\u2023\u2030-\u2038\u203b"
      "\u203e-\u2042\u2044\u207a-\u207f\u208a-\u208e\u2100-\u214f\u2190-\u21ff\u2200-\u2bff\u3012\u30fb"
      "\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")
    return m


# ---------------------------------------------------------------------------------------------------------------
# Token transforms (the rule actions)

# the Unicode quotes in LaTeX form: left single, right single, left double, right double (a translate table: these
# few characters are no reason to compile regular expressions at import)
_UNICODE_QUOTES = str.maketrans({**dict.fromkeys("\u0091\u2018\u201b\u2039", "`"),
                                 **dict.fromkeys("\u0092\u2019\u203a", "'"),
                                 **dict.fromkeys("\u0093\u201c\u00ab", "``"),
                                 **dict.fromkeys("\u0094\u201d\u00bb", "''")})
_APOS_ENT = re.compile("&apos;|'")
_QUOT_ENT = re.compile("\"|&quot;")


def _latex_quotes(tok: str, probably_left: bool) -> str:
    if probably_left:
        tok = _APOS_ENT.sub("`", tok)
        tok = _QUOT_ENT.sub("``", tok)
    else:
        tok = _APOS_ENT.sub("'", tok)
        tok = _QUOT_ENT.sub("''", tok)
    return tok.translate(_UNICODE_QUOTES)


def _no_soft_hyphens(tok: str) -> str:
    out = tok.replace("\u00ad", "")
    return out if out else "-"


def _norm_amp(tok: str) -> str:
    return re.sub("(?i:&amp;)", "&", tok)


_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}


def _norm_currency(tok: str) -> str:
    tok = tok.replace("\u00a2", "cents").replace("\u00a3", "#")
    return re.sub("[\u0080\u00a4\u20a0\u20ac]", "$", tok)


def _brackets(tok: str) -> str:
    return tok.replace("(", "-LRB-").replace(")", "-RRB-")


def _hyphens(tok: str) -> str:
    return "--" if 3 <= len(tok) <= 4 else tok


# Actions: ("emit", fn) emits fn(text); ("push", k) emits text[:-k] and re-lexes the last k characters;
# ("dup_period",) emits text and re-lexes its final period; ("acronym",) is processAcronym; ("skip",) emits nothing.
def _rules(alphabet: frozenset[str] | None):
    m = _macros(alphabet)

    def x(p):
        return _expand(p if alphabet is None else _cut(p, alphabet), m)

    ident = ("emit", None)
    rules = [
        (r"(?i:c)[+][+]|(?i:c|f)#", None, ident),
        (r"(?i:cannot)|'(?i:twas)", None, ("push", 3)),
        (r"'(?i:tis)|(?i:gonna|gotta|lemme|gimme|wanna)", None, ("push", 2)),
        ("{SGML}", None, ("emit", lambda t: t.replace(" ", "\u00a0"))),
        ("{SPMDASH}", None, ("emit", lambda t: "--")),
        ("{SPAMP}", None, ("emit", _norm_amp)),
        ("{SPPUNC}", None, ident),
        ("{WORD}", "{REDAUX}", ("emit", _no_soft_hyphens)),
        ("{SWORD}", "{SREDAUX}", ("emit", _no_soft_hyphens)),
        ("{WORD}", None, ("emit", _no_soft_hyphens)),
        ("{APOWORD}", None, ident),
        ("{APOWORD2}", "{LETTERCLS}", ident),
        ("{FULLURL}", None, ident),
        ("{LIKELYURL}", None, ident),
        ("{EMAIL}", None, ident),
        ("{TWITTER}", None, ident),
        ("{REDAUX}", "[^A-Za-z]", ("emit", lambda t: _latex_quotes(t, False))),
        ("{SREDAUX}", None, ("emit", lambda t: _latex_quotes(t, False))),
        ("{DATE}", None, ident),
        ("{NUMBER}", None, ("emit", _no_soft_hyphens)),
        ("{SUBSUPNUM}", None, ident),
        ("{FRAC}", None, ("emit", lambda t: t.replace(" ", "\u00a0"))),
        ("{FRAC2}", None, ("emit", lambda t: _FRACTIONS.get(t, t))),
        ("{TBSPEC}", None, ("emit", _norm_amp)),
        ("{THING3}", None, ident),
        ("{DOLSIGN}", None, ident),
        ("{DOLSIGN2}", None, ("emit", _norm_currency)),
        ("{ACRONYM}", "{SPACENLS}(?:A(?i:bout)|A(?i:ccording)|A(?i:dditionally)|A(?i:fter)|A(?i:n)|A(?i:s)"
         "|A(?i:t)|A|B(?i:ut)|E(?i:arlier)|H(?i:owever)|H(?i:ere)|H(?i:er)|H(?i:e)|I(?i:f)|I(?i:n)|I(?i:t)"
         "|L(?i:ast)|M(?i:any)|M(?i:ore)|M(?i:r)\\.|M(?i:s)\\.|N(?i:ow)|O(?i:nce)|O(?i:ne)|O(?i:ther)|O(?i:ur)"
         "|S(?i:he)|S(?i:ince)|S(?i:ome)|S(?i:uch)|S(?i:o)|T(?i:hat)|T(?i:heir)|T(?i:hen)|T(?i:here)"
         "|T(?i:hese)|T(?i:hey)|T(?i:his)|T(?i:he)|W(?i:e)|W(?i:hen)|W(?i:hile)|W(?i:hat)|Y(?i:et)|Y(?i:ou)|{SGML})"
         "(?:{SPACENL})", ("acronym",)),
        ("{ABBREV3}", "(?:{SPACENL})?{DIGIT}", ident),
        (r"(?i:pty|pte|ptes|co)\.", "{SPACE}(?i:ltd|lim)", ident),
        ("{ABBREV1}", "{SENTEND}", ("dup_period",)),
        ("{ABBREV1}", "[\\s\\S][\\s\\S]", ident),  # JFlex {ABBREV1}/[^][^]: beats WORD's "etc.n"
        ("{ABBREV1}", None, ("dup_period",)),  # only at the very end of the text
        ("{ABBREV2}", None, ident),
        ("{ABBREV4}", "{SPACE}", ident),
        ("{ACRO}", "{SPACENL}", ident),
        ("{TBSPEC2}", "{SPACENL}", ident),
        ("{WORD}\\.", "{INSENTP}", ("emit", _no_soft_hyphens)),
        ("{PHONE}", None, ("emit", lambda t: _brackets(t.replace(" ", "\u00a0")))),
        ("{DBLQUOT}", "[A-Za-z0-9$]", ("emit", lambda t: _latex_quotes(t, True))),
        ("{DBLQUOT}", None, ("emit", lambda t: _latex_quotes(t, False))),
        ("\x7f", None, ("skip",)),
        ("<|&(?i:lt);", None, ("emit", lambda t: "<")),
        (">|&(?i:gt);", None, ("emit", lambda t: ">")),
        ("{SMILEY}", "[^A-Za-z0-9]", ("emit", _brackets)),
        ("{ASIANSMILEY}", None, ("emit", _brackets)),
        (r"\{", None, ("emit", lambda t: "-LCB-")),
        (r"\}", None, ("emit", lambda t: "-RCB-")),
        (r"\[", None, ("emit", lambda t: "-LSB-")),
        (r"\]", None, ("emit", lambda t: "-RSB-")),
        (r"\(", None, ("emit", lambda t: "-LRB-")),
        (r"\)", None, ("emit", lambda t: "-RRB-")),
        ("{HYPHENS}", None, ("emit", _hyphens)),
        ("{LDOTS}", None, ("emit", lambda t: "...")),
        ("{FNMARKS}", None, ident),
        ("{ASTS}", None, ident),
        ("{INSENTP}", None, ident),
        ("[?!]+", None, ident),
        ("[.\u00a1\u00bf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa\u3002]", None, ident),
        ("=", None, ident),
        ("/", None, ident),
        ("{HTHING}\\.", "{INSENTP}", ("emit", _no_soft_hyphens)),
        ("{HTHING}", None, ("emit", _no_soft_hyphens)),
        ("{THING}\\.", "{INSENTP}", ident),
        ("{THING}", None, ident),
        ("{THINGA}\\.", "{INSENTP}", ("emit", _norm_amp)),
        ("{THINGA}", None, ("emit", _norm_amp)),
        ("'", "[A-Za-z][^ \t\n\r\u00a0]", ("emit", lambda t: _latex_quotes(t, True))),
        ("{REDAUX}", None, ("emit", lambda t: _latex_quotes(t, False))),
        ("{QUOTES}", None, ("emit", lambda t: _latex_quotes(t, False))),
        ("<<|>>", None, ident),
        ("{MISCSYMBOL}", None, ident),
        ("\x00|{SPACES}|[\u200b\u200e\u200f\ufeff]", None, ("skip",)),
        ("{NEWLINE}", None, ("newline",)),
        ("&(?i:nbsp);", None, ("skip",)),
    ]
    compiled = []
    for main, look, action in rules:
        if look is None:
            pattern = re.compile(x(main))
        else:
            pattern = re.compile("(?:" + x(main) + ")(?=(" + x(look) + "))")
        compiled.append((pattern, look is not None, action))
    return compiled


@lru_cache(maxsize=4)
def _get_rules(alphabet: frozenset[str] | None = None) -> list:
    """The compiled rules: complete (`alphabet` None), or cut to ASCII and the characters of `alphabet` (`_cut`, and
    letter and digit classes built for those characters alone), which match exactly the same on text written in those
    characters (a character the text cannot hold changes nothing) and compile in a fraction of the time (~30 ms
    against ~0.25 s): compiling is most of the cost of the first call of `ptb_tokenize` that meets a caption the fast
    paths leave to the lexer, and a batch's captions for the lexer are lexed with the rules of their alphabet."""
    return _rules(alphabet)


def _alphabet(texts) -> frozenset[str]:
    """The non-ASCII characters of `texts`."""
    return frozenset().union(*(t for t in texts if not t.isascii())) - frozenset(map(chr, range(0x80)))


@lru_cache(maxsize=4)
def _simple(alphabet: frozenset[str] | None) -> re.Pattern:
    """The shortcut of `_lex` for the rules of `alphabet`: tokens that only one rule (or several, with the same match)
    can take where they start, so the rules need not be tried; group 1 a word, group 2 a token as it is, group 3 a
    bracket. A run of letters (JFlex's [:letter:], general category L) before white space, ")", "!" or "?" and white
    space, a comma or period and white space, or the end, is a WORD (the rules that could go on need an apostrophe,
    hyphen, digit, "@" or the like next; `_lex` leaves a word before a period to the rules when it is a single letter
    or an abbreviation, `_dot_words`). A period before white space and an ASCII letter, a newline or the end is a
    period (LDOTS needs another period, NUMBER a digit); a comma not before a digit is a comma (HTHING takes
    "a,-like" whole); "!" and "?" runs are themselves; 's 're 've 'll 'm 'd (REDAUX) and n't (SREDAUX) before white
    space are themselves (at the very end the rule "'" with its trailing context ties with REDAUX on 're and comes
    first); digits before white space and no digit are a NUMBER (FRAC and PHONE need a digit after one separator);
    ")" is -RRB-, and "(" is -LRB- unless a phone number or a smiley may start there; white space is skipped."""
    letters = "[" + _classes(alphabet)["L"] + "]+"
    return re.compile(f"({letters})(?=[ \\t\\n)]|[,.](?=[ \\t\\n]|$)|[!?]+(?=[ \\t\\n]|$)|$)"
                      r"|(\.(?=[ \t]+[A-Za-z]|\n|$)|,(?=[ \t\n]|,(?=[ \t\n]|$)|$)|[!?]+(?=[ \t\n]|$)"
                      r"|'(?:[msdMSD]|[rR][eE]|[vV][eE]|[lL][lL])(?=[ \t\n])|[nN]'[tT](?=[ \t\n])"
                      r"|[0-9]+(?![ \t]*[0-9])(?=[ \t\n]|$))"
                      r"|(\)|\((?![0-9\-^x=~<>']))|[ \t]+")


def _lex(text: str, stop: int, alphabet: frozenset[str] | None = None) -> list[str]:
    """Tokens (before lower-casing) of the tokens starting before `stop`: the Java lexer over `text`, with the rules
    cut to `alphabet` (which must hold the text's non-ASCII characters), or the complete rules (None)."""
    rules, simple = _get_rules(alphabet), _simple(alphabet)
    tokens: list[str] = []
    pos = 0
    while pos < stop:
        m = simple.match(text, pos)  # (the shortcut: see `_simple`)
        if m is not None:
            word, same, bracket = m.groups()
            if word is None or (word.lower() not in _ASSIMILATIONS and not (
                    text.startswith(".", m.end()) and (len(word) == 1 or word.lower() in _dot_words()))):
                if word or same:
                    tokens.append(word or same)
                elif bracket:
                    tokens.append("-RRB-" if bracket == ")" else "-LRB-")
                pos = m.end()
                continue
        best_len, best = 0, None
        for pattern, has_look, action in rules:
            m = pattern.match(text, pos)
            if m is None:
                continue
            total = (m.end(1) if has_look else m.end()) - pos
            if total > best_len:
                best_len, best = total, (m, action)
        if best is None:  # untokenizable: deleted (option "firstDelete"), acting as a separator
            pos += 1
            continue
        m, action = best
        tok = m.group(0)
        kind = action[0]
        if kind == "emit":
            tokens.append(action[1](tok) if action[1] else tok)
            pos = m.end()
        elif kind == "push":
            tokens.append(tok[:-action[1]])
            pos = m.end() - action[1]
        elif kind == "dup_period":
            tokens.append(tok)
            pos = m.end() - 1
        elif kind == "acronym":
            tok = tok.rstrip(" \t")
            end = pos + len(tok)
            if len(tok) == 2:  # "I." before a sentence start: the letter, then the period as its own token
                tokens.append(tok[:-1])
            else:
                tokens.append(tok)
            pos = end - 1
        elif kind == "newline":
            if m.start() >= stop:
                break
            tokens.append("\n")
            pos = m.end()
        else:  # skip
            pos = m.end()
        if pos == m.start() and kind != "skip":  # cannot happen (every pushback leaves >= 1 char consumed)
            raise AssertionError(f"PTB lexer made no progress at {pos} in {text!r}")
    return tokens


# ---------------------------------------------------------------------------------------------------------------
# Fast path for the common caption: ASCII words (hyphenated, with digits, with a lower-case 's or n't), a lone 's or
# n't (the PTB-tokenised form, "a horse 's head", "do n't": REDAUX and SREDAUX take them whole whatever follows the
# blank or the line's end, and nothing before a blank runs into them), commas and
# periods followed by white space or the end, and the punctuation the toolkit drops anyway: a double quote before or
# after a word or on its own, one of ; : ! ? right after a word or a quote or on its own. Every rule that can match
# there gives just these tokens, except the cases sent to the full lexer below (assimilations, abbreviations and
# single letters before a period, n't after an n or a non-letter, numbers on both sides of a space: fractions and
# phone numbers). Why the dropped punctuation is safe: a double quote is a token of its own under every rule (no rule
# but DBLQUOT starts with it or runs across it) and both of its forms (`` and '') are dropped; ; : ! ? after a word
# and before white space or a quote cannot continue the word (WORD needs a letter after ! or ?, EMAIL an @, the URLs a
# dot or //), nor start a smiley (that needs a mouth character next), and are single tokens the toolkit drops. A
# period is never followed by ; or : here (`word.;` is one token, "word."). Checked against the jar.

_FAST = re.compile(r'[ \t]*(?:(?:"?[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?:\'s|n\'t)?(?:[.,;:!?]"?|"[.,;:!?]?)?'
                   r'|"?[.,;:!?]|"|\'s|n\'t)(?:[ \t]+|$))*')
_FAST_NT_OK = re.compile(r"(?:^|[ \t\"])(?:[a-z]*[a-mo-z])?n't")
_DIGIT_SPACE_DIGIT = re.compile(r"[0-9][ \t]+[0-9]")
_ASSIMILATIONS = {"cannot": 3, "gonna": 2, "gotta": 2, "lemme": 2, "gimme": 2, "wanna": 2}
_DOT_WORDS = None


def _dot_words() -> frozenset[str]:
    """Words whose token depends on a following period: abbreviations and single letters (acronyms)."""
    global _DOT_WORDS
    if _DOT_WORDS is None:
        words = set("abcdefghijklmnopqrstuvwxyz")
        m = _macros(frozenset())  # (the abbreviations are ASCII)
        for name in ("ABMONTH", "ABDAYS", "ABSTATE", "ABCOMP", "ABNUM", "ABPTIT", "ABTITLE", "ABCOMP2"):
            words.update(w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"\(\?i:|\(\?:", "", m[name])))
        words.update(["etc", "al", "seq", "vs", "alex", "wm", "jos", "cie", "cf", "treas", "ca", "fig", "figs",
                      "prop", "no", "nos", "art", "bldg", "pp", "op", "pty", "pte", "ptes", "co", "kan", "kans",
                      "wis", "wisc", "ark", "ill", "mass", "miss", "ore", "wash"])
        _DOT_WORDS = frozenset(words)
    return _DOT_WORDS


_DROP_PUNCT = str.maketrans({ch: " " for ch in '.,;:!?"'})


def _fast_line(text: str) -> str | None:
    """The toolkit's output for a plain caption, or None when the full lexer is needed."""
    if _FAST.fullmatch(text) is None:
        return None
    low = text.lower()
    for sub in _ASSIMILATIONS:
        if sub in low:
            return None
    if "." in low:
        dot_words = _dot_words()
        end = low.find(".")
        while end != -1:
            start = max(low.rfind(" ", 0, end), low.rfind("\t", 0, end), low.rfind('"', 0, end)) + 1
            if start < end and low[start:end] in dot_words:
                return None
            end = low.find(".", end + 1)
    if _DIGIT_SPACE_DIGIT.search(text) is not None:
        return None
    if "'" in low:
        if "n't" in low and low.count("n't") != len(_FAST_NT_OK.findall(low)):
            return None
        low = low.replace("n't", " n't").replace("'s", " 's")
    # In a fast caption the punctuation only ends or opens a word or stands alone: dropping it is the toolkit's
    # filter.
    return " ".join(low.translate(_DROP_PUNCT).split())


_MAX_DOT_WORD = 8  # the compiled fast path compares the word before a period packed into 8 bytes


@lru_cache(maxsize=1)
def _packed_dot_words() -> bytes:
    """`_dot_words` for the compiled fast path: each word's letters packed big-endian into a uint64, sorted."""
    words = sorted(_dot_words())
    if max(map(len, words)) > _MAX_DOT_WORD:
        raise AssertionError(f"an abbreviation longer than {_MAX_DOT_WORD} letters: {max(words, key=len)}")
    return np.array(sorted(int.from_bytes(w.encode("ascii"), "big") for w in words), dtype=np.uint64).tobytes()


def _fast_lines(cleaned: list[str]) -> list[str | None]:
    """`_fast_line` of each caption: in C where `fsgr.metrics.speedups` has it, else in Python."""
    if speedups.fast_lines is not None:
        return speedups.fast_lines(cleaned, _packed_dot_words(), tuple(w.encode("ascii") for w in _ASSIMILATIONS))
    return [_fast_line(text) for text in cleaned]


def _finish(tokens: list[str]) -> str:
    """What pycocoevalcap makes of one output line: lower-case, join, rstrip, split on ' ', drop punctuation."""
    line = " ".join(t.lower() for t in tokens).rstrip()
    return " ".join(w for w in line.split(" ") if w not in PUNCTUATIONS)


def _clean(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"captions must be str, got {type(text).__name__}")
    return text.replace("\n", " ").translate(_EXTRA_NEWLINES)


def _clean_all(texts: list[str]) -> list[str]:
    """`_clean` of every caption; one scan of the joined batch when (as usual) there is nothing to clean."""
    texts = list(texts)
    if all(type(t) is str for t in texts):
        joined = "\n".join(texts)
        if joined.count("\n") == len(texts) - 1 and not any(ch in joined for ch in _EXTRA_NEWLINE_CHARS):
            return texts
    return [_clean(t) for t in texts]


def ptb_tokenize(texts: list[str]) -> list[str]:
    """PTB-tokenise, lower-case and strip punctuation, exactly as pycocoevalcap's PTBTokenizer does.

    `texts` are raw captions; returns one space-joined token string per caption. The captions are treated as one
    newline-joined document in this order (as the toolkit does), so the start of caption i+1 can affect the end
    of caption i (only through a sentence-final acronym such as "A.", whose period is dropped anyway).
    """
    cleaned = _clean_all(texts)
    out = _fast_lines(cleaned)
    lexed = [i for i, line in enumerate(out) if line is None]
    if lexed:  # (each with the start of the next caption: one set of rules for all their characters)
        docs = [cleaned[i] + "\n" + cleaned[i + 1] if i + 1 < len(cleaned) else cleaned[i] for i in lexed]
        alphabet = _alphabet(docs)
        for i, doc in zip(lexed, docs):
            out[i] = _finish(_lex(doc, len(cleaned[i]), alphabet))
    return out


def ptb_tokenize_one(text: str) -> str:
    """One caption on its own (as if it were the last line of the toolkit's file)."""
    return ptb_tokenize([text])[0]


if __name__ == "__main__":  # handy for checking a caption by hand: python -m fsgr.metrics.tokenizer "text"
    for arg in sys.argv[1:]:
        print(ptb_tokenize_one(arg))
