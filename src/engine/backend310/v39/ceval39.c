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
    PyFrameObject *f = PyFrame_New(ts, co, func->func_globals, NULL);
    if (f == NULL) {
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
