/* Delivering one event to the tools that want it.  Version independent. */

#include "li.h"

static inline int
highest_tool(uint8_t tools)
{
    int tool = 7;
    while (!(tools & (1 << tool))) {
        tool--;
    }
    return tool;
}

/* Calls tool `tool`'s callback for `event`, if it has one.  1 if it
 * returned DISABLE, 0 if anything else or none is registered, -1 on error. */
static int
call_one(PyThreadState *tstate, int tool, int event, PyObject **args, size_t nargs)
{
    /* Re-read for every tool: an earlier callback may have changed it. */
    PyObject *callback = li_reg.callbacks[tool][event];
    if (callback == NULL) {
        return 0;
    }
    /* The callback may unregister itself while it runs. */
    Py_INCREF(callback);
    /* No events reach code run by a callback, and sys.settrace and
       sys.setprofile functions stay quiet meanwhile, as natively. */
    li_enter_tracing(tstate);
    PyObject *res = PyObject_Vectorcall(callback, args + 1,
                                        nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    li_leave_tracing(tstate);
    Py_DECREF(callback);
    if (res == NULL) {
        return -1;
    }
    bool disable = (res == li_reg.disable);
    Py_DECREF(res);
    if (disable && !li_event_is_local(event)) {
        PyErr_Format(PyExc_ValueError, "Cannot disable %s events. Callback removed.",
                     li_event_name(event));
        /* Leaving it registered would raise at every later event. */
        Py_CLEAR(li_reg.callbacks[tool][event]);
        return -1;
    }
    return disable;
}

int
li_call_tools(PyThreadState *tstate, int event, uint8_t tools,
              li_code_state *cs, Py_ssize_t unit,
              PyObject **args, size_t nargs)
{
    while (tools) {
        int tool = highest_tool(tools);
        tools &= (uint8_t)~(1 << tool);
        int disabled = call_one(tstate, tool, event, args, nargs);
        if (disabled < 0) {
            return -1;
        }
        if (disabled && cs != NULL && li_code_state_disable(cs, event, unit, tool) < 0) {
            return -1;
        }
    }
    return 0;
}

int
li_call_tools_of_state(PyThreadState *tstate, int event, uint8_t *active,
                       PyObject **args, size_t nargs)
{
    uint8_t tools = *active & (uint8_t)((1 << LI_TOOL_COUNT) - 1);
    while (tools) {
        int tool = highest_tool(tools);
        tools &= (uint8_t)~(1 << tool);
        int disabled = call_one(tstate, tool, event, args, nargs);
        if (disabled < 0) {
            return -1;
        }
        if (disabled) {
            *active &= (uint8_t)~(1 << tool);
        }
    }
    return 0;
}
