/* lowimpact._stack: the Python face of the reader (Reader, its errors).
 *
 * Reader(pid) attaches to a process (reads only: nothing is paused or
 * written); threads() gives every thread's stack, sample() one snapshot as
 * frame ids for a sampler to count.  Code objects are decoded once per
 * address and checked against the fields read with every frame, so a code
 * object freed and replaced at the same address is decoded again. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>       /* T_ULONGLONG, READONLY */

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "target.h"

static PyObject *StackError;            /* owned by the module */
static PyObject *NotPythonError;
static PyObject *UnsupportedVersionError;

/* What decoding a frame takes from its code object's head: the file, the
 * names and the line table (their addresses), the first line; and, to tell
 * a code object from another made at its address once it was freed, its
 * size and the version each new code object gets (3.12+) or, before, the
 * hash of its name (li_raw_frame.name_hash).  Before 3.12, a new code
 * object of the same name, first line and size, made of objects that took
 * the addresses of the old one's, would pass for it: it decodes the same
 * unless its line table differs. */
#define SIG_WORDS 8

static void
signature_of(const li_layout *L, const li_raw_frame *f, uint64_t sig[SIG_WORDS])
{
    const int64_t at[SIG_WORDS] = {L->code_filename, L->code_name, L->code_qualname,
                                   L->code_linetable, -1, L->code_units, L->code_version, -1};
    for (int i = 0; i < SIG_WORDS; i++) {
        sig[i] = at[i] >= 0 ? li_u64_at(f->head, at[i]) : 0;
    }
    /* (Four-byte fields: the first line, the version.) */
    int32_t firstlineno;
    memcpy(&firstlineno, f->head + L->code_firstlineno, sizeof firstlineno);
    sig[4] = (uint64_t)(uint32_t)firstlineno;
    sig[6] &= 0xffffffffu;
    sig[7] = f->name_hash;
}

static uint64_t
signature_hash(const uint64_t sig[SIG_WORDS])
{
    uint64_t h = 0x9E3779B97F4A7C15u;
    for (int i = 0; i < SIG_WORDS; i++) {
        h = (h ^ sig[i]) * 0xff51afd7ed558ccdu;
        h ^= h >> 29;
    }
    return h;
}

/* (code address, offset) -> frame id, open addressing: what a sampler
 * looks up for every frame of every sample; an entry counts only while the
 * code object at that address has the signature it had. */
typedef struct frame_slot {
    uint64_t code;          /* 0: empty */
    int64_t offset;
    uint64_t sig;           /* signature_hash() of the code object */
    Py_ssize_t id;
} frame_slot;

typedef struct frame_cache {
    frame_slot *slots;      /* owned (PyMem) */
    size_t cap, used;       /* cap is 0 or a power of two */
} frame_cache;

typedef struct {
    PyObject_HEAD
    li_target target;
    frame_cache cache;
    li_sample sample;
    /* owned: {code address: (signature, filename, name, firstlineno, linetable)} */
    PyObject *codes;
    /* owned: {(filename, name, line): id} and the list of those tuples by id */
    PyObject *frame_ids;
    PyObject *frame_list;
    unsigned long long taken, torn, dropped;
    /* thread_names(): reads found torn in part or whole (each made again),
     * threads left unnamed because every read of theirs was torn, threads
     * whose Thread in _active was another thread's */
    unsigned long long names_torn, names_unread, names_mismatched;
    /* set while a method reads with the GIL released: another thread's
     * call would share the sample buffers */
    int busy;
} ReaderObject;

/* 0 if self can read now, -1 with an exception if it is not initialised or
 * another thread is reading with it. */
static int
check_ready(ReaderObject *self)
{
    if (self->frame_list == NULL) {
        PyErr_SetString(PyExc_ValueError, "Reader is not initialised");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Reader is in use by another thread");
        return -1;
    }
    return 0;
}

static const char PERMISSION_ADVICE[] =
    ": run as the same user as the target (or root), with "
    "/proc/sys/kernel/yama/ptrace_scope at 0 (or 1 when the reader is the target's "
    "parent), or give the reader CAP_SYS_PTRACE (setcap cap_sys_ptrace+ep, docker "
    "--cap-add SYS_PTRACE)";

/* Raise the exception for status st; always returns -1.  last_errno is the
 * errno of the read that failed, as the target kept it (li_status_of):
 * errno itself has been overwritten since by whatever ran after. */
static int
raise_status(li_status st, const char *msg, int pid, int last_errno)
{
    switch (st) {
    case LI_NO_PROCESS:
        PyErr_Format(PyExc_ProcessLookupError, "%s", msg[0] ? msg : "no such process");
        break;
    case LI_NO_PERMISSION:
        PyErr_Format(PyExc_PermissionError, "not allowed to read process %d%s", pid,
                     PERMISSION_ADVICE);
        break;
    case LI_NOT_PYTHON:
        PyErr_SetString(NotPythonError, msg);
        break;
    case LI_UNSUPPORTED:
        PyErr_SetString(UnsupportedVersionError, msg);
        break;
    case LI_NO_MEMORY:
        PyErr_NoMemory();
        break;
    case LI_TORN:
        PyErr_Format(StackError, "the stacks of process %d kept changing while read", pid);
        break;
    default:
        PyErr_Format(StackError, "reading process %d failed: %s%s%s", pid, msg,
                     msg[0] && last_errno ? ": " : "",
                     last_errno ? strerror(last_errno) : "");
        break;
    }
    return -1;
}

