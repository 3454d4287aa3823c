/* OTLP protobuf (Export{Logs,Trace,Metrics}ServiceRequest) straight to binary COPY rows.
 *
 * The fast path of the OTLP decoder (wire.py): it reads the request's bytes once and writes the rows of
 * public.logs, public.spans or public.metric_points in COPY's binary format, the same rows the Python path (decode.py, then the
 * writer's row builders) would write. It handles only requests where every item is accepted: anything the
 * Python path would reject, refuse, or treat in a way this code does not reproduce exactly (a rejected item,
 * a malformed body, a structured log body, duplicate keys, NUL in text, a field it does not know...) makes
 * it answer None, and the Python path decodes the request as before. Tests hold both paths to the same rows.
 *
 * rows(kind, body, now_ns, limits, org, project, keep) -> None | (count, payload, minutes or series, items)
 *   kind     0: logs, 1: spans, 2: metric points (every type)
 *   limits   (max_attributes, max_key_length, max_value_length, max_body_length, max_name_length,
 *             max_past_s, max_future_s)
 *   org, project  16-byte uuids
 *   keep     logs: a tuple of 25 retention_days by severity_number; spans and metric points: retention_days
 *   payload  PGCOPY signature, the rows, the trailer (for Copy.write)
 *   minutes  logs: {(minute, service, severity_number, retention_days): rows} (the log volume)
 *   series   metric points: {series_id: type} of the points' series (the writer checks it knows them all)
 *   items    the request's items (the points without a value included): what its size limit counts
 */
#include "../copy_buffer.h"

typedef struct {
    long max_attributes, max_key, max_value, max_body, max_name, max_past_s, max_future_s;
    uint64_t lo_ns, hi_ns; /* accepted times: lo_ns <= t <= hi_ns, t > 0 */
} Limits;

/* --- protobuf reading --------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
} Rd;

typedef struct {
    uint32_t num;
    int wt;
    uint64_t v;
    const uint8_t *data;
    size_t len;
} Fld;

static inline int rd_varint(Rd *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return OK;
        }
    }
    return BAIL;
}

/* The next field; BAIL on anything malformed or a group (the Python path says why). */
static inline int rd_field(Rd *r, Fld *f) {
    uint64_t key;
    CHECK(rd_varint(r, &key));
    if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff) return BAIL;
    f->num = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    switch (f->wt) {
        case 0:
            return rd_varint(r, &f->v);
        case 1:
            if (r->end - r->p < 8) return BAIL;
            memcpy(&f->v, r->p, 8); /* little-endian hosts (x86_64, arm64) */
            r->p += 8;
            return OK;
        case 2: {
            uint64_t n;
            CHECK(rd_varint(r, &n));
            if (n > (uint64_t)(r->end - r->p)) return BAIL;
            f->data = r->p;
            f->len = (size_t)n;
            r->p += n;
            return OK;
        }
        case 5: {
            uint32_t x;
            if (r->end - r->p < 4) return BAIL;
            memcpy(&x, r->p, 4);
            f->v = x;
            r->p += 4;
            return OK;
        }
        default:
            return BAIL;
    }
}

#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_I32 5
#define EXPECT(f, t) \
    if ((f).wt != (t)) return BAIL

/* Strict UTF-8 (what upb checks in proto3 string fields); the number of code points, or -1. */
static long utf8_chars(const uint8_t *s, size_t n) {
    long chars = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
        } else if (c >= 0xc2 && c <= 0xdf) {
            if (i + 1 >= n || (s[i + 1] & 0xc0) != 0x80) return -1;
            i += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            if (i + 2 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80) return -1;
            if (c == 0xe0 && s[i + 1] < 0xa0) return -1;  /* overlong */
            if (c == 0xed && s[i + 1] > 0x9f) return -1;  /* surrogate */
            i += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            if (i + 3 >= n || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80 || (s[i + 3] & 0xc0) != 0x80)
                return -1;
            if (c == 0xf0 && s[i + 1] < 0x90) return -1;  /* overlong */
            if (c == 0xf4 && s[i + 1] > 0x8f) return -1;  /* past U+10FFFF */
            i += 4;
        } else {
            return -1;
        }
        chars++;
    }
    return chars;
}

/* A string field: valid UTF-8 (else BAIL, as upb refuses it); *chars its length in code points. */
static inline int rd_str(const Fld *f, long *chars) {
    if (f->wt != WT_LEN) return BAIL;
    long n = utf8_chars(f->data, f->len);
    if (n < 0) return BAIL;
    if (chars) *chars = n;
    return OK;
}

/* Text for a text column: valid UTF-8 without NUL (clean_text would rewrite NUL: the Python path does). */
static inline int rd_text(const Fld *f, long *chars) {
    CHECK(rd_str(f, chars));
    if (f->len && memchr(f->data, 0, f->len)) return BAIL;
    return OK;
}

/* An AnyValue's oneof: the last value field on the wire wins (proto3 oneof semantics). */
typedef struct {
    int kind; /* 0 none, else the field number: 1 string, 2 bool, 3 int, 4 double, 5 array, 6 kvlist, 7 bytes */
    Fld f;
} Any;

static int any_read(const uint8_t *d, size_t n, Any *a) {
    Rd r = {d, d + n};
    Fld f;
    a->kind = 0;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        switch (f.num) {
            case 1: CHECK(rd_str(&f, NULL)); break;
            case 2: case 3: EXPECT(f, WT_VARINT); break;
            case 4: EXPECT(f, WT_I64); break;
            case 5: case 6: case 7: EXPECT(f, WT_LEN); break;
            case 8: return BAIL; /* string_value_strindex (profiles' dictionary): the Python path */
            default: continue; /* unknown: skipped, as upb keeps it aside */
        }
        /* Two values (the last wins, a message twice is merged): rare enough to leave to the Python path. */
        if (a->kind) return BAIL;
        a->kind = (int)f.num;
        a->f = f;
    }
    return OK;
}

static int json_kvs(Buf *b, const uint8_t *d, size_t n, int depth, int mode);

static int json_any(Buf *b, const Any *a, int depth, int mode) {
    if (depth > MAX_DEPTH) return BAIL;
    const Fld *f = &a->f;
    switch (a->kind) {
        case 0: return put(b, "null", 4);
        case 1: return json_str(b, f->data, f->len, mode);
        case 2: return f->v ? put(b, "true", 4) : put(b, "false", 5);
        case 3: return put_fmt(b, "%lld", (long long)(int64_t)f->v);
        case 4: {
            double x;
            memcpy(&x, &f->v, 8);
            return json_double(b, x);
        }
        case 5: { /* ArrayValue: repeated AnyValue values = 1 */
            Rd r = {f->data, f->data + f->len};
            Fld g;
            int first = 1;
            CHECK(put_c(b, '['));
            while (r.p < r.end) {
                CHECK(rd_field(&r, &g));
                if (g.num != 1) continue;
                EXPECT(g, WT_LEN);
                Any item;
                CHECK(any_read(g.data, g.len, &item));
                if (!first) CHECK(put_c(b, ','));
                first = 0;
                CHECK(json_any(b, &item, depth + 1, mode));
            }
            return put_c(b, ']');
        }
        case 6: return json_kvs(b, f->data, f->len, depth + 1, mode); /* KeyValueList: repeated KeyValue values = 1 */
        case 7: return json_base64(b, f->data, f->len);
    }
    return BAIL;
}

typedef struct {
    const uint8_t *key;
    size_t klen;
    long kchars;
    Any value;
} KV;

static int kv_read(const uint8_t *d, size_t n, KV *kv) {
    Rd r = {d, d + n};
    Fld f;
    int has_value = 0;
    kv->key = d, kv->klen = 0, kv->kchars = 0;
    kv->value.kind = 0;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        if (f.num == 1) {
            CHECK(rd_str(&f, &kv->kchars));
            kv->key = f.data, kv->klen = f.len;
        } else if (f.num == 2) {
            EXPECT(f, WT_LEN);
            if (has_value++) return BAIL; /* merged messages */
            CHECK(any_read(f.data, f.len, &kv->value));
        } else if (f.num == 3) {
            return BAIL; /* key_strindex */
        }
    }
    return OK;
}

