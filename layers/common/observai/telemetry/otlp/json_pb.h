/* OTLP/JSON to protobuf bytes, in C: the fast path of an OTLP/JSON request (json_wire.py).
 *
 * An OTLP/JSON request is the protobuf JSON mapping of its Export*ServiceRequest with OTLP's deviations (hex trace
 * and span ids, integer enums, lowerCamelCase keys; 64-bit integers as numbers or strings). This reads the JSON
 * once, guided by a schema built from the messages' descriptors (json_wire.py), and writes the same message in the
 * protobuf binary encoding, which the protobuf fast path (_wire.c: rows) and the Python path (ParseFromString) then
 * take exactly as a protobuf request. Only the canonical forms are taken, those json_build.py takes too, with the
 * same meaning: anything else (a name for an enum, a base64 or malformed id, a string where a number is due, NaN,
 * a field named twice, two members of one oneof, a lone surrogate, invalid UTF-8, a control character in a string,
 * nesting past MAX_JSON_DEPTH, trailing data...) makes it answer None and the Python path decides, with its errors.
 *
 * json_schema(messages) -> capsule
 *   messages  a tuple of messages, the request first; a message: a tuple of fields; a field:
 *             (json_name, proto_name, number, kind, flags, oneof, message index or -1, allowed enum numbers)
 * json_to_protobuf(schema, body) -> bytes | None
 *
 * Included by _wire.c (one extension module); uses copy_buffer.h's Buf.
 */
#ifndef OBSERVAI_JSON_PB_H
#define OBSERVAI_JSON_PB_H

enum {
    K_STRING, K_BYTES, K_HEX, K_BOOL, K_DOUBLE, K_INT32, K_SINT32, K_UINT32, K_INT64, K_SINT64, K_UINT64,
    K_FIXED32, K_SFIXED32, K_FIXED64, K_SFIXED64, K_ENUM, K_MESSAGE, K_UNSUPPORTED
};
#define F_REPEATED 1
#define F_PRESENCE 2 /* a oneof member or a proto3 optional: written even when it holds the default */
#define MAX_JSON_DEPTH 64 /* as json_build.MAX_DEPTH: messages nested deeper are the Python path's */
#define MAX_JSON_FIELDS 64

typedef struct {
    char *json, *name;
    size_t json_len, name_len;
    uint32_t num;
    int kind, flags, oneof, sub, nenums;
    long long *enums;
} JField;

typedef struct {
    JField *f;
    int n;
} JMsg;

typedef struct {
    JMsg *m;
    int n;
} JSchema;

static void jschema_free(JSchema *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        for (int k = 0; k < s->m[i].n; k++) {
            free(s->m[i].f[k].json);
            free(s->m[i].f[k].name);
            free(s->m[i].f[k].enums);
        }
        free(s->m[i].f);
    }
    free(s->m);
    free(s);
}

static void jschema_capsule_free(PyObject *capsule) {
    jschema_free((JSchema *)PyCapsule_GetPointer(capsule, "observai.json_schema"));
}

static char *jdup(PyObject *text, size_t *len) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (!s) return NULL;
    char *copy = malloc((size_t)n + 1);
    if (!copy) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, s, (size_t)n + 1);
    *len = (size_t)n;
    return copy;
}

