/* Records (telemetry/model.py: LogRecord, Span) to binary COPY rows in one C pass: what the writer's row builders
 * (_log_rows, _span_rows: clean_text, jsonb_binary) and psycopg's binary COPY do in Python, value for value
 * (tests/unit/test_copy_rows.py holds both to the same rows). The fast path of every batch the writer converts
 * (native, OTLP/JSON, OTLP protobuf the wire path leaves, the drain's).
 *
 * A jsonb value this code does not encode itself (a key that is not a string, an integer past 64 bits, a type
 * JSON has no form for...) is encoded by the jsonb function the caller passes (db/jsonb.py: jsonb_binary).
 * A text it cannot send as is (not UTF-8-encodable, NUL where the Python path sends it unchanged, an integer out
 * of its column's range) makes the call answer None: the Python row builders then do the table, and raise
 * what they raise.
 *
 * logs(records, org, project, keep_by_severity, jsonb) -> None | (payload, count, minutes)
 * spans(records, org, project, keep, jsonb) -> None | (payload, count)
 *   records  a list of LogRecord or Span
 *   keep_by_severity  25 retention_days, by severity_number (0..24; others take element 0)
 *   minutes  {(minute, service, severity_number, retention_days): rows} (the log volume, as _log_rows counts it)
 */
#include "copy_buffer.h"

#define MAX_JSON_DEPTH 64
#define MEMO 8

typedef struct {
    Buf out, shared;
    PyObject *jsonb; /* the Python encoder, for what json_value leaves */
    const uint8_t *org, *project;
    /* values shared by many rows (a resource, a scope): their jsonb, encoded once per call */
    struct {
        PyObject *value;
        size_t at, len;
        int null;
    } memo[MEMO];
    int memo_n, memo_next;
    /* logs: the run of rows of one minute, service and severity being counted */
    PyObject *minutes, *run_service;
    long long run_minute, run;
    long run_severity, run_keep;
} St;

/* --- values ---------------------------------------------------------------------------------------- */

static int json_value(Buf *b, PyObject *v, int depth) {
    if (depth > MAX_JSON_DEPTH) return BAIL;
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (!s) return PyErr_Clear(), BAIL; /* a lone surrogate: the Python encoder's */
        return json_str(b, (const uint8_t *)s, (size_t)n, 0);
    }
    if (v == Py_None) return put(b, "null", 4);
    if (v == Py_True) return put(b, "true", 4);
    if (v == Py_False) return put(b, "false", 5);
    if (t == &PyLong_Type) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) return PyErr_Clear(), BAIL;
        return put_fmt(b, "%lld", x);
    }
    if (t == &PyFloat_Type) return json_double(b, PyFloat_AS_DOUBLE(v)); /* NaN, ±Infinity: as jsonb_dumps */
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        int first = 1;
        CHECK(put_c(b, '{'));
        while (PyDict_Next(v, &pos, &key, &value)) {
            if (Py_TYPE(key) != &PyUnicode_Type) return BAIL;
            if (!first) CHECK(put_c(b, ','));
            first = 0;
            CHECK(json_value(b, key, depth + 1));
            CHECK(put_c(b, ':'));
            CHECK(json_value(b, value, depth + 1));
        }
        return put_c(b, '}');
    }
    if (t == &PyList_Type || t == &PyTuple_Type) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        PyObject **items = PySequence_Fast_ITEMS(v);
        CHECK(put_c(b, '['));
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i) CHECK(put_c(b, ','));
            CHECK(json_value(b, items[i], depth + 1));
        }
        return put_c(b, ']');
    }
    return BAIL;
}

/* A jsonb field (None: NULL): encoded here, or by the Python encoder when json_value leaves it. */
static int f_jsonb(St *st, Buf *b, PyObject *v) {
    if (v == Py_None) return f_null(b);
    size_t at;
    CHECK(f_open(b, &at));
    CHECK(put_c(b, 1));
    int rc = json_value(b, v, 0);
    if (rc == OK) {
        f_close(b, at);
        return OK;
    }
    if (rc == ERR) return ERR;
    b->len = at;
    PyObject *encoded = PyObject_CallOneArg(st->jsonb, v);
    if (!encoded) return ERR;
    if (encoded == Py_None) {
        Py_DECREF(encoded);
        return f_null(b);
    }
    rc = PyBytes_Check(encoded) ? f_bytes(b, PyBytes_AS_STRING(encoded), (size_t)PyBytes_GET_SIZE(encoded)) : BAIL;
    Py_DECREF(encoded);
    return rc;
}