/* The strings inside a value (arrays' items, maps' keys and values, at any depth) valid UTF-8: upb refuses the
 * request for a bad one anywhere, in a part the rows leave out too. any_read checked the value's own string. */
static int any_strings(const Any *a, int depth) {
    if (depth > MAX_DEPTH) return BAIL;
    if (a->kind != 5 && a->kind != 6) return OK;
    Rd r = {a->f.data, a->f.data + a->f.len};
    Fld g;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &g));
        if (g.num != 1) continue;
        EXPECT(g, WT_LEN);
        if (a->kind == 5) { /* ArrayValue.values */
            Any item;
            CHECK(any_read(g.data, g.len, &item));
            CHECK(any_strings(&item, depth + 1));
        } else { /* KeyValueList.values */
            KV kv;
            CHECK(kv_read(g.data, g.len, &kv));
            CHECK(any_strings(&kv.value, depth + 1));
        }
    }
    return OK;
}

/* A KeyValue's strings (its key, its value's) valid UTF-8. */
static int kv_strings(const uint8_t *d, size_t n) {
    KV kv;
    CHECK(kv_read(d, n, &kv));
    return any_strings(&kv.value, 1);
}

/* Keys in Python's str order (code points: UTF-8 bytes compare the same way). */
static int kv_cmp(const void *x, const void *y) {
    const KV *a = x, *b = y;
    int c = memcmp(a->key, b->key, a->klen < b->klen ? a->klen : b->klen);
    return c ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

static int json_kv(Buf *b, const KV *kv, int depth, int mode) {
    CHECK(json_str(b, kv->key, kv->klen, mode));
    CHECK(put_c(b, ':'));
    return json_any(b, &kv->value, depth, mode);
}

/* A nested KeyValueList as a JSON object. */
#define MAX_NESTED_KEYS 32
static int json_kvs(Buf *b, const uint8_t *d, size_t n, int depth, int mode) {
    if (depth > MAX_DEPTH) return BAIL;
    Rd r = {d, d + n};
    Fld f;
    KV kvs[MAX_NESTED_KEYS];
    size_t nk = 0;
    CHECK(put_c(b, '{'));
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        if (f.num != 1) continue;
        EXPECT(f, WT_LEN);
        KV kv;
        CHECK(kv_read(f.data, f.len, &kv));
        if (!mode) { /* jsonb: written as it comes */
            if (nk++) CHECK(put_c(b, ','));
            CHECK(json_kv(b, &kv, depth + 1, mode));
            continue;
        }
        if (nk == MAX_NESTED_KEYS) return BAIL;
        for (size_t i = 0; i < nk; i++)
            if (kvs[i].klen == kv.klen && memcmp(kvs[i].key, kv.key, kv.klen) == 0) return BAIL;
        kvs[nk++] = kv;
    }
    if (mode) {
        if (mode & JSON_SORT) qsort(kvs, nk, sizeof *kvs, kv_cmp);
        for (size_t i = 0; i < nk; i++) {
            if (i) CHECK(put_c(b, ','));
            CHECK(json_kv(b, &kvs[i], depth + 1, mode));
        }
    }
    return put_c(b, '}');
}

/* --- attribute maps (checked as check_attributes does) ------------------------------------------- */

typedef struct {
    const uint8_t **data;
    size_t *len;
    size_t n, cap;
} Slices;

static int slices_add(Slices *s, const Fld *f) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        const uint8_t **d = realloc(s->data, cap * sizeof *d);
        if (!d) return PyErr_NoMemory(), ERR;
        s->data = d;
        size_t *l = realloc(s->len, cap * sizeof *l);
        if (!l) return PyErr_NoMemory(), ERR;
        s->len = l;
        s->cap = cap;
    }
    s->data[s->n] = f->data;
    s->len[s->n++] = f->len;
    return OK;
}

static void slices_free(Slices *s) {
    free(s->data);
    free(s->len);
}

static int count_entries(const Fld *f) {
    Rd r = {f->data, f->data + f->len};
    Fld g;
    int n = 0;
    while (r.p < r.end) {
        if (rd_field(&r, &g) != OK) return -1;
        if (g.num == 1) n++;
    }
    return n;
}

/* The map's entries read into scratch; BAIL where check_attributes would refuse it or where the Python dict
 * would differ (a duplicate key). */
static int attrs_check(const Slices *s, const Limits *L, KV *scratch) {
    if ((long)s->n > L->max_attributes) return BAIL;
    for (size_t i = 0; i < s->n; i++) {
        KV *kv = &scratch[i];
        CHECK(kv_read(s->data[i], s->len[i], kv));
        if (kv->kchars > L->max_key) return BAIL;
        const Any *a = &kv->value;
        if (a->kind == 1) {
            if ((long)a->f.len > L->max_value) { /* bytes >= characters: count only when it may matter */
                if (utf8_chars(a->f.data, a->f.len) > L->max_value) return BAIL;
            }
        } else if (a->kind == 5 || a->kind == 6) {
            int items = count_entries(&a->f);
            if (items < 0 || items > L->max_attributes) return BAIL;
        }
        for (size_t j = 0; j < i; j++)
            if (scratch[j].klen == kv->klen && memcmp(scratch[j].key, kv->key, kv->klen) == 0) return BAIL;
    }
    return OK;
}

static int attrs_json(Buf *b, const KV *kvs, size_t n) {
    CHECK(put_c(b, '{'));
    for (size_t i = 0; i < n; i++) {
        if (i) CHECK(put_c(b, ','));
        CHECK(json_kv(b, &kvs[i], 1, 0));
    }
    return put_c(b, '}');
}

/* --- the state of one call ----------------------------------------------------------------------- */

typedef struct {
    long long minute;
    const uint8_t *service; /* in the request's bytes: one pointer per resource */
    size_t service_len;
    int severity;
    long keep;
} Minute;

typedef struct {
    Limits L;
    Buf out, shared, body;
    Slices a, b;  /* attribute maps being read (an item's, then an event's or a link's) */
    Slices ev, ln; /* a span's events and links */
    KV *kvs;
    size_t kvs_cap;
    const uint8_t *org, *project;
    long keep_logs[25];
    long keep_spans;
    Py_ssize_t count, items; /* rows written; items read (data points without a value included) */
    /* the resource and scope in force: their JSON (in shared) and the service name */
    size_t resource_at, resource_len, scope_at, scope_len;
    const uint8_t *service;
    size_t service_len;
    PyObject *minutes;
    Minute minute; /* the run of rows being counted */
    long long run;
    /* dedup keys seen, (trace_id, span_id, start) or (series_id, time), to leave a repeat to the Python path */
    uint8_t *keys;
    size_t keys_n, keys_cap;
    /* metrics: the resource's attributes (merged under each point's), the series identity being hashed, the
     * points' series {series_id: type} */
    KV *res_kvs, *merged;
    size_t res_n, merged_cap;
    PyObject *types[12]; /* the series types (METRIC_TYPES), at their data field numbers */
    Buf canon;
    long keep_metrics;
    PyObject *series;
} St;

static int kv_scratch(St *st, size_t n) {
    if (n <= st->kvs_cap) return OK;
    KV *k = realloc(st->kvs, n * sizeof *k);
    if (!k) return PyErr_NoMemory(), ERR;
    st->kvs = k;
    st->kvs_cap = n;
    return OK;
}

/* The map in slices s checked (its entries in st->kvs); its JSON into b unless b is NULL. */
static int attrs_of(St *st, Buf *b, const Slices *s) {
    if ((long)s->n > st->L.max_attributes) return BAIL;
    CHECK(kv_scratch(st, s->n + 1));
    CHECK(attrs_check(s, &st->L, st->kvs));
    return b ? attrs_json(b, st->kvs, s->n) : OK;
}

static int check_time(const St *st, uint64_t t) {
    return t == 0 || t < st->L.lo_ns || t > st->L.hi_ns ? BAIL : OK;
}

static int all_zero(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i]) return 0;
    return 1;
}