static PyObject *json_schema(PyObject *self, PyObject *messages) {
    (void)self;
    if (!PyTuple_Check(messages)) {
        PyErr_SetString(PyExc_TypeError, "messages must be a tuple");
        return NULL;
    }
    JSchema *s = calloc(1, sizeof *s);
    if (!s) return PyErr_NoMemory();
    s->n = (int)PyTuple_GET_SIZE(messages);
    if (!(s->m = calloc((size_t)s->n + 1, sizeof *s->m))) goto nomem;
    for (int i = 0; i < s->n; i++) {
        PyObject *fields = PyTuple_GET_ITEM(messages, i);
        if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) > MAX_JSON_FIELDS) goto bad;
        JMsg *m = &s->m[i];
        m->n = (int)PyTuple_GET_SIZE(fields);
        if (!(m->f = calloc((size_t)m->n + 1, sizeof *m->f))) goto nomem;
        for (int k = 0; k < m->n; k++) {
            PyObject *t = PyTuple_GET_ITEM(fields, k);
            JField *f = &m->f[k];
            if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 8) goto bad;
            if (!(f->json = jdup(PyTuple_GET_ITEM(t, 0), &f->json_len))) goto fail;
            if (!(f->name = jdup(PyTuple_GET_ITEM(t, 1), &f->name_len))) goto fail;
            long v[5];
            for (int x = 0; x < 5; x++) {
                v[x] = PyLong_AsLong(PyTuple_GET_ITEM(t, 2 + x));
                if (v[x] == -1 && PyErr_Occurred()) goto fail;
            }
            f->num = (uint32_t)v[0];
            f->kind = (int)v[1];
            f->flags = (int)v[2];
            f->oneof = (int)v[3];
            f->sub = (int)v[4];
            if (f->kind < 0 || f->kind > K_UNSUPPORTED || f->oneof >= 64 || f->sub >= s->n ||
                (f->kind == K_MESSAGE && f->sub < 0))
                goto bad;
            PyObject *enums = PyTuple_GET_ITEM(t, 7);
            if (!PyTuple_Check(enums)) goto bad;
            f->nenums = (int)PyTuple_GET_SIZE(enums);
            if (!(f->enums = calloc((size_t)f->nenums + 1, sizeof *f->enums))) goto nomem;
            for (int x = 0; x < f->nenums; x++) {
                f->enums[x] = PyLong_AsLongLong(PyTuple_GET_ITEM(enums, x));
                if (f->enums[x] == -1 && PyErr_Occurred()) goto fail;
            }
        }
    }
    PyObject *capsule = PyCapsule_New(s, "observai.json_schema", jschema_capsule_free);
    if (!capsule) goto fail;
    return capsule;
nomem:
    PyErr_NoMemory();
    goto fail;
bad:
    PyErr_SetString(PyExc_ValueError, "malformed json schema");
fail:
    jschema_free(s);
    return NULL;
}

/* --- reading JSON, writing protobuf -------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
    const JSchema *s;
    Buf out, key, tmp;
    int nul; /* a "\u0000" was decoded */
} JP;

static inline void jws(JP *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static inline int jlit(JP *j, const char *lit, size_t n) {
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n)) return BAIL;
    j->p += n;
    return OK;
}

static inline int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int jhex4(JP *j, uint32_t *out) {
    if (j->end - j->p < 4) return BAIL;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(j->p[i]);
        if (h < 0) return BAIL;
        v = v << 4 | (uint32_t)h;
    }
    j->p += 4;
    *out = v;
    return OK;
}

static inline int put_utf8(Buf *b, uint32_t c) {
    uint8_t u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (uint8_t)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = (uint8_t)(0xc0 | c >> 6);
        u[1] = (uint8_t)(0x80 | (c & 0x3f));
        n = 2;
    } else if (c < 0x10000) {
        u[0] = (uint8_t)(0xe0 | c >> 12);
        u[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
        u[2] = (uint8_t)(0x80 | (c & 0x3f));
        n = 3;
    } else {
        u[0] = (uint8_t)(0xf0 | c >> 18);
        u[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3f));
        u[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
        u[3] = (uint8_t)(0x80 | (c & 0x3f));
        n = 4;
    }
    return put(b, u, n);
}

