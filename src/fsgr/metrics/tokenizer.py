"""A pure-Python reproduction of the Stanford PTBTokenizer exactly as the COCO caption toolkit runs it.

pycocoevalcap's `PTBTokenizer` joins the captions with newlines, runs
`java -cp stanford-corenlp-3.4.1.jar edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase`, splits the
output on newlines and spaces and drops the tokens in `PUNCTUATIONS`. `ptb_tokenize` gives the same strings without
Java: a JFlex-style longest-match lexer whose rules follow CoreNLP 3.4.1's `PTBLexer.flex` (default options:
PTB3 escaping, LaTeX quotes, `-LRB-` brackets, no Americanisation, untokenizable characters deleted), checked
against the real jar by `tests/metrics/test_tokenizer_jar.py`.

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

def _ranges(categories: tuple[str, ...], category_of: list[str]) -> str:
    """Regex class body of the BMP code points whose general category is in `categories` (surrogates are "Cs").

    Members are written as themselves (letters and digits are never special inside a class): the escaped form
    made the rules' 20,000-character patterns several times slower to compile."""
    out, start = [], None
    for cp, cat in enumerate(category_of + ["Cn"]):  # (a sentinel closes the last range)
        if cat in categories:
            if start is None:
                start = cp
        elif start is not None:
            out.append((start, cp - 1))
            start = None
    for a, b in out:
        if not (chr(a).isalnum() and chr(b).isalnum()):
            raise AssertionError(f"class member U+{a:04X}..U+{b:04X} is not a letter or digit")
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in out)


@lru_cache(maxsize=2)
def _classes(ascii_only: bool = False) -> dict[str, str]:
    category_of = [unicodedata.category(chr(cp)) for cp in range(0x80 if ascii_only else 0x10000)]
    return {
        "L": _ranges(("Lu", "Ll", "Lt", "Lm", "Lo"), category_of),
        "D": _ranges(("Nd",), category_of),
        "U": _ranges(("Lu",), category_of),
    }


# ---------------------------------------------------------------------------------------------------------------
# Macros (PTBLexer.flex of CoreNLP 3.4.1). `(?i:...)` marks JFlex %caseless literals; character classes stay
# case-sensitive, as in JFlex. Alternatives are ordered longest-first where Python's leftmost-first matching would
# otherwise stop short of JFlex's longest match.

_MACRO = re.compile(r"\{([A-Z][A-Z0-9]*)\}")
_NEVER = "(?:(?!))"  # a match that always fails (a group, so that a quantifier may follow it)


def _ascii_only(pattern: str) -> str:
    """`pattern` cut to what can match ASCII text: non-ASCII members and ranges leave its character classes (a class
    left empty never matches; a negated one left empty matches any ASCII character) and a non-ASCII character outside
    a class becomes `_NEVER`. The same matches on ASCII text, and `re` compiles it far faster: a class holding a
    character past U+00FF is built as a 64 KiB bitmap. Non-ASCII characters must be written as themselves, not as
    regex escapes."""
    out, i = [], 0

    def atom() -> str:  # the character or escape at i
        if pattern[i] != "\\":
            return pattern[i]
        if pattern[i + 1] in "uUxN":
            raise AssertionError(f"a character escape in a lexer pattern (write the character): {pattern!r}")
        return pattern[i:i + 2]

    while i < len(pattern):
        if pattern[i] != "[":
            a = atom()
            out.append(a if a.isascii() else _NEVER)
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
            elif first.isascii():
                members.append(first)
        i += 1
        if members:
            out.append("[" + "^" * negated + "".join(members) + "]")
        else:
            out.append("[\x00-\x7f]" if negated else _NEVER)
    return "".join(out)


def _expand(pattern: str, macros: dict[str, str]) -> str:
    """`pattern` with each `{NAME}` of a defined macro replaced by `(?:its expansion)` (expansions hold none)."""
    return _MACRO.sub(lambda ref: "(?:" + macros[ref[1]] + ")" if ref[1] in macros else ref[0], pattern)


def _macros(ascii_only: bool = False) -> dict[str, str]:
    """The macros; `ascii_only` leaves the non-ASCII characters out (`_ascii_only`; see `_get_rules`)."""
    c = _classes(ascii_only)
    cut = _ascii_only if ascii_only else str
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
def _rules(ascii_only: bool):
    m = _macros(ascii_only)
    cut = _ascii_only if ascii_only else str

    def x(p):
        return _expand(cut(p), m)

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


_RULES: dict[bool, list] = {}


def _get_rules(ascii_only: bool = False) -> list:
    """The compiled rules. On ASCII text the rules without their non-ASCII characters (`_ascii_only`, and letter and
    digit classes built for ASCII alone) match exactly the same (a character the text cannot hold changes nothing),
    and they compile in a fraction of the time (~15 ms against ~0.2 s): compiling is most of the cost of the first
    call of `ptb_tokenize` that meets a caption the fast paths leave to the lexer."""
    if ascii_only not in _RULES:
        _RULES[ascii_only] = _rules(ascii_only)
    return _RULES[ascii_only]


