/* The tokenizer kernel of `fsgr.metrics._speedups` (`fsgr.metrics.speedups.fast_lines`).
 * Replaces: `fsgr.metrics.tokenizer._fast_line`, caption by caption (the reference: for every caption the same str,
 * or None where the caption needs the full lexer; tests/metrics/test_ptb_tokenizer.py holds this to it).
 *
 * fast_lines(captions, dot_words, assimilations) -> list of str or None
 *   captions       list of str (already cleaned of line breaks); a caption that is not ASCII gets None
 *   dot_words      sorted uint64 buffer: the words whose token depends on a following period (abbreviations and
 *                  single letters, lower-case, at most 8 letters), each packed big-endian, one byte per letter
 *   assimilations  tuple of lower-case bytes ("cannot", "gonna", ...): a caption holding one gets None
 * A caption is taken when it is, as `_fast_line`'s regular expression `_FAST` says, tokens separated by blanks
 * (space, tab): a word `"?W('s|n't)?([.,;:!?]"?|"[.,;:!?]?)?` with W = [A-Za-z0-9]+(-[A-Za-z0-9]+)*, or a lone
 * `"?[.,;:!?]`, or a lone `"`, `'s` or `n't`; and none of `_fast_line`'s exceptions holds: a word before a period among
 * `dot_words`, an n't after an n or a non-letter, a digit, blanks and a digit (fractions, phone numbers), an
 * assimilation anywhere. Its line is then its words lower-cased, n't and 's split off, the punctuation dropped, one
 * space apart. */
#include "_speedups.h"

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_letter(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int is_alnum(unsigned char c) { return is_digit(c) || is_letter(c); }
static int is_blank(unsigned char c) { return c == ' ' || c == '\t'; }
static int is_punct(unsigned char c) { return c && strchr(".,;:!?", c) != NULL; }

/* Whether b[start:end] lower-cased is one of the sorted packed `dot_words`. */
static int is_dot_word(const unsigned char *b, Py_ssize_t start, Py_ssize_t end, const uint64_t *dot_words,
                       Py_ssize_t n_dots) {
    if (end - start < 1 || end - start > 8) return 0;
    uint64_t packed = 0;
    for (Py_ssize_t c = start; c < end; c++) {
        if (!is_letter(b[c])) return 0;
        packed = packed << 8 | (uint64_t)(b[c] | 0x20);
    }
    Py_ssize_t lo = 0, hi = n_dots;
    while (lo < hi) { Py_ssize_t mid = (lo + hi) / 2; if (dot_words[mid] < packed) lo = mid + 1; else hi = mid; }
    return lo < n_dots && dot_words[lo] == packed;
}

/* "'s" or "n't" when b[p:] starts with that token followed by a blank or the end, else NULL. */
static const char *lone_token(const unsigned char *b, Py_ssize_t p, Py_ssize_t len) {
    static const char *const lone[] = {"'s", "n't"};
    for (int k = 0; k < 2; k++) {
        Py_ssize_t m = (Py_ssize_t)strlen(lone[k]);
        if (p + m <= len && memcmp(b + p, lone[k], (size_t)m) == 0 && (p + m == len || is_blank(b[p + m])))
            return lone[k];
    }
    return NULL;
}

/* _fast_line of the ASCII caption b[0:len] written to out (at least 2 * len bytes): its length, or -1 for None. */
static Py_ssize_t fast_line(const unsigned char *b, Py_ssize_t len, unsigned char *out, const uint64_t *dot_words,
                            Py_ssize_t n_dots) {
    Py_ssize_t p = 0, o = 0;
    int digit_before_blanks = 0;
    while (p < len && is_blank(b[p])) p++;
    while (p < len) {
        if (digit_before_blanks && is_digit(b[p])) return -1;  /* a digit, blanks, a digit */
        const char *lone = lone_token(b, p, len);
        if (lone) {  /* a lone 's or n't */
            if (o) out[o++] = ' ';
            for (const char *s = lone; *s; s++) out[o++] = (unsigned char)*s;
            p += (Py_ssize_t)strlen(lone);
            digit_before_blanks = 0;
            while (p < len && is_blank(b[p])) p++;
            continue;
        }
        p += b[p] == '"';
        if (p < len && is_alnum(b[p])) {
            Py_ssize_t word = p;
            while (p < len && is_alnum(b[p])) p++;
            while (p + 1 < len && b[p] == '-' && is_alnum(b[p + 1]))
                for (p++; p < len && is_alnum(b[p]); p++) {}
            Py_ssize_t word_end = p;
            const char *suffix = NULL;
            if (p + 1 < len && b[p] == '\'' && b[p + 1] == 's') {
                suffix = "'s";
                p += 2;
            } else if (p + 1 < len && b[p] == '\'' && b[p + 1] == 't' && b[p - 1] == 'n' && p - word >= 2 &&
                       is_alnum(b[p - 2])) {
                /* n't after a letter other than n, in a word of letters alone */
                for (Py_ssize_t c = word; c < p - 1; c++) if (!is_letter(b[c])) return -1;
                if ((b[p - 2] | 0x20) == 'n') return -1;
                suffix = "n't";
                word_end = p - 1;
                p += 2;
            }
            if (p < len && b[p] == '.' && is_dot_word(b, word, p, dot_words, n_dots)) return -1;
            if (p < len && is_punct(b[p])) {
                p++;
                p += p < len && b[p] == '"';
            } else if (p < len && b[p] == '"') {
                p++;
                p += p < len && is_punct(b[p]);
            }
            if (o) out[o++] = ' ';
            for (Py_ssize_t c = word; c < word_end; c++) out[o++] = is_letter(b[c]) ? (b[c] | 0x20) : b[c];
            if (suffix) {
                out[o++] = ' ';
                for (const char *s = suffix; *s; s++) out[o++] = (unsigned char)*s;
            }
        } else if (p < len && is_punct(b[p])) {
            p++;
        } else if (p == 0 || b[p - 1] != '"') {
            return -1;
        }
        if (p < len && !is_blank(b[p])) return -1;
        digit_before_blanks = is_digit(b[p - 1]);
        while (p < len && is_blank(b[p])) p++;
    }
    return o;
}

PyObject *fast_lines(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *captions, *assimilations;
    Py_buffer dots;
    if (!PyArg_ParseTuple(args, "O!y*O!", &PyList_Type, &captions, &dots, &PyTuple_Type, &assimilations))
        return NULL;
    PyObject *out = NULL;
    unsigned char *low = NULL, *line_buf = NULL;
    const uint64_t *dot_words = dots.buf;
    Py_ssize_t n_dots = dots.len / 8, n_assim = PyTuple_GET_SIZE(assimilations), size = 0;
    unsigned char starts[256] = {0};  /* the first letters of the assimilations */
    for (Py_ssize_t j = 0; j < n_assim; j++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(assimilations, j)) || !PyBytes_GET_SIZE(PyTuple_GET_ITEM(assimilations, j))) {
            PyErr_SetString(PyExc_TypeError, "fast_lines: assimilations are non-empty bytes");
            goto done;
        }
        starts[(unsigned char)PyBytes_AS_STRING(PyTuple_GET_ITEM(assimilations, j))[0]] = 1;
    }
    Py_ssize_t n = PyList_GET_SIZE(captions);
    out = PyList_New(n);
    if (!out) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *caption = PyList_GET_ITEM(captions, i), *line = Py_None;
        if (!PyUnicode_Check(caption)) goto set;
