/* The metrics' hot loops in C (reached through `fsgr.metrics.speedups`). Each has a numpy or Python version that is
 * the reference and runs where this module is not built; the tests check each against it.
 *
 * corpus_table(text, char_lengths, n_refs, n) -> (words, lengths, odd_spacing, offsets, id_bits, orders)
 *   The n-gram table of one evaluation (`fsgr.metrics.ngrams.encode_corpus`) for ASCII text: the same n-grams,
 *   counts, groups and matches as the numpy table, found with hash tables and direct indexing instead of sorts. Its
 *   layout differs in two ways that no metric reads: n-gram ids are given in order of first occurrence (not sorted),
 *   and within an image the groups come in order of first occurrence. (The candidates' n-grams and `ref_order` are
 *   in the same order in both: the toolkit's, in which CIDEr-D adds.)
 *   text          ASCII bytes: every sentence, references first (grouped by image), then one candidate per image
 *   char_lengths  int64 buffer [S]: characters of each sentence in `text`
 *   n_refs        int64 buffer [I]: references per image
 *   n             the highest n-gram order
 *   Words are what str.split() gives (ASCII white space: \t \n \v \f \r, \x1c-\x1f and the space). The int64
 *   arrays come back as bytearrays: words [W] (the word id of every word, in order), lengths [S] (words per
 *   sentence), and per order the ten arrays of `OrderCounts` (ref_sentence, ref_count, ref_ngram, group_key,
 *   group_start, group_max, cand_key, cand_count, cand_group, ref_order) as (block, offsets, counts): array j is
 *   block[offsets[j]:offsets[j] + counts[j]] (in int64 elements); odd_spacing is one byte per sentence, 1 where its
 *   split(" ") (ROUGE-L's tokens) differs from split(). The ids of order k + 1 are offsets[k]..offsets[k + 1] - 1;
 *   a key is image << id_bits | id.
 * lcs_lengths(words, ref_lengths, cand_lengths, n_refs): ROUGE-L's longest common subsequences (below).
 * cider_d(orders, offsets, id_bits, log_counts, penalty, n_refs): CIDEr-D per image (below).
 * plain_captions(captions, ...): the PTB tokenizer's plain captions (below).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <unistd.h>
#define FSGR_THREADS 1
#else
#define FSGR_THREADS 0
#endif

#define N_ARRAYS 10

/* Fresh memory costs a page fault per 4 KiB page at first touch, and on a virtual machine a fault costs several
 * microseconds: without huge pages the faults of one scoring run (~20,000) took longer than its work. So the big
 * arrays ask the kernel for 2 MiB pages (transparent huge pages, where the kernel allows them "on madvise"). The
 * advice is only a hint: where it is refused (another kernel setting, another system) nothing changes but speed. */
static void *advise_huge(void *p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1), end = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (p && end > start) (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)bytes;
#endif
    return p;
}

static void *big_malloc(size_t bytes) { return advise_huge(malloc(bytes), bytes); }

/* str.split()'s ASCII white space: \t \n \v \f \r, \x1c-\x1f and the space */
static const unsigned char SPACE[256] = {[9] = 1, [10] = 1, [11] = 1, [12] = 1, [13] = 1, [28] = 1, [29] = 1,
                                         [30] = 1, [31] = 1, [32] = 1};

