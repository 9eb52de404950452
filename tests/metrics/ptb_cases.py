"""Hard raw caption text for the tokenizer's differential test against the Stanford jar."""

import random

HAND_WRITTEN = [
    "A man riding a horse on a beach.",
    "A man's dog doesn't like the cat's toy, but it's fine!",
    "Two dogs play in the grass .",
    "  leading and trailing spaces   ",
    "tab\tseparated\twords\t",
    "non\u00a0breaking\u00a0space and ideographic\u3000space",
    "I'm sure you're right; he'd say we'll see, they've gone, I can't, won't, don't.",
    "Y'all at 3 o'clock ma'am, rock'n'roll 'til the '90s.",
    "\"Quoted\" words and 'single quotes' and \u201ccurly\u201d \u2018curly single\u2019 and ``latex''.",
    "He said, \"Stop!\" and left... then came back.",
    "The sign reads 'STOP'.",
    "A (red) car [on the left] {with braces} <and angles>.",
    "a 3-year-old boy wearing a t-shirt and well-known x-ray e-mail co-op anti-war pro-choice",
    "black/white cat, and/or 24/7, n/a, red / blue",
    "It costs $5.00 or \u20ac5 or \u00a35, about 50% off #1 deal @ the store & more",
    "AT&T R&D a&b &amp; &lt;tag&gt; &quot;q&quot; &apos;",
    "At 10:30 a.m. on 12/25/2014 the temp was 3.5 degrees; 1,000,000 people; .5 -5 +5",
    "5 1/2 inches, 2 3/4 cups, \u00bd \u00bc \u00be \u2153 \u2154 3\u00bd",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c6r\u00f8sk\u00f8bing stra\u00dfe \u00c9COLE \u0130stanbul \u03a3\u039f\u03a6\u039f\u03a3",
    "emoji \U0001f600 in text \U0001f44d\U0001f3fd and \u2665 \u2605 \u263a \u2192 \u2713",
    "em\u2014dash en\u2013dash a - b a -- b a --- b ---- -----",
    "e.g. i.e. etc. vs. Mr. Mrs. Ms. Dr. St. Mt. Jr. Sr. Inc. Co. Ltd. No. ft. oz. lb.",
    "U.S. U.S.A. U.K. D.C. N.Y.C. U.S.-based",
    "Mr. Smith went to Washington D.C. The end.",
    "the letter A. The letter B. a dog",
    "hello... what?! wow!! ok?? ... .. . ! ? ; : ,",
    "Visit www.example.com or http://example.com/path?x=1&y=2 or mail user@mail.com #hashtag @user",
    "cannot Cannot gonna wanna gotta lemme gimme dunno 'tis 'twas",
    "*star* **bold** _under_ __x__ ~tilde~ ^caret^ |pipe| back\\slash",
    "word.word. sign., a..b a.b. i.e., etc.,",
    "ALL CAPS CAPTION OF A DOG",
    "A bus numbered 42B heading to 5th Ave.",
    "the 1st, 2nd, 3rd and 4th place",
    "12:30pm 7am 1990s mid-1990s 1990-91",
    "It is 5'10\" tall and 30\u00b0 outside",
    "",
    " ",
    ".",
    "...",
    "'",
    "\"",
    "a",
    "A",
    "I.",
    "dogs' bones and James' car",
    "she'd've it'll who's what's that's there's here's let's",
    "DON'T CAN'T I'M IT'S WE'RE",
    "don\u2019t can\u2019t it\u2019s I\u2019m y\u2019all o\u2019clock",
    "line\rbreak and form\u000cfeed and next\u0085line and sep\u2028arator",
    "zero\u200bwidth and soft\u00adhyphen and bom\ufeff",
    "control\x01char and del\x7fchar and nul\x00char",
    "Chinese \u4e2d\u6587 Japanese \u65e5\u672c\u8a9e Korean \ud55c\uad6d\uc5b4 Arabic \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "Hebrew \u05e2\u05d1\u05e8\u05d9\u05ea Thai \u0e44\u0e17\u0e22 Hindi \u0939\u093f\u0928\u094d\u0926\u0940 Russian \u0420\u0443\u0441\u0441\u043a\u0438\u0439",
    "fullwidth \uff21\uff22\uff23 \uff11\uff12\uff13 \uff01\uff1f",
    "math \u00d7 \u00f7 \u00b1 \u2260 \u2264 \u221e x\u00b2 H\u2082O",
    ":) :( :D ;) :-) <3 ^_^ o.O",
    "a man (who is tall) is standing.",
    "a man(who is tall)is standing",
    "two-toned brown-and-white dog's tail",
    "A 747 airplane and a 4x4 truck with 3D glasses",
    "phone (555) 555-1234 and 555-123-4567 and 555.123.4567",
    "It's the dog's",
    "a dog 's toy",
    "the cat ' s toy",
    "rock 'n' roll",
    "'Hello,' she said.",
    "\"A\" 'a' \"I\" 'I'",
    "Mt. Everest and St. Louis and Ft. Worth",
    "vs. the Yankees vs the Mets",
    "A.M. P.M. a.m p.m",
    "NO PARKING sign. STOP sign.",
    "A woman holds a sign that says \"Free Hugs\".",
    "3.14 3,14 3:14 3-14 3/14 3\\/14",
    "10x magnification and 2x speed",
    "S&P-500 S&Ls Cap'n c'est",
    "-LRB- -RRB- -LSB-",
    "The D.J. spins; the M.C. talks.",
    "He is 6ft. tall",
    "Jan. Feb. Mon. Tues. Calif. Mass. Wash. etc. al.",
    "Cal. Ark. Ill. Miss. Ore.",
    "wait.... what",
    "a . . . b",
    "A,-like group; a,-up stream and brown,-colored dogs",
    "the etc.n't case and etc.\u00e9 and Mr.Smith and xetc.n",
    "#a1 #a_b #a.b #1a #ab!c and #ocean.n't",
    "'and''s 'A''s j'adore l'amour d'Avignon",
    "playing I.",
    "The? boy runs with! the ball",
]