/* Resource (attributes = 1, dropped_attributes_count = 2): its JSON into st->shared, and service.name. */
static int read_resource(St *st, const Fld *res) {
    st->a.n = 0;
    st->service = NULL;
    st->service_len = 0;
    if (res) {
        Rd r = {res->data, res->data + res->len};
        Fld f;
        while (r.p < r.end) {
            CHECK(rd_field(&r, &f));
            if (f.num == 1) {
                EXPECT(f, WT_LEN);
                CHECK(slices_add(&st->a, &f));
            } else if (f.num == 2) {
                EXPECT(f, WT_VARINT);
            } else if (f.num == 3) {
                return BAIL; /* entity_refs: not read here */
            }
        }
    }
    st->shared.len = 0;
    st->resource_at = 0;
    CHECK(attrs_of(st, &st->shared, &st->a));
    st->resource_len = st->shared.len;
    free(st->res_kvs);
    st->res_n = st->a.n;
    st->res_kvs = malloc((st->res_n + 1) * sizeof *st->res_kvs);
    if (!st->res_kvs) return PyErr_NoMemory(), ERR;
    memcpy(st->res_kvs, st->kvs, st->res_n * sizeof *st->res_kvs);
    for (size_t i = 0; i < st->a.n; i++) {
        KV *kv = &st->kvs[i];
        if (kv->klen == 12 && memcmp(kv->key, "service.name", 12) == 0) {
            if (kv->value.kind != 1) return BAIL; /* str() of another type: the Python path */
            if (memchr(kv->value.f.data, 0, kv->value.f.len)) return BAIL;
            st->service = kv->value.f.data;
            st->service_len = kv->value.f.len;
        }
    }
    return OK;
}

/* InstrumentationScope (name 1, version 2, attributes 3, dropped 4) as {"name","version","attributes"}. */
static int read_scope(St *st, const Fld *sc) {
    Fld name = {0}, version = {0};
    st->a.n = 0;
    if (sc) {
        Rd r = {sc->data, sc->data + sc->len};
        Fld f;
        while (r.p < r.end) {
            CHECK(rd_field(&r, &f));
            switch (f.num) {
                case 1: CHECK(rd_str(&f, NULL)); name = f; break;
                case 2: CHECK(rd_str(&f, NULL)); version = f; break;
                case 3: EXPECT(f, WT_LEN); CHECK(slices_add(&st->a, &f)); break;
                case 4: EXPECT(f, WT_VARINT); break;
            }
        }
    }
    Buf *b = &st->shared;
    b->len = st->resource_len;
    st->scope_at = b->len;
    CHECK(put(b, "{\"name\":", 8));
    CHECK(name.len ? json_str(b, name.data, name.len, 0) : put(b, "null", 4));
    CHECK(put(b, ",\"version\":", 11));
    CHECK(version.len ? json_str(b, version.data, version.len, 0) : put(b, "null", 4));
    CHECK(put(b, ",\"attributes\":", 14));
    CHECK(attrs_of(st, b, &st->a));
    CHECK(put_c(b, '}'));
    st->scope_len = b->len - st->scope_at;
    return OK;
}

static int f_jsonb_shared(St *st, size_t at, size_t len) {
    CHECK(put_be(&st->out, len + 1, 4));
    CHECK(put_c(&st->out, 1));
    return put(&st->out, st->shared.p + at, len);
}

/* A jsonb field from the attribute map in slices s. */
static int f_attrs(St *st, const Slices *s) {
    size_t at;
    CHECK(f_open(&st->out, &at));
    CHECK(put_c(&st->out, 1));
    CHECK(attrs_of(st, &st->out, s));
    f_close(&st->out, at);
    return OK;
}

/* --- logs ------------------------------------------------------------------------------------------ */

/* The counts of the run of rows with one (minute, service, severity): added to minutes when the run ends. */
static int flush_minute(St *st) {
    if (!st->run) return OK;
    const Minute *m = &st->minute;
    PyObject *service =
        m->service ? PyUnicode_DecodeUTF8((const char *)m->service, m->service_len, NULL) : Py_NewRef(Py_None);
    if (!service) return ERR;
    PyObject *key = Py_BuildValue("(LNil)", m->minute, service, m->severity, m->keep);
    long long run = st->run;
    st->run = 0;
    return dict_add(st->minutes, key, run);
}

/* Count the row in the log volume (rows of one minute, service and severity come in runs). */
static int count_minute(St *st, long long minute, int severity, long keep) {
    Minute *m = &st->minute;
    if (st->run && (m->minute != minute || m->severity != severity || m->service != st->service)) {
        CHECK(flush_minute(st));
    }
    if (!st->run) *m = (Minute){minute, st->service, st->service_len, severity, keep};
    st->run++;
    return OK;
}

static int log_record(St *st, const uint8_t *d, size_t n) {
    Rd r = {d, d + n};
    Fld f, severity_text = {0}, body = {0}, trace_id = {0}, span_id = {0}, event_name = {0};
    uint64_t time = 0, observed = 0, severity = 0, flags = 0;
    int bodies = 0;
    st->a.n = 0;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        switch (f.num) {
            case 1: EXPECT(f, WT_I64); time = f.v; break;
            case 11: EXPECT(f, WT_I64); observed = f.v; break;
            case 2: EXPECT(f, WT_VARINT); severity = f.v; break;
            case 3: CHECK(rd_text(&f, NULL)); severity_text = f; break;
            case 5: EXPECT(f, WT_LEN); if (bodies++) return BAIL; body = f; break;
            case 6: EXPECT(f, WT_LEN); CHECK(slices_add(&st->a, &f)); break;
            case 7: EXPECT(f, WT_VARINT); break;
            case 8: EXPECT(f, WT_I32); flags = f.v; break;
            case 9: EXPECT(f, WT_LEN); trace_id = f; break;
            case 10: EXPECT(f, WT_LEN); span_id = f; break;
            case 12: CHECK(rd_text(&f, NULL)); event_name = f; break;
        }
    }
    /* The data model: the event time if present, otherwise the observed time. */
    uint64_t t = time || !observed ? time : observed;
    CHECK(check_time(st, t));
    if (severity > 24 || flags > 0x7fffffff) return BAIL;
    Any b = {0};
    if (bodies) CHECK(any_read(body.data, body.len, &b));
    /* The body's text: a string as is, another value as compact JSON (body_text), none as "". */
    const uint8_t *text = (const uint8_t *)"";
    size_t text_len = 0;
    if (b.kind == 1) {
        if (memchr(b.f.data, 0, b.f.len)) return BAIL;
        text = b.f.data, text_len = b.f.len;
    } else if (b.kind) {
        st->body.len = 0;
        CHECK(json_any(&st->body, &b, 0, 1));
        text = (const uint8_t *)st->body.p, text_len = st->body.len;
    }
    if ((long)text_len > st->L.max_body && utf8_chars(text, text_len) > st->L.max_body) return BAIL;
    /* an id of the wrong size is a rejection (the Python path gives the reason) */
    if ((trace_id.len && trace_id.len != 16) || (span_id.len && span_id.len != 8)) return BAIL;
    int has_trace = trace_id.len == 16 && !all_zero(trace_id.data, 16);
    int has_span = span_id.len == 8 && !all_zero(span_id.data, 8);
    long keep = st->keep_logs[severity];
    Buf *o = &st->out;
    CHECK(put_be(o, 17, 2));
    CHECK(f_bytes(o, st->org, 16));
    CHECK(f_bytes(o, st->project, 16));
    CHECK(f_time(o, t));
    CHECK(observed ? f_time(o, observed) : f_null(o));
    CHECK(f_int(o, (int64_t)severity, 2));
    CHECK(f_text_or_null(o, severity_text.data, severity_text.len));
    CHECK(st->service ? f_bytes(o, st->service, st->service_len) : f_null(o));
    CHECK(f_bytes(o, text, text_len));
    CHECK(f_attrs(st, &st->a));
    CHECK(f_jsonb_shared(st, st->resource_at, st->resource_len));
    CHECK(f_jsonb_shared(st, st->scope_at, st->scope_len));
    CHECK(has_trace ? f_hex(o, trace_id.data, 16) : f_null(o));
    CHECK(has_span ? f_hex(o, span_id.data, 8) : f_null(o));
    CHECK(f_int(o, (int64_t)flags, 4));
    CHECK(f_null(o)); /* event_id: OTLP has none */
    CHECK(f_text_or_null(o, event_name.data, event_name.len));
    CHECK(f_int(o, keep, 2));
    long long us = (long long)(t / 1000) - PG_EPOCH_US;
    CHECK(count_minute(st, us / MINUTE_US, (int)severity, keep));
    st->count++;
    return OK;
}