/* The jsonb of a value many rows share (the same object: a resource, a scope), encoded once per call. */
static int f_jsonb_shared(St *st, PyObject *v) {
    for (int i = 0; i < st->memo_n; i++) {
        if (st->memo[i].value == v) {
            if (st->memo[i].null) return f_null(&st->out);
            return put(&st->out, st->shared.p + st->memo[i].at, st->memo[i].len);
        }
    }
    size_t at = st->shared.len;
    CHECK(f_jsonb(st, &st->shared, v));
    int slot = st->memo_next;
    st->memo_next = (st->memo_next + 1) % MEMO;
    if (st->memo_n < MEMO) st->memo_n++;
    /* The memo holds no reference: the records (the caller's list) keep the values alive for the call. */
    st->memo[slot].value = v;
    st->memo[slot].at = at;
    st->memo[slot].len = st->shared.len - at;
    st->memo[slot].null = v == Py_None;
    return put(&st->out, st->shared.p + at, st->shared.len - at);
}

/* A text column. clean: NUL becomes U+FFFD (clean_text); else a NUL leaves the table to the Python path. */
static int f_text(Buf *b, PyObject *v, int clean) {
    if (v == Py_None) return f_null(b);
    if (Py_TYPE(v) != &PyUnicode_Type) return BAIL;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (!s) return PyErr_Clear(), BAIL;
    const char *nul = memchr(s, 0, (size_t)n);
    if (!nul) return f_bytes(b, s, (size_t)n);
    if (!clean) return BAIL;
    size_t at;
    CHECK(f_open(b, &at));
    for (Py_ssize_t i = 0; i < n; i++) CHECK(s[i] ? put_c(b, s[i]) : put(b, "\xef\xbf\xbd", 3));
    f_close(b, at);
    return OK;
}

static int as_ll(PyObject *v, long long *out) {
    if (!PyLong_Check(v)) return BAIL;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) return PyErr_Clear(), BAIL;
    return OK;
}

