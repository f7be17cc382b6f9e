/* Event sources a deterministic profiler could use, with nothing done per
 * event, so that callgrind measures what the source itself costs
 * (bench/callgrind_sources.py):
 *
 *   frame_hook()   a PEP 523 frame-evaluation function that only calls the
 *                  default one (3.11+): what the interpreter loses by not
 *                  inlining Python-to-Python calls while one is set;
 *   events(mask, disable_python_calls=False)
 *                  C callbacks (lowimpact.h) that return at once, for the
 *                  events in `mask`, under tool id 2; with
 *                  disable_python_calls, CALL returns DISABLE where the
 *                  callee is a Python function (not exact: such a site
 *                  calling a built-in later is not seen);
 *   setprofile()   a C profile function (PyEval_SetProfile) that returns
 *                  at once. */
#include "lowimpact.h"

#if PY_VERSION_HEX >= 0x030B0000
static PyObject *
passthrough_eval(PyThreadState *tstate, struct _PyInterpreterFrame *frame, int throwflag)
{
    return _PyEval_EvalFrameDefault(tstate, frame, throwflag);
}
#endif

static PyObject *
frame_hook(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
#if PY_VERSION_HEX >= 0x030B0000
    _PyInterpreterState_SetEvalFrameFunc(PyInterpreterState_Get(), passthrough_eval);
    Py_RETURN_NONE;
#else
    PyErr_SetString(PyExc_NotImplementedError, "3.11 or newer");
    return NULL;
#endif
}

static int
nothing(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)data;
    (void)event;
    (void)args;
    (void)nargs;
    return LOWIMPACT_CONTINUE;
}

static int
disable_python_calls(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)data;
    (void)event;
    return nargs >= 3 && PyFunction_Check(args[2]) ? LOWIMPACT_DISABLE : LOWIMPACT_CONTINUE;
}

static PyObject *
events(PyObject *module, PyObject *args)
{
    (void)module;
    unsigned long mask;
    int disable = 0;
    if (!PyArg_ParseTuple(args, "k|p", &mask, &disable)) {
        return NULL;
    }
    if (LowImpact_UseToolId(2, "bench-event-floor") < 0) {
        return NULL;
    }
    for (int event = 0; event < 32; event++) {
        LowImpact_Callback callback =
            disable && event == PY_MONITORING_EVENT_CALL ? disable_python_calls : nothing;
        if ((mask >> event) & 1 && LowImpact_RegisterCallback(2, event, callback, NULL) < 0) {
            return NULL;
        }
    }
    if (LowImpact_SetEvents(2, (uint32_t)mask) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
profile_nothing(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)frame;
    (void)what;
    (void)arg;
    return 0;
}

static PyObject *
setprofile(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    PyEval_SetProfile(profile_nothing, NULL);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"frame_hook", frame_hook, METH_NOARGS, NULL},
    {"events", events, METH_VARARGS, NULL},
    {"setprofile", setprofile, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "event_floor", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit_event_floor(void)
{
    return PyModule_Create(&module);
}