FRAGMENTS = [
    "dog", "Dog", "DOG", "man", "a", "A", "I", "the", "The", "don't", "can't", "won't", "it's", "I'm", "you're",
    "dogs'", "man's", "o'clock", "y'all", "rock'n'roll", "'90s", "cannot", "gonna", "wanna", "gotta",
    ",", ".", "!", "?", ";", ":", "...", "..", "-", "--", "---", "(", ")", "[", "]", "{", "}", "<", ">",
    "\"", "'", "`", "``", "''", "\u201c", "\u201d", "\u2018", "\u2019", "\u00ab", "\u00bb",
    "3", "3.5", "1,000", "10:30", "1/2", "5", "12", "2014", "-5", "+5", "3-year-old", "t-shirt", "x-ray",
    "$", "$5", "%", "50%", "#", "#1", "@", "@user", "&", "&amp;", "*", "/", "\\", "=", "+", "~", "^", "|",
    "U.S.", "Mr.", "Dr.", "St.", "etc.", "vs.", "e.g.", "i.e.", "a.m.", "No.", "Inc.", "Jr.",
    "caf\u00e9", "na\u00efve", "\u00c9cole", "\u00fcber", "stra\u00dfe", "\U0001f600", "\u2665", "\u00bd",
    "\u2014", "\u2013", "\u2026", "www.site.com", "http://x.org/a", "me@x.com", "black/white", "and/or",
    "AT&T", "R&D", "C++", "42B", "5th", "1st", "7am", "12:30pm", ":)", ";)", "^_^", "<b>", "</b>",
    "well-known", "mid-90s", "e-mail", "co-op", "pro-choice", "anti-war",
]
SEPARATORS = [" ", " ", " ", " ", "", "  ", "\t", "\u00a0", " , ", ". "]


def generated(n: int = 320, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 12)
        parts = []
        for _ in range(k):
            frag = rng.choice(FRAGMENTS)
            if rng.random() < 0.1:
                frag = frag.upper()
            elif rng.random() < 0.1:
                frag = frag.capitalize()
            parts.append(frag)
            parts.append(rng.choice(SEPARATORS))
        text = "".join(parts)
        if rng.random() < 0.5:
            text = text.rstrip() + "."
        out.append(text)
    return out