static long long floor_div(long long a, long long b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

/* timestamptz from integer nanoseconds (pg_time: ns // 1000 - the 2000 epoch). */
static int f_pg_time(Buf *b, PyObject *ns, long long *us) {
    long long x;
    CHECK(as_ll(ns, &x));
    *us = floor_div(x, 1000) - PG_EPOCH_US;
    return f_int(b, *us, 8);
}

static int f_small(Buf *b, PyObject *v, int size) {
    long long x;
    CHECK(as_ll(v, &x));
    long long lim = size == 2 ? 32767 : 2147483647;
    if (x > lim || x < -lim - 1) return BAIL;
    return f_int(b, x, size);
}

/* --- the records' attributes ------------------------------------------------------------------------ */

enum {
    A_TIME_NS, A_OBSERVED_TIME_NS, A_SEVERITY_NUMBER, A_SEVERITY_TEXT, A_SERVICE, A_BODY, A_ATTRIBUTES,
    A_RESOURCE, A_SCOPE, A_TRACE_ID, A_SPAN_ID, A_FLAGS, A_EVENT_ID, A_EVENT_NAME,
    A_PARENT_SPAN_ID, A_NAME, A_KIND, A_START_TIME_NS, A_END_TIME_NS, A_STATUS_CODE, A_STATUS_MESSAGE,
    A_EVENTS, A_LINKS, A_TRACE_STATE, A_COUNT
};
static const char *const NAMES[A_COUNT] = {
    "time_ns", "observed_time_ns", "severity_number", "severity_text", "service", "body", "attributes",
    "resource", "scope", "trace_id", "span_id", "flags", "event_id", "event_name",
    "parent_span_id", "name", "kind", "start_time_ns", "end_time_ns", "status_code", "status_message",
    "events", "links", "trace_state",
};
static PyObject *ATTR[A_COUNT];

/* The record's fields listed in `want`, read into v (new references). */
static int read_fields(PyObject *record, const int *want, int n, PyObject **v) {
    for (int i = 0; i < n; i++) {
        v[want[i]] = PyObject_GetAttr(record, ATTR[want[i]]);
        if (!v[want[i]]) {
            for (int j = 0; j < i; j++) Py_CLEAR(v[want[j]]);
            return ERR;
        }
    }
    return OK;
}

static void drop_fields(const int *want, int n, PyObject **v) {
    for (int i = 0; i < n; i++) Py_CLEAR(v[want[i]]);
}

/* --- logs ------------------------------------------------------------------------------------------ */

static int flush_run(St *st) {
    if (!st->run) return OK;
    PyObject *key = Py_BuildValue("(LOll)", st->run_minute, st->run_service, st->run_severity, st->run_keep);
    Py_CLEAR(st->run_service);
    long long run = st->run;
    st->run = 0;
    return dict_add(st->minutes, key, run);
}

static int count_minute(St *st, long long minute, PyObject *service, long severity, long keep) {
    if (st->run && (st->run_minute != minute || st->run_service != service || st->run_severity != severity))
        CHECK(flush_run(st));
    if (!st->run) {
        st->run_minute = minute, st->run_severity = severity, st->run_keep = keep;
        st->run_service = Py_NewRef(service);
    }
    st->run++;
    return OK;
}

static const int LOG_FIELDS[] = {A_TIME_NS, A_OBSERVED_TIME_NS, A_SEVERITY_NUMBER, A_SEVERITY_TEXT, A_SERVICE,
                                 A_BODY, A_ATTRIBUTES, A_RESOURCE, A_SCOPE, A_TRACE_ID, A_SPAN_ID, A_FLAGS,
                                 A_EVENT_ID, A_EVENT_NAME};
#define N_LOG_FIELDS (int)(sizeof LOG_FIELDS / sizeof *LOG_FIELDS)

static int log_row(St *st, PyObject **v, const long *keep_by_severity) {
    Buf *o = &st->out;
    long long time_us, observed_us, severity;
    CHECK(as_ll(v[A_SEVERITY_NUMBER], &severity));
    long keep = keep_by_severity[severity >= 0 && severity <= 24 ? severity : 0];
    PyObject *service = v[A_SERVICE];
    if (service != Py_None) { /* clean_text(service) is the volume's key too: a NUL is the Python path's */
        if (Py_TYPE(service) != &PyUnicode_Type) return BAIL;
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(service, &n);
        if (!s) return PyErr_Clear(), BAIL;
        if (memchr(s, 0, (size_t)n)) return BAIL;
    }
    CHECK(put_be(o, 17, 2));
    CHECK(f_bytes(o, st->org, 16));
    CHECK(f_bytes(o, st->project, 16));
    CHECK(f_pg_time(o, v[A_TIME_NS], &time_us));
    int observed = PyObject_IsTrue(v[A_OBSERVED_TIME_NS]);
    if (observed < 0) return ERR;
    CHECK(observed ? f_pg_time(o, v[A_OBSERVED_TIME_NS], &observed_us) : f_null(o));
    CHECK(f_small(o, v[A_SEVERITY_NUMBER], 2));
    CHECK(f_text(o, v[A_SEVERITY_TEXT], 1));
    CHECK(f_text(o, service, 1));
    CHECK(f_text(o, v[A_BODY], 1));
    CHECK(f_jsonb(st, o, v[A_ATTRIBUTES]));
    CHECK(f_jsonb_shared(st, v[A_RESOURCE]));
    CHECK(f_jsonb_shared(st, v[A_SCOPE]));
    CHECK(f_text(o, v[A_TRACE_ID], 0));
    CHECK(f_text(o, v[A_SPAN_ID], 0));
    CHECK(f_small(o, v[A_FLAGS], 4));
    CHECK(f_text(o, v[A_EVENT_ID], 1));
    CHECK(f_text(o, v[A_EVENT_NAME], 1));
    CHECK(f_int(o, keep, 2));
    return count_minute(st, floor_div(time_us, MINUTE_US), service, (long)severity, keep);
}

/* --- spans ----------------------------------------------------------------------------------------- */

static const int SPAN_FIELDS[] = {A_TRACE_ID, A_SPAN_ID, A_PARENT_SPAN_ID, A_NAME, A_KIND, A_SERVICE,
                                  A_START_TIME_NS, A_END_TIME_NS, A_STATUS_CODE, A_STATUS_MESSAGE, A_ATTRIBUTES,
                                  A_RESOURCE, A_SCOPE, A_EVENTS, A_LINKS, A_TRACE_STATE, A_FLAGS, A_EVENT_ID};
#define N_SPAN_FIELDS (int)(sizeof SPAN_FIELDS / sizeof *SPAN_FIELDS)

static int span_row(St *st, PyObject **v, long keep) {
    Buf *o = &st->out;
    long long start_us, end_us, start, end;
    long long duration;
    CHECK(as_ll(v[A_START_TIME_NS], &start));
    CHECK(as_ll(v[A_END_TIME_NS], &end));
    if (__builtin_sub_overflow(end, start, &duration)) return BAIL; /* past int8 */
    CHECK(put_be(o, 22, 2));
    CHECK(f_bytes(o, st->org, 16));
    CHECK(f_bytes(o, st->project, 16));
    CHECK(f_text(o, v[A_TRACE_ID], 0));
    CHECK(f_text(o, v[A_SPAN_ID], 0));
    CHECK(f_text(o, v[A_PARENT_SPAN_ID], 0));
    CHECK(f_text(o, v[A_NAME], 1));
    CHECK(f_text(o, v[A_KIND], 0));
    CHECK(f_text(o, v[A_SERVICE], 1));
    CHECK(f_pg_time(o, v[A_START_TIME_NS], &start_us));
    CHECK(f_pg_time(o, v[A_END_TIME_NS], &end_us));
    CHECK(f_int(o, duration, 8));
    CHECK(f_text(o, v[A_STATUS_CODE], 0));
    CHECK(f_text(o, v[A_STATUS_MESSAGE], 1));
    CHECK(f_jsonb(st, o, v[A_ATTRIBUTES]));
    CHECK(f_jsonb_shared(st, v[A_RESOURCE]));
    CHECK(f_jsonb_shared(st, v[A_SCOPE]));
    CHECK(f_jsonb(st, o, v[A_EVENTS]));
    CHECK(f_jsonb(st, o, v[A_LINKS]));
    CHECK(f_text(o, v[A_TRACE_STATE], 1));
    CHECK(f_small(o, v[A_FLAGS], 4));
    CHECK(f_text(o, v[A_EVENT_ID], 1));
    return f_int(o, keep, 2);
}

/* --- the calls ------------------------------------------------------------------------------------- */

static int start(St *st, PyObject *records, PyObject *org, PyObject *project, PyObject *jsonb) {
    memset(st, 0, sizeof *st);
    if (!PyList_Check(records)) return PyErr_SetString(PyExc_TypeError, "records must be a list"), ERR;
    if (!PyBytes_Check(org) || PyBytes_GET_SIZE(org) != 16 || !PyBytes_Check(project) ||
        PyBytes_GET_SIZE(project) != 16)
        return PyErr_SetString(PyExc_TypeError, "org and project must be 16-byte uuids"), ERR;
    if (!PyCallable_Check(jsonb)) return PyErr_SetString(PyExc_TypeError, "jsonb must be callable"), ERR;
    st->org = (const uint8_t *)PyBytes_AS_STRING(org);
    st->project = (const uint8_t *)PyBytes_AS_STRING(project);
    st->jsonb = jsonb;
    static const char signature[] = "PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
    CHECK(buf_grow(&st->out, 512 * (size_t)PyList_GET_SIZE(records) + 64));
    return put(&st->out, signature, 19);
}

static void finish(St *st) {
    free(st->out.p);
    free(st->shared.p);
    Py_XDECREF(st->minutes);
    Py_XDECREF(st->run_service);
}

static PyObject *payload_of(St *st) {
    if (put(&st->out, "\xff\xff", 2) != OK) return NULL;
    return PyBytes_FromStringAndSize(st->out.p, (Py_ssize_t)st->out.len);
}

static PyObject *rows_logs(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) return PyErr_Format(PyExc_TypeError, "logs() takes 5 arguments (%zd given)", nargs);
    St st;
    PyObject *result = NULL;
    long keep[25];
    int rc = start(&st, args[0], args[1], args[2], args[4]);
    if (rc == OK && (!PyTuple_Check(args[3]) || PyTuple_GET_SIZE(args[3]) != 25)) {
        PyErr_SetString(PyExc_TypeError, "keep_by_severity must be a tuple of 25 ints");
        rc = ERR;
    }
    for (int i = 0; rc == OK && i < 25; i++) {
        keep[i] = PyLong_AsLong(PyTuple_GET_ITEM(args[3], i));
        if (keep[i] == -1 && PyErr_Occurred()) rc = ERR;
    }
    if (rc == OK && !(st.minutes = PyDict_New())) rc = ERR;
    Py_ssize_t n = rc == OK ? PyList_GET_SIZE(args[0]) : 0;
    for (Py_ssize_t i = 0; rc == OK && i < n; i++) {
        PyObject *v[A_COUNT] = {0};
        rc = read_fields(PyList_GET_ITEM(args[0], i), LOG_FIELDS, N_LOG_FIELDS, v);
        if (rc == OK) {
            rc = log_row(&st, v, keep);
            drop_fields(LOG_FIELDS, N_LOG_FIELDS, v);
        }
    }
    if (rc == OK) rc = flush_run(&st);
    if (rc == OK) {
        PyObject *payload = payload_of(&st);
        if (payload) result = Py_BuildValue("(NnO)", payload, n, st.minutes);
    } else if (rc == BAIL) {
        result = Py_NewRef(Py_None);
    }
    finish(&st);
    return result;
}