# (a comma right after a word only when white space follows: HTHING takes "a,-like" whole)
_SIMPLE = re.compile(r"([A-Za-z]+|\.(?=[ \t]+[A-Za-z])|,(?![0-9]))(?=[ \t\n]|,(?=[ \t\n]|$)|$)|[ \t]+")


def _lex(text: str, stop: int) -> list[str]:
    """Tokens (before lower-casing) of the tokens starting before `stop`: the Java lexer over `text`."""
    rules = _get_rules(ascii_only=text.isascii())
    tokens: list[str] = []
    pos = 0
    while pos < stop:
        # Shortcut: an ASCII word followed by a space, comma, newline or the end can only be that word for every
        # rule that matches here (the ones with trailing context need an apostrophe or period next), a run of
        # spaces is skipped, and a period before a space and a letter is just a period.
        m = _SIMPLE.match(text, pos)
        if m is not None:
            word = m.group(1)
            if word is None:
                pos = m.end()
                continue
            if word.lower() not in _ASSIMILATIONS:
                tokens.append(word)
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
# Fast path for the common caption: ASCII words (hyphenated, with digits, with a lower-case 's or n't), commas and
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
                   r'|"?[.,;:!?]|")(?:[ \t]+|$))*')
_FAST_NT_OK = re.compile(r"(?:^|[ \t\"])[a-z]*[a-mo-z]n't")
_DIGIT_SPACE_DIGIT = re.compile(r"[0-9][ \t]+[0-9]")
_ASSIMILATIONS = {"cannot": 3, "gonna": 2, "gotta": 2, "lemme": 2, "gimme": 2, "wanna": 2}
_DOT_WORDS = None


def _dot_words() -> frozenset[str]:
    """Words whose token depends on a following period: abbreviations and single letters (acronyms)."""
    global _DOT_WORDS
    if _DOT_WORDS is None:
        words = set("abcdefghijklmnopqrstuvwxyz")
        m = _macros(ascii_only=True)  # (the abbreviations are ASCII)
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


# The plainest captions (98% of real ones): ASCII letter words, maybe hyphenated, one space apart, a comma only
# right after a word, at most one period and only at the very end. This is a strict subset of `_FAST` without digits
# or apostrophes, so of `_fast_line`'s checks only two remain: no assimilation ("cannot", "gonna", ...) anywhere,
# and the word before the final period is no abbreviation or single letter. `_fast_line` then just lower-cases
# and drops the commas and the final period.
# As a grammar a plain line is `[A-Za-z]+((-|,? )[A-Za-z]+)*\.?\n`. That is a condition on each pair of adjacent
# bytes' classes, checked in numpy over the whole batch: a space comes after a letter or comma and before a letter, a
# comma or hyphen after a letter and before a space or letter respectively, a period after a letter and before the
# newline, a newline after a letter or period (so no line is empty); nothing else but letters. A pair that breaks
# this marks the line of its second byte.
_LETTER, _SPACE, _COMMA, _HYPHEN, _PERIOD, _NEWLINE, _OTHER = range(7)
_BYTE_CLASS = bytearray([_OTHER] * 256)  # a bytes.translate table (non-ASCII text: UTF-8 bytes >= 0x80, other)
for _ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _BYTE_CLASS[ord(_ch)] = _LETTER
for _ch, _cls in ((" ", _SPACE), (",", _COMMA), ("-", _HYPHEN), (".", _PERIOD), ("\n", _NEWLINE)):
    _BYTE_CLASS[ord(_ch)] = _cls
_BEFORE = {_LETTER: range(7), _SPACE: (_LETTER, _COMMA), _COMMA: (_LETTER,), _HYPHEN: (_LETTER,),
           _PERIOD: (_LETTER,), _NEWLINE: (_LETTER, _PERIOD)}  # class -> the classes that may come right before it
_AFTER = {_LETTER: range(7), _SPACE: (_LETTER,), _COMMA: (_SPACE,), _HYPHEN: (_LETTER,), _PERIOD: (_NEWLINE,),
          _NEWLINE: range(7)}  # class -> the classes that may come right after it
_BAD_PAIR = bytes(0 if a in _AFTER and b in _BEFORE and b in _AFTER[a] and a in _BEFORE[b] else 1
                  for a in range(8) for b in range(8)) + bytes([1] * 192)  # translate table of a << 3 | b
_MAX_DOT_WORD = 8  # final words are compared packed into 8 bytes (`_dot_words` has none longer: checked there)
_ASSIMILATION_BYTES = tuple(w.encode("ascii") for w in _ASSIMILATIONS)