static int
Reader_init(ReaderObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"pid", "thread_db", NULL};
    int pid, thread_db = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|p:Reader", kwlist, &pid, &thread_db)) {
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Reader is in use by another thread");
        return -1;
    }
    /* A second __init__ starts afresh: nothing cached is of the new target. */
    PyMem_Free(self->cache.slots);
    memset(&self->cache, 0, sizeof self->cache);
    Py_CLEAR(self->codes);
    Py_CLEAR(self->frame_ids);
    Py_CLEAR(self->frame_list);
    self->taken = self->torn = self->dropped = 0;
    self->names_torn = self->names_unread = self->names_mismatched = 0;
    char msg[512] = "";
    li_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = li_attach(&self->target, (pid_t)pid, msg, sizeof msg);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != LI_OK) {
        return raise_status(st, msg, pid, self->target.last_errno);
    }
    if (!thread_db && self->target.layout.tstate_native_thread_id < 0) {
        /* glibc's description is not to be used: learnt, as without one. */
        self->target.pthread_tid_offset = -1;
    }
    self->codes = PyDict_New();
    self->frame_ids = PyDict_New();
    self->frame_list = self->codes && self->frame_ids ? PyList_New(0) : NULL;
    if (self->frame_list == NULL) {
        Py_CLEAR(self->codes);
        Py_CLEAR(self->frame_ids);
        return -1;
    }
    return 0;
}

static size_t
slot_of(const frame_cache *c, uint64_t code, int64_t offset)
{
    uint64_t h = (code ^ ((uint64_t)offset * 0x9E3779B97F4A7C15u)) * 0xff51afd7ed558ccdu;
    size_t i = (size_t)(h >> 20) & (c->cap - 1);
    while (c->slots[i].code != 0
           && !(c->slots[i].code == code && c->slots[i].offset == offset)) {
        i = (i + 1) & (c->cap - 1);
    }
    return i;
}

/* The id cached for (code, offset) of a code object of signature sig, or
 * -1. */
static Py_ssize_t
cache_find(const frame_cache *c, uint64_t code, int64_t offset, uint64_t sig)
{
    if (c->cap == 0) {
        return -1;
    }
    const frame_slot *slot = &c->slots[slot_of(c, code, offset)];
    return slot->code && slot->sig == sig ? slot->id : -1;
}

/* Cache id for (code, offset, sig), in place of what (code, offset) had. */
static int
cache_add(frame_cache *c, uint64_t code, int64_t offset, uint64_t sig, Py_ssize_t id)
{
    if (2 * (c->used + 1) > c->cap) {
        frame_cache bigger = {NULL, c->cap ? 2 * c->cap : 1024, 0};
        bigger.slots = PyMem_Calloc(bigger.cap, sizeof(frame_slot));
        if (bigger.slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i < c->cap; i++) {
            if (c->slots[i].code) {
                bigger.slots[slot_of(&bigger, c->slots[i].code, c->slots[i].offset)]
                    = c->slots[i];
                bigger.used++;
            }
        }
        PyMem_Free(c->slots);
        *c = bigger;
    }
    frame_slot *slot = &c->slots[slot_of(c, code, offset)];
    c->used += slot->code == 0;
    slot->code = code;
    slot->offset = offset;
    slot->sig = sig;
    slot->id = id;
    return 0;
}

