/* 3.9's line tracing (linesite.h): ceval's maybe_call_line_trace() reports a
 * line at an instruction that starts one in co_lnotab (an address where a
 * pair with a nonzero line delta ends) and at any instruction a backward
 * jump lands on; after an exception is caught, ceval makes it report the
 * handler's first instruction too (it sets instr_prev to INT_MAX, unless
 * the raising instruction started its line: not followed here).  Not where
 * a forward jump enters a line past its start, which sys.monitoring
 * reports as LINE.  What ran is not known here, only where the frame is:
 * an instruction that a backward jump or a handler can reach counts (3.9's
 * compiler reaches no other instruction past a line's start both ways: its
 * loops jump back to a line's start or to FOR_ITER, whose line started
 * before). */
#include "linesite.h"

#include "opcode.h"

/* Whether `offset` (bytes) starts a line in `code`'s co_lnotab. */
static int
starts_line(PyCodeObject *code, long offset)
{
    if (offset == 0) {
        return 1;
    }
    const unsigned char *table = (const unsigned char *)PyBytes_AS_STRING(code->co_lnotab);
    Py_ssize_t size = PyBytes_GET_SIZE(code->co_lnotab);
    long address = 0;
    for (Py_ssize_t i = 0; i + 1 < size; i += 2) {
        address += table[i];
        if (address > offset) {
            break;
        }
        if (address == offset && table[i + 1] != 0) {
            return 1;
        }
    }
    return 0;
}

/* Whether a backward jump or an exception handler (a SETUP_* target)
 * leads to `offset` (bytes; 3.9's relative jumps all go forward). */
static int
jumped_or_handled(PyCodeObject *code, long offset)
{
    const unsigned char *raw = (const unsigned char *)PyBytes_AS_STRING(code->co_code);
    Py_ssize_t size = PyBytes_GET_SIZE(code->co_code);
    unsigned long extended = 0;
    for (Py_ssize_t i = 0; i + 1 < size; i += 2) {
        int op = raw[i];
        unsigned long arg = extended | raw[i + 1];
        extended = op == EXTENDED_ARG ? arg << 8 : 0;
        if (i > offset && (unsigned long)offset == arg &&
            (op == JUMP_ABSOLUTE || op == POP_JUMP_IF_FALSE || op == POP_JUMP_IF_TRUE ||
             op == JUMP_IF_FALSE_OR_POP || op == JUMP_IF_TRUE_OR_POP ||
             op == JUMP_IF_NOT_EXC_MATCH)) {
            return 1;
        }
        if ((unsigned long)offset == (unsigned long)i + 2 + arg &&
            (op == SETUP_FINALLY || op == SETUP_WITH || op == SETUP_ASYNC_WITH)) {
            return 1;
        }
    }
    return 0;
}

int
cover_traced_line(PyObject *code)
{
    PyFrameObject *frame = PyEval_GetFrame();   /* borrowed */
    if (frame == NULL) {
        return 1;   /* (not a frame's event: nothing to tell) */
    }
    /* The attributes, not the fields: the engine gives the original code
     * and the offset in it, where the frame may run a copy. */
    PyObject *running = PyObject_GetAttrString((PyObject *)frame, "f_code");   /* owned */
    if (running == NULL) {
        return -1;
    }
    Py_DECREF(running);   /* (the frame keeps it: only compared) */
    if (running != code) {
        return 1;
    }
    PyObject *lasti = PyObject_GetAttrString((PyObject *)frame, "f_lasti");   /* owned */
    if (lasti == NULL) {
        return -1;
    }
    long offset = PyLong_AsLong(lasti);
    Py_DECREF(lasti);
    if (offset == -1 && PyErr_Occurred()) {
        return -1;
    }
    PyCodeObject *co = (PyCodeObject *)code;
    if (offset < 0 || offset >= PyBytes_GET_SIZE(co->co_code)) {
        return 1;
    }
    /* An instruction's EXTENDED_ARG prefixes start it, in the line table
     * and for jumps. */
    const unsigned char *raw = (const unsigned char *)PyBytes_AS_STRING(co->co_code);
    while (offset >= 2 && raw[offset - 2] == EXTENDED_ARG) {
        offset -= 2;
    }
    return starts_line(co, offset) || jumped_or_handled(co, offset);
}