static uint64_t mix(uint64_t x) {  /* splitmix64's finaliser: a well spread hash of a 64-bit key */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static size_t table_size(Py_ssize_t entries) {  /* a power of two, at least twice `entries` */
    size_t size = 1024;
    while (size < 2 * (size_t)entries) size <<= 1;
    return size;
}

static int bit_length(int64_t v) { int b = 0; while (v) { b++; v >>= 1; } return b; }

/* An int64 array handed to Python as a bytearray (numpy wraps it without a copy). */
typedef struct { PyObject *obj; int64_t *at; } Array;

static int array_new(Array *a, Py_ssize_t count) {
    a->obj = PyByteArray_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    a->at = a->obj ? advise_huge(PyByteArray_AS_STRING(a->obj), (size_t)count * sizeof(int64_t)) : NULL;
    return a->obj != NULL;
}

static int array_cut(Array *a, Py_ssize_t count) {
    if (PyByteArray_Resize(a->obj, count * (Py_ssize_t)sizeof(int64_t)) < 0) return 0;
    a->at = (int64_t *)PyByteArray_AS_STRING(a->obj);
    return 1;
}

/* (For the same reason the tables are int32 and sized to what they hold, and the work arrays are allocated once for
 * all orders.) */

/* Word ids in order of first occurrence: open addressing, the slots holding 32 bits of each word's hash beside its
 * id and the distinct words copied to a small arena, so that a look-up rarely leaves the cache; grows as needed. */
typedef struct { uint32_t tag; int32_t id; } Slot;

static int intern_words(const unsigned char *text, const int64_t *char_lengths, Py_ssize_t n_sentences,
                        int64_t *words, int64_t *lengths, char *odd_spacing, Py_ssize_t *n_words,
                        int32_t *n_distinct) {
    size_t size = 1 << 14, mask = size - 1, capacity = size / 2, arena_size = 1 << 16, arena_used = 0;
    Slot *table = malloc(size * sizeof(Slot));
    int64_t *at = malloc(capacity * sizeof(int64_t));  /* per id: where its bytes are in the arena */
    int32_t *lens = malloc(capacity * sizeof(int32_t));
    uint64_t *hashes = malloc(capacity * sizeof(uint64_t));
    unsigned char *arena = malloc(arena_size);
    int status = -1;
    if (!table || !at || !lens || !hashes || !arena) { PyErr_NoMemory(); goto done; }
    memset(table, 0xff, size * sizeof(Slot));  /* id -1: an empty slot */
    Py_ssize_t pos = 0, count = 0;
    int32_t next_id = 0;
    for (Py_ssize_t s = 0; s < n_sentences; s++) {
        Py_ssize_t i = pos, end = pos + char_lengths[s];
        int64_t in_sentence = 0;
        /* split(" ") differs from split(): empty, outer or doubled white space, or white space other than ' ' */
        char odd = end == pos;
        for (;;) {
            Py_ssize_t run = i;
            while (i < end && SPACE[text[i]]) odd |= text[i++] != ' ';
            if (i >= end) { odd |= i > run; break; }  /* (white space at the end) */
            odd |= i - run > 1 || (i > run && run == pos);  /* (doubled, or at the start) */
            Py_ssize_t j = i;
            uint64_t h = 1469598103934665603ULL;  /* FNV-1a, then mixed */
            while (j < end && !SPACE[text[j]]) h = (h ^ text[j++]) * 1099511628211ULL;
            int32_t len = (int32_t)(j - i);
            h = mix(h ^ (uint64_t)len);
            uint32_t tag = (uint32_t)(h >> 32);
            size_t slot = h & mask;
            int32_t id;
            while ((id = table[slot].id) >= 0 && !(table[slot].tag == tag && lens[id] == len &&
                                                   memcmp(arena + at[id], text + i, (size_t)len) == 0))
                slot = (slot + 1) & mask;
            if (id < 0) {
                if ((size_t)next_id == capacity) {  /* half full: double the table and rehash */
                    size_t new_size = size * 2;
                    Slot *new_table = malloc(new_size * sizeof(Slot));
                    int64_t *new_at = realloc(at, 2 * capacity * sizeof(int64_t));
                    if (new_at) at = new_at;
                    int32_t *new_lens = realloc(lens, 2 * capacity * sizeof(int32_t));
                    if (new_lens) lens = new_lens;
                    uint64_t *new_hashes = realloc(hashes, 2 * capacity * sizeof(uint64_t));
                    if (new_hashes) hashes = new_hashes;
                    if (!new_table || !new_at || !new_lens || !new_hashes) {
                        free(new_table); PyErr_NoMemory(); goto done;
                    }
                    memset(new_table, 0xff, new_size * sizeof(Slot));
                    for (int32_t w = 0; w < next_id; w++) {
                        size_t k = hashes[w] & (new_size - 1);
                        while (new_table[k].id >= 0) k = (k + 1) & (new_size - 1);
                        new_table[k].tag = (uint32_t)(hashes[w] >> 32); new_table[k].id = w;
                    }
                    free(table);
                    table = new_table; size = new_size; mask = size - 1; capacity *= 2;
                    slot = h & mask;
                    while (table[slot].id >= 0) slot = (slot + 1) & mask;
                }
                if (arena_used + (size_t)len > arena_size) {
                    while (arena_used + (size_t)len > arena_size) arena_size *= 2;
                    unsigned char *grown = realloc(arena, arena_size);
                    if (!grown) { PyErr_NoMemory(); goto done; }
                    arena = grown;
                }
                memcpy(arena + arena_used, text + i, (size_t)len);
                id = next_id++;
                table[slot].tag = tag; table[slot].id = id;
                at[id] = (int64_t)arena_used; lens[id] = len; hashes[id] = h;
                arena_used += (size_t)len;
            }
            words[count++] = id;
            in_sentence++;
            i = j;
        }
        lengths[s] = in_sentence;
        odd_spacing[s] = odd;
        pos = end;
    }
    *n_words = count;
    *n_distinct = next_id;
    status = 0;
done:
    free(table); free(at); free(lens); free(hashes); free(arena);
    return status;
}

/* The ids of order k at each word position (-1 where fewer than k words are left in the sentence): the pair
 * (id of the (k-1)-gram at the position, the k-th word) looked up in `table` (int32 slots, `size` of them, ids
 * from `first`); new pairs get the next ids, their keys kept in `keys` (by id - first). */
static void next_level(const int32_t *prev, const int32_t *words, const int64_t *word_start, const int64_t *lengths,
                       Py_ssize_t n_sentences, int k, int32_t *level, int32_t *table, size_t size, uint64_t *keys,
                       int32_t first, int32_t *next_id) {
    size_t mask = size - 1;
    memset(table, 0xff, size * sizeof(int32_t));
    for (Py_ssize_t s = 0; s < n_sentences; s++) {
        int64_t last = word_start[s] + lengths[s] - k;  /* the last position with k words left */
        for (int64_t p = word_start[s]; p < word_start[s] + lengths[s]; p++) {
            if (p > last) { level[p] = -1; continue; }
            uint64_t key = ((uint64_t)(uint32_t)prev[p] << 32) | (uint32_t)words[p + k - 1];
            size_t slot = mix(key) & mask;
            int32_t id;
            while ((id = table[slot]) >= 0 && keys[id - first] != key) slot = (slot + 1) & mask;
            if (id < 0) {
                id = (*next_id)++;
                table[slot] = id; keys[id - first] = key;
            }
            level[p] = id;
        }
    }
}

/* Work arrays of `count_order`, allocated once for every order: a small hash table per image (id -> its group and
 * candidate entry there; sized for the image, so it stays in the cache), and per group its rows and the reference
 * and row filled last. */
typedef struct { int32_t id, group, cand, unused; } Local;
typedef struct { int32_t rows, last_ref; int64_t last_row; } Group;
typedef struct { Local *local; Group *groups; } Work;

/* The image's entry for `id` (inserted with no group and no candidate entry if new); `shift`: 32 - log2(size). */
static Local *local_entry(Local *table, size_t mask, int shift, int32_t id) {
    size_t slot = ((uint32_t)id * 2654435761u) >> shift;  /* (Knuth's multiplicative hash: the high bits) */
    while (table[slot].id != id && table[slot].id >= 0) slot = (slot + 1) & mask;
    if (table[slot].id < 0) { table[slot].id = id; table[slot].group = -1; table[slot].cand = -1; }
    return &table[slot];
}

/* The n-grams of order k in sentence s (0 where it is shorter). */
static Py_ssize_t ngrams_in(const int64_t *lengths, Py_ssize_t s, int k) { return lengths[s] >= k ? lengths[s] - k + 1 : 0; }

enum { REF_SENTENCE, REF_COUNT, REF_NGRAM, GROUP_KEY, GROUP_START, GROUP_MAX, CAND_KEY, CAND_COUNT, CAND_GROUP,
       REF_ORDER };

/* One order's ten arrays (see OrderCounts in ngrams.py), each at its largest, in one block (one allocation's huge
 * pages; the unused tails are never touched, so never given memory): `offset` where each starts, `used` its length
 * once filled. */
typedef struct { Array block; Py_ssize_t offset[N_ARRAYS], used[N_ARRAYS]; } OrderTable;

/* The block of order k (needs the GIL). */
static int order_alloc(OrderTable *t, const int64_t *lengths, Py_ssize_t n_ref_sentences, Py_ssize_t n_images,
                       int k) {
    Py_ssize_t ref_ngrams = 0, cand_ngrams = 0;
    for (Py_ssize_t s = 0; s < n_ref_sentences + n_images; s++) {
        if (s < n_ref_sentences) ref_ngrams += ngrams_in(lengths, s, k); else cand_ngrams += ngrams_in(lengths, s, k);
    }
    Py_ssize_t sizes[N_ARRAYS] = {ref_ngrams, ref_ngrams, ref_ngrams, ref_ngrams, ref_ngrams + 1, ref_ngrams,
                                  cand_ngrams, cand_ngrams, cand_ngrams, ref_ngrams};
    Py_ssize_t total = 0;
    for (int j = 0; j < N_ARRAYS; j++) { t->offset[j] = total; total += sizes[j]; }
    return array_new(&t->block, total);
}

/* What count_order reads: the corpus's word positions and the ids of every order at each. */
typedef struct {
    const int32_t *levels;  /* [n, W] */
    Py_ssize_t n_words, n_images, n_ref_sentences;
    const int64_t *word_start, *lengths, *n_refs;
    int id_bits;
} Corpus;

/* One order's rows, groups and candidate matches, image by image, into its block (no Python calls: runs without
 * the GIL, beside another order). */
static void count_order(const Corpus *corpus, int k, OrderTable *t, Work *w) {
    const int32_t *level = corpus->levels + (size_t)(k - 1) * (size_t)corpus->n_words;
    const int64_t *word_start = corpus->word_start, *lengths = corpus->lengths, *n_refs = corpus->n_refs;
    Py_ssize_t n_images = corpus->n_images, n_ref_sentences = corpus->n_ref_sentences;
    int id_bits = corpus->id_bits;
    int64_t *a[N_ARRAYS];
    for (int j = 0; j < N_ARRAYS; j++) a[j] = t->block.at + t->offset[j];
    Group *groups = w->groups;
    int64_t *ref_sentence = a[REF_SENTENCE], *ref_count = a[REF_COUNT], *ref_ngram = a[REF_NGRAM];
    int64_t *group_key = a[GROUP_KEY], *group_start = a[GROUP_START], *group_max = a[GROUP_MAX];
    int64_t *cand_key = a[CAND_KEY], *cand_count = a[CAND_COUNT], *cand_group = a[CAND_GROUP];
    int64_t *ref_order = a[REF_ORDER];
    Py_ssize_t n_groups = 0, n_rows = 0, n_cands = 0, ref = 0, n_ordered = 0;
    for (Py_ssize_t image = 0; image < n_images; image++) {
        Py_ssize_t first_ref = ref, end_ref = ref + n_refs[image], first_group = n_groups;
        Py_ssize_t c = n_ref_sentences + image, here = ngrams_in(lengths, c, k);
        for (Py_ssize_t r = first_ref; r < end_ref; r++) here += ngrams_in(lengths, r, k);
        size_t size = 16;
        int shift = 28;
        while (size < 2 * (size_t)here) { size <<= 1; shift--; }
        memset(w->local, 0xff, size * sizeof(Local));
        size_t mask = size - 1;
        /* the image's groups (distinct n-grams of its references) and how many references hold each */
        for (Py_ssize_t r = first_ref; r < end_ref; r++)
            for (int64_t p = word_start[r]; p <= word_start[r] + lengths[r] - k; p++) {
                Local *e = local_entry(w->local, mask, shift, level[p]);
                if (e->group < 0) {
                    e->group = (int32_t)n_groups;
                    groups[n_groups].rows = 0; groups[n_groups].last_ref = -1;
                    group_key[n_groups] = ((int64_t)image << id_bits) | level[p];
                    n_groups++;
                }
                Group *g = &groups[e->group];
                if (g->last_ref != r) { g->last_ref = (int32_t)r; g->rows++; }
            }
        for (Py_ssize_t g = first_group; g < n_groups; g++) {
            group_start[g] = n_rows;
            n_rows += groups[g].rows;
            groups[g].rows = 0;  /* from here: the rows filled so far */
            groups[g].last_ref = -1;
            group_max[g] = 0;
        }
        /* the rows: one per (group, reference), a group's references in order; `ref_order` lists them as they are
         * made, reference by reference, each one's n-grams as they first occur in it (the toolkit's order) */
        for (Py_ssize_t r = first_ref; r < end_ref; r++)
            for (int64_t p = word_start[r]; p <= word_start[r] + lengths[r] - k; p++) {
                int32_t gi = local_entry(w->local, mask, shift, level[p])->group;
                Group *g = &groups[gi];
                if (g->last_ref != r) {
                    int64_t row = group_start[gi] + g->rows++;
                    g->last_ref = (int32_t)r; g->last_row = row;
                    ref_sentence[row] = r; ref_ngram[row] = level[p]; ref_count[row] = 0;
                    ref_order[n_ordered++] = row;
                }
                int64_t count = ++ref_count[g->last_row];
                if (count > group_max[gi]) group_max[gi] = count;
            }
        /* the candidate's n-grams, each with the group of the same n-gram in this image, if any */
        for (int64_t p = word_start[c]; p <= word_start[c] + lengths[c] - k; p++) {
            Local *e = local_entry(w->local, mask, shift, level[p]);
            if (e->cand < 0) {
                e->cand = (int32_t)n_cands;
                cand_key[n_cands] = ((int64_t)image << id_bits) | level[p];
                cand_count[n_cands] = 0;
                cand_group[n_cands] = e->group;
                n_cands++;
            }
            cand_count[e->cand]++;
        }
        ref = end_ref;
    }
    group_start[n_groups] = n_rows;
    Py_ssize_t used[N_ARRAYS] = {n_rows, n_rows, n_rows, n_groups, n_groups + 1, n_groups, n_cands, n_cands, n_cands,
                                 n_rows};
    memcpy(t->used, used, sizeof used);
}

/* (block, where each array starts, its length) of a filled order (needs the GIL). */
static PyObject *order_result(const OrderTable *t) {
    PyObject *offsets = PyTuple_New(N_ARRAYS), *counts = PyTuple_New(N_ARRAYS), *result = NULL;
    if (!offsets || !counts) goto done;
    for (int j = 0; j < N_ARRAYS; j++) {
        PyObject *o = PyLong_FromSsize_t(t->offset[j]), *c = PyLong_FromSsize_t(t->used[j]);
        if (!o || !c) { Py_XDECREF(o); Py_XDECREF(c); goto done; }
        PyTuple_SET_ITEM(offsets, j, o);
        PyTuple_SET_ITEM(counts, j, c);
    }
    result = PyTuple_Pack(3, t->block.obj, offsets, counts);
done:
    Py_XDECREF(offsets); Py_XDECREF(counts);
    return result;
}

/* The orders k = first, first + step, ... up to n, with one Work (a thread's share of count_all). */
typedef struct { const Corpus *corpus; OrderTable *tables; Work *work; int first, step, n; } Share;

static void *count_share(void *arg) {
    Share *share = arg;
    for (int k = share->first; k <= share->n; k += share->step)
        count_order(share->corpus, k, &share->tables[k - 1], share->work);
    return NULL;
}

/* Every order counted: where there is a second CPU, the even orders in a second thread beside the odd ones (the
 * orders are independent; ~40% of corpus_table's time), else all in this one. Without the GIL. */
static void count_all(const Corpus *corpus, OrderTable *tables, Work work[2], int n) {
    Share odd = {corpus, tables, &work[0], 1, 2, n}, even = {corpus, tables, &work[1], 2, 2, n};
    Py_BEGIN_ALLOW_THREADS
#if FSGR_THREADS
    pthread_t thread;
    if (n > 1 && sysconf(_SC_NPROCESSORS_ONLN) > 1 && pthread_create(&thread, NULL, count_share, &even) == 0) {
        count_share(&odd);
        pthread_join(thread, NULL);
    } else  /* (one CPU, or no thread to be had: the same work in this thread) */
#endif
    {
        count_share(&odd);
        count_share(&even);
    }
    Py_END_ALLOW_THREADS
}

static PyObject *corpus_table(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer text, char_lengths, n_refs;
    int n;
    if (!PyArg_ParseTuple(args, "y*y*y*i", &text, &char_lengths, &n_refs, &n)) return NULL;
    PyObject *result = NULL, *orders = NULL, *offsets = NULL;
    Array words = {0}, lengths = {0};
    PyObject *odd_spacing = NULL;
    int64_t *word_start = NULL;
    int32_t *levels = NULL, *table = NULL;
    uint64_t *keys = NULL;
    Work work[2] = {{0}};
    OrderTable tables[8];
    memset(tables, 0, sizeof tables);
    Py_ssize_t n_sentences = char_lengths.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t n_images = n_refs.len / (Py_ssize_t)sizeof(int64_t), n_words = 0, n_ref_sentences = 0;
    const int64_t *refs_per_image = n_refs.buf;
    for (Py_ssize_t i = 0; i < n_images; i++) n_ref_sentences += refs_per_image[i];
    if (n < 1 || n > 8 || n_ref_sentences + n_images != n_sentences || text.len >= INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "corpus_table: %zd sentences for %zd references and %zd candidates (n=%d)",
                     n_sentences, n_ref_sentences, n_images, n);
        goto done;
    }
    /* (a sentence of c characters holds at most (c + 1) / 2 words) */
    if (!array_new(&words, (text.len + n_sentences) / 2 + 1) || !array_new(&lengths, n_sentences)) goto done;
    odd_spacing = PyByteArray_FromStringAndSize(NULL, n_sentences);
    if (!odd_spacing) goto done;
    int32_t n_distinct = 0;
    if (intern_words(text.buf, char_lengths.buf, n_sentences, words.at, lengths.at,
                     PyByteArray_AS_STRING(odd_spacing), &n_words, &n_distinct) < 0)
        goto done;
    if (!array_cut(&words, n_words)) goto done;
    word_start = malloc((n_sentences + 1) * sizeof(int64_t));
    levels = big_malloc(((size_t)n * (size_t)n_words + 1) * sizeof(int32_t));  /* [n, W]: the ids of each order */
    size_t size = table_size(n_words);
    table = big_malloc(size * sizeof(int32_t));
    keys = big_malloc(((size_t)n_words + 1) * sizeof(uint64_t));
    if (!word_start || !levels || !table || !keys) { PyErr_NoMemory(); goto done; }
    word_start[0] = 0;
    for (Py_ssize_t s = 0; s < n_sentences; s++) word_start[s + 1] = word_start[s] + lengths.at[s];
    for (Py_ssize_t p = 0; p < n_words; p++) levels[p] = (int32_t)words.at[p];
    int64_t bounds[9] = {0, n_distinct};
    int32_t next_id = n_distinct;
    for (int k = 2; k <= n; k++) {
        if ((int64_t)next_id + n_words >= INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "too many n-grams for the n-gram index");
            goto done;
        }
        next_level(levels + (size_t)(k - 2) * n_words, levels, word_start, lengths.at, n_sentences, k,
                   levels + (size_t)(k - 1) * n_words, table, size, keys, next_id, &next_id);
        bounds[k] = next_id;
    }
    offsets = PyList_New(n + 1);
    if (!offsets) goto done;
    for (int k = 0; k <= n; k++) {
        PyObject *v = PyLong_FromLongLong(bounds[k]);
        if (!v) goto done;
        PyList_SET_ITEM(offsets, k, v);
    }
    int id_bits = bit_length(next_id > 1 ? next_id : 1);
    if (bit_length(n_images > 1 ? n_images : 1) + id_bits > 63) {
        PyErr_Format(PyExc_ValueError, "too many images and n-grams for the n-gram index: %zd, %lld", n_images,
                     (long long)next_id);
        goto done;
    }
    Py_ssize_t most_groups = n_words + 1, most_local = 16, ref = 0;  /* (per image: n-grams of one order, at most) */
    for (Py_ssize_t i = 0; i < n_images; i++) {
        Py_ssize_t here = lengths.at[n_ref_sentences + i];
        for (int64_t j = 0; j < refs_per_image[i]; j++) here += lengths.at[ref++];
        while (most_local < 2 * here) most_local <<= 1;
    }
    for (int j = 0; j < 2; j++) {
        work[j].local = malloc((size_t)most_local * sizeof(Local));
        work[j].groups = big_malloc((size_t)most_groups * sizeof(Group));
        if (!work[j].local || !work[j].groups) { PyErr_NoMemory(); goto done; }
    }
    for (int k = 1; k <= n; k++)
        if (!order_alloc(&tables[k - 1], lengths.at, n_ref_sentences, n_images, k)) goto done;
    Corpus corpus = {levels, n_words, n_images, n_ref_sentences, word_start, lengths.at, refs_per_image, id_bits};
    count_all(&corpus, tables, work, n);
    orders = PyList_New(n);
    if (!orders) goto done;
    for (int k = 1; k <= n; k++) {
        PyObject *order = order_result(&tables[k - 1]);
        if (!order) goto done;
        PyList_SET_ITEM(orders, k - 1, order);
    }
    result = Py_BuildValue("(OOOOiO)", words.obj, lengths.obj, odd_spacing, offsets, id_bits, orders);