/* --- spans ----------------------------------------------------------------------------------------- */

static uint64_t key_hash(const uint8_t *k) {
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 32; i++) h = (h ^ k[i]) * 1099511628211ULL;
    return h;
}

/* Remember a dedup key (32 bytes, never all zero); BAIL when the request carries it twice (the Python path
 * drops the copy and counts it). */
static int key_new(St *st, const uint8_t *k) {
    if (2 * (st->keys_n + 1) > st->keys_cap) { /* grow: rehash into twice the slots */
        size_t cap = st->keys_cap ? 2 * st->keys_cap : 64;
        uint8_t *keys = calloc(cap, 32);
        if (!keys) return PyErr_NoMemory(), ERR;
        for (size_t i = 0; i < st->keys_cap; i++) {
            const uint8_t *old = st->keys + 32 * i;
            if (all_zero(old, 32)) continue;
            size_t j = key_hash(old) & (cap - 1);
            while (!all_zero(keys + 32 * j, 32)) j = (j + 1) & (cap - 1);
            memcpy(keys + 32 * j, old, 32);
        }
        free(st->keys);
        st->keys = keys;
        st->keys_cap = cap;
    }
    size_t mask = st->keys_cap - 1;
    for (size_t i = key_hash(k) & mask;; i = (i + 1) & mask) {
        uint8_t *slot = st->keys + 32 * i;
        if (all_zero(slot, 32)) {
            memcpy(slot, k, 32);
            st->keys_n++;
            return OK;
        }
        if (memcmp(slot, k, 32) == 0) return BAIL;
    }
}

static int span_key_new(St *st, const uint8_t *trace, const uint8_t *span, uint64_t start) {
    uint8_t k[32] = {0};
    memcpy(k, trace, 16);
    memcpy(k + 16, span, 8);
    uint64_t us = start / 1000;
    memcpy(k + 24, &us, 8);
    return key_new(st, k);
}

static int span_event(St *st, Buf *o, const uint8_t *d, size_t n) {
    Rd r = {d, d + n};
    Fld f, name = {0};
    uint64_t time = 0, dropped = 0;
    st->b.n = 0;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        switch (f.num) {
            case 1: EXPECT(f, WT_I64); time = f.v; break;
            case 2: CHECK(rd_str(&f, NULL)); name = f; break;
            case 3: EXPECT(f, WT_LEN); CHECK(slices_add(&st->b, &f)); break;
            case 4: EXPECT(f, WT_VARINT); dropped = f.v & 0xffffffffu; break;
        }
    }
    CHECK(put_fmt(o, "{\"time_ns\":%llu,\"name\":", (long long)time));
    CHECK(json_str(o, name.data, name.len, 0));
    CHECK(put(o, ",\"attributes\":", 14));
    CHECK(attrs_of(st, o, &st->b));
    if (dropped) CHECK(put_fmt(o, ",\"dropped_attributes_count\":%lld", (long long)dropped));
    return put_c(o, '}');
}

static int span_link(St *st, Buf *o, const uint8_t *d, size_t n) {
    Rd r = {d, d + n};
    Fld f, trace_id = {0}, span_id = {0}, trace_state = {0};
    uint64_t dropped = 0, flags = 0;
    st->b.n = 0;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        switch (f.num) {
            case 1: EXPECT(f, WT_LEN); trace_id = f; break;
            case 2: EXPECT(f, WT_LEN); span_id = f; break;
            case 3: CHECK(rd_str(&f, NULL)); trace_state = f; break;
            case 4: EXPECT(f, WT_LEN); CHECK(slices_add(&st->b, &f)); break;
            case 5: EXPECT(f, WT_VARINT); dropped = f.v & 0xffffffffu; break;
            case 6: EXPECT(f, WT_I32); flags = f.v; break;
        }
    }
    if (trace_id.len != 16 || all_zero(trace_id.data, 16) || span_id.len != 8 || all_zero(span_id.data, 8))
        return BAIL;
    CHECK(put(o, "{\"trace_id\":\"", 13));
    CHECK(json_hex(o, trace_id.data, 16));
    CHECK(put(o, "\",\"span_id\":\"", 13));
    CHECK(json_hex(o, span_id.data, 8));
    CHECK(put(o, "\",\"trace_state\":", 16));
    CHECK(trace_state.len ? json_str(o, trace_state.data, trace_state.len, 0) : put(o, "null", 4));
    CHECK(put(o, ",\"attributes\":", 14));
    CHECK(attrs_of(st, o, &st->b));
    if (flags) CHECK(put_fmt(o, ",\"flags\":%lld", (long long)flags));
    if (dropped) CHECK(put_fmt(o, ",\"dropped_attributes_count\":%lld", (long long)dropped));
    return put_c(o, '}');
}

static const char *const KINDS[] = {"internal", "internal", "server", "client", "producer", "consumer"};
static const char *const STATUSES[] = {"unset", "ok", "error"};

/* events or links (slices) as a jsonb field: a JSON list. */
static int f_list(St *st, const Slices *items, int (*one)(St *, Buf *, const uint8_t *, size_t)) {
    Buf *o = &st->out;
    size_t at;
    CHECK(f_open(o, &at));
    CHECK(put(o, "\x01[", 2));
    for (size_t i = 0; i < items->n; i++) {
        if (i) CHECK(put_c(o, ','));
        CHECK(one(st, o, items->data[i], items->len[i]));
    }
    CHECK(put_c(o, ']'));
    f_close(o, at);
    return OK;
}

static int span(St *st, const uint8_t *d, size_t n) {
    Rd r = {d, d + n};
    Fld f, trace_id = {0}, span_id = {0}, parent = {0}, name = {0}, trace_state = {0}, status = {0};
    uint64_t start = 0, end = 0, kind = 0, flags = 0;
    int statuses = 0;
    long name_chars = 0;
    st->a.n = st->ev.n = st->ln.n = 0;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        switch (f.num) {
            case 1: EXPECT(f, WT_LEN); trace_id = f; break;
            case 2: EXPECT(f, WT_LEN); span_id = f; break;
            case 3: CHECK(rd_text(&f, NULL)); trace_state = f; break;
            case 4: EXPECT(f, WT_LEN); parent = f; break;
            case 5: CHECK(rd_text(&f, &name_chars)); name = f; break;
            case 6: EXPECT(f, WT_VARINT); kind = f.v; break;
            case 7: EXPECT(f, WT_I64); start = f.v; break;
            case 8: EXPECT(f, WT_I64); end = f.v; break;
            case 9: EXPECT(f, WT_LEN); CHECK(slices_add(&st->a, &f)); break;
            case 10: case 12: case 14: EXPECT(f, WT_VARINT); break;
            case 11: EXPECT(f, WT_LEN); CHECK(slices_add(&st->ev, &f)); break;
            case 13: EXPECT(f, WT_LEN); CHECK(slices_add(&st->ln, &f)); break;
            case 15: EXPECT(f, WT_LEN); if (statuses++) return BAIL; status = f; break;
            case 16: EXPECT(f, WT_I32); flags = f.v; break;
        }
    }
    if (trace_id.len != 16 || all_zero(trace_id.data, 16) || span_id.len != 8 || all_zero(span_id.data, 8))
        return BAIL;
    if (parent.len && parent.len != 8) return BAIL;
    if (!name.len || name_chars > st->L.max_name) return BAIL;
    if (kind > 5 || flags > 0x7fffffff || end > (uint64_t)INT64_MAX) return BAIL;
    CHECK(check_time(st, start));
    if (end < start) return BAIL;
    uint64_t code = 0;
    Fld message = {0};
    if (statuses) {
        Rd s = {status.data, status.data + status.len};
        while (s.p < s.end) {
            CHECK(rd_field(&s, &f));
            if (f.num == 2) {
                CHECK(rd_text(&f, NULL));
                message = f;
            } else if (f.num == 3) {
                EXPECT(f, WT_VARINT);
                code = f.v;
            }
        }
    }
    if (code > 2) return BAIL;
    CHECK(span_key_new(st, trace_id.data, span_id.data, start));
    Buf *o = &st->out;
    CHECK(put_be(o, 22, 2));
    CHECK(f_bytes(o, st->org, 16));
    CHECK(f_bytes(o, st->project, 16));
    CHECK(f_hex(o, trace_id.data, 16));
    CHECK(f_hex(o, span_id.data, 8));
    CHECK(parent.len && !all_zero(parent.data, 8) ? f_hex(o, parent.data, 8) : f_null(o));
    CHECK(f_bytes(o, name.data, name.len));
    CHECK(f_bytes(o, KINDS[kind], strlen(KINDS[kind])));
    CHECK(st->service ? f_bytes(o, st->service, st->service_len) : f_null(o));
    CHECK(f_time(o, start));
    CHECK(f_time(o, end));
    CHECK(f_int(o, (int64_t)(end - start), 8));
    CHECK(f_bytes(o, STATUSES[code], strlen(STATUSES[code])));
    CHECK(f_text_or_null(o, message.data, message.len));
    CHECK(f_attrs(st, &st->a));
    CHECK(f_jsonb_shared(st, st->resource_at, st->resource_len));
    CHECK(f_jsonb_shared(st, st->scope_at, st->scope_len));
    CHECK(f_list(st, &st->ev, span_event));
    CHECK(f_list(st, &st->ln, span_link));
    CHECK(f_text_or_null(o, trace_state.data, trace_state.len));
    CHECK(f_int(o, (int64_t)flags, 4));
    CHECK(f_null(o)); /* event_id */
    CHECK(f_int(o, st->keep_spans, 2));
    st->count++;
    return OK;
}

