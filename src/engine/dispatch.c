/* Delivering one event to the tools that want it.  Version independent. */

#include "li.h"

void
li_c_callback_failed(void)
{
    if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_SystemError,
                        "a C monitoring callback failed without setting an exception");
    }
}

int
li_bad_disable(int tool, int event)
{
    PyErr_Format(PyExc_ValueError, "Cannot disable %s events. Callback removed.",
                 li_event_name(event));
    /* Leaving it registered would raise at every later event. */
    li_dispatch_changed();
    Py_CLEAR(li_reg.callbacks[tool][event]);
    return -1;
}

int
li_call_tools_of_state(PyThreadState *tstate, int event, uint8_t *active,
                       PyObject **args, size_t nargs)
{
    uint8_t tools = *active & (uint8_t)((1 << LI_TOOL_COUNT) - 1);
    while (tools) {
        int tool = li_highest_tool(tools);
        tools &= (uint8_t)~(1 << tool);
        int disabled = li_call_one(tstate, tool, event, args, nargs);
        if (disabled < 0) {
            return -1;
        }
        if (disabled) {
            *active &= (uint8_t)~(1 << tool);
        }
    }
    return 0;
}