static void
Reader_dealloc(ReaderObject *self)
{
    PyMem_Free(self->cache.slots);
    li_sample_free(&self->sample);
    Py_CLEAR(self->codes);
    Py_CLEAR(self->frame_ids);
    Py_CLEAR(self->frame_list);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A str of the target at addr; NULL with an exception set, or NULL with
 * none set where the memory is not (or no longer) a string. */
static PyObject *
read_str(const li_target *t, uint64_t addr)
{
    const li_layout *L = &t->layout;
    unsigned char head[256];
    int64_t head_size = L->unicode_compact_size > 0 ? L->unicode_compact_size
                                                    : L->unicode_ascii_size + 16;
    if (addr == 0 || head_size > (int64_t)sizeof head
        || li_read(t, addr, head, (size_t)head_size) != 0) {
        return NULL;
    }
    uint32_t state;
    int64_t length;
    memcpy(&state, head + L->unicode_state, sizeof state);
    memcpy(&length, head + L->unicode_length, sizeof length);
    if (!(state & L->unicode_compact_mask) || length < 0 || length > (1 << 20)) {
        return NULL;
    }
    int kind = (int)((state & L->unicode_kind_mask) >> L->unicode_kind_shift);
    if (kind != 1 && kind != 2 && kind != 4) {
        return NULL;
    }
    int64_t data = (state & L->unicode_ascii_mask) ? L->unicode_ascii_size
                                                    : L->unicode_compact_size;
    if (data <= 0) {
        return NULL;
    }
    size_t n = (size_t)length * (size_t)kind;
    char *buf = PyMem_Malloc(n ? n : 1);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    int valid = li_read(t, addr + (uint64_t)data, buf, n) == 0;
    /* (Torn text may hold a "code point" past U+10FFFF, which
     * PyUnicode_FromKindAndData refuses with a SystemError.) */
    for (size_t i = 0; valid && kind == 4 && i < (size_t)length; i++) {
        uint32_t c;
        memcpy(&c, buf + 4 * i, sizeof c);
        valid = c <= 0x10ffff;
    }
    if (valid) {
        result = PyUnicode_FromKindAndData(kind, buf, (Py_ssize_t)length);
        if (result == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();      /* torn: not the string it was */
        }
    }
    PyMem_Free(buf);
    return result;
}

/* A bytes of the target at addr; NULL as read_str. */
static PyObject *
read_bytes(const li_target *t, uint64_t addr)
{
    const li_layout *L = &t->layout;
    int64_t size;
    if (addr == 0 || li_read(t, addr + (uint64_t)L->bytes_size, &size, sizeof size) != 0
        || size < 0 || size > (1 << 24)) {
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (result == NULL) {
        return NULL;
    }
    if (li_read(t, addr + (uint64_t)L->bytes_data, PyBytes_AS_STRING(result), (size_t)size)) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

/* The decoded code object of frame f (borrowed from self->codes), decoded
 * again where the code object at its address has another signature; NULL
 * with an exception, or NULL without one where the sample is torn. */
static PyObject *
code_info(ReaderObject *self, const li_raw_frame *f)
{
    const li_layout *L = &self->target.layout;
    uint64_t sig[SIG_WORDS];
    signature_of(L, f, sig);
    int firstlineno = (int)(int32_t)sig[4];

    PyObject *key = PyLong_FromUnsignedLongLong(f->code);
    if (key == NULL) {
        return NULL;
    }
    PyObject *info = PyDict_GetItemWithError(self->codes, key);   /* borrowed */
    if (info != NULL) {
        PyObject *cached = PyTuple_GET_ITEM(info, 0);
        if (memcmp(PyBytes_AS_STRING(cached), sig, sizeof sig) == 0) {
            Py_DECREF(key);
            return info;
        }
    }
    else if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    PyObject *signature = NULL, *filename = NULL, *name = NULL, *table = NULL;
    PyObject *line = NULL;
    info = NULL;
    signature = PyBytes_FromStringAndSize((const char *)sig, sizeof sig);
    if (signature == NULL) {
        goto done;
    }
    filename = read_str(&self->target, sig[0]);
    if (filename == NULL) {
        goto done;
    }
    name = read_str(&self->target, L->code_qualname >= 0 ? sig[2] : sig[1]);
    if (name == NULL) {
        goto done;
    }
    table = read_bytes(&self->target, sig[3]);
    if (table == NULL) {
        goto done;
    }
    line = PyLong_FromLong(firstlineno);
    if (line == NULL) {
        goto done;
    }
    info = PyTuple_Pack(5, signature, filename, name, line, table);
    if (info == NULL) {
        goto done;
    }
    if (PyDict_SetItem(self->codes, key, info) < 0) {
        Py_CLEAR(info);
        goto done;
    }
    Py_DECREF(info);    /* the dict keeps it alive: borrowed from here */
done:
    Py_DECREF(key);
    Py_XDECREF(signature);
    Py_XDECREF(filename);
    Py_XDECREF(name);
    Py_XDECREF(table);
    Py_XDECREF(line);
    return info;
}

/* (filename, name, line) of a frame, with the code object's address as a
 * fourth item if with_code; new reference; NULL as code_info. */
static PyObject *
frame_tuple(ReaderObject *self, const li_raw_frame *f, int with_code)
{
    PyObject *info = code_info(self, f);
    if (info == NULL) {
        return NULL;
    }
    PyObject *table = PyTuple_GET_ITEM(info, 4);
    long first = PyLong_AsLong(PyTuple_GET_ITEM(info, 3));
    int line = li_line_of(self->target.layout.linetable_format,
                          (const unsigned char *)PyBytes_AS_STRING(table),
                          (size_t)PyBytes_GET_SIZE(table), (int)first, f->offset);
    if (with_code) {
        return Py_BuildValue("(OOiK)", PyTuple_GET_ITEM(info, 1), PyTuple_GET_ITEM(info, 2),
                             line, (unsigned long long)f->code);
    }
    return Py_BuildValue("(OOi)", PyTuple_GET_ITEM(info, 1), PyTuple_GET_ITEM(info, 2), line);
}

/* The id of a frame in self->frame_list; -1 with an exception, -2 torn. */
static Py_ssize_t
frame_id(ReaderObject *self, li_raw_frame *f)
{
    uint64_t sig[SIG_WORDS];
    signature_of(&self->target.layout, f, sig);
    uint64_t hash = signature_hash(sig);
    Py_ssize_t cached = cache_find(&self->cache, f->code, f->offset, hash);
    if (cached >= 0) {
        return cached;
    }
    PyObject *frame = frame_tuple(self, f, 0);
    if (frame == NULL) {
        return PyErr_Occurred() ? -1 : -2;
    }
    Py_ssize_t id = -1;
    PyObject *known = PyDict_GetItemWithError(self->frame_ids, frame);   /* borrowed */
    if (known != NULL) {
        id = PyLong_AsSsize_t(known);
    }
    else if (!PyErr_Occurred()) {
        id = PyList_GET_SIZE(self->frame_list);
        PyObject *value = PyLong_FromSsize_t(id);
        if (value == NULL || PyDict_SetItem(self->frame_ids, frame, value) < 0
            || PyList_Append(self->frame_list, frame) < 0) {
            id = -1;
        }
        Py_XDECREF(value);
    }
    Py_DECREF(frame);
    if (id >= 0 && cache_add(&self->cache, f->code, f->offset, hash, id) < 0) {
        return -1;
    }
    return id;
}

/* One snapshot. */
static li_status
take(ReaderObject *self)
{
    li_status st;
    Py_BEGIN_ALLOW_THREADS
    st = li_take_sample(&self->target, &self->sample);
    Py_END_ALLOW_THREADS
    return st;
}

/* The stacks of one sample: a tuple of (thread key, tuple of frame ids,
 * outermost first); NULL with an exception, or NULL without one if torn. */
static PyObject *
stacks_of_sample(ReaderObject *self)
{
    li_sample *s = &self->sample;
    PyObject *result = PyTuple_New((Py_ssize_t)s->nthreads);
    if (result == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < s->nthreads; i++) {
        li_raw_thread *th = &s->threads[i];
        PyObject *ids = PyTuple_New((Py_ssize_t)th->count);
        if (ids == NULL) {
            goto error;
        }
        for (size_t k = 0; k < th->count; k++) {
            Py_ssize_t id = frame_id(self, &s->frames[th->first + th->count - 1 - k]);
            PyObject *value = id >= 0 ? PyLong_FromSsize_t(id) : NULL;
            if (value == NULL) {
                Py_DECREF(ids);
                goto error;
            }
            PyTuple_SET_ITEM(ids, (Py_ssize_t)k, value);
        }
        PyObject *entry = Py_BuildValue("(KN)", (unsigned long long)
                                        (th->native_id ? th->native_id : th->thread_id), ids);
        if (entry == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(result, (Py_ssize_t)i, entry);
    }
    return result;
error:
    Py_DECREF(result);
    return NULL;
}

PyDoc_STRVAR(Reader_sample_doc,
"sample(attempts=8) -> tuple of (thread, frame ids) or None\n\n"
"One snapshot of every thread, taken without stopping the process: for each\n"
"thread its kernel id (or its threading id where that is unknown) and the ids\n"
"of its frames, outermost first (frame(id) describes one).  A read that raced\n"
"with the process (torn) is made again at once, up to attempts reads; None if\n"
"all were torn: the sample is dropped.  Both are counted (samples_torn,\n"
"samples_dropped).");

static PyObject *sample_while_busy(ReaderObject *self, int attempts);

/* A method of one argument, attempts (format "|i:name"), run by fn.  Reader
 * stays busy until what fn read is made into objects, which may run other
 * threads: none may read with it or re-initialise it meanwhile. */
static PyObject *
call_with_attempts(ReaderObject *self, PyObject *args, PyObject *kwds, const char *format,
                   int attempts, PyObject *(*fn)(ReaderObject *, int))
{
    static char *kwlist[] = {"attempts", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, format, kwlist, &attempts)
        || check_ready(self) < 0) {
        return NULL;
    }
    self->busy = 1;
    PyObject *result = fn(self, attempts);
    self->busy = 0;
    return result;
}

static PyObject *
Reader_sample(ReaderObject *self, PyObject *args, PyObject *kwds)
{
    return call_with_attempts(self, args, kwds, "|i:sample", 8, sample_while_busy);
}

static PyObject *
sample_while_busy(ReaderObject *self, int attempts)
{
    self->taken++;
    for (int attempt = 0; attempt < attempts; attempt++) {
        li_status st = take(self);
        if (st == LI_TORN) {
            self->torn++;
            continue;
        }
        if (st != LI_OK) {
            raise_status(st, "", self->target.pid, self->target.last_errno);
            return NULL;
        }
        PyObject *result = stacks_of_sample(self);
        if (result != NULL || PyErr_Occurred()) {
            return result;
        }
        self->torn++;
    }
    self->dropped++;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Reader_threads_doc,
"threads(attempts=1000, with_code=False)\n"
"    -> list of (thread_id, native_id, holds_gil, frames)\n\n"
"Every thread's stack, read again until a consistent one is read: threading's\n"
"id, the kernel's id (None if unknown), True/False for the GIL (None where\n"
"the version does not tell) and the frames as (filename, name, line),\n"
"outermost first; name is the qualified name where the version has one.\n"
"with_code adds the address of each frame's code object as a fourth item.");

static PyObject *threads_while_busy(ReaderObject *self, int attempts, int with_code);

static PyObject *
Reader_threads(ReaderObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"attempts", "with_code", NULL};
    int attempts = 1000, with_code = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|ip:threads", kwlist, &attempts,
                                     &with_code)
        || check_ready(self) < 0) {
        return NULL;
    }
    self->busy = 1;
    PyObject *result = threads_while_busy(self, attempts, with_code);
    self->busy = 0;
    return result;
}