/* --- metric points ------------------------------------------------------------------------------- */

/* BLAKE2b (RFC 7693), unkeyed, 8-byte digest: the series id (series.py: hashlib.blake2b(digest_size=8)). */
static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};
static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

#define ROTR64(x, y) (((x) >> (y)) ^ ((x) << (64 - (y))))
#define B2_G(a, b, c, d, x, y)                        \
    do {                                              \
        v[a] = v[a] + v[b] + (x);                     \
        v[d] = ROTR64(v[d] ^ v[a], 32);               \
        v[c] = v[c] + v[d];                           \
        v[b] = ROTR64(v[b] ^ v[c], 24);               \
        v[a] = v[a] + v[b] + (y);                     \
        v[d] = ROTR64(v[d] ^ v[a], 16);               \
        v[c] = v[c] + v[d];                           \
        v[b] = ROTR64(v[b] ^ v[c], 63);               \
    } while (0)

static void b2_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
    uint64_t v[16], m[16];
    for (int i = 0; i < 8; i++) v[i] = h[i], v[i + 8] = B2_IV[i];
    v[12] ^= t;
    if (last) v[14] = ~v[14];
    for (int i = 0; i < 16; i++) {
        uint64_t w = 0;
        for (int k = 7; k >= 0; k--) w = w << 8 | block[8 * i + k];
        m[i] = w;
    }
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = B2_SIGMA[r];
        B2_G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        B2_G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        B2_G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        B2_G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        B2_G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        B2_G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        B2_G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        B2_G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/* The series id: the digest's 8 bytes as a big-endian integer, top bit cleared. */
static int64_t series_hash(const uint8_t *d, size_t n) {
    uint64_t h[8];
    uint8_t block[128];
    memcpy(h, B2_IV, sizeof h);
    h[0] ^= 0x01010000ULL ^ 8; /* digest length 8, no key, fanout 1, depth 1 */
    uint64_t t = 0;
    while (n > 128) {
        t += 128;
        b2_compress(h, d, t, 0);
        d += 128, n -= 128;
    }
    memset(block, 0, sizeof block);
    memcpy(block, d, n);
    b2_compress(h, block, t + n, 1);
    uint64_t id = 0;
    for (int i = 0; i < 8; i++) id = id << 8 | ((h[0] >> (8 * i)) & 0xff);
    return (int64_t)(id & 0x7fffffffffffffffULL);
}

static inline int f_float(Buf *b, double x) {
    uint64_t bits;
    memcpy(&bits, &x, 8);
    CHECK(put_be(b, 8, 4));
    return put_be(b, bits, 8);
}

static const char *const METRIC_TYPES[12] = {
    [5] = "gauge", [7] = "sum", [9] = "histogram", [10] = "exponential_histogram", [11] = "summary",
};

/* The point's series id: name, then its attributes merged over the resource's (the point's win), as
 * json.dumps(sort_keys=True, ensure_ascii=False) writes them. The point's map is in st->kvs[0..n). */
static int series_of(St *st, const Fld *name, size_t n, int64_t *id) {
    if (st->res_n + n + 1 > st->merged_cap) {
        KV *k = realloc(st->merged, (st->res_n + n + 1) * sizeof *k);
        if (!k) return PyErr_NoMemory(), ERR;
        st->merged = k;
        st->merged_cap = st->res_n + n + 1;
    }
    KV *merged = st->merged;
    size_t m = 0;
    for (size_t i = 0; i < st->res_n; i++) {
        const KV *r = &st->res_kvs[i];
        int overridden = 0;
        for (size_t j = 0; j < n && !overridden; j++)
            overridden = st->kvs[j].klen == r->klen && memcmp(st->kvs[j].key, r->key, r->klen) == 0;
        if (!overridden) merged[m++] = *r;
    }
    memcpy(merged + m, st->kvs, n * sizeof *merged);
    m += n;
    int rc = (long)m > st->L.max_attributes ? BAIL : OK;
    Buf *c = &st->canon;
    c->len = 0;
    if (rc == OK) {
        qsort(merged, m, sizeof *merged, kv_cmp);
        rc = put(c, name->data, name->len);
        if (rc == OK) rc = put(c, "\0{", 2);
        for (size_t i = 0; i < m && rc == OK; i++) {
            if (i) rc = put_c(c, ',');
            if (rc == OK) rc = json_kv(c, &merged[i], 1, JSON_TEXT | JSON_SORT);
        }
        if (rc == OK) rc = put_c(c, '}');
    }
    CHECK(rc);
    *id = series_hash((const uint8_t *)c->p, c->len);
    return OK;
}

/* Exemplar: filtered_attributes 7, time 2, as_double 3, as_int 6 (sfixed64), span_id 4, trace_id 5. */
static int exemplar(St *st, Buf *o, const uint8_t *d, size_t n) {
    (void)st;
    Rd r = {d, d + n};
    Fld f, trace_id = {0}, span_id = {0};
    uint64_t time = 0, raw = 0;
    int value = 0, values = 0;
    Buf *b = o;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        switch (f.num) {
            case 2: EXPECT(f, WT_I64); time = f.v; break;
            case 3: case 6: EXPECT(f, WT_I64); value = (int)f.num, raw = f.v, values++; break;
            case 4: EXPECT(f, WT_LEN); span_id = f; break;
            case 5: EXPECT(f, WT_LEN); trace_id = f; break;
            case 7: EXPECT(f, WT_LEN); break;
        }
    }
    if (values > 1) return BAIL;
    CHECK(put_fmt(b, "{\"time_ns\":%llu,\"value\":", (long long)time));
    if (value == 6) {
        CHECK(json_double(b, (double)(int64_t)raw));
    } else if (value == 3) {
        double x;
        memcpy(&x, &raw, 8);
        CHECK(json_double(b, x));
    } else {
        CHECK(put(b, "null", 4));
    }
    CHECK(put(b, ",\"attributes\":{", 15));
    /* filtered_attributes: jsonb, unchecked (as the Python path), in wire order */
    r.p = d;
    int first = 1;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        if (f.num != 7) continue;
        KV kv;
        CHECK(kv_read(f.data, f.len, &kv));
        if (!first) CHECK(put_c(b, ','));
        first = 0;
        CHECK(json_kv(b, &kv, 1, 0));
    }
    CHECK(put(b, "},\"trace_id\":", 13));
    if (trace_id.len == 16 && !all_zero(trace_id.data, 16)) {
        CHECK(put_c(b, '"'));
        CHECK(json_hex(b, trace_id.data, 16));
        CHECK(put_c(b, '"'));
    } else {
        CHECK(put(b, "null", 4));
    }
    CHECK(put(b, ",\"span_id\":", 11));
    if (span_id.len == 8 && !all_zero(span_id.data, 8)) {
        CHECK(put_c(b, '"'));
        CHECK(json_hex(b, span_id.data, 8));
        CHECK(put_c(b, '"'));
    } else {
        CHECK(put(b, "null", 4));
    }
    return put_c(b, '}');
}