#if PY_VERSION_HEX < 0x030C0000  /* (before 3.12 a str made by the old C API may need its canonical form first) */
        if (PyUnicode_READY(caption) < 0) { Py_CLEAR(out); goto done; }
#endif
        if (!PyUnicode_IS_ASCII(caption)) goto set;
        const unsigned char *b = PyUnicode_1BYTE_DATA(caption);
        Py_ssize_t len = PyUnicode_GET_LENGTH(caption);
        if (2 * len + 1 > size) {
            size = 2 * len + 1;
            free(low); free(line_buf);
            low = malloc((size_t)size);
            line_buf = malloc((size_t)size);
            if (!low || !line_buf) { PyErr_NoMemory(); Py_CLEAR(out); goto done; }
        }
        for (Py_ssize_t c = 0; c < len; c++) low[c] = is_letter(b[c]) ? (b[c] | 0x20) : b[c];
        for (Py_ssize_t c = 0; c < len; c++) {  /* (one pass: only where an assimilation may start) */
            if (!starts[low[c]]) continue;
            for (Py_ssize_t j = 0; j < n_assim; j++) {
                PyObject *sub = PyTuple_GET_ITEM(assimilations, j);
                Py_ssize_t m = PyBytes_GET_SIZE(sub);
                if (c + m <= len && memcmp(low + c, PyBytes_AS_STRING(sub), (size_t)m) == 0) goto set;
            }
        }
        Py_ssize_t length = fast_line(b, len, line_buf, dot_words, n_dots);
        if (length < 0) goto set;
        line = PyUnicode_New(length, 127);
        if (!line) { Py_CLEAR(out); goto done; }
        memcpy(PyUnicode_1BYTE_DATA(line), line_buf, (size_t)length);
        PyList_SET_ITEM(out, i, line);
        continue;
    set:
        Py_INCREF(Py_None);
        PyList_SET_ITEM(out, i, Py_None);
    }
done:
    free(low); free(line_buf);
    PyBuffer_Release(&dots);
    return out;
}