static PyObject *rows_spans(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) return PyErr_Format(PyExc_TypeError, "spans() takes 5 arguments (%zd given)", nargs);
    St st;
    PyObject *result = NULL;
    int rc = start(&st, args[0], args[1], args[2], args[4]);
    long keep = rc == OK ? PyLong_AsLong(args[3]) : 0;
    if (keep == -1 && PyErr_Occurred()) rc = ERR;
    Py_ssize_t n = rc == OK ? PyList_GET_SIZE(args[0]) : 0;
    for (Py_ssize_t i = 0; rc == OK && i < n; i++) {
        PyObject *v[A_COUNT] = {0};
        rc = read_fields(PyList_GET_ITEM(args[0], i), SPAN_FIELDS, N_SPAN_FIELDS, v);
        if (rc == OK) {
            rc = span_row(&st, v, keep);
            drop_fields(SPAN_FIELDS, N_SPAN_FIELDS, v);
        }
    }
    if (rc == OK) {
        PyObject *payload = payload_of(&st);
        if (payload) result = Py_BuildValue("(Nn)", payload, n);
    } else if (rc == BAIL) {
        result = Py_NewRef(Py_None);
    }
    finish(&st);
    return result;
}

static PyMethodDef methods[] = {
    {"logs", (PyCFunction)(void (*)(void))rows_logs, METH_FASTCALL,
     "logs(records, org, project, keep_by_severity, jsonb) -> None | (payload, count, minutes)"},
    {"spans", (PyCFunction)(void (*)(void))rows_spans, METH_FASTCALL,
     "spans(records, org, project, keep, jsonb) -> None | (payload, count)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_rows", .m_doc = "Records to binary COPY rows.", .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__rows(void) {
    for (int i = 0; i < A_COUNT; i++)
        if (!ATTR[i] && !(ATTR[i] = PyUnicode_InternFromString(NAMES[i]))) return NULL;
    return PyModule_Create(&module);
}
