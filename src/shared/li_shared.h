/* Helpers shared by lowimpact's extension modules (the engine, _capi and the
 * tools' C cores). */
#ifndef LI_SHARED_H
#define LI_SHARED_H

#include <Python.h>
#include <stdbool.h>

#include "li_backport.h"
#include "lowimpact.h"

/* The StopIteration CPython reports for a value, made as raising it would
 * make it (None gives no arguments, a tuple's items are the arguments, a
 * StopIteration is itself), without touching the value: raising would set
 * an exception value's __context__ to the exception being handled. */
static inline PyObject *
li_stop_iteration(PyObject *value)
{
    if (value == Py_None) {
        return PyObject_CallNoArgs(PyExc_StopIteration);
    }
    if (PyTuple_Check(value)) {
        return PyObject_Call(PyExc_StopIteration, value, NULL);
    }
    if (PyObject_TypeCheck(value, (PyTypeObject *)PyExc_StopIteration)) {
        return Py_NewRef(value);
    }
    return PyObject_CallOneArg(PyExc_StopIteration, value);
}

/* The name of event `event` (an id), as in sys.monitoring.events. */
static inline const char *
li_event_name(int event)
{
    static const char *const names[] = {
        "PY_START", "PY_RESUME", "PY_RETURN", "PY_YIELD", "CALL", "LINE", "INSTRUCTION",
        "JUMP", "BRANCH", "STOP_ITERATION", "RAISE", "EXCEPTION_HANDLED", "PY_UNWIND",
        "PY_THROW", "RERAISE", "C_RETURN", "C_RAISE",
    };
    return event >= 0 && event < (int)(sizeof(names) / sizeof(names[0])) ? names[event] : "?";
}

/* A callback written in C (lowimpact.h's tool side): a callable object that
 * calls `func` through vectorcall; lowimpact's engine calls `func` itself. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    LowImpact_Callback func;
    void *data;
    int event;
} li_ccallback;

/* ---- the extension side of the C API ---- */

/* Calls the callbacks of the tools in *active for `event` with the vectorcall
 * arguments args[1..nargs] (args[0] is scratch), clearing the bit of a tool
 * whose callback returned DISABLE for a local event.  0 or -1. */
typedef int (*li_deliver_fn)(int event, uint8_t *active, PyObject **args, size_t nargs);

static inline bool
li_is_exception_event(int event)
{
    return event == PY_MONITORING_EVENT_RAISE || event == PY_MONITORING_EVENT_EXCEPTION_HANDLED ||
           event == PY_MONITORING_EVENT_PY_UNWIND || event == PY_MONITORING_EVENT_PY_THROW ||
           event == PY_MONITORING_EVENT_RERAISE || event == PY_MONITORING_EVENT_C_RAISE;
}

/* One event fired through the C API, with CPython 3.13's semantics: the
 * callbacks get (codelike, offset or line number, extra...); exception
 * events the exception set now, which is set again afterwards. */
static inline int
li_capi_fire(li_deliver_fn deliver, PyMonitoringState *state, int event, PyObject *codelike,
             int32_t offset, int lineno, PyObject *arg1, PyObject *arg2)
{
    if (event < 0 || event > PY_MONITORING_EVENT_C_RAISE) {
        PyErr_Format(PyExc_ValueError, "invalid event id %d", event);
        return -1;
    }
    if (offset < 0) {
        PyErr_SetString(PyExc_ValueError, "offset must be non-negative");
        return -1;
    }
    PyObject *type = NULL, *exc = NULL, *tb = NULL, *made = NULL;
    if (li_is_exception_event(event)) {
        PyErr_Fetch(&type, &exc, &tb);
        if (type == NULL) {
            PyErr_Format(PyExc_ValueError, "Firing event %d with no exception set", event);
            return -1;
        }
        PyErr_NormalizeException(&type, &exc, &tb);
        if (tb != NULL) {
            PyException_SetTraceback(exc, tb);
        }
        arg1 = exc;
    }
    else if (event == PY_MONITORING_EVENT_STOP_ITERATION) {
        arg1 = made = li_stop_iteration(arg1);
        if (made == NULL) {
            return -1;
        }
    }
    int err = -1;
    PyObject *where = PyLong_FromLong(event == PY_MONITORING_EVENT_LINE ? lineno : offset);
    if (where != NULL) {
        PyObject *args[5] = {NULL, codelike, where, arg1, arg2};
        size_t nargs = arg1 == NULL ? 2 : arg2 == NULL ? 3 : 4;
        err = deliver(event, &state->active, args, nargs);
        Py_DECREF(where);
    }
    Py_XDECREF(made);
    if (err < 0) {
        /* The new error replaces the exception the event was about. */
        Py_XDECREF(type);
        Py_XDECREF(exc);
        Py_XDECREF(tb);
        return -1;
    }
    if (type != NULL) {
        PyErr_Restore(type, exc, tb);
    }
    return 0;
}

/* The exception being raised, taken off the thread as one object: normalized,
 * its traceback attached.  New reference, or NULL if none was set. */
static inline PyObject *
li_fetch_exception(void)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
}

/* Keeps the first of the exceptions raised by the steps of a tool's
 * teardown, each of which is tried whatever the others do: the one raised
 * now goes into *first if that is still NULL, and is dropped otherwise. */
static inline void
li_keep_first_error(PyObject **first)
{
    PyObject *value = li_fetch_exception();
    if (*first == NULL) {
        *first = value;
    }
    else {
        Py_XDECREF(value);
    }
}

/* Raises the exception li_keep_first_error() kept (consuming it): -1, or 0
 * when there is none. */
static inline int
li_raise_kept_error(PyObject *first)
{
    if (first == NULL) {
        return 0;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(first), first);
    Py_DECREF(first);
    return -1;
}

#endif /* LI_SHARED_H */
