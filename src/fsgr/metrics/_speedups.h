/* What the kernels of `fsgr.metrics._speedups` share: their entry points (one C file each, `_speedups.c` only
 * gathers them into the module) and the int64 arrays they hand to Python. */
#ifndef FSGR_SPEEDUPS_H
#define FSGR_SPEEDUPS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

/* Fresh memory costs a page fault per 4 KiB page at first touch, and on a virtual machine a fault costs several
 * microseconds: without huge pages the faults of one scoring run (~20,000) took longer than its work. So the big
 * arrays ask the kernel for 2 MiB pages (transparent huge pages, where the kernel allows them "on madvise"). The
 * advice is only a hint: where it is refused (another kernel setting, another system) nothing changes but speed. */
static inline void *advise_huge(void *p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1), end = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (p && end > start) (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)bytes;
#endif
    return p;
}

static inline void *big_malloc(size_t bytes) { return advise_huge(malloc(bytes), bytes); }

/* An int64 array handed to Python as a bytearray (numpy wraps it without a copy). */
typedef struct { PyObject *obj; int64_t *at; } Array;

static inline int array_new(Array *a, Py_ssize_t count) {
    a->obj = PyByteArray_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    a->at = a->obj ? advise_huge(PyByteArray_AS_STRING(a->obj), (size_t)count * sizeof(int64_t)) : NULL;
    return a->obj != NULL;
}

static inline int array_cut(Array *a, Py_ssize_t count) {
    if (PyByteArray_Resize(a->obj, count * (Py_ssize_t)sizeof(int64_t)) < 0) return 0;
    a->at = (int64_t *)PyByteArray_AS_STRING(a->obj);
    return 1;
}

PyObject *corpus_table(PyObject *self, PyObject *args);  /* _ngram_table.c */
PyObject *lcs_lengths(PyObject *self, PyObject *args);   /* _lcs.c */
PyObject *fast_lines(PyObject *self, PyObject *args);    /* _fast_lines.c */
#endif