/* The length of the well-formed UTF-8 sequence at p (strict, as Python's decoder: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0. */
static inline size_t utf8_seq(const uint8_t *p, const uint8_t *end) {
    uint8_t c = p[0];
    size_t left = (size_t)(end - p);
    if (c >= 0xc2 && c <= 0xdf) return left >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (left < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
        if (c == 0xe0 && p[1] < 0xa0) return 0;
        if (c == 0xed && p[1] >= 0xa0) return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (left < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) return 0;
        if (c == 0xf0 && p[1] < 0x90) return 0;
        if (c == 0xf4 && p[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

/* "ud800" to "udfff" at p: what text.may_hold_surrogates looks for after a backslash. */
static inline int surrogate_escape(const uint8_t *p, const uint8_t *end) {
    return end - p >= 5 && p[0] == 'u' && (p[1] == 'd' || p[1] == 'D') && p[2] && strchr("89abcdefABCDEF", p[2]) &&
           hexval(p[3]) >= 0 && hexval(p[4]) >= 0;
}

/* text.may_hold_surrogates(body): a backslash, then "ud800" to "udfff", anywhere in the bytes (escaped or not). */
static int may_hold_surrogates(const uint8_t *p, const uint8_t *end) {
    while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        p++;
        if (surrogate_escape(p, end)) return 1;
    }
    return 0;
}

/* A JSON string (at its opening quote), decoded into b as UTF-8. */
static int jstring(JP *j, Buf *b) {
    if (j->p >= j->end || *j->p != '"') return BAIL;
    j->p++;
    for (;;) {
        const uint8_t *run = j->p;
        while (j->p < j->end && *j->p >= 0x20 && *j->p < 0x80 && *j->p != '"' && *j->p != '\\') j->p++;
        CHECK(put(b, run, (size_t)(j->p - run)));
        if (j->p >= j->end) return BAIL;
        uint8_t c = *j->p;
        if (c == '"') {
            j->p++;
            return OK;
        }
        if (c < 0x20) return BAIL; /* a control character: json.loads refuses it */
        if (c >= 0x80) {
            size_t n = utf8_seq(j->p, j->end);
            if (!n) return BAIL;
            CHECK(put(b, j->p, n));
            j->p += n;
            continue;
        }
        /* an escape */
        if (j->end - j->p < 2) return BAIL;
        c = j->p[1];
        j->p += 2;
        char e;
        switch (c) {
            case '"': e = '"'; break;
            case '\\': e = '\\'; break;
            case '/': e = '/'; break;
            case 'b': e = '\b'; break;
            case 'f': e = '\f'; break;
            case 'n': e = '\n'; break;
            case 'r': e = '\r'; break;
            case 't': e = '\t'; break;
            case 'u': {
                uint32_t u, low;
                CHECK(jhex4(j, &u));
                if (u >= 0xdc00 && u <= 0xdfff) return BAIL; /* a lone low surrogate: U+FFFD in the Python reading */
                if (u >= 0xd800) {
                    /* A pair (what json.dumps writes for a character past U+FFFF) is that character, as json.loads
                     * joins it; a high surrogate alone is the Python reading's (U+FFFD). */
                    if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') return BAIL;
                    j->p += 2;
                    CHECK(jhex4(j, &low));
                    if (low < 0xdc00 || low > 0xdfff) return BAIL;
                    u = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00);
                }
                if (u == 0) j->nul = 1;
                CHECK(put_utf8(b, u));
                continue;
            }
            default: return BAIL;
        }
        CHECK(put_c(b, e));
    }
}

typedef struct {
    const uint8_t *s;
    size_t n;
    int integral;
} Num;

/* A JSON number token (Python's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?). */
static int jnumber(JP *j, Num *num) {
    const uint8_t *p = j->p, *e = j->end;
    num->s = p;
    num->integral = 1;
    if (p < e && *p == '-') p++;
    if (p >= e) return BAIL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9') p++;
    } else {
        return BAIL;
    }
    if (p < e && *p == '.') {
        num->integral = 0;
        p++;
        if (p >= e || *p < '0' || *p > '9') return BAIL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        num->integral = 0;
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return BAIL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    num->n = (size_t)(p - num->s);
    j->p = p;
    return OK;
}

/* Decimal digits with an optional minus sign: sign and magnitude; BAIL past 2^64 - 1. */
static int digits(const uint8_t *s, size_t n, int *neg, uint64_t *mag) {
    *neg = 0;
    if (n && *s == '-') {
        *neg = 1;
        s++;
        n--;
    }
    if (!n) return BAIL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return BAIL;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return BAIL;
        v = v * 10 + d;
    }
    *mag = v;
    return OK;
}

static int jskip(JP *j, int depth);

static int jskip_container(JP *j, int depth, uint8_t close, int keyed) {
    if (depth > MAX_JSON_DEPTH) return BAIL;
    j->p++;
    jws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return OK;
    }
    for (;;) {
        jws(j);
        if (keyed) {
            j->tmp.len = 0;
            CHECK(jstring(j, &j->tmp));
            jws(j);
            CHECK(jlit(j, ":", 1));
            jws(j);
        }
        CHECK(jskip(j, depth + 1));
        jws(j);
        if (j->p >= j->end) return BAIL;
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == close) {
            j->p++;
            return OK;
        }
        return BAIL;
    }
}

