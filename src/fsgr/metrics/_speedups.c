/* `fsgr.metrics._speedups`: the metrics' compiled kernels, one C file each, gathered into one module (reached
 * through `fsgr.metrics.speedups`, which says which Python/numpy function each replaces; that function is the
 * reference, runs where this module is not built, and the tests hold each kernel to it):
 *   corpus_table  _ngram_table.c  the n-gram table of one evaluation
 *   lcs_lengths   _lcs.c          ROUGE-L's longest common subsequences
 *   fast_lines    _fast_lines.c   the PTB tokenizer's fast path, caption by caption */
#include "_speedups.h"

static PyMethodDef methods[] = {
    {"corpus_table", corpus_table, METH_VARARGS, "The n-gram table of one evaluation (see ngrams.encode_corpus)."},
    {"lcs_lengths", lcs_lengths, METH_VARARGS, "Each reference's LCS length with its image's candidate."},
    {"fast_lines", fast_lines, METH_VARARGS, "The tokenizer's fast-path lines (tokenizer._fast_line), else None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