done:
    Py_XDECREF(words.obj); Py_XDECREF(lengths.obj); Py_XDECREF(odd_spacing); Py_XDECREF(offsets);
    Py_XDECREF(orders);
    free(word_start); free(levels); free(table); free(keys);
    for (int j = 0; j < 2; j++) { free(work[j].local); free(work[j].groups); }
    for (int k = 0; k < 8; k++) Py_XDECREF(tables[k].block.obj);
    PyBuffer_Release(&text); PyBuffer_Release(&char_lengths); PyBuffer_Release(&n_refs);
    return result;
}

/* lcs_lengths(words, ref_lengths, cand_lengths, n_refs) -> bytearray of int64 [R]: the length of the longest
 * common subsequence of each reference and its image's candidate (word ids: every reference's words in order,
 * then every candidate's; the textbook dynamic programme, one row at a time). */
static PyObject *lcs_lengths(PyObject *self, PyObject *args) {
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

/* plain_captions(captions, byte_class, bad_pair, dot_words, assimilations) -> list of str or None: the tokenizer's
 * plain-caption path (`fsgr.metrics.tokenizer._plain_lines`, whose numpy version is the reference) caption by
 * caption: None for a caption that is not ASCII, breaks a pair rule (`byte_class`, `bad_pair`: the tokenizer's
 * tables), ends in "<word>." with the word (lower-cased, packed as `_pack_words` does) among the sorted uint64
 * `dot_words`, or holds one of the `assimilations` (lower-case bytes); else the caption lower-cased without its
 * commas and final period. */
static PyObject *plain_captions(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *captions, *assimilations;
    Py_buffer classes, bad, dots;
    if (!PyArg_ParseTuple(args, "O!y*y*y*O!", &PyList_Type, &captions, &classes, &bad, &dots, &PyTuple_Type,
                          &assimilations))
        return NULL;
    PyObject *out = NULL;
    const unsigned char *byte_class = classes.buf, *bad_pair = bad.buf;
    const uint64_t *dot_words = dots.buf;
    Py_ssize_t n_dots = dots.len / 8, n_assim = PyTuple_GET_SIZE(assimilations);
    if (classes.len != 256 || bad.len != 256) {
        PyErr_SetString(PyExc_ValueError, "plain_captions: the class and pair tables have 256 entries");
        goto done;
    }
    char starts_assimilation[256] = {0};  /* the first letters of the assimilations: where a search can start */
    for (Py_ssize_t j = 0; j < n_assim; j++) {
        PyObject *sub = PyTuple_GET_ITEM(assimilations, j);
        if (!PyBytes_Check(sub) || PyBytes_GET_SIZE(sub) == 0) {
            PyErr_SetString(PyExc_TypeError, "plain_captions: assimilations are non-empty bytes");
            goto done;
        }
        starts_assimilation[(unsigned char)PyBytes_AS_STRING(sub)[0]] = 1;
    }
    const unsigned char newline = byte_class['\n'], letter = byte_class['a'], period = byte_class['.'];
    const unsigned char hyphen = byte_class['-'];
    Py_ssize_t n = PyList_GET_SIZE(captions);
    out = PyList_New(n);
    if (!out) goto done;
    unsigned char *low = NULL;
    Py_ssize_t low_size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *caption = PyList_GET_ITEM(captions, i), *line = Py_None;
        if (!PyUnicode_Check(caption)) goto set;
#if PY_VERSION_HEX < 0x030C0000  /* (before 3.12 a str made by the old C API may need its canonical form first) */
        if (PyUnicode_READY(caption) < 0) { Py_CLEAR(out); goto done_low; }
#endif
        if (!PyUnicode_IS_ASCII(caption)) goto set;
        const unsigned char *b = PyUnicode_1BYTE_DATA(caption);
        Py_ssize_t len = PyUnicode_GET_LENGTH(caption);
        if (len > low_size) {
            unsigned char *grown = realloc(low, (size_t)len);
            if (!grown) { PyErr_NoMemory(); Py_CLEAR(out); goto done_low; }
            low = grown; low_size = len;
        }
        /* one pass: the pair check, the lower-cased copy and its commas */
        unsigned char before = newline;  /* a caption is a line: as if after a newline, before one */
        Py_ssize_t commas = 0;
        for (Py_ssize_t c = 0; c < len; c++) {
            unsigned char cls = byte_class[b[c]];
            if (bad_pair[(before << 3) | cls]) goto set;
            before = cls;
            low[c] = cls == letter ? (b[c] | 0x20) : b[c];
            commas += low[c] == ',';
        }
        if (bad_pair[(before << 3) | newline]) goto set;
        for (Py_ssize_t c = 0; c < len; c++) {
            if (!starts_assimilation[low[c]]) continue;
            for (Py_ssize_t j = 0; j < n_assim; j++) {
                const char *sub = PyBytes_AS_STRING(PyTuple_GET_ITEM(assimilations, j));
                Py_ssize_t m = PyBytes_GET_SIZE(PyTuple_GET_ITEM(assimilations, j));
                if (sub[0] == (char)low[c] && c + m <= len && memcmp(low + c, sub, (size_t)m) == 0) goto set;
            }
        }
        Py_ssize_t end = len;
        if (len && byte_class[b[len - 1]] == period) {  /* the word before the final period */
            end = len - 1;
            Py_ssize_t start = end;
            while (start > 0 && byte_class[b[start - 1]] == letter && end - start <= 8) start--;
            Py_ssize_t word = end - start;
            if (word <= 8 && (start == 0 || byte_class[b[start - 1]] != hyphen)) {
                uint64_t packed = 0;
                for (Py_ssize_t k = 1; k <= word; k++) packed |= (uint64_t)(b[end - k] | 0x20) << (8 * (k - 1));
                Py_ssize_t lo = 0, hi = n_dots;
                while (lo < hi) { Py_ssize_t mid = (lo + hi) / 2; if (dot_words[mid] < packed) lo = mid + 1; else hi = mid; }
                if (lo < n_dots && dot_words[lo] == packed) goto set;
            }
        }
        line = PyUnicode_New(end - commas, 127);  /* (a final period is no comma) */
        if (!line) { Py_CLEAR(out); goto done_low; }
        unsigned char *dst = PyUnicode_1BYTE_DATA(line);
        for (Py_ssize_t c = 0; c < end; c++) if (low[c] != ',') *dst++ = low[c];
        PyList_SET_ITEM(out, i, line);
        continue;
    set:
        Py_INCREF(Py_None);
        PyList_SET_ITEM(out, i, Py_None);
    }
done_low:
    free(low);
done:
    PyBuffer_Release(&classes); PyBuffer_Release(&bad); PyBuffer_Release(&dots);
    return out;
}

