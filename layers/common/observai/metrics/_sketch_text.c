/* Sketch entries to their JSON encoding in one C pass: what rollup_pass.sketch_json does in Python, text for text
 * (tests/unit/test_sketch_text.py holds both to the same bytes). The roll-up job encodes every coarse and group
 * row's sketch (hundreds of thousands a run): in Python that was the largest single cost of both stages.
 *
 * The entries come as four arrays, sorted by (row, store, idx), each (row, store, idx) once: row and idx and n
 * int64, store int8 (1: the positive store "p", 2: the negative "n", 3: the zero count "z", one entry per row at
 * most). The encoding is observai.metrics.sketch's: {"p":{"<idx>":n,...},"n":{...},"z":n}.
 *
 * texts(row, store, idx, n) -> (rows, blob, offsets)
 *   rows     int64 bytes: each row having entries, ascending
 *   blob     the rows' JSON texts, one after another
 *   offsets  int64 bytes, len(rows) + 1: row k's text is blob[offsets[k]:offsets[k + 1]]
 * lines(row, store, idx, n, first) -> bytes
 *   a text COPY line per row having entries: "<row + first>\t<JSON>\tf\n"
 * padded(blob, offsets, picks, width, prefix) -> bytes
 *   for each k of picks (int64 bytes): prefix (one byte), text k, spaces up to width bytes
 *
 * The arrays are read through the buffer protocol (numpy's C-contiguous arrays; the caller converts). Entries out
 * of order, a store other than 1..3 or arrays of different lengths raise ValueError: nothing is guessed.
 */
#include "../telemetry/copy_buffer.h"

typedef struct {
    Py_buffer row, store, idx, n;
    Py_ssize_t count;
} Entries;

static void entries_release(Entries *e) {
    if (e->row.obj) PyBuffer_Release(&e->row);
    if (e->store.obj) PyBuffer_Release(&e->store);
    if (e->idx.obj) PyBuffer_Release(&e->idx);
    if (e->n.obj) PyBuffer_Release(&e->n);
}

static int entries_get(PyObject *const *args, Entries *e) {
    memset(e, 0, sizeof(*e));
    if (PyObject_GetBuffer(args[0], &e->row, PyBUF_C_CONTIGUOUS) < 0 ||
        PyObject_GetBuffer(args[1], &e->store, PyBUF_C_CONTIGUOUS) < 0 ||
        PyObject_GetBuffer(args[2], &e->idx, PyBUF_C_CONTIGUOUS) < 0 ||
        PyObject_GetBuffer(args[3], &e->n, PyBUF_C_CONTIGUOUS) < 0) {
        entries_release(e);
        return ERR;
    }
    e->count = e->row.len / 8;
    if (e->row.len % 8 || e->idx.len != e->row.len || e->n.len != e->row.len || e->store.len != e->count) {
        entries_release(e);
        PyErr_SetString(PyExc_ValueError, "entries: row, idx and n must be int64 and store int8, of one length");
        return ERR;
    }
    return OK;
}

/* v in decimal, as Python's str(int) writes it (snprintf's locale and format parsing cost more than the rest). */
static inline int put_int(Buf *b, long long v) {
    char digits[24];
    char *end = digits + sizeof digits, *p = end;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    return put(b, p, (size_t)(end - p));
}

/* One row's JSON from entry i on; *next: the first entry of the next row. */
static int row_text(Buf *b, const Entries *e, Py_ssize_t i, Py_ssize_t *next) {
    const int64_t *row = e->row.buf, *idx = e->idx.buf, *n = e->n.buf;
    const int8_t *store = e->store.buf;
    int64_t r = row[i];
    long long zeros = 0;
    int section = 1, first = 1;
    CHECK(put(b, "{\"p\":{", 6));
    for (; i < e->count && row[i] == r; i++) {
        int s = store[i];
        if (s < 1 || s > 3 || s < section || (i > 0 && row[i - 1] == r && store[i - 1] == s &&
                                              (s == 3 || idx[i - 1] >= idx[i]))) {
            PyErr_Format(PyExc_ValueError, "entries: entry %zd is out of (row, store, idx) order", i);
            return ERR;
        }
        while (section < s) {
            CHECK(put(b, section == 1 ? "},\"n\":{" : "}", section == 1 ? 7 : 1));
            section++;
            first = 1;
        }
        if (s == 3) {
            zeros = n[i];
            continue;
        }
        if (!first) CHECK(put(b, ",", 1));
        first = 0;
        CHECK(put(b, "\"", 1));
        CHECK(put_int(b, idx[i]));
        CHECK(put(b, "\":", 2));
        CHECK(put_int(b, n[i]));
    }
    while (section < 3) {
        CHECK(put(b, section == 1 ? "},\"n\":{" : "}", section == 1 ? 7 : 1));
        section++;
    }
    CHECK(put(b, ",\"z\":", 5));
    CHECK(put_int(b, zeros));
    CHECK(put(b, "}", 1));
    if (i < e->count && row[i] < r) {
        PyErr_Format(PyExc_ValueError, "entries: entry %zd is out of (row, store, idx) order", i);
        return ERR;
    }
    *next = i;
    return OK;
}