static PyObject *
threads_while_busy(ReaderObject *self, int attempts, int with_code)
{
    for (int attempt = 0; attempt < attempts; attempt++) {
        li_status st = take(self);
        if (st == LI_TORN) {
            continue;
        }
        if (st != LI_OK) {
            raise_status(st, "", self->target.pid, self->target.last_errno);
            return NULL;
        }
        li_sample *s = &self->sample;
        PyObject *result = PyList_New(0);
        if (result == NULL) {
            return NULL;
        }
        int torn = 0;
        for (size_t i = 0; i < s->nthreads && !torn; i++) {
            li_raw_thread *th = &s->threads[i];
            PyObject *frames = PyList_New(0);
            if (frames == NULL) {
                Py_DECREF(result);
                return NULL;
            }
            for (size_t k = th->count; k-- > 0;) {
                PyObject *frame = frame_tuple(self, &s->frames[th->first + k], with_code);
                if (frame == NULL) {
                    if (PyErr_Occurred()) {
                        Py_DECREF(frames);
                        Py_DECREF(result);
                        return NULL;
                    }
                    torn = 1;
                    break;
                }
                int rc = PyList_Append(frames, frame);
                Py_DECREF(frame);
                if (rc < 0) {
                    Py_DECREF(frames);
                    Py_DECREF(result);
                    return NULL;
                }
            }
            PyObject *native = th->native_id ? PyLong_FromUnsignedLongLong(th->native_id)
                                             : (Py_INCREF(Py_None), Py_None);
            PyObject *gil = th->holds_gil < 0 ? Py_None : PyBool_FromLong(th->holds_gil);
            if (th->holds_gil < 0) {
                Py_INCREF(gil);
            }
            PyObject *entry = native == NULL ? NULL
                              : Py_BuildValue("(KNNN)", (unsigned long long)th->thread_id,
                                              native, gil, frames);
            if (entry == NULL) {
                if (native == NULL) {
                    Py_DECREF(gil);
                    Py_DECREF(frames);
                }
                Py_DECREF(result);
                return NULL;
            }
            int rc = PyList_Append(result, entry);
            Py_DECREF(entry);
            if (rc < 0) {
                Py_DECREF(result);
                return NULL;
            }
        }
        if (!torn) {
            return result;
        }
        Py_DECREF(result);
    }
    raise_status(LI_TORN, "", self->target.pid, self->target.last_errno);
    return NULL;
}

