/* The C tool of the py_start_return_c scenario: PY_START and PY_RETURN
 * counted by C callbacks (lowimpact.h's tool side). */
#include "lowimpact.h"

static long counts[2];

static int
count(void *slot, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    (void)args;
    (void)nargs;
    (*(long *)slot)++;
    return LOWIMPACT_CONTINUE;
}

static PyObject *
start(PyObject *module, PyObject *arg)
{
    (void)module;
    int tool = (int)PyLong_AsLong(arg);
    if (tool == -1 && PyErr_Occurred()) {
        return NULL;
    }
    counts[0] = counts[1] = 0;
    if (LowImpact_UseToolId(tool, "bench-c-calls") < 0 ||
        LowImpact_RegisterCallback(tool, PY_MONITORING_EVENT_PY_START, count, &counts[0]) < 0 ||
        LowImpact_RegisterCallback(tool, PY_MONITORING_EVENT_PY_RETURN, count, &counts[1]) < 0 ||
        LowImpact_SetEvents(tool, (1u << PY_MONITORING_EVENT_PY_START) |
                                  (1u << PY_MONITORING_EVENT_PY_RETURN)) < 0)
    {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
stop(PyObject *module, PyObject *arg)
{
    (void)module;
    int tool = (int)PyLong_AsLong(arg);
    if (tool == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (LowImpact_SetEvents(tool, 0) < 0 ||
        LowImpact_RegisterCallback(tool, PY_MONITORING_EVENT_PY_START, NULL, NULL) < 0 ||
        LowImpact_RegisterCallback(tool, PY_MONITORING_EVENT_PY_RETURN, NULL, NULL) < 0 ||
        LowImpact_FreeToolId(tool) < 0)
    {
        return NULL;
    }
    return Py_BuildValue("(ll)", counts[0], counts[1]);
}

static PyMethodDef methods[] = {
    {"start", start, METH_O, NULL},
    {"stop", stop, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ctool", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_ctool(void)
{
    if (LowImpact_IMPORT < 0) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