/* A packed repeated double or fixed64 field: its values (8 bytes each, little-endian). */
static int packed64(const Fld *f, size_t *count) {
    if (f->wt != WT_LEN || f->len % 8) return BAIL; /* unpacked: the Python path */
    *count = f->len / 8;
    return OK;
}

static inline uint64_t le64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* A double's bits: finite (not NaN nor an infinity) when its exponent is not all ones. */
static inline int finite_bits(uint64_t bits) { return ((bits >> 52) & 0x7ff) != 0x7ff; }

/* A data point's fields, whatever its kind. */
typedef struct {
    uint64_t start, time, flags, count, sum, min, max, value, zero_count, zero_threshold;
    int has_sum, has_min, has_max, value_kind, values;
    Fld bounds, counts, positive, negative;
    int nbounds, ncounts, npositive, nnegative;
    int32_t scale;
} Point;

static inline int32_t zigzag32(uint64_t v) { return (int32_t)((uint32_t)(v >> 1) ^ -(uint32_t)(v & 1)); }

/* Read one field of a point of `kind` into p (attributes into st->a, exemplars into st->ev; quantiles of a
 * summary into st->ln). Field numbers: NumberDataPoint (5, 7), HistogramDataPoint (9),
 * ExponentialHistogramDataPoint (10), SummaryDataPoint (11). */
static int point_field(St *st, int kind, const Fld *f, Point *p) {
    static const uint8_t ATTRIBUTES[12] = {[5] = 7, [7] = 7, [9] = 9, [10] = 1, [11] = 7};
    static const uint8_t EXEMPLARS[12] = {[5] = 5, [7] = 5, [9] = 8, [10] = 11};
    static const uint8_t FLAGS[12] = {[5] = 8, [7] = 8, [9] = 10, [10] = 10, [11] = 8};
    uint32_t n = f->num;
    if (n == ATTRIBUTES[kind]) return f->wt == WT_LEN ? slices_add(&st->a, f) : BAIL;
    if (n == EXEMPLARS[kind]) return f->wt == WT_LEN ? slices_add(&st->ev, f) : BAIL;
    if (n == FLAGS[kind]) return f->wt == WT_VARINT ? (p->flags = f->v, OK) : BAIL;
    if (n == 2 || n == 3) {
        EXPECT(*f, WT_I64);
        *(n == 2 ? &p->start : &p->time) = f->v;
        return OK;
    }
    if (kind == 5 || kind == 7) {
        if (n == 4 || n == 6) { /* as_double, as_int (sfixed64) */
            EXPECT(*f, WT_I64);
            p->value_kind = (int)n, p->value = f->v, p->values++;
        }
        return OK;
    }
    if (n == 4) { /* count, every other kind */
        EXPECT(*f, WT_I64);
        p->count = f->v;
        return OK;
    }
    if (n == 5) { /* sum (optional but in a summary) */
        EXPECT(*f, WT_I64);
        p->sum = f->v, p->has_sum = 1;
        return OK;
    }
    if (kind == 9) {
        switch (n) {
            case 6: if (p->ncounts++) return BAIL; p->counts = *f; break;
            case 7: if (p->nbounds++) return BAIL; p->bounds = *f; break;
            case 11: EXPECT(*f, WT_I64); p->min = f->v, p->has_min = 1; break;
            case 12: EXPECT(*f, WT_I64); p->max = f->v, p->has_max = 1; break;
        }
    } else if (kind == 10) {
        switch (n) {
            case 6: EXPECT(*f, WT_VARINT); p->scale = zigzag32(f->v); break;
            case 7: EXPECT(*f, WT_I64); p->zero_count = f->v; break;
            case 8: EXPECT(*f, WT_LEN); if (p->npositive++) return BAIL; p->positive = *f; break;
            case 9: EXPECT(*f, WT_LEN); if (p->nnegative++) return BAIL; p->negative = *f; break;
            case 12: EXPECT(*f, WT_I64); p->min = f->v, p->has_min = 1; break;
            case 13: EXPECT(*f, WT_I64); p->max = f->v, p->has_max = 1; break;
            case 14: EXPECT(*f, WT_I64); p->zero_threshold = f->v; break;
        }
    } else if (n == 6) { /* summary: quantile_values */
        EXPECT(*f, WT_LEN);
        return slices_add(&st->ln, f);
    }
    return OK;
}

static int json_bits(Buf *b, uint64_t bits) {
    double x;
    memcpy(&x, &bits, 8);
    return json_double(b, x);
}

/* ExponentialHistogramDataPoint.Buckets (offset 1: sint32, bucket_counts 2: packed uint64) as
 * {"offset": o, "counts": [...]}. */
static int json_buckets(Buf *b, const Fld *buckets) {
    Rd r = {buckets ? buckets->data : NULL, buckets ? buckets->data + buckets->len : NULL};
    Fld f, counts = {0};
    int32_t offset = 0;
    int ncounts = 0;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        if (f.num == 1) {
            EXPECT(f, WT_VARINT);
            offset = zigzag32(f.v);
        } else if (f.num == 2) {
            EXPECT(f, WT_LEN); /* unpacked: the Python path */
            if (ncounts++) return BAIL;
            counts = f;
        }
    }
    CHECK(put_fmt(b, "{\"offset\":%lld,\"counts\":[", offset));
    if (ncounts) { /* none: no pointer to read from (NULL + 0 is undefined) */
        Rd c = {counts.data, counts.data + counts.len};
        for (int i = 0; c.p < c.end; i++) {
            uint64_t v;
            CHECK(rd_varint(&c, &v));
            if (i) CHECK(put_c(b, ','));
            CHECK(put_fmt(b, "%llu", (long long)v));
        }
    }
    return put(b, "]}", 2);
}

/* The distribution column: a histogram's bounds and counts, an exponential histogram's buckets, a summary's
 * quantiles (the Python path's dicts). */
static int f_distribution(St *st, Buf *o, int kind, const Point *p) {
    size_t at;
    CHECK(f_open(o, &at));
    CHECK(put_c(o, 1));
    if (kind == 9) {
        size_t nb = p->nbounds ? p->bounds.len / 8 : 0, nc = p->ncounts ? p->counts.len / 8 : 0;
        CHECK(put(o, "{\"bounds\":[", 11));
        for (size_t i = 0; i < nb; i++) {
            if (i) CHECK(put_c(o, ','));
            CHECK(json_bits(o, le64(p->bounds.data + 8 * i)));
        }
        CHECK(put(o, "],\"counts\":[", 12));
        for (size_t i = 0; i < nc; i++) {
            if (i) CHECK(put_c(o, ','));
            CHECK(put_fmt(o, "%llu", (long long)le64(p->counts.data + 8 * i)));
        }
        CHECK(put(o, "]}", 2));
    } else if (kind == 10) {
        CHECK(put_fmt(o, "{\"scale\":%lld,", p->scale));
        CHECK(put_fmt(o, "\"zero_count\":%llu,\"zero_threshold\":", (long long)p->zero_count));
        CHECK(json_bits(o, p->zero_threshold));
        CHECK(put(o, ",\"positive\":", 12));
        CHECK(json_buckets(o, p->npositive ? &p->positive : NULL));
        CHECK(put(o, ",\"negative\":", 12));
        CHECK(json_buckets(o, p->nnegative ? &p->negative : NULL));
        CHECK(put_c(o, '}'));
    } else { /* summary: ValueAtQuantile (quantile 1, value 2) */
        CHECK(put(o, "{\"quantiles\":[", 14));
        for (size_t i = 0; i < st->ln.n; i++) {
            Rd r = {st->ln.data[i], st->ln.data[i] + st->ln.len[i]};
            Fld f;
            uint64_t q = 0, v = 0;
            while (r.p < r.end) {
                CHECK(rd_field(&r, &f));
                if (f.num == 1 || f.num == 2) {
                    EXPECT(f, WT_I64);
                    *(f.num == 1 ? &q : &v) = f.v;
                }
            }
            CHECK(put(o, i ? ",[" : "[", i ? 2 : 1));
            CHECK(json_bits(o, q));
            CHECK(put_c(o, ','));
            CHECK(json_bits(o, v));
            CHECK(put_c(o, ']'));
        }
        CHECK(put(o, "]}", 2));
    }
    f_close(o, at);
    return OK;
}