PyDoc_STRVAR(Reader_thread_names_doc,
"thread_names(attempts=100) -> {thread: name}\n\n"
"The name threading gives each thread (its Thread's name, found through\n"
"threading._active), keyed as sample() keys threads: the kernel's id where\n"
"known, else threading's id.  Threads threading does not know (or all, in a\n"
"process that has not imported it) are left out.  A thread whose name could\n"
"not be read because the process changed it meanwhile is read again, with a\n"
"new snapshot, up to attempts reads in all; the others keep the names read.\n"
"Counted: names_torn, names_unread, names_mismatched.");

/* The names of the threads of sample s (li_thread_names, one interpreter at
 * a time): names[i], threads[i] and states[i] of s->threads[i].  The other
 * arrays are room for one interpreter's threads. */
static li_status
names_of_sample(li_target *t, const li_sample *s, uint64_t *idents, uint64_t *natives,
                uint64_t *found, uint64_t *found_threads, li_name_state *found_states,
                size_t *which, uint64_t *names, uint64_t *threads, li_name_state *states)
{
    for (size_t i = 0; i < s->nthreads; i++) {
        names[i] = threads[i] = 0;
        states[i] = LI_NAME_NONE;
    }
    for (size_t i = 0; i < s->nthreads; i++) {
        uint64_t interp = s->threads[i].interp;
        size_t n = 0, j;
        for (j = 0; j < i && s->threads[j].interp != interp; j++) {
        }
        if (j < i) {
            continue;       /* that interpreter is done */
        }
        for (j = i; j < s->nthreads; j++) {
            if (s->threads[j].interp == interp) {
                idents[n] = s->threads[j].thread_id;
                natives[n] = s->threads[j].native_id;
                which[n++] = j;
            }
        }
        li_status st = li_thread_names(t, interp, idents, natives, found_threads, found,
                                       found_states, n);
        if (st != LI_OK) {
            return st;
        }
        for (j = 0; j < n; j++) {
            names[which[j]] = found[j];
            threads[which[j]] = found_threads[j];
            states[which[j]] = found_states[j];
        }
    }
    return LI_OK;
}

/* The name of thread i of the current sample as a str, read and checked
 * (its text is read after the str was found: it is the name only if the
 * Thread still is the thread's and still names it, else the thread ended,
 * its str was freed and the text may be of another made where it was).
 * NULL with an exception, or NULL without one if that did not hold
 * (torn). */