/* cider_d(orders, offsets, id_bits, log_counts, penalty, n_refs) -> bytearray of float64 [I]: each image's CIDEr-D
 * from the n-gram table (`fsgr.metrics.cider.corpus_cider_d`, whose numpy version is the reference: the same
 * operations in the same order, so the same floats). `orders`: per order a tuple of the int64 arrays (group_key,
 * ref_sentence, ref_count, ref_ngram, group_start, cand_key, cand_count, cand_group, ref_order); `log_counts` [I + 1]:
 * numpy's log of max(1, c) for c = 0..I (numpy's log and libm's differ in the last bit now and then: numpy's are
 * the toolkit's); `penalty` [R]: each reference's Gaussian length penalty (`length_penalty`: the toolkit's pow). */
static PyObject *cider_d(PyObject *self, PyObject *args) {
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

static PyMethodDef methods[] = {
    {"cider_d", cider_d, METH_VARARGS, "Each image's CIDEr-D from the n-gram table."},
    {"plain_captions", plain_captions, METH_VARARGS, "The tokenizer's plain captions, tokenised (else None)."},
    {"corpus_table", corpus_table, METH_VARARGS, "The n-gram table of one evaluation (see ngrams.encode_corpus)."},
    {"lcs_lengths", lcs_lengths, METH_VARARGS, "Each reference's LCS length with its image's candidate."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
