/* What 3.9's interpreter keeps in its private state, which 3.10 made
 * public or moved: the count of trace functions its evaluation loop tests
 * before calling any, the collector's switch; and what 3.10 added or
 * changed: PyIter_Send, integer arguments taken through __index__ only.
 * This file alone reads 3.9's internal headers. */

#define Py_BUILD_CORE_MODULE 1
#include "b310.h"
#include "internal/pycore_interp.h"

/* _PyEval_SetTrace's bookkeeping: the evaluation loop looks for a trace
 * function only while some thread of the interpreter has one. */
void
li_set_tracefunc(PyThreadState *ts, Py_tracefunc func)
{
    ts->interp->ceval.tracing_possible += (func != NULL) - (ts->c_tracefunc != NULL);
    ts->c_tracefunc = func;
}

int
li_gc_disable(void)
{
    struct _gc_runtime_state *gc = &PyInterpreterState_Get()->gc;
    int was = gc->enabled;
    gc->enabled = 0;
    return was;
}

int
li_gc_enable(void)
{
    struct _gc_runtime_state *gc = &PyInterpreterState_Get()->gc;
    int was = gc->enabled;
    gc->enabled = 1;
    return was;
}

int
li_as_int(PyObject *obj)
{
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL) {
        return -1;
    }
    int value = _PyLong_AsInt(index);
    Py_DECREF(index);
    return value;
}

/* The builtins of the globals a callback frame was last made for, as of
 * that dict's version (PEP 509): while it is unchanged, its __builtins__
 * is the same object, which holds them. */
static struct {
    PyObject *globals;      /* compared only, with its version */
    uint64_t version;
    PyObject *builtins;     /* borrowed */
} known;

/* The builtins `known` holds for `globals` (borrowed), or NULL. */
static inline PyObject *
known_builtins(PyObject *globals)
{
    return globals == known.globals &&
           ((PyDictObject *)globals)->ma_version_tag == known.version ? known.builtins : NULL;
}

/* The builtins a frame of `globals` gets: 1 and *builtins (borrowed), 0 if
 * it names none (PyFrame_New makes some), -1 with an exception set. */