static PyObject *
checked_name(ReaderObject *self, size_t i, uint64_t name, uint64_t thread)
{
    PyObject *text = read_str(&self->target, name);
    if (text == NULL) {
        return NULL;
    }
    int holds = 0;
    li_status st = li_thread_still_named(&self->target, thread,
                                         self->sample.threads[i].native_id, name, &holds);
    if (st != LI_OK && st != LI_TORN) {
        Py_DECREF(text);
        raise_status(st, "", self->target.pid, self->target.last_errno);
        return NULL;
    }
    if (!holds) {
        Py_CLEAR(text);     /* no name rather than perhaps another's */
    }
    return text;
}

static PyObject *
thread_names_while_busy(ReaderObject *self, int attempts)
{
    PyObject *result = PyDict_New();
    uint64_t *buffers = NULL;
    size_t *which = NULL;
    li_name_state *states = NULL;
    /* threads of the last sample read whose name is still to read (its
     * read was torn), or whose Thread is another thread's */
    size_t unread = 0, mismatched = 0;
    /* whether a read of the names held together (until one does, every
     * thread of the last sample read is unread) */
    int named = 0;
    if (result == NULL) {
        return NULL;
    }
    for (int attempt = 0; attempt < attempts; attempt++) {
        self->sample.threads_only = 1;
        li_status st = take(self);
        self->sample.threads_only = 0;
        li_sample *s = &self->sample;
        size_t n = s->nthreads ? s->nthreads : 1;
        int sampled = st == LI_OK;
        if (sampled) {
            PyMem_Free(buffers);
            PyMem_Free(which);
            PyMem_Free(states);
            buffers = PyMem_Calloc(6 * n, sizeof *buffers);
            which = PyMem_Calloc(n, sizeof *which);
            states = PyMem_Calloc(2 * n, sizeof *states);
            if (buffers == NULL || which == NULL || states == NULL) {
                PyErr_NoMemory();
                goto error;
            }
            Py_BEGIN_ALLOW_THREADS
            st = names_of_sample(&self->target, s, buffers, buffers + n, buffers + 2 * n,
                                 buffers + 3 * n, states, which, buffers + 4 * n,
                                 buffers + 5 * n, states + n);
            Py_END_ALLOW_THREADS
        }
        if (st == LI_TORN) {
            self->names_torn++;
            if (sampled && !named) {
                unread = s->nthreads;
            }
            continue;
        }
        if (st != LI_OK) {
            raise_status(st, "", self->target.pid, self->target.last_errno);
            goto error;
        }
        named = 1;
        unread = mismatched = 0;
        for (size_t i = 0; i < s->nthreads; i++) {
            li_raw_thread *th = &s->threads[i];
            PyObject *key = PyLong_FromUnsignedLongLong(th->native_id ? th->native_id
                                                                      : th->thread_id);
            int known = key == NULL ? -1 : PyDict_Contains(result, key);
            if (known < 0) {
                Py_XDECREF(key);
                goto error;
            }
            PyObject *name = NULL;
            /* (A thread named by an earlier read keeps that name.) */
            if (!known && states[n + i] == LI_NAME_FOUND) {
                name = checked_name(self, i, buffers[4 * n + i], buffers[5 * n + i]);
                if (name == NULL && PyErr_Occurred()) {
                    Py_DECREF(key);
                    goto error;
                }
            }
            int rc = name == NULL ? 0 : PyDict_SetItem(result, key, name);
            Py_DECREF(key);
            Py_XDECREF(name);
            if (rc < 0) {
                goto error;
            }
            if (!known && name == NULL) {
                unread += states[n + i] == LI_NAME_FOUND || states[n + i] == LI_NAME_TORN;
                mismatched += states[n + i] == LI_NAME_OTHER;
            }
        }
        if (unread == 0) {
            break;
        }
        self->names_torn++;
    }
    self->names_unread += unread;
    self->names_mismatched += mismatched;
    PyMem_Free(buffers);
    PyMem_Free(which);
    PyMem_Free(states);
    return result;
error:
    PyMem_Free(buffers);
    PyMem_Free(which);
    PyMem_Free(states);
    Py_DECREF(result);
    return NULL;
}

static PyObject *
Reader_thread_names(ReaderObject *self, PyObject *args, PyObject *kwds)
{
    return call_with_attempts(self, args, kwds, "|i:thread_names", 100,
                              thread_names_while_busy);
}

PyDoc_STRVAR(Reader_frame_doc, "frame(id) -> (filename, name, line) of a frame id of sample()");