/* Any JSON value (an unknown field's), checked and passed over. */
static int jskip(JP *j, int depth) {
    if (j->p >= j->end) return BAIL;
    switch (*j->p) {
        case '"': j->tmp.len = 0; return jstring(j, &j->tmp);
        case '{': return jskip_container(j, depth, '}', 1);
        case '[': return jskip_container(j, depth, ']', 0);
        case 't': return jlit(j, "true", 4);
        case 'f': return jlit(j, "false", 5);
        case 'n': return jlit(j, "null", 4);
        default: {
            Num num;
            return jnumber(j, &num);
        }
    }
}

static inline int pb_varint(Buf *b, uint64_t v) {
    uint8_t u[10];
    size_t n = 0;
    while (v >= 0x80) {
        u[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    u[n++] = (uint8_t)v;
    return put(b, u, n);
}

static inline int pb_tag(Buf *b, uint32_t num, int wt) { return pb_varint(b, (uint64_t)num << 3 | (uint64_t)wt); }

/* A length-delimited field's content is written after a one-byte length; pb_close puts the real length. */
static inline int pb_open(Buf *b, size_t *at) {
    *at = b->len;
    return put_c(b, 0);
}

static int pb_close(Buf *b, size_t at) {
    size_t n = b->len - at - 1;
    if (n < 0x80) {
        b->p[at] = (char)n;
        return OK;
    }
    uint8_t u[10];
    size_t k = 0;
    uint64_t v = n;
    for (; v >= 0x80; v >>= 7) u[k++] = (uint8_t)(v | 0x80);
    u[k++] = (uint8_t)v;
    CHECK(buf_grow(b, k - 1));
    memmove(b->p + at + k, b->p + at + 1, n);
    memcpy(b->p + at, u, k);
    b->len += k - 1;
    return OK;
}

static inline int wire_type(int kind) {
    switch (kind) {
        case K_DOUBLE: case K_FIXED64: case K_SFIXED64: return 1;
        case K_FIXED32: case K_SFIXED32: return 5;
        case K_STRING: case K_BYTES: case K_HEX: case K_MESSAGE: return 2;
        default: return 0;
    }
}

/* A scalar number, bool or enum value: its encoding (no tag) into b; *zero: whether every bit of it is zero. */
static int jscalar(JP *j, const JField *f, Buf *b, int *zero) {
    if (j->p >= j->end) return BAIL;
    uint8_t c = *j->p;
    if (f->kind == K_BOOL) {
        if (c == 't') {
            CHECK(jlit(j, "true", 4));
            *zero = 0;
            return put_c(b, 1);
        }
        CHECK(jlit(j, "false", 5));
        *zero = 1;
        return put_c(b, 0);
    }
    if (f->kind == K_DOUBLE) {
        Num num;
        CHECK(jnumber(j, &num));
        if (num.n >= 400) return BAIL;
        char text[400];
        memcpy(text, num.s, num.n);
        text[num.n] = 0;
        double d = strtod(text, NULL);
        if (!isfinite(d)) return BAIL; /* 1e400: the Python path says what it makes of it */
        if (num.integral && d == 0) d = 0.0; /* "-0" is the integer 0 for json.loads: +0.0 as a double */
        uint64_t bits;
        memcpy(&bits, &d, 8);
        *zero = bits == 0;
        return put(b, &bits, 8);
    }
    /* integers: a JSON integer, or a string of decimal digits (64-bit integers are strings in proto JSON) */
    int neg;
    uint64_t mag;
    if (c == '"') {
        const uint8_t *s = ++j->p;
        while (j->p < j->end && *j->p != '"') j->p++;
        if (j->p >= j->end || f->kind == K_ENUM) return BAIL;
        CHECK(digits(s, (size_t)(j->p - s), &neg, &mag));
        j->p++;
    } else {
        Num num;
        CHECK(jnumber(j, &num));
        if (!num.integral) return BAIL;
        CHECK(digits(num.s, num.n, &neg, &mag));
    }
    if (neg && mag == 0) neg = 0;
    int64_t sv = 0;
    switch (f->kind) {
        case K_INT32: case K_SINT32: case K_SFIXED32: case K_ENUM:
            if (neg ? mag > 0x80000000ull : mag > 0x7fffffffull) return BAIL;
            sv = neg ? -(int64_t)mag : (int64_t)mag;
            break;
        case K_INT64: case K_SINT64: case K_SFIXED64:
            if (neg ? mag > 0x8000000000000000ull : mag > 0x7fffffffffffffffull) return BAIL;
            sv = neg ? (int64_t)(0 - mag) : (int64_t)mag;
            break;
        case K_UINT32: case K_FIXED32:
            if (neg || mag > 0xffffffffull) return BAIL;
            break;
        case K_UINT64: case K_FIXED64:
            if (neg) return BAIL;
            break;
        default: return BAIL;
    }
    *zero = mag == 0;
    switch (f->kind) {
        case K_ENUM: {
            int known = 0;
            for (int i = 0; i < f->nenums; i++) known |= f->enums[i] == sv;
            if (!known) return BAIL;
        }
        /* fall through */
        case K_INT32: case K_INT64: return pb_varint(b, (uint64_t)sv);
        case K_SINT32: return pb_varint(b, (uint32_t)(((uint32_t)sv << 1) ^ (uint32_t)((int32_t)sv >> 31)));
        case K_SINT64: return pb_varint(b, ((uint64_t)sv << 1) ^ (uint64_t)(sv >> 63));
        case K_UINT32: case K_UINT64: return pb_varint(b, mag);
        case K_SFIXED32: {
            int32_t x = (int32_t)sv;
            return put(b, &x, 4);
        }
        case K_FIXED32: {
            uint32_t x = (uint32_t)mag;
            return put(b, &x, 4);
        }
        case K_SFIXED64: return put(b, &sv, 8);
        default: return put(b, &mag, 8); /* K_FIXED64 */
    }
}

static int jmessage(JP *j, int mi, int depth);

/* One value of field f (a repeated field's element, or a singular field), tag included. */
static int jsingle(JP *j, const JField *f, int depth, int repeated) {
    Buf *b = &j->out;
    size_t start = b->len, at;
    int present = repeated || (f->flags & F_PRESENCE);
    switch (f->kind) {
        case K_MESSAGE:
            if (j->p >= j->end || *j->p != '{') return BAIL;
            CHECK(pb_tag(b, f->num, 2));
            CHECK(pb_open(b, &at));
            CHECK(jmessage(j, f->sub, depth + 1));
            return pb_close(b, at);
        case K_STRING:
            CHECK(pb_tag(b, f->num, 2));
            CHECK(pb_open(b, &at));
            CHECK(jstring(j, b));
            if (!present && b->len == at + 1) {
                b->len = start; /* the default: not written, as the serializer does */
                return OK;
            }
            return pb_close(b, at);
        case K_HEX: {
            j->tmp.len = 0;
            CHECK(jstring(j, &j->tmp));
            size_t n = j->tmp.len;
            if (n % 2) return BAIL;
            if (!n && !present) return OK;
            CHECK(pb_tag(b, f->num, 2));
            CHECK(pb_varint(b, n / 2));
            CHECK(buf_grow(b, n / 2));
            const uint8_t *h = (const uint8_t *)j->tmp.p;
            for (size_t i = 0; i < n; i += 2) {
                int hi = hexval(h[i]), lo = hexval(h[i + 1]);
                if (hi < 0 || lo < 0) return BAIL; /* not hex (base64, as protobuf JSON has it): the Python path */
                b->p[b->len++] = (char)(hi << 4 | lo);
            }
            return OK;
        }
        case K_BYTES: case K_UNSUPPORTED: return BAIL;
        default: {
            int zero;
            CHECK(pb_tag(b, f->num, wire_type(f->kind)));
            CHECK(jscalar(j, f, b, &zero));
            if (zero && !present) b->len = start;
            return OK;
        }
    }
}

static int jfield(JP *j, const JField *f, int depth) {
    if (!(f->flags & F_REPEATED)) return jsingle(j, f, depth, 0);
    if (j->p >= j->end || *j->p != '[') return BAIL;
    j->p++;
    jws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return OK;
    }
    int packed = wire_type(f->kind) != 2;
    size_t at = 0;
    if (packed) {
        CHECK(pb_tag(&j->out, f->num, 2));
        CHECK(pb_open(&j->out, &at));
    }
    for (;;) {
        jws(j);
        if (packed) {
            int zero;
            CHECK(jscalar(j, f, &j->out, &zero));
        } else {
            CHECK(jsingle(j, f, depth, 1));
        }
        jws(j);
        if (j->p >= j->end) return BAIL;
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p != ']') return BAIL;
        j->p++;
        return packed ? pb_close(&j->out, at) : OK;
    }
}