static int
builtins_of(PyObject *globals, PyObject **builtins)
{
    if ((*builtins = known_builtins(globals)) != NULL) {
        return 1;
    }
    _Py_IDENTIFIER(__builtins__);
    PyObject *found = _PyDict_GetItemIdWithError(globals, &PyId___builtins__);
    if (found == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (PyModule_Check(found)) {
        found = PyModule_GetDict(found);
    }
    known.globals = globals;
    known.version = ((PyDictObject *)globals)->ma_version_tag;
    known.builtins = found;
    *builtins = found;
    return 1;
}

/* A new frame of `co` with `globals`, below the thread's current frame.
 * 3.9's PyFrame_New looks the builtins up in `globals` unless the caller's
 * frame has the same globals, as a callback's caller (another module's
 * code) has not: it reads them from the caller instead, which lends it
 * `globals` and their builtins for the call when the frame comes from its
 * code's zombie, a path that runs no other code (no allocation, hence no
 * collection) and so cannot show the caller as it is meanwhile. */
static PyFrameObject *
new_frame(PyThreadState *ts, PyCodeObject *co, PyObject *globals)
{
    PyFrameObject *back = ts->frame;
    if (back == NULL || back->f_globals == globals || co->co_zombieframe == NULL) {
        return PyFrame_New(ts, co, globals, NULL);
    }
    PyObject *builtins;
    int found = builtins_of(globals, &builtins);
    if (found <= 0) {
        return found < 0 ? NULL : PyFrame_New(ts, co, globals, NULL);
    }
    PyObject *own_globals = back->f_globals, *own_builtins = back->f_builtins;
    back->f_globals = globals;
    back->f_builtins = builtins;
    PyFrameObject *f = PyFrame_New(ts, co, globals, NULL);
    back->f_globals = own_globals;
    back->f_builtins = own_builtins;
    return f;
}

/* Frames of callbacks kept between calls, by their code: what 3.9 would
 * give back to the code as its zombie (clearing the frame's references to
 * its code, globals, builtins and caller) and take again at the next call
 * (setting them again), about 200 instructions a callback, here only its
 * locals and caller cleared, and the rest set again.  Untracked while
 * kept: nothing reaches them but this table. */
#define LI_SPARE_FRAMES 8
static PyFrameObject *spares[LI_SPARE_FRAMES];  /* owned */

static inline PyFrameObject **
spare_slot(PyCodeObject *co)
{
    return &spares[((uintptr_t)co / sizeof(void *)) % LI_SPARE_FRAMES];
}

/* The kept frame of `co`, to run with `globals`, if there is one whose
 * builtins are still those of `globals`: a new reference, ready as
 * PyFrame_New makes one; else NULL, without an exception. */
static PyFrameObject *
take_spare(PyThreadState *ts, PyCodeObject *co, PyObject *globals)
{
    PyFrameObject **slot = spare_slot(co);
    PyFrameObject *f = *slot;
    if (f == NULL || f->f_code != co || f->f_globals != globals) {
        return NULL;
    }
    /* (Those of a caller with the same globals, as PyFrame_New takes.) */
    PyFrameObject *back = ts->frame;
    PyObject *builtins = back != NULL && back->f_globals == globals ? back->f_builtins
                                                                    : known_builtins(globals);
    if (f->f_builtins != builtins) {
        return NULL;
    }
    *slot = NULL;
    f->f_back = (PyFrameObject *)Py_XNewRef(back);
    f->f_stacktop = f->f_valuestack;
    f->f_lasti = -1;
    f->f_lineno = co->co_firstlineno;
    f->f_iblock = 0;
    f->f_trace_lines = 1;
    f->f_trace_opcodes = 0;
    PyObject_GC_Track(f);
    return f;
}

void
li_callback_frame_done(PyThreadState *ts, PyFrameObject *f)
{
    PyFrameObject **slot = spare_slot(f->f_code);
    if (Py_REFCNT(f) > 1) {
        Py_DECREF(f);
        return;
    }
    if (*slot != NULL) {
        /* As the interpreter lets go of a call's frame: its locals'
           finalizers run one level deeper. */
        ts->recursion_depth++;
        Py_DECREF(f);
        ts->recursion_depth--;
        return;
    }
    /* What its deallocation would clear, in its order. */
    PyObject_GC_UnTrack(f);
    ts->recursion_depth++;
    for (PyObject **p = f->f_localsplus; p < f->f_valuestack; p++) {
        Py_CLEAR(*p);
    }
    Py_CLEAR(f->f_back);
    Py_CLEAR(f->f_locals);
    Py_CLEAR(f->f_trace);
    ts->recursion_depth--;
    /* (Finalizers that ran meanwhile may have kept a frame of the code.) */
    if (*slot == NULL) {
        *slot = f;
    }
    else {
        Py_DECREF(f);
    }
}

void
li_callback_frames_forget(void)
{
    for (int i = 0; i < LI_SPARE_FRAMES; i++) {
        Py_CLEAR(spares[i]);
    }
}

/* 3.9 calls a function with free variables (a closure, as callbacks that
 * count or collect commonly are) through its general path,
 * _PyEval_EvalCode(), where the others take a short one: the same frame,
 * made here for the functions that take exactly their positional
 * parameters and have no cell variables. */
int
li_callback_frame(PyThreadState *ts, PyObject *callback, PyObject *const *argv, size_t nargs,
                  PyFrameObject **frame)
{
    if (!PyFunction_Check(callback)) {
        return 0;
    }
    PyFunctionObject *func = (PyFunctionObject *)callback;
    PyCodeObject *co = (PyCodeObject *)func->func_code;
    Py_ssize_t nfree = PyTuple_GET_SIZE(co->co_freevars);
    if ((co->co_flags & ~(PyCF_MASK | CO_NESTED | CO_NOFREE)) != (CO_OPTIMIZED | CO_NEWLOCALS) ||
        (size_t)co->co_argcount != nargs || co->co_kwonlyargcount != 0 ||
        PyTuple_GET_SIZE(co->co_cellvars) != 0 ||
        (nfree != 0 && (func->func_closure == NULL ||
                        PyTuple_GET_SIZE(func->func_closure) != nfree))) {
        return 0;
    }
    PyFrameObject *f = take_spare(ts, co, func->func_globals);
    if (f == NULL && (f = new_frame(ts, co, func->func_globals)) == NULL) {
        return -1;
    }
    PyObject **locals = f->f_localsplus;
    for (size_t i = 0; i < nargs; i++) {
        locals[i] = Py_NewRef(argv[i]);
    }
    for (Py_ssize_t i = 0; i < nfree; i++) {
        locals[co->co_nlocals + i] = Py_NewRef(PyTuple_GET_ITEM(func->func_closure, i));
    }
    *frame = f;
    return 1;
}

/* 3.10's PyIter_Send: generators and coroutines through _PyGen_Send (which
 * 3.9 has raise StopIteration with the value they return), other iterators
 * through tp_iternext (None sent) or their send method. */
li_send_result
li_iter_send(PyObject *iter, PyObject *arg, PyObject **result)
{
    if (PyGen_CheckExact(iter) || PyCoro_CheckExact(iter)) {
        *result = _PyGen_Send((PyGenObject *)iter, arg);
    }
    else if (arg == Py_None && PyIter_Check(iter)) {
        *result = Py_TYPE(iter)->tp_iternext(iter);
    }
    else {
        _Py_IDENTIFIER(send);
        *result = _PyObject_CallMethodIdOneArg(iter, &PyId_send, arg);
    }
    if (*result != NULL) {
        return LI_SEND_NEXT;
    }
    if (_PyGen_FetchStopIterationValue(result) == 0) {
        return LI_SEND_RETURN;
    }
    return LI_SEND_ERROR;
}