static PyObject *
Reader_frame(ReaderObject *self, PyObject *arg)
{
    if (check_ready(self) < 0) {
        return NULL;
    }
    Py_ssize_t id = PyLong_AsSsize_t(arg);
    if (id == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (id < 0 || id >= PyList_GET_SIZE(self->frame_list)) {
        PyErr_SetString(PyExc_IndexError, "no such frame id");
        return NULL;
    }
    PyObject *frame = PyList_GET_ITEM(self->frame_list, id);
    Py_INCREF(frame);
    return frame;
}

static PyObject *
Reader_get_version(ReaderObject *self, void *Py_UNUSED(closure))
{
    if (self->target.micro < 0) {
        return Py_BuildValue("(iiO)", self->target.major, self->target.minor, Py_None);
    }
    return Py_BuildValue("(iii)", self->target.major, self->target.minor, self->target.micro);
}

static PyObject *
Reader_get_pid(ReaderObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong((long)self->target.pid);
}

static PyObject *
Reader_get_binary(ReaderObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_DecodeFSDefault(self->target.binary);
}

static PyObject *
Reader_get_has_qualname(ReaderObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->target.layout.code_qualname >= 0);
}

static PyObject *
Reader_get_gil_readable(ReaderObject *self, void *Py_UNUSED(closure))
{
    const li_layout *L = &self->target.layout;
    return PyBool_FromLong(L->runtime_gil_tstate_current >= 0 || L->interp_gil_locked >= 0);
}

static PyObject *
Reader_get_tid_source(ReaderObject *self, void *Py_UNUSED(closure))
{
    const li_target *t = &self->target;
    if (t->layout.tstate_native_thread_id >= 0) {
        return PyUnicode_FromString("thread state");
    }
    if (t->pthread_tid_offset < 0) {
        Py_RETURN_NONE;
    }
    /* (Only learning counts tries.) */
    return PyUnicode_FromString(t->pthread_tid_tries ? "learnt" : "thread_db");
}

static PyObject *
Reader_get_layout(ReaderObject *self, void *Py_UNUSED(closure))
{
    const li_layout *L = &self->target.layout;
    return Py_BuildValue(
        "{sLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsL}",
        "runtime_interpreters_head", (long long)L->runtime_interpreters_head,
        "interp_next", (long long)L->interp_next,
        "interp_threads_head", (long long)L->interp_threads_head,
        "interp_gil_locked", (long long)L->interp_gil_locked,
        "interp_gil_holder", (long long)L->interp_gil_holder,
        "tstate_prev", (long long)L->tstate_prev,
        "tstate_next", (long long)L->tstate_next,
        "tstate_interp", (long long)L->tstate_interp,
        "tstate_thread_id", (long long)L->tstate_thread_id,
        "tstate_native_thread_id", (long long)L->tstate_native_thread_id,
        "tstate_frame", (long long)L->tstate_frame,
        "frame_back", (long long)L->frame_back,
        "frame_code", (long long)L->frame_code,
        "frame_instr", (long long)L->frame_instr,
        "frame_owner", (long long)L->frame_owner,
        /* (3.13: the headers' offsets, kept only where the target's
           _Py_DebugOffsets place the fields around them as the headers
           do; -1 where the walk goes without them) */
        "frame_stacktop", (long long)L->frame_stacktop,
        "code_monitoring", (long long)L->code_monitoring,
        "code_framesize", (long long)L->code_framesize,
        "code_filename", (long long)L->code_filename,
        "code_linetable", (long long)L->code_linetable,
        "code_adaptive", (long long)L->code_adaptive,
        "interp_modules", (long long)L->interp_modules,
        "type_flags", (long long)L->type_flags,
        "dict_keys", (long long)L->dict_keys,
        "dict_values", (long long)L->dict_values);
}

static PyMethodDef Reader_methods[] = {
    {"sample", (PyCFunction)(void (*)(void))Reader_sample, METH_VARARGS | METH_KEYWORDS,
     Reader_sample_doc},
    {"threads", (PyCFunction)(void (*)(void))Reader_threads, METH_VARARGS | METH_KEYWORDS,
     Reader_threads_doc},
    {"thread_names", (PyCFunction)(void (*)(void))Reader_thread_names,
     METH_VARARGS | METH_KEYWORDS, Reader_thread_names_doc},
    {"frame", (PyCFunction)Reader_frame, METH_O, Reader_frame_doc},
    {NULL, NULL, 0, NULL},
};