/* The series' type: one per series in a request (a clash is the Python path's to reject). */
static int note_series(St *st, int64_t id, int kind) {
    PyObject *sid = PyLong_FromLongLong(id);
    if (!sid) return ERR;
    PyObject *type = PyDict_GetItemWithError(st->series, sid);
    int rc = OK;
    if (type) {
        rc = PyUnicode_CompareWithASCIIString(type, METRIC_TYPES[kind]) == 0 ? OK : BAIL;
    } else if (PyErr_Occurred()) {
        rc = ERR;
    } else {
        if (!st->types[kind] && !(st->types[kind] = PyUnicode_InternFromString(METRIC_TYPES[kind]))) rc = ERR;
        if (rc == OK) rc = PyDict_SetItem(st->series, sid, st->types[kind]) == 0 ? OK : ERR;
    }
    Py_DECREF(sid);
    return rc;
}

/* A point flagged NO_RECORDED_VALUE is skipped, not checked (as the Python path), but upb has read all of it: a
 * string not UTF-8 (attribute keys and values, its exemplars' filtered_attributes) or a malformed part (a bucket,
 * a quantile, an exemplar) refuses the request. Its parts are read here as for a stored point, into scratch. */
static int no_value_point(St *st, int kind, const Point *p) {
    for (size_t i = 0; i < st->a.n; i++) CHECK(kv_strings(st->a.data[i], st->a.len[i]));
    for (size_t i = 0; i < st->ev.n; i++) {
        Rd r = {st->ev.data[i], st->ev.data[i] + st->ev.len[i]};
        Fld f;
        while (r.p < r.end) {
            CHECK(rd_field(&r, &f));
            if (f.num != 7) continue; /* filtered_attributes */
            EXPECT(f, WT_LEN);
            CHECK(kv_strings(f.data, f.len));
        }
    }
    if (kind == 5 || kind == 7) return OK;
    if (kind == 9) {
        size_t nb, nc;
        if (p->nbounds) CHECK(packed64(&p->bounds, &nb));
        if (p->ncounts) CHECK(packed64(&p->counts, &nc));
        return OK;
    }
    st->canon.len = 0; /* scratch (series_of's) */
    return f_distribution(st, &st->canon, kind, p); /* buckets or quantiles read through */
}

/* One data point of a metric of `kind` (5 gauge, 7 sum, 9 histogram, 10 exponential histogram, 11 summary). */
static int data_point(St *st, int kind, const Fld *name, int metric_ok, const uint8_t *d, size_t n) {
    Rd r = {d, d + n};
    Fld f;
    Point p;
    memset(&p, 0, sizeof p);
    st->a.n = st->ev.n = st->ln.n = 0;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        CHECK(point_field(st, kind, &f, &p));
    }
    st->items++;
    if (p.flags & 1) return no_value_point(st, kind, &p); /* NO_RECORDED_VALUE: nothing to store (as Python) */
    if (!metric_ok || p.flags > 0x7fffffff) return BAIL;
    CHECK(check_time(st, p.time));
    CHECK(attrs_of(st, NULL, &st->a));
    int64_t id;
    CHECK(series_of(st, name, st->a.n, &id));
    uint8_t key[32] = {0};
    uint64_t us = p.time / 1000;
    memcpy(key, &id, 8);
    memcpy(key + 8, &us, 8);
    key[31] = 1; /* never all zero */
    CHECK(key_new(st, key));
    CHECK(note_series(st, id, kind));
    /* Numbers the Python path rejects: a value, sum, min or max that is not finite, a count past bigint. */
    if (kind == 5 || kind == 7) {
        if (p.values != 1) return BAIL; /* no value (rejected), or both */
        if (p.value_kind != 6 && !finite_bits(p.value)) return BAIL;
    } else {
        if (p.count > (uint64_t)INT64_MAX) return BAIL;
        if ((p.has_sum || kind == 11) && !finite_bits(p.sum)) return BAIL;
        if ((p.has_min && !finite_bits(p.min)) || (p.has_max && !finite_bits(p.max))) return BAIL;
        if (kind == 9) {
            size_t nb = 0, nc = 0;
            if (p.nbounds) CHECK(packed64(&p.bounds, &nb));
            if (p.ncounts) CHECK(packed64(&p.counts, &nc));
            if (nc && nc != nb + 1) return BAIL;
            for (size_t i = 0; i < nc; i++)
                if (le64(p.counts.data + 8 * i) > (uint64_t)INT64_MAX) return BAIL;
        } else if (kind == 10 && p.zero_count > (uint64_t)INT64_MAX) {
            return BAIL;
        }
    }
    Buf *o = &st->out;
    CHECK(put_be(o, 15, 2));
    CHECK(f_bytes(o, st->org, 16));
    CHECK(f_bytes(o, st->project, 16));
    CHECK(f_int(o, id, 8));
    CHECK(f_time(o, p.time));
    CHECK(p.start ? f_time(o, p.start) : f_null(o));
    double x;
    if (kind == 5 || kind == 7) {
        if (p.value_kind == 6) {
            x = (double)(int64_t)p.value;
        } else {
            memcpy(&x, &p.value, 8);
        }
        CHECK(f_float(o, x));
        for (int i = 0; i < 5; i++) CHECK(f_null(o)); /* count, sum, min, max, distribution */
    } else {
        CHECK(f_null(o)); /* value */
        CHECK(f_int(o, (int64_t)p.count, 8));
        /* proto3 optional: present on the wire, or NULL; a summary's sum is always there */
        const uint64_t stats[3] = {p.sum, p.min, p.max};
        const int present[3] = {p.has_sum || kind == 11, p.has_min, p.has_max};
        for (int i = 0; i < 3; i++) {
            memcpy(&x, &stats[i], 8);
            CHECK(present[i] ? f_float(o, x) : f_null(o));
        }
        CHECK(f_distribution(st, o, kind, &p));
    }
    if (st->ev.n && kind != 11) {
        size_t at;
        CHECK(f_open(o, &at));
        CHECK(put(o, "\x01[", 2));
        for (size_t i = 0; i < st->ev.n; i++) {
            if (i) CHECK(put_c(o, ','));
            CHECK(exemplar(st, o, st->ev.data[i], st->ev.len[i]));
        }
        CHECK(put_c(o, ']'));
        f_close(o, at);
    } else {
        CHECK(f_null(o));
    }
    CHECK(f_int(o, (int64_t)p.flags, 4));
    CHECK(f_null(o)); /* event_id */
    CHECK(f_int(o, st->keep_metrics, 2));
    st->count++;
    return OK;
}

/* Metric: name 1, description 2, unit 3, and its data, one of gauge 5, sum 7, histogram 9, exponential
 * histogram 10, summary 11; the data's data_points 1, aggregation_temporality 2 (summary and gauge: none). */
static int metric(St *st, const uint8_t *d, size_t n) {
    Rd r = {d, d + n};
    Fld f, name = {0}, data = {0};
    int kind = 0, datas = 0;
    long name_chars = 0;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        switch (f.num) {
            case 1: CHECK(rd_text(&f, &name_chars)); name = f; break; /* NUL: the Python path stores U+FFFD */
            case 2: case 3: CHECK(rd_str(&f, NULL)); break;
            case 5: case 7: case 9: case 10: case 11:
                EXPECT(f, WT_LEN);
                kind = (int)f.num, data = f, datas++;
                break;
            case 12: return BAIL; /* metadata: not read here (upb would check its strings) */
        }
    }
    if (!datas) return OK; /* no data: no points to accept or reject */
    if (datas > 1) return BAIL;
    uint64_t temporality = 0;
    Rd dr = {data.data, data.data + data.len};
    while (dr.p < dr.end) {
        CHECK(rd_field(&dr, &f));
        if (f.num == 2 || f.num == 3) {
            EXPECT(f, WT_VARINT);
            if (f.num == 2) temporality = f.v;
        }
    }
    /* What _metric_reason refuses, for every point of the metric that has a value */
    int ok = name.len && name_chars <= st->L.max_name &&
             (kind == 5 || kind == 11 || temporality == 1 || temporality == 2);
    dr.p = data.data;
    while (dr.p < dr.end) {
        CHECK(rd_field(&dr, &f));
        if (f.num != 1) continue;
        EXPECT(f, WT_LEN);
        CHECK(data_point(st, kind, &name, ok, f.data, f.len));
    }
    return OK;
}