static PyObject *sketch_texts(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "texts(row, store, idx, n)");
        return NULL;
    }
    Entries e;
    if (entries_get(args, &e) != OK) return NULL;
    Buf text = {0}, rows = {0}, offsets = {0};
    PyObject *result = NULL;
    int64_t at = 0;
    if (put(&offsets, &at, 8) != OK) goto done;
    for (Py_ssize_t i = 0; i < e.count;) {
        int64_t r = ((const int64_t *)e.row.buf)[i];
        if (put(&rows, &r, 8) != OK || row_text(&text, &e, i, &i) != OK) goto done;
        at = (int64_t)text.len;
        if (put(&offsets, &at, 8) != OK) goto done;
    }
    result = Py_BuildValue("(y#y#y#)", rows.p ? rows.p : "", (Py_ssize_t)rows.len, text.p ? text.p : "",
                           (Py_ssize_t)text.len, offsets.p, (Py_ssize_t)offsets.len);
done:
    free(text.p);
    free(rows.p);
    free(offsets.p);
    entries_release(&e);
    return result;
}

static PyObject *sketch_lines(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "lines(row, store, idx, n, first)");
        return NULL;
    }
    long long first = PyLong_AsLongLong(args[4]);
    if (first == -1 && PyErr_Occurred()) return NULL;
    Entries e;
    if (entries_get(args, &e) != OK) return NULL;
    Buf out = {0};
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < e.count;) {
        long long r = ((const int64_t *)e.row.buf)[i];
        if (put_int(&out, r + first) != OK || put(&out, "\t", 1) != OK || row_text(&out, &e, i, &i) != OK ||
            put(&out, "\tf\n", 3) != OK)
            goto done;
    }
    result = PyBytes_FromStringAndSize(out.p ? out.p : "", (Py_ssize_t)out.len);
done:
    free(out.p);
    entries_release(&e);
    return result;
}

static PyObject *sketch_padded(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "padded(blob, offsets, picks, width, prefix)");
        return NULL;
    }
    Py_ssize_t width = PyLong_AsSsize_t(args[3]);
    if (width == -1 && PyErr_Occurred()) return NULL;
    Py_buffer blob = {0}, offsets = {0}, picks = {0}, prefix = {0};
    PyObject *result = NULL;
    if (PyObject_GetBuffer(args[0], &blob, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(args[1], &offsets, PyBUF_C_CONTIGUOUS) < 0 ||
        PyObject_GetBuffer(args[2], &picks, PyBUF_C_CONTIGUOUS) < 0 ||
        PyObject_GetBuffer(args[4], &prefix, PyBUF_SIMPLE) < 0)
        goto done;
    Py_ssize_t texts = offsets.len / 8 - 1, count = picks.len / 8;
    if (offsets.len % 8 || texts < 0 || picks.len % 8 || prefix.len != 1 || width < 1) {
        PyErr_SetString(PyExc_ValueError, "padded: int64 offsets and picks, a one-byte prefix, a positive width");
        goto done;
    }
    const int64_t *off = offsets.buf, *pick = picks.buf;
    result = PyBytes_FromStringAndSize(NULL, count * width);
    if (!result) goto done;
    char *out = PyBytes_AS_STRING(result);
    for (Py_ssize_t k = 0; k < count; k++, out += width) {
        int64_t t = pick[k];
        if (t < 0 || t >= texts || off[t] < 0 || off[t] > off[t + 1] || off[t + 1] > blob.len ||
            1 + off[t + 1] - off[t] > width) {
            PyErr_Format(PyExc_ValueError, "padded: pick %zd is no text of the blob, or wider than %zd", k, width);
            Py_CLEAR(result);
            goto done;
        }
        size_t len = (size_t)(off[t + 1] - off[t]);
        out[0] = *(const char *)prefix.buf;
        memcpy(out + 1, (const char *)blob.buf + off[t], len);
        memset(out + 1 + len, ' ', (size_t)width - 1 - len);
    }
done:
    if (blob.obj) PyBuffer_Release(&blob);
    if (offsets.obj) PyBuffer_Release(&offsets);
    if (picks.obj) PyBuffer_Release(&picks);
    if (prefix.obj) PyBuffer_Release(&prefix);
    return result;
}

static PyMethodDef methods[] = {
    {"texts", (PyCFunction)(void (*)(void))sketch_texts, METH_FASTCALL,
     "texts(row, store, idx, n) -> (rows, blob, offsets): each row's sketch JSON"},
    {"lines", (PyCFunction)(void (*)(void))sketch_lines, METH_FASTCALL,
     "lines(row, store, idx, n, first) -> bytes: a text COPY line per row, numbered row + first"},
    {"padded", (PyCFunction)(void (*)(void))sketch_padded, METH_FASTCALL,
     "padded(blob, offsets, picks, width, prefix) -> bytes: fixed-width texts"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_sketch_text", .m_doc = "Sketch entries to their JSON text.", .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__sketch_text(void) { return PyModule_Create(&module); }
