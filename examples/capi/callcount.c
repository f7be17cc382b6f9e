/* Tool side of lowimpact.h: a call counter written in C.
 *
 *   callcount.start() takes the profiler tool id and counts every function
 *   start (PY_START) in a dict from code object to count, with no Python
 *   code run per event; callcount.stop() stops and returns the dict.
 *   callcount.start(once=True) counts each function once and then returns
 *   DISABLE for it, which removes the event at that location: the counter
 *   then costs nothing where it has already been.
 */
#include "lowimpact.h"

#define TOOL 2   /* sys.monitoring.PROFILER_ID */

static PyObject *counts;   /* dict: code -> int, while counting */

static int
on_start(void *once, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    if (nargs < 1) {
        return LOWIMPACT_CONTINUE;
    }
    PyObject *code = args[0];
    PyObject *old = PyDict_GetItemWithError(counts, code);   /* borrowed */
    if (old == NULL && PyErr_Occurred()) {
        return -1;
    }
    PyObject *new = PyLong_FromLong(old == NULL ? 1 : PyLong_AsLong(old) + 1);
    if (new == NULL || PyDict_SetItem(counts, code, new) < 0) {
        Py_XDECREF(new);
        return -1;
    }
    Py_DECREF(new);
    return *(int *)once ? LOWIMPACT_DISABLE : LOWIMPACT_CONTINUE;
}

static int once_flag;

static PyObject *
start(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    static char *keywords[] = {"once", NULL};
    int once = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p", keywords, &once)) {
        return NULL;
    }
    if (counts != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "already counting");
        return NULL;
    }
    counts = PyDict_New();
    if (counts == NULL) {
        return NULL;
    }
    once_flag = once;
    if (LowImpact_UseToolId(TOOL, "callcount") < 0) {
        Py_CLEAR(counts);
        return NULL;
    }
    if (LowImpact_RegisterCallback(TOOL, PY_MONITORING_EVENT_PY_START, on_start,
                                   &once_flag) < 0 ||
        LowImpact_SetEvents(TOOL, 1u << PY_MONITORING_EVENT_PY_START) < 0)
    {
        LowImpact_FreeToolId(TOOL);
        Py_CLEAR(counts);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
stop(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    if (counts == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "not counting");
        return NULL;
    }
    if (LowImpact_SetEvents(TOOL, 0) < 0 ||
        LowImpact_RegisterCallback(TOOL, PY_MONITORING_EVENT_PY_START, NULL, NULL) < 0 ||
        LowImpact_FreeToolId(TOOL) < 0)
    {
        return NULL;
    }
    PyObject *result = counts;
    counts = NULL;
    return result;
}

static PyMethodDef methods[] = {
    {"start", (PyCFunction)(void (*)(void))start, METH_VARARGS | METH_KEYWORDS,
     "start(once=False): count function starts."},
    {"stop", stop, METH_NOARGS, "stop() -> {code: count}"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "callcount", "Counts function starts, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_callcount(void)
{
    if (LowImpact_IMPORT < 0) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