# Words (plain, abbreviations, single letters, clitics, numbers, URL and assimilation pieces) between the punctuation
# the fast path takes beside words: double quotes, ; : ! ? , and periods, attached or on their own.
_QUOTED_WORDS = ["dog", "Dog", "A", "a", "I", "the", "Mr", "mr", "etc", "art", "St", "no", "don't", "dog's", "it's",
                 "can't", "aren't", "red-headed", "T-shirt", "x-ray", "3-year-old", "5", "42", "555", "1234", "x",
                 "US", "ok", "OK", "cannot", "www", "com", "http", "co", "Co", "Inc", "Pty", "Ltd", "vs", "al", "e",
                 "D", "p", "o", "O", "P", "Yahoo", "n", "s", "Jan", "Mass", "Ill", "Ave", "sq", "ft", "ca", "un"]
_QUOTED_PUNCT = ['"', ";", ":", "!", "?", ".", ","]


def quoted(n: int = 3000, seed: int = 11) -> list[str]:
    """Captions of words and the punctuation of the tokenizer's fast path, in every arrangement (most take it)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 7)):
            word = rng.choice(_QUOTED_PUNCT) if rng.random() < 0.2 else rng.choice(_QUOTED_WORDS)
            before = '"' if rng.random() < 0.2 else ""
            after = (rng.choice(_QUOTED_PUNCT) if rng.random() < 0.5 else "") + ('"' if rng.random() < 0.2 else "") \
                + (rng.choice(_QUOTED_PUNCT) if rng.random() < 0.2 else "")
            parts.append(before + word + after + rng.choice([" ", " ", " ", "", "  ", "\t"]))
        out.append("".join(parts))
    return out


def all_cases() -> list[str]:
    return HAND_WRITTEN + generated()


def detokenize(caption: str) -> str:
    """Turn a tokenised Flickr caption back into raw-looking text (attached punctuation and clitics, capital)."""
    import re

    c = caption.strip()
    c = re.sub(r" ([.,!?;:])", r"\1", c)
    c = re.sub(r" ('s|n't|'re|'m|'ll|'ve|'d)\b", r"\1", c)
    return c[:1].upper() + c[1:]


_OPS = [
    lambda w, r: w.upper(), lambda w, r: w.capitalize(), lambda w, r: '"' + w + '"', lambda w, r: "'" + w + "'",
    lambda w, r: "(" + w + ")", lambda w, r: w + ",", lambda w, r: w + ".", lambda w, r: w + "!",
    lambda w, r: w + "?", lambda w, r: w + "'s", lambda w, r: w + "-" + r.choice(["like", "colored", "up", "old"]),
    lambda w, r: str(r.randint(0, 3000)), lambda w, r: w + "/" + r.choice(["white", "or", "2"]),
    lambda w, r: w + " &", lambda w, r: "\u201c" + w + "\u201d", lambda w, r: w + "\u2019s", lambda w, r: w + ":",
    lambda w, r: w + ";", lambda w, r: w + "...", lambda w, r: w + "  ", lambda w, r: r.choice(FRAGMENTS),
    lambda w, r: w + " " + r.choice(FRAGMENTS), lambda w, r: w + "." + r.choice(["", " "]),
    lambda w, r: r.choice(["Mr.", "St.", "Dr.", "vs.", "etc.", "U.S.", "A.", "I.", "No.", "Inc."]),
    lambda w, r: w + "n't", lambda w, r: w + "%", lambda w, r: "$" + w, lambda w, r: "#" + w,
    lambda w, r: w + "\u00e9", lambda w, r: w + "\t",
]


def perturbed(captions: list[str], seed: int = 5) -> list[str]:
    """Real captions made raw and then roughed up: case, quotes, brackets, clitics, numbers, symbols, spaces."""
    rng = random.Random(seed)
    out = []
    for c in captions:
        ws = detokenize(c).split(" ")
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(ws))
            ws[i] = rng.choice(_OPS)(ws[i], rng)
        s = " ".join(ws)
        if rng.random() < 0.3:
            s = s.rstrip(".")
        if rng.random() < 0.1:
            s = " " + s + " "
        out.append(s)
    return out
