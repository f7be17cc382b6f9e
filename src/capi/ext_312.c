/* Extension side on 3.12: the interpreter's sys.monitoring has the tools,
 * their event sets and callbacks, but no C API.  Its state is read from the
 * interpreter (internal headers) the way 3.13's own C API reads it. */

#define Py_BUILD_CORE_MODULE 1
#include <Python.h>
#include "internal/pycore_interp.h"

#include "capi.h"

/* Tools 6 and 7 are sys.setprofile and sys.settrace, whose callbacks expect
 * frames of code objects: events of code-like objects do not go to them. */
#define USER_TOOLS ((uint8_t)0x3F)

static PyObject *disable;     /* sys.monitoring.DISABLE */

static uint8_t
global_tools_for(PyInterpreterState *interp, int event)
{
    if (event == PY_MONITORING_EVENT_C_RETURN || event == PY_MONITORING_EVENT_C_RAISE) {
        /* 3.13.0 leaves these states inactive (its table stops at RERAISE),
           a bug: here they follow CALL, as the interpreter's own do. */
        event = PY_MONITORING_EVENT_CALL;
    }
    return event >= 0 && event < _PY_MONITORING_UNGROUPED_EVENTS
           ? interp->monitors.tools[event] & USER_TOOLS : 0;
}

static int
enter_scope(PyMonitoringState *state_array, uint64_t *version, const uint8_t *event_types,
            Py_ssize_t length)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    if (*version == interp->monitoring_version) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < length; i++) {
        state_array[i].active = global_tools_for(interp, event_types[i]);
    }
    *version = interp->monitoring_version;
    return 0;
}

static int
exit_scope(void)
{
    return 0;
}

static int
remove_callback(int tool, int event)
{
    PyObject *monitoring = PySys_GetObject("monitoring");   /* borrowed */
    PyObject *result = monitoring == NULL ? NULL
        : PyObject_CallMethod(monitoring, "register_callback", "(iIO)", tool,
                              (unsigned int)1 << event, Py_None);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

static int
deliver(int event, uint8_t *active, PyObject **args, size_t nargs)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    PyThreadState *tstate = PyThreadState_Get();
    for (int tool = PY_MONITORING_TOOL_IDS - 1; tool >= 0; tool--) {
        if (!(*active & USER_TOOLS & (1 << tool))) {
            continue;
        }
        PyObject *callback = interp->monitoring_callables[tool][event];
        if (callback == NULL) {
            continue;
        }
        Py_INCREF(callback);
        /* As natively: no events from the code the callback runs. */
        PyThreadState_EnterTracing(tstate);
        PyObject *res = PyObject_Vectorcall(callback, args + 1,
                                            nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        PyThreadState_LeaveTracing(tstate);
        Py_DECREF(callback);
        if (res == NULL) {
            return -1;
        }
        bool is_disable = res == disable;
        Py_DECREF(res);
        if (!is_disable) {
            continue;
        }
        if (!PY_MONITORING_IS_INSTRUMENTED_EVENT(event)) {
            PyErr_Format(PyExc_ValueError, "Cannot disable %s events. Callback removed.",
                         li_event_name(event));
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            if (remove_callback(tool, event) < 0) {
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
                return -1;
            }
            PyErr_Restore(type, value, tb);
            return -1;
        }
        *active &= (uint8_t)~(1 << tool);
    }
    return 0;
}

static int
fire(PyMonitoringState *state, int event, PyObject *codelike, int32_t offset, int lineno,
     PyObject *arg1, PyObject *arg2)
{
    return li_capi_fire(deliver, state, event, codelike, offset, lineno, arg1, arg2);
}

int
li_ext_init(LowImpact_CAPI *api, PyTypeObject *ccallback_type)
{
    (void)ccallback_type;    /* the interpreter calls it through vectorcall */
    PyObject *monitoring = PySys_GetObject("monitoring");   /* borrowed */
    disable = monitoring != NULL ? PyObject_GetAttrString(monitoring, "DISABLE") : NULL;
    if (disable == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ImportError, "sys.monitoring is missing");
        }
        return -1;
    }
    api->enter_scope = enter_scope;
    api->exit_scope = exit_scope;
    api->fire = fire;
    return 0;
}
