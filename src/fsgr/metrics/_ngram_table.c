/* The n-gram table kernel of `fsgr.metrics._speedups` (`fsgr.metrics.speedups.ngram_table`).
 * Replaces: `fsgr.metrics.ngrams._numpy_table` (the reference; tests/metrics/test_ngrams.py holds this to it).
 *
 * corpus_table(text, char_lengths, n_refs, n) -> (words, lengths, odd_spacing, offsets, id_bits, orders)
 *   The n-gram table of one evaluation (`fsgr.metrics.ngrams.encode_corpus`): the same n-grams,
 *   counts, groups and matches as the numpy table, found with hash tables and direct indexing instead of sorts. Its
 *   layout differs in two ways that no metric reads: n-gram ids are given in order of first occurrence (not sorted),
 *   and within an image the groups come in order of first occurrence. (The candidates' n-grams and `ref_order` are
 *   in the same order in both: the toolkit's, in which CIDEr-D adds.)
 *   text          bytes: every sentence, references first (grouped by image), then one candidate per image;
 *                 ASCII, or UTF-8 with every non-ASCII sentence's words one space apart (its bytes >= 0x80 are
 *                 word bytes: encode_corpus re-joins such a sentence's str.split() words)
 *   char_lengths  int64 buffer [S]: bytes of each sentence in `text`
 *   n_refs        int64 buffer [I]: references per image
 *   n             the highest n-gram order
 *   Words are what str.split() gives (ASCII white space: \t \n \v \f \r, \x1c-\x1f and the space). The int64
 *   arrays come back as bytearrays: words [W] (the word id of every word, in order), lengths [S] (words per
 *   sentence), and per order the ten arrays of `OrderCounts` (ref_sentence, ref_count, ref_ngram, group_key,
 *   group_start, group_max, cand_key, cand_count, cand_group, ref_order) as (block, offsets, counts): array j is
 *   block[offsets[j]:offsets[j] + counts[j]] (in int64 elements); odd_spacing is one byte per sentence, 1 where its
 *   split(" ") (ROUGE-L's tokens) differs from split(). The ids of order k + 1 are offsets[k]..offsets[k + 1] - 1;
 *   a key is image << id_bits | id.
 */
#include "_speedups.h"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <unistd.h>
#define FSGR_THREADS 1
#else
#define FSGR_THREADS 0
#endif

#define N_ARRAYS 10

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

PyObject *corpus_table(PyObject *self, PyObject *args) {
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