/* The counters, read-only. */
static PyMemberDef Reader_members[] = {
    {"samples_taken", T_ULONGLONG, offsetof(ReaderObject, taken), READONLY,
     "calls of sample()"},
    {"samples_torn", T_ULONGLONG, offsetof(ReaderObject, torn), READONLY,
     "reads of sample() found torn (each made again, up to its attempts)"},
    {"samples_dropped", T_ULONGLONG, offsetof(ReaderObject, dropped), READONLY,
     "calls of sample() whose every read was torn"},
    {"names_torn", T_ULONGLONG, offsetof(ReaderObject, names_torn), READONLY,
     "reads of thread_names() found torn in part or whole (each made again)"},
    {"names_unread", T_ULONGLONG, offsetof(ReaderObject, names_unread), READONLY,
     "threads thread_names() left unnamed because every read of their name was torn"},
    {"names_mismatched", T_ULONGLONG, offsetof(ReaderObject, names_mismatched), READONLY,
     "threads thread_names() left unnamed because the Thread threading has under\n"
     "their ident is of another kernel thread (or their kernel id is unknown)"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Reader_getset[] = {
    {"pid", (getter)Reader_get_pid, NULL, "the process id", NULL},
    {"version", (getter)Reader_get_version, NULL,
     "(major, minor, micro) of the target's CPython; micro None if unknown", NULL},
    {"binary", (getter)Reader_get_binary, NULL, "the file holding _PyRuntime", NULL},
    {"has_qualname", (getter)Reader_get_has_qualname, NULL,
     "whether frames are named by qualified name (3.11+)", NULL},
    {"gil_readable", (getter)Reader_get_gil_readable, NULL,
     "whether the GIL's holder can be told", NULL},
    {"tid_source", (getter)Reader_get_tid_source, NULL,
     "where kernel thread ids come from: 'thread state' (3.11+), 'thread_db'\n"
     "(glibc's description of struct pthread), 'learnt' (from the threads), or\n"
     "None (not known yet, or not found)", NULL},
    {"layout", (getter)Reader_get_layout, NULL,
     "the offsets in use (from the table, or from _Py_DebugOffsets)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Reader_doc,
"Reader(pid, thread_db=True)\n\n"
"Read the threads and frames of CPython 3.9-3.13 process pid from outside,\n"
"without stopping it.  Raises ProcessLookupError, PermissionError,\n"
"NotPythonError or UnsupportedVersionError.  Before 3.11, a thread's kernel id\n"
"is read from its struct pthread, where glibc's description for debuggers\n"
"says; with thread_db=False (or without one, as with musl) where the threads\n"
"of the process show it is.");

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._stack.Reader",
    .tp_basicsize = sizeof(ReaderObject),
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Reader_doc,
    .tp_methods = Reader_methods,
    .tp_members = Reader_members,
    .tp_getset = Reader_getset,
    .tp_init = (initproc)Reader_init,
    .tp_new = PyType_GenericNew,
};

PyDoc_STRVAR(line_of_doc,
"line_of(format, table, firstlineno, offset) -> int\n\n"
"The line of byte offset in a line table (format 1 co_lnotab, 2 3.10's\n"
"co_linetable, 3 3.11+'s location table), as the reader computes it.");

static PyObject *
line_of(PyObject *Py_UNUSED(module), PyObject *args)
{
    int format, first;
    long long offset;
    Py_buffer table;
    if (!PyArg_ParseTuple(args, "iy*iL:line_of", &format, &table, &first, &offset)) {
        return NULL;
    }
    int line = li_line_of(format, table.buf, (size_t)table.len, first, offset);
    PyBuffer_Release(&table);
    return PyLong_FromLong(line);
}

PyDoc_STRVAR(sleep_doc,
"sleep(seconds)\n\n"
"Sleep as exactly as the kernel allows: the first call sets this thread's\n"
"timer slack to 1 us (the default 50 us would cap a sampler near 10 kHz).");

static PyObject *
precise_sleep(PyObject *Py_UNUSED(module), PyObject *arg)
{
    static int slack_set;
    double seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!slack_set) {
        /* Best effort: a kernel that refuses leaves the default slack. */
        (void)prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
        slack_set = 1;
    }
    if (!isfinite(seconds) || seconds > 1e6) {
        PyErr_Format(PyExc_ValueError, "cannot sleep %R seconds", arg);
        return NULL;
    }
    if (seconds <= 0) {
        Py_RETURN_NONE;
    }
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
    Py_END_ALLOW_THREADS
    if (rc != 0 && rc != EINTR) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (rc == EINTR && PyErr_CheckSignals() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"line_of", line_of, METH_VARARGS, line_of_doc},
    {"sleep", precise_sleep, METH_O, sleep_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef stack_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lowimpact._stack",
    .m_doc = "Out-of-process reader of CPython 3.9-3.13 threads and frames (Linux).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__stack(void)
{
    if (PyType_Ready(&ReaderType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&stack_module);
    if (m == NULL) {
        return NULL;
    }
    if (StackError == NULL) {
        StackError = PyErr_NewExceptionWithDoc(
            "lowimpact._stack.StackError", "Reading a process's stacks failed.",
            PyExc_RuntimeError, NULL);
        NotPythonError = StackError == NULL ? NULL : PyErr_NewExceptionWithDoc(
            "lowimpact._stack.NotPythonError", "The process is not a CPython process.",
            StackError, NULL);
        UnsupportedVersionError = NotPythonError == NULL ? NULL : PyErr_NewExceptionWithDoc(
            "lowimpact._stack.UnsupportedVersionError",
            "The process runs a CPython the reader does not support.", StackError, NULL);
        if (UnsupportedVersionError == NULL) {
            Py_CLEAR(StackError);
            Py_CLEAR(NotPythonError);
            Py_DECREF(m);
            return NULL;
        }
    }
    /* PyModule_AddObject steals only on success. */
    PyObject *objects[] = {(PyObject *)&ReaderType, StackError, NotPythonError,
                           UnsupportedVersionError};
    const char *names[] = {"Reader", "StackError", "NotPythonError",
                           "UnsupportedVersionError"};
    for (int i = 0; i < 4; i++) {
        Py_INCREF(objects[i]);
        if (PyModule_AddObject(m, names[i], objects[i]) < 0) {
            Py_DECREF(objects[i]);
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