static int jmessage(JP *j, int mi, int depth) {
    if (depth > MAX_JSON_DEPTH) return BAIL;
    const JMsg *m = &j->s->m[mi];
    uint64_t seen = 0, oneofs = 0;
    if (j->p >= j->end || *j->p != '{') return BAIL;
    j->p++;
    jws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return OK;
    }
    for (;;) {
        jws(j);
        j->key.len = 0;
        CHECK(jstring(j, &j->key));
        jws(j);
        CHECK(jlit(j, ":", 1));
        jws(j);
        int fi = -1;
        for (int i = 0; i < m->n; i++) {
            const JField *f = &m->f[i];
            if ((f->json_len == j->key.len && !memcmp(f->json, j->key.p, j->key.len)) ||
                (f->name_len == j->key.len && !memcmp(f->name, j->key.p, j->key.len))) {
                fi = i;
                break;
            }
        }
        if (fi < 0) {
            CHECK(jskip(j, depth + 1)); /* unknown fields are ignored */
        } else {
            if (seen >> fi & 1) return BAIL; /* the same field twice (or under both names) */
            seen |= 1ull << fi;
            if (j->p < j->end && *j->p == 'n') {
                CHECK(jlit(j, "null", 4)); /* null is the default */
            } else {
                const JField *f = &m->f[fi];
                if (f->oneof >= 0) {
                    if (oneofs >> f->oneof & 1) return BAIL;
                    oneofs |= 1ull << f->oneof;
                }
                CHECK(jfield(j, f, depth));
            }
        }
        jws(j);
        if (j->p >= j->end) return BAIL;
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p != '}') return BAIL;
        j->p++;
        return OK;
    }
}

