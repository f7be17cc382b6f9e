/* The exception events of frames reached while running (running.c).
 *
 * A reached frame runs code without exception probes (its original, or an
 * older shadow), so its exception events come from its trace events, with
 * 3.10's interpreter:
 *
 *   - PyTrace_EXCEPTION is called at the error label, where 3.12 reports
 *     RAISE: for an exception raised in the frame or coming out of a callee,
 *     not for one raised again (RERAISE, a bare `raise`, END_ASYNC_FOR go
 *     to the unwinding straight away), nor for the StopIteration that ends
 *     a for loop over an iterator that raises it (3.12 reports it as RAISE,
 *     and the loop goes on past it);
 *   - an instruction that raises again is seen at its opcode event, before
 *     it runs: RERAISE;
 *   - the next instruction event of the frame after either is in a handler
 *     that unwinding landed in: EXCEPTION_HANDLED;
 *   - its return event, without a value, is its exit by exception:
 *     PY_UNWIND.
 */

#include "b310.h"

int
li_reached_deliver(PyThreadState *ts, int event, PyCodeObject *original, int unit,
                   PyObject *value)
{
    uint8_t tools = li_reg.global_tools[event];
    if (tools == 0 || value == NULL) {
        return 0;
    }
    PyObject *offset = PyLong_FromLong(2L * unit);
    if (offset == NULL) {
        return -1;
    }
    PyObject *args[4] = {NULL, (PyObject *)original, offset, value};
    Py_INCREF(value);
    /* Trace functions run with the thread tracing, which callbacks must not
       see (fire() delivers nothing then). */
    ts->tracing--;
    int err = li_call_tools(ts, event, tools, li_code_state_get(original), unit, args, 3);
    ts->tracing++;
    Py_DECREF(value);
    Py_DECREF(offset);
    return err;
}

int
li_reached_cleanups(PyThreadState *ts, PyCodeObject *original, int unit, int passed,
                    PyObject *value)
{
    int err = 0;
    for (int k = 0; k < passed && err == 0; k++) {
        err = li_reached_deliver(ts, LI_EXCEPTION_HANDLED, original, unit, value);
        if (err == 0) {
            err = li_reached_deliver(ts, LI_RERAISE, original, unit, value);
        }
    }
    return err;
}

int
li_reached_handled(PyThreadState *ts, PyFrameObject *f, PyCodeObject *original, int unit,
                   int raised, int passed)
{
    PyTryBlock *b;
    PyObject **slots = li_exc_handler_slots(f, &b);
    if (slots == NULL) {
        return 0;
    }
    /* 3.10 shows the exception handled from the handler's first
       instruction on, 3.12 from the instruction after EXCEPTION_HANDLED:
       callbacks see the one handled before (borrowed meanwhile, as
       exc.c's handler probes do). */
    _PyErr_StackItem *info = ts->exc_info;
    PyObject *shown[3] = {info->exc_type, info->exc_value, info->exc_traceback};
    info->exc_type = slots[2];
    info->exc_value = slots[1];
    info->exc_traceback = slots[0];
    /* ... and the frame where it raised (b_handler), not on the line the
       trace event gave it. */
    int lasti = li_lasti(f), line = f->f_lineno;
    int raised_at = li_raised_unit(f, b, slots[3]);
    if (raised_at >= 0 && 2 * raised_at < PyBytes_GET_SIZE(f->f_code->co_code)) {
        li_set_lasti(f, raised_at);
        li_show_lasti_line(f);
    }
    PyObject *value = Py_NewRef(slots[4]);
    int err = li_reached_cleanups(ts, original, raised, passed, value);
    if (err == 0) {
        err = li_reached_deliver(ts, LI_EXCEPTION_HANDLED, original, unit, value);
    }
    li_set_lasti(f, lasti);
    f->f_lineno = line;
    info->exc_type = shown[0];
    info->exc_value = shown[1];
    info->exc_traceback = shown[2];
    Py_DECREF(value);
    return err;
}

PyObject *
li_reached_reraises(PyThreadState *ts, PyFrameObject *f, int opcode, int oparg)
{
    if (opcode == RAISE_VARARGS && oparg == 0) {
        /* With nothing handled it raises RuntimeError, from the error
           label. */
        _PyErr_StackItem *info = _PyErr_GetTopmostException(ts);
        return info->exc_type != NULL && info->exc_type != Py_None ? info->exc_value : NULL;
    }
    if ((opcode != RERAISE && opcode != END_ASYNC_FOR) || li_stack_depth(f) < 3) {
        return NULL;
    }
    /* The exception it raises is on top of the stack: type, value. */
    PyObject *type = f->f_valuestack[li_stack_depth(f) - 1];
    PyObject *value = f->f_valuestack[li_stack_depth(f) - 2];
    if (!PyExceptionClass_Check(type) || !PyExceptionInstance_Check(value)) {
        return NULL;
    }
    if (opcode == END_ASYNC_FOR && PyErr_GivenExceptionMatches(type, PyExc_StopAsyncIteration)) {
        return NULL;    /* the end of the loop */
    }
    return value;
}
