/* The CIDEr-D kernel of `fsgr.metrics._speedups` (`fsgr.metrics.speedups.cider_d`).
 * Replaces: the numpy body of `fsgr.metrics.cider.corpus_cider_d` (the reference; tests/metrics/test_metric_values.py
 * holds both to pycocoevalcap to the last bit). */
#include <math.h>
#include "_speedups.h"

/* cider_d(orders, offsets, id_bits, log_counts, penalty, n_refs) -> bytearray of float64 [I]: each image's CIDEr-D
 * from the n-gram table (`fsgr.metrics.cider.corpus_cider_d`, whose numpy version is the reference: the same
 * operations in the same order, so the same floats). `orders`: per order a tuple of the int64 arrays (group_key,
 * ref_sentence, ref_count, ref_ngram, group_start, cand_key, cand_count, cand_group, ref_order); `log_counts` [I + 1]:
 * numpy's log of max(1, c) for c = 0..I (numpy's log and libm's differ in the last bit now and then: numpy's are
 * the toolkit's); `penalty` [R]: each reference's Gaussian length penalty (`length_penalty`: the toolkit's pow). */
PyObject *cider_d(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *orders, *offsets;
    int id_bits;
    Py_buffer log_counts, penalties, n_refs;
    if (!PyArg_ParseTuple(args, "O!O!iy*y*y*", &PyList_Type, &orders, &PyList_Type, &offsets, &id_bits,
                          &log_counts, &penalties, &n_refs))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(orders), n_ref = penalties.len / 8, n_images = n_refs.len / 8;
    const double *log_of = log_counts.buf, *penalty = penalties.buf;
    const int64_t *refs = n_refs.buf;
    PyObject *result = NULL;
    double *val = NULL, *ref_sq = NULL, *cand_sq = NULL, *log_df = NULL, *ref_w = NULL, *summed = NULL;
    int64_t *ref_image = NULL, *df = NULL;
    Py_buffer b[9];
    int held = 0;
    Array out = {0};
    Py_ssize_t total_refs = 0;
    for (Py_ssize_t i = 0; i < n_images; i++) total_refs += refs[i];
    if (PyList_GET_SIZE(offsets) < n + 1 || log_counts.len / 8 != n_images + 1 || total_refs != n_ref) {
        PyErr_SetString(PyExc_ValueError, "cider_d: offsets, log_counts, penalty or n_refs do not fit");
        goto done;
    }
    val = calloc((size_t)n_ref * n + 1, sizeof(double));
    ref_sq = calloc((size_t)n_ref * n + 1, sizeof(double));
    cand_sq = calloc((size_t)n_images * n + 1, sizeof(double));
    summed = calloc((size_t)n_images * n + 1, sizeof(double));
    ref_image = malloc(((size_t)n_ref + 1) * sizeof(int64_t));
    if (!val || !ref_sq || !cand_sq || !summed || !ref_image) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0, r = 0; i < n_images; i++)
        for (int64_t j = 0; j < refs[i]; j++) ref_image[r++] = i;
    const double log_images = log_of[n_images];
    const int64_t mask = ((int64_t)1 << id_bits) - 1;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!PyArg_ParseTuple(PyList_GET_ITEM(orders, k), "y*y*y*y*y*y*y*y*y*", &b[0], &b[1], &b[2], &b[3], &b[4],
                              &b[5], &b[6], &b[7], &b[8]))
            goto done;
        held = 1;
        const int64_t *group_key = b[0].buf, *ref_sentence = b[1].buf, *ref_count = b[2].buf, *ref_ngram = b[3].buf;
        const int64_t *group_start = b[4].buf, *cand_key = b[5].buf, *cand_count = b[6].buf, *cand_group = b[7].buf;
        const int64_t *ref_order = b[8].buf;
        Py_ssize_t n_groups = b[0].len / 8, n_rows = b[1].len / 8, n_cands = b[5].len / 8;
        if (b[8].len / 8 != n_rows) {
            PyErr_SetString(PyExc_ValueError, "cider_d: ref_order does not list every row");
            goto done;
        }
        int64_t first = PyLong_AsLongLong(PyList_GET_ITEM(offsets, k));
        int64_t width = PyLong_AsLongLong(PyList_GET_ITEM(offsets, k + 1)) - first;
        if (PyErr_Occurred()) goto done;
        /* document frequency: the images whose references hold the n-gram (one group per image and n-gram) */
        int64_t *grown_df = realloc(df, ((size_t)width + 1) * sizeof(int64_t));
        if (grown_df) df = grown_df;
        double *grown = realloc(log_df, ((size_t)width + 1) * sizeof(double));
        if (grown) log_df = grown;
        double *rw = realloc(ref_w, ((size_t)n_rows + 1) * sizeof(double));
        if (rw) ref_w = rw;
        if (!grown_df || !grown || !rw) { PyErr_NoMemory(); goto done; }
        memset(df, 0, ((size_t)width + 1) * sizeof(int64_t));
        for (Py_ssize_t g = 0; g < n_groups; g++) df[(group_key[g] & mask) - first]++;
        for (int64_t t = 0; t < width; t++) log_df[t] = log_of[df[t]];
        for (Py_ssize_t row = 0; row < n_rows; row++)
            ref_w[row] = (double)ref_count[row] * (log_images - log_df[ref_ngram[row] - first]);
        for (Py_ssize_t j = 0; j < n_rows; j++) {  /* (each reference's norm summed in the toolkit's order) */
            int64_t row = ref_order[j];
            ref_sq[ref_sentence[row] * n + k] += ref_w[row] * ref_w[row];
        }
        for (Py_ssize_t c = 0; c < n_cands; c++) {  /* (an n-gram no reference holds has df 0: weight log #images) */
            double w = (double)cand_count[c] * (log_images - log_df[(cand_key[c] & mask) - first]);
            cand_sq[(cand_key[c] >> id_bits) * n + k] += w * w;
            if (cand_group[c] < 0) continue;
            for (int64_t row = group_start[cand_group[c]]; row < group_start[cand_group[c] + 1]; row++) {
                double vr = ref_w[row];
                val[ref_sentence[row] * n + k] += (w < vr ? w : vr) * vr;
            }
        }
        for (int j = 0; j < 9; j++) PyBuffer_Release(&b[j]);
        held = 0;
    }
    /* divided by both norms where neither is 0, times the length penalty; summed per image and order, the orders'
     * mean over the references, x10 */
    for (Py_ssize_t r = 0; r < n_ref; r++) {
        int64_t i = ref_image[r];
        for (Py_ssize_t k = 0; k < n; k++) {
            double v = val[r * n + k], denom = sqrt(cand_sq[i * n + k]) * sqrt(ref_sq[r * n + k]);
            if (denom != 0) v = v / denom;
            summed[i * n + k] += v * penalty[r];
        }
    }
    if (!array_new(&out, n_images)) goto done;
    double *scores = (double *)out.at;
    for (Py_ssize_t i = 0; i < n_images; i++) {  /* (added in order, as numpy's mean adds a row of a few) */
        double total = summed[i * n];
        for (Py_ssize_t k = 1; k < n; k++) total += summed[i * n + k];
        scores[i] = total / (double)n / (double)refs[i] * 10.0;
    }
    result = out.obj;
    out.obj = NULL;
done:
    if (held) for (int j = 0; j < 9; j++) PyBuffer_Release(&b[j]);
    Py_XDECREF(out.obj);
    free(val); free(ref_sq); free(cand_sq); free(summed); free(log_df); free(ref_w); free(ref_image); free(df);
    PyBuffer_Release(&log_counts); PyBuffer_Release(&penalties); PyBuffer_Release(&n_refs);
    return result;
}