static PyObject *json_to_protobuf(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "json_to_protobuf(schema, body)");
        return NULL;
    }
    JSchema *schema = PyCapsule_GetPointer(args[0], "observai.json_schema");
    if (!schema) return NULL;
    Py_buffer body;
    if (PyObject_GetBuffer(args[1], &body, PyBUF_SIMPLE) < 0) return NULL;
    JP j;
    memset(&j, 0, sizeof j);
    j.p = body.buf;
    j.end = j.p + body.len;
    j.s = schema;
    int rc = buf_grow(&j.out, (size_t)body.len / 2 + 64);
    if (rc == OK) {
        jws(&j);
        rc = jmessage(&j, 0, 0);
        jws(&j);
        if (rc == OK && j.p != j.end) rc = BAIL; /* trailing data */
        /* parse.py makes a body that may hold surrogates storable as a whole (text.storable: NUL and lone
         * surrogates to U+FFFD): with a NUL too, the Python reading's. */
        if (rc == OK && j.nul && may_hold_surrogates(body.buf, j.end)) rc = BAIL;
    }
    PyObject *result = NULL;
    if (rc == OK)
        result = PyBytes_FromStringAndSize(j.out.p, (Py_ssize_t)j.out.len);
    else if (rc == BAIL)
        result = Py_NewRef(Py_None);
    free(j.out.p);
    free(j.key.p);
    free(j.tmp.p);
    PyBuffer_Release(&body);
    return result;
}

#endif
