/* The module lowimpact._capi: the table behind lowimpact.h, and the tool
 * side of the C API (callbacks written in C). */

#include <stdarg.h>
#include <stddef.h>

#include "capi.h"

/* ---- C callbacks ---------------------------------------------------------- */

/* A callable that sys.monitoring (or lowimpact's engine) calls like a Python
 * callback, through vectorcall: it calls a C function, with no Python frame
 * in between. */
typedef li_ccallback ccallback_object;

static PyObject *monitoring;    /* lowimpact.monitoring, imported at first use */
static PyObject *disable;       /* its DISABLE */

static int
load_monitoring(void)
{
    if (monitoring != NULL) {
        return 0;
    }
    PyObject *module = PyImport_ImportModule("lowimpact.monitoring");
    if (module == NULL) {
        return -1;
    }
    disable = PyObject_GetAttrString(module, "DISABLE");
    if (disable == NULL) {
        Py_DECREF(module);
        return -1;
    }
    monitoring = module;
    return 0;
}

static PyObject *
ccallback_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ccallback_object *cb = (ccallback_object *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "a C monitoring callback takes no keyword arguments");
        return NULL;
    }
    int result = cb->func(cb->data, cb->event, args, nargs);
    if (result < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError,
                            "a C monitoring callback failed without setting an exception");
        }
        return NULL;
    }
    return Py_NewRef(result == LOWIMPACT_DISABLE ? disable : Py_None);
}

static PyObject *
ccallback_repr(PyObject *self)
{
    ccallback_object *cb = (ccallback_object *)self;
    return PyUnicode_FromFormat("<C monitoring callback %p for event %d>", (void *)cb->func,
                                cb->event);
}

static PyTypeObject ccallback_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._capi.CCallback",
    .tp_basicsize = sizeof(ccallback_object),
    .tp_dealloc = (destructor)PyObject_Free,
    .tp_vectorcall_offset = offsetof(ccallback_object, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = ccallback_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A monitoring callback written in C (lowimpact.h).",
};

/* ---- the tool side -------------------------------------------------------- */

/* Calls lowimpact.monitoring.<name>(args...) and drops the result. */
static int
call_monitoring(const char *name, const char *format, ...)
{
    if (load_monitoring() < 0) {
        return -1;
    }
    PyObject *function = PyObject_GetAttrString(monitoring, name);
    if (function == NULL) {
        return -1;
    }
    va_list va;
    va_start(va, format);
    PyObject *args = Py_VaBuildValue(format, va);
    va_end(va);
    PyObject *result = args != NULL ? PyObject_CallObject(function, args) : NULL;
    Py_DECREF(function);
    Py_XDECREF(args);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static int
register_callback(int tool_id, int event, LowImpact_Callback func, void *data)
{
    if (event < 0 || event > PY_MONITORING_EVENT_C_RAISE) {
        PyErr_Format(PyExc_ValueError, "invalid event id %d", event);
        return -1;
    }
    if (load_monitoring() < 0) {
        return -1;
    }
    PyObject *callback = Py_None;
    if (func != NULL) {
        ccallback_object *cb = PyObject_New(ccallback_object, &ccallback_type);
        if (cb == NULL) {
            return -1;
        }
        cb->vectorcall = ccallback_vectorcall;
        cb->func = func;
        cb->data = data;
        cb->event = event;
        callback = (PyObject *)cb;
    }
    else {
        Py_INCREF(callback);
    }
    int err = call_monitoring("register_callback", "(iIO)", tool_id,
                              (unsigned int)1 << event, callback);
    Py_DECREF(callback);
    return err;
}

static int
use_tool_id(int tool_id, const char *name)
{
    return call_monitoring("use_tool_id", "(is)", tool_id, name);
}

static int
free_tool_id(int tool_id)
{
    return call_monitoring("free_tool_id", "(i)", tool_id);
}

static int
set_events(int tool_id, uint32_t event_set)
{
    return call_monitoring("set_events", "(iI)", tool_id, (unsigned int)event_set);
}

static int
set_local_events(int tool_id, PyObject *code, uint32_t event_set)
{
    return call_monitoring("set_local_events", "(iOI)", tool_id, code,
                           (unsigned int)event_set);
}

/* ---- the module ----------------------------------------------------------- */

static LowImpact_CAPI api = {
    .version = LOWIMPACT_CAPI_VERSION,
    .register_callback = register_callback,
    .use_tool_id = use_tool_id,
    .free_tool_id = free_tool_id,
    .set_events = set_events,
    .set_local_events = set_local_events,
};

static struct PyModuleDef capi_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lowimpact._capi",
    .m_doc = "The C API of lowimpact (lowimpact.h): its table is the capsule _API.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__capi(void)
{
    if (PyType_Ready(&ccallback_type) < 0 || li_ext_init(&api, &ccallback_type) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&capi_module);
    if (module == NULL) {
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(&api, "lowimpact._capi._API", NULL);
    if (capsule == NULL || PyModule_AddObject(module, "_API", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "CCallback", (PyObject *)&ccallback_type) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