/* --- the request ----------------------------------------------------------------------------------- */

/* Export{Logs,Trace,Metrics}ServiceRequest: resource_* = 1 → resource = 1, scope_* = 2 (scope = 1, items = 2,
 * schema_url = 3), schema_url = 3. */
static int request(St *st, const uint8_t *d, size_t n, int (*item)(St *, const uint8_t *, size_t)) {
    Rd r = {d, d + n};
    Fld f;
    while (r.p < r.end) {
        CHECK(rd_field(&r, &f));
        if (f.num != 1) continue;
        EXPECT(f, WT_LEN);
        Rd rr = {f.data, f.data + f.len};
        Fld g, resource = {0};
        int resources = 0;
        /* The resource first: it may follow its scopes on the wire. */
        while (rr.p < rr.end) {
            CHECK(rd_field(&rr, &g));
            if (g.num == 1) {
                EXPECT(g, WT_LEN);
                if (resources++) return BAIL;
                resource = g;
            } else if (g.num == 3) {
                CHECK(rd_str(&g, NULL));
            }
        }
        CHECK(read_resource(st, resources ? &resource : NULL));
        rr.p = f.data;
        while (rr.p < rr.end) {
            CHECK(rd_field(&rr, &g));
            if (g.num != 2) continue;
            EXPECT(g, WT_LEN);
            Rd sr = {g.data, g.data + g.len};
            Fld h, scope = {0};
            int scopes = 0;
            while (sr.p < sr.end) {
                CHECK(rd_field(&sr, &h));
                if (h.num == 1) {
                    EXPECT(h, WT_LEN);
                    if (scopes++) return BAIL;
                    scope = h;
                } else if (h.num == 3) {
                    CHECK(rd_str(&h, NULL));
                }
            }
            CHECK(read_scope(st, scopes ? &scope : NULL));
            sr.p = g.data;
            while (sr.p < sr.end) {
                CHECK(rd_field(&sr, &h));
                if (h.num != 2) continue;
                EXPECT(h, WT_LEN);
                CHECK(item(st, h.data, h.len));
            }
        }
    }
    return OK;
}

static long as_long(PyObject *o) { return PyLong_AsLong(o); }

static PyObject *wire_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7) return PyErr_Format(PyExc_TypeError, "rows() takes 7 arguments (%zd given)", nargs);
    long kind = as_long(args[0]);
    if (kind == -1 && PyErr_Occurred()) return NULL;
    Py_buffer body;
    if (PyObject_GetBuffer(args[1], &body, PyBUF_SIMPLE) < 0) return NULL;
    St st;
    memset(&st, 0, sizeof st);
    PyObject *result = NULL;
    int rc = ERR;
    long long now = PyLong_AsLongLong(args[2]);
    if (now == -1 && PyErr_Occurred()) goto done;
    if (!PyTuple_Check(args[3]) || PyTuple_GET_SIZE(args[3]) != 7) {
        PyErr_SetString(PyExc_TypeError, "limits must be a tuple of 7 ints");
        goto done;
    }
    long *lim[] = {&st.L.max_attributes, &st.L.max_key, &st.L.max_value, &st.L.max_body,
                   &st.L.max_name, &st.L.max_past_s, &st.L.max_future_s};
    for (int i = 0; i < 7; i++) {
        *lim[i] = as_long(PyTuple_GET_ITEM(args[3], i));
        if (*lim[i] == -1 && PyErr_Occurred()) goto done;
    }
    long long lo = now - (long long)st.L.max_past_s * NS_PER_S;
    st.L.lo_ns = lo > 0 ? (uint64_t)lo : 0;
    st.L.hi_ns = (uint64_t)now + (uint64_t)st.L.max_future_s * NS_PER_S;
    {
        if (!PyBytes_Check(args[4]) || PyBytes_GET_SIZE(args[4]) != 16 || !PyBytes_Check(args[5]) ||
            PyBytes_GET_SIZE(args[5]) != 16) {
            PyErr_SetString(PyExc_TypeError, "org and project must be 16-byte uuids");
            goto done;
        }
        st.org = (const uint8_t *)PyBytes_AS_STRING(args[4]);
        st.project = (const uint8_t *)PyBytes_AS_STRING(args[5]);
        if (kind == 0) {
            if (!PyTuple_Check(args[6]) || PyTuple_GET_SIZE(args[6]) != 25) {
                PyErr_SetString(PyExc_TypeError, "keep must be 25 retention days (by severity) for logs");
                goto done;
            }
            for (int i = 0; i < 25; i++) {
                st.keep_logs[i] = as_long(PyTuple_GET_ITEM(args[6], i));
                if (st.keep_logs[i] == -1 && PyErr_Occurred()) goto done;
            }
            if (!(st.minutes = PyDict_New())) goto done;
        } else if (kind == 1) {
            st.keep_spans = as_long(args[6]);
            if (st.keep_spans == -1 && PyErr_Occurred()) goto done;
        } else if (kind == 2) {
            st.keep_metrics = as_long(args[6]);
            if (st.keep_metrics == -1 && PyErr_Occurred()) goto done;
            if (!(st.series = PyDict_New())) goto done;
        } else {
            PyErr_SetString(PyExc_ValueError, "kind must be 0 (logs), 1 (spans) or 2 (metric points)");
            goto done;
        }
        static const char signature[] = "PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
        if (buf_grow(&st.out, body.len * 2 + 64) != OK || put(&st.out, signature, 19) != OK) goto done;
    }
    rc = request(&st, body.buf, (size_t)body.len, kind == 0 ? log_record : kind == 1 ? span : metric);
    if (rc == OK && kind == 0) rc = flush_minute(&st);
    if (rc == OK && st.count == 0) rc = BAIL; /* nothing to write: the Python path says what there is */
    if (rc == OK) rc = put(&st.out, "\xff\xff", 2);
done:
    if (rc == OK) {
        PyObject *payload = PyBytes_FromStringAndSize(st.out.p, (Py_ssize_t)st.out.len);
        if (payload)
            result = Py_BuildValue("(nNOn)", st.count, payload, st.minutes ? st.minutes : st.series ? st.series : Py_None,
                                   kind == 2 ? st.items : st.count);
    } else if (rc == BAIL) {
        result = Py_NewRef(Py_None);
    }
    Py_XDECREF(st.minutes);
    Py_XDECREF(st.series);
    free(st.res_kvs);
    free(st.merged);
    for (int i = 0; i < 12; i++) Py_XDECREF(st.types[i]);
    free(st.canon.p);
    free(st.out.p);
    free(st.shared.p);
    free(st.body.p);
    slices_free(&st.a);
    slices_free(&st.b);
    slices_free(&st.ev);
    slices_free(&st.ln);
    free(st.kvs);
    free(st.keys);
    PyBuffer_Release(&body);
    return result;
}

#include "json_pb.h"

static PyMethodDef methods[] = {
    {"rows", (PyCFunction)(void (*)(void))wire_rows, METH_FASTCALL,
     "rows(kind, body, now_ns, limits, org, project, keep) -> None | (count, payload, minutes or series, items)"},
    {"json_schema", (PyCFunction)json_schema, METH_O, "json_schema(messages) -> schema (for json_to_protobuf)"},
    {"json_to_protobuf", (PyCFunction)(void (*)(void))json_to_protobuf, METH_FASTCALL,
     "json_to_protobuf(schema, body) -> bytes | None: an OTLP/JSON request as protobuf (json_pb.h)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_wire", .m_doc = "OTLP protobuf to binary COPY rows; OTLP/JSON to protobuf.", .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__wire(void) { return PyModule_Create(&module); }