def _pack_words(data: np.ndarray, ends: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """[K] uint64: the lower-cased ASCII letters data[end - length:end] of each word (at most 8), one byte each."""
    packed = np.zeros(len(ends), dtype=np.uint64)
    for k in range(1, _MAX_DOT_WORD + 1):
        byte = data[np.maximum(ends - k, 0)].astype(np.uint64) | np.uint64(0x20)
        packed |= np.where(lengths >= k, byte << np.uint64(8 * (k - 1)), np.uint64(0))
    return packed


@lru_cache(maxsize=1)
def _packed_dot_words() -> np.ndarray:
    words = sorted(_dot_words())
    if max(map(len, words)) > _MAX_DOT_WORD:
        raise AssertionError(f"an abbreviation longer than {_MAX_DOT_WORD} letters: {max(words, key=len)}")
    data = np.frombuffer(" ".join(words).encode("ascii"), dtype=np.uint8)
    lengths = np.array([len(w) for w in words], dtype=np.int64)
    return np.sort(_pack_words(data, np.cumsum(lengths + 1) - 1, lengths))


def _not_plain(text: str) -> np.ndarray:
    """The line numbers (maybe repeated) of the lines of `text` (each ended by a newline) that are not plain, or
    whose final word before a period is an abbreviation or a single letter."""
    data = text.encode("utf-8", "surrogatepass")  # (a newline byte is a newline in UTF-8; a lone surrogate is
    # three bytes >= 0x80, like any other non-ASCII character)
    cls = np.frombuffer(bytes([_NEWLINE]) + data.translate(_BYTE_CLASS), dtype=np.uint8)  # (as if after a newline)
    pairs = (cls[:-1] << 3) | cls[1:]
    bad = np.flatnonzero(np.frombuffer(pairs.tobytes().translate(_BAD_PAIR), dtype=np.uint8))
    cls = cls[1:]
    # the word before each period that ends a line (in a plain line the period is the only one): the letters
    # right before it, after a space or newline (a word after a hyphen is no abbreviation)
    periods = np.flatnonzero(cls == _PERIOD)
    periods = periods[cls[np.minimum(periods + 1, len(cls) - 1)] == _NEWLINE]
    lengths = np.zeros(len(periods), dtype=np.int64)
    in_word = np.ones(len(periods), dtype=bool)
    for k in range(1, _MAX_DOT_WORD + 2):
        in_word &= (periods >= k) & (cls[np.maximum(periods - k, 0)] == _LETTER)
        lengths += in_word
    before = cls[np.maximum(periods - lengths - 1, 0)]
    short = (lengths <= _MAX_DOT_WORD) & ((periods == lengths) | (before != _HYPHEN))
    ends, lengths = periods[short], lengths[short]
    dot_words = _packed_dot_words()
    packed = _pack_words(np.frombuffer(data, dtype=np.uint8), ends, lengths)
    at = np.minimum(np.searchsorted(dot_words, packed), len(dot_words) - 1)
    newlines = np.flatnonzero(cls == _NEWLINE)
    return np.searchsorted(newlines, np.concatenate([bad, ends[dot_words[at] == packed]]))


def _line_numbers(text: str, positions: list[int]) -> list[int]:
    """The line (0-based) of each position in `text`: newlines counted between consecutive sorted positions."""
    lines, line, last = [], 0, 0
    for pos in sorted(positions):
        line += text.count("\n", last, pos)
        lines.append(line)
        last = pos
    return lines


def _plain_lines(cleaned: list[str]) -> list[str | None]:
    """`_fast_line` of each plain caption (see `_BAD_PAIR`), None for the others: in C caption by caption where
    `fsgr.metrics.speedups` is built, else (the reference) on the newline-joined batch in a few vectorised scans,
    visiting only the exceptions."""
    if speedups.compiled is not None:
        return speedups.compiled.plain_captions(cleaned, _BYTE_CLASS, _BAD_PAIR, _packed_dot_words(),
                                                _ASSIMILATION_BYTES)
    if not cleaned:
        return []
    text = "\n".join(cleaned) + "\n"
    lowered = text.lower()  # (lower-casing never adds or removes a newline; a plain caption is ASCII, so its line
    # is what lower-casing it alone gives, even when other captions change length)
    special = _not_plain(text).tolist()
    special += _line_numbers(lowered, [m for sub in _ASSIMILATIONS for m in _find_all(lowered, sub)])
    # line k is caption k lower-cased without commas and final period: its output when it is plain
    out: list[str | None] = lowered.replace(",", "").replace(".\n", "\n").split("\n")[: len(cleaned)]
    for k in special:
        out[k] = None
    return out


def _find_all(text: str, sub: str) -> list[int]:
    """Every start of `sub` in `text` (str.find: a fast C search, where a regex alternation is not)."""
    found, i = [], text.find(sub)
    while i != -1:
        found.append(i)
        i = text.find(sub, i + 1)
    return found


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
    out = _plain_lines(cleaned)
    for i in [i for i, line in enumerate(out) if line is None]:
        text = cleaned[i]
        line = _fast_line(text)
        if line is None:
            doc = text + "\n" + cleaned[i + 1] if i + 1 < len(cleaned) else text
            line = _finish(_lex(doc, len(text)))
        out[i] = line
    return out


def ptb_tokenize_one(text: str) -> str:
    """One caption on its own (as if it were the last line of the toolkit's file)."""
    return ptb_tokenize([text])[0]


if __name__ == "__main__":  # handy for checking a caption by hand: python -m fsgr.metrics.tokenizer "text"
    for arg in sys.argv[1:]:
        print(ptb_tokenize_one(arg))
