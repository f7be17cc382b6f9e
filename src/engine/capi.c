/* The extension side of the C API (lowimpact.h) where the engine delivers
 * events: PyMonitoring_EnterScope and the Fire functions, with CPython
 * 3.13's semantics.  The module lowimpact._capi gets these functions from the
 * capsule lowimpact._engine._capi_backend.  Version independent. */

#include "li.h"

/* The tools that want `event` everywhere: the state the C API keeps. */
static uint8_t
global_tools_for(int event)
{
    if (event == LI_C_RETURN || event == LI_C_RAISE) {
        /* 3.13.0 leaves these states inactive (its table stops at RERAISE),
           a bug: here they follow CALL, as the interpreter's own do. */
        event = LI_CALL;
    }
    return event >= 0 && event < LI_UNGROUPED_EVENT_COUNT ? li_reg.global_tools[event] : 0;
}

static int
enter_scope(PyMonitoringState *state_array, uint64_t *version, const uint8_t *event_types,
            Py_ssize_t length)
{
    if (*version == li_reg.version) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < length; i++) {
        state_array[i].active = global_tools_for(event_types[i]);
    }
    *version = li_reg.version;
    return 0;
}

static int
exit_scope(void)
{
    return 0;
}

static int
deliver(int event, uint8_t *active, PyObject **args, size_t nargs)
{
    return li_call_tools_of_state(PyThreadState_Get(), event, active, args, nargs);
}

static int
fire(PyMonitoringState *state, int event, PyObject *codelike, int32_t offset, int lineno,
     PyObject *arg1, PyObject *arg2)
{
    return li_capi_fire(deliver, state, event, codelike, offset, lineno, arg1, arg2);
}

/* What lowimpact._capi takes from the engine. */
static LowImpact_CAPI backend = {
    .version = LOWIMPACT_CAPI_VERSION,
    .enter_scope = enter_scope,
    .exit_scope = exit_scope,
    .fire = fire,
};

int
li_capi_init(PyObject *module)
{
    PyObject *capsule = PyCapsule_New(&backend, "lowimpact._engine._capi_backend", NULL);
    if (capsule == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "_capi_backend", capsule) < 0) {
        Py_DECREF(capsule);
        return -1;
    }
    return 0;
}
