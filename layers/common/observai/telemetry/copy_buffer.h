/* Binary COPY rows and JSON text, written into a growing buffer: what the compiled row builders share
 * (otlp/_wire.c: OTLP protobuf to rows; _rows.c: records to rows). Header-only: each module compiles its own copy.
 *
 * Every function returns OK, BAIL (not for this path: the caller leaves the work to the Python path) or ERR (a
 * Python exception is set).
 */
#ifndef OBSERVAI_COPY_BUFFER_H
#define OBSERVAI_COPY_BUFFER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK 1
#define BAIL 0 /* not for this path: the Python path takes the work */
#define ERR (-1) /* a Python exception is set (memory) */
#define CHECK(x)                 \
    do {                         \
        int rc_ = (x);           \
        if (rc_ != OK) return rc_; \
    } while (0)

#define MAX_DEPTH 32
#define PG_EPOCH_US 946684800000000LL
#define MINUTE_US 60000000LL
#define NS_PER_S 1000000000LL

/* --- output buffer ------------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static inline int buf_grow(Buf *b, size_t n) {
    if (b->len + n <= b->cap) return OK;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        PyErr_NoMemory();
        return ERR;
    }
    b->p = p;
    b->cap = cap;
    return OK;
}

static inline int put(Buf *b, const void *s, size_t n) {
    if (!n) return OK; /* s may be NULL then (an absent field): memcpy must not see it */
    CHECK(buf_grow(b, n));
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return OK;
}

static inline int put_c(Buf *b, char c) { return put(b, &c, 1); }

static inline int put_be(Buf *b, uint64_t v, int size) {
    unsigned char t[8];
    for (int i = size - 1; i >= 0; i--, v >>= 8) t[i] = (unsigned char)(v & 0xff);
    return put(b, t, (size_t)size);
}

static inline int put_fmt(Buf *b, const char *fmt, long long v) {
    char t[96];
    int n = snprintf(t, sizeof t, fmt, v);
    if (n < 0 || n >= (int)sizeof t) return BAIL; /* never with this file's formats */
    return put(b, t, (size_t)n);
}

/* COPY fields: a 4-byte length, then the value; -1 is NULL. */
static inline int f_null(Buf *b) { return put_be(b, 0xffffffffu, 4); }
static inline int f_bytes(Buf *b, const void *s, size_t n) {
    CHECK(put_be(b, n, 4));
    return put(b, s, n);
}
static inline int f_int(Buf *b, int64_t v, int size) {
    CHECK(put_be(b, (uint64_t)size, 4));
    return put_be(b, (uint64_t)v, size);
}
static inline int f_time(Buf *b, uint64_t ns) { return f_int(b, (int64_t)(ns / 1000) - PG_EPOCH_US, 8); }
static inline int f_text_or_null(Buf *b, const uint8_t *s, size_t n) { return n ? f_bytes(b, s, n) : f_null(b); }

static const char HEX[] = "0123456789abcdef";

/* Hex digits inside a JSON string. */
static inline int json_hex(Buf *b, const uint8_t *s, size_t n) {
    CHECK(buf_grow(b, 2 * n));
    for (size_t i = 0; i < n; i++) {
        b->p[b->len++] = HEX[s[i] >> 4];
        b->p[b->len++] = HEX[s[i] & 15];
    }
    return OK;
}

static inline int f_hex(Buf *b, const uint8_t *s, size_t n) {
    CHECK(put_be(b, 2 * n, 4));
    return json_hex(b, s, n);
}

/* A field whose length is known once written (jsonb): reserve the length, patch it after. */
static inline int f_open(Buf *b, size_t *at) {
    *at = b->len;
    return put_be(b, 0, 4);
}
static inline void f_close(Buf *b, size_t at) {
    uint32_t n = (uint32_t)(b->len - at - 4);
    unsigned char *p = (unsigned char *)b->p + at;
    p[0] = n >> 24, p[1] = (n >> 16) & 0xff, p[2] = (n >> 8) & 0xff, p[3] = n & 0xff;
}

/* --- JSON ---------------------------------------------------------------------------------------- */

/* JSON is written for jsonb (mode 0) or as json.dumps writes text: a log body (JSON_TEXT), a series identity
 * (JSON_TEXT | JSON_SORT, sort_keys=True). jsonb keeps the last of duplicate keys, as the Python dict does; in
 * text the dict would also keep the first one's place, so a duplicate key there is left to the Python path. */
#define JSON_TEXT 1
#define JSON_SORT 2

/* A JSON string. jsonb cannot hold NUL: as jsonb_binary does, it becomes U+FFFD; in text it stays \u0000. */
static inline int json_str(Buf *b, const uint8_t *s, size_t n, int mode) {
    CHECK(buf_grow(b, n + 2));
    b->p[b->len++] = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        CHECK(put(b, s + run, i - run));
        run = i + 1;
        char esc[8];
        const char *e = esc;
        size_t en = 2;
        switch (c) {
            case '"': e = "\\\""; break;
            case '\\': e = "\\\\"; break;
            case '\n': e = "\\n"; break;
            case '\r': e = "\\r"; break;
            case '\t': e = "\\t"; break;
            case '\b': e = "\\b"; break;
            case '\f': e = "\\f"; break;
            case 0: e = mode & JSON_TEXT ? "\\u0000" : "\\ufffd", en = 6; break;
            default:
                snprintf(esc, sizeof esc, "\\u%04x", c);
                en = 6;
        }
        CHECK(put(b, e, en));
    }
    if (run < n) CHECK(put(b, s + run, n - run)); /* an empty string's s may be NULL: no NULL + 0 */
    return put_c(b, '"');
}

/* A double as Python's repr spells it (shortest round-trip digits; "1.0" keeps its ".0", exponents from
 * 1e16 and below 1e-4), so jsonb stores the same numeric, scale included; NaN and infinities as the strings
 * the protobuf JSON mapping uses (json_float). */
static inline int json_double(Buf *b, double d) {
    if (isnan(d)) return put(b, "\"NaN\"", 5);
    if (isinf(d)) return d > 0 ? put(b, "\"Infinity\"", 10) : put(b, "\"-Infinity\"", 11);
    char *s = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!s) return ERR;
    int rc = put(b, s, strlen(s));
    PyMem_Free(s);
    return rc;
}

static inline int json_base64(Buf *b, const uint8_t *s, size_t n) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    CHECK(buf_grow(b, 4 * ((n + 2) / 3) + 2));
    char *o = b->p + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = T[v >> 18], *o++ = T[(v >> 12) & 63], *o++ = T[(v >> 6) & 63], *o++ = T[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *o++ = T[v >> 18], *o++ = T[(v >> 12) & 63];
        *o++ = i + 1 < n ? T[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return OK;
}

/* dict[key] += n (0 when absent), for the log volume's counts; steals ``key`` (NULL: an error is set). */
static inline int dict_add(PyObject *dict, PyObject *key, long long n) {
    if (!key) return ERR;
    PyObject *old = PyDict_GetItemWithError(dict, key);
    long long count = (old ? PyLong_AsLongLong(old) : 0) + n;
    int rc = PyErr_Occurred() ? -1 : 0;
    if (rc == 0) {
        PyObject *value = PyLong_FromLongLong(count);
        rc = value ? PyDict_SetItem(dict, key, value) : -1;
        Py_XDECREF(value);
    }
    Py_DECREF(key);
    return rc ? ERR : OK;
}

#endif
