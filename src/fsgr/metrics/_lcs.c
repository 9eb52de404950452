/* The LCS kernel of `fsgr.metrics._speedups` (`fsgr.metrics.speedups.lcs_lengths`).
 * Replaces: `fsgr.metrics.rouge._bit_parallel_lcs` (Hyyrö's bit-parallel LCS in numpy, the reference;
 * tests/metrics/test_rouge_vectorised.py holds this to it). */
#include "_speedups.h"

/* lcs_lengths(words, ref_lengths, cand_lengths, n_refs) -> bytearray of int64 [R]: the length of the longest
 * common subsequence of each reference and its image's candidate (word ids: every reference's words in order,
 * then every candidate's; the textbook dynamic programme, one row at a time). */
PyObject *lcs_lengths(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer words, ref_lengths, cand_lengths, n_refs;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &words, &ref_lengths, &cand_lengths, &n_refs)) return NULL;
    const int64_t *w = words.buf, *ref_len = ref_lengths.buf, *cand_len = cand_lengths.buf, *refs = n_refs.buf;
    Py_ssize_t n_words = words.len / 8, n_ref = ref_lengths.len / 8, n_images = cand_lengths.len / 8;
    Py_ssize_t total = 0, ref_words = 0, cand_words = 0, longest = 0;
    for (Py_ssize_t i = 0; i < n_images; i++) {
        total += refs[i]; cand_words += cand_len[i];
        if (cand_len[i] > longest) longest = cand_len[i];
    }
    for (Py_ssize_t r = 0; r < n_ref; r++) ref_words += ref_len[r];
    Array out = {0};
    PyObject *result = NULL;
    int32_t *row = NULL;
    if (n_refs.len / 8 != n_images || total != n_ref || ref_words + cand_words != n_words) {
        PyErr_SetString(PyExc_ValueError, "lcs_lengths: the lengths do not add up to the words");
        goto done;
    }
    row = calloc((size_t)longest + 1, sizeof(int32_t));
    if (!row) { PyErr_NoMemory(); goto done; }
    if (!array_new(&out, n_ref)) goto done;
    const int64_t *ref = w, *cand = w + ref_words;
    Py_ssize_t r = 0;
    for (Py_ssize_t i = 0; i < n_images; i++) {
        Py_ssize_t m = cand_len[i];
        for (int64_t j = 0; j < refs[i]; j++, r++) {
            memset(row, 0, ((size_t)m + 1) * sizeof(int32_t));  /* row[c]: LCS of the reference so far, cand[:c] */
            for (int64_t a = 0; a < ref_len[r]; a++) {
                int32_t diagonal = 0;
                for (Py_ssize_t c = 1; c <= m; c++) {
                    int32_t above = row[c];
                    row[c] = ref[a] == cand[c - 1] ? diagonal + 1 : (above > row[c - 1] ? above : row[c - 1]);
                    diagonal = above;
                }
            }
            out.at[r] = row[m];
            ref += ref_len[r];
        }
        cand += m;
    }
    result = out.obj;
    out.obj = NULL;
done:
    Py_XDECREF(out.obj);
    free(row);
    PyBuffer_Release(&words); PyBuffer_Release(&ref_lengths); PyBuffer_Release(&cand_lengths);
    PyBuffer_Release(&n_refs);
    return result;
}
