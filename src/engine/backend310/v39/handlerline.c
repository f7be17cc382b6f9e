/* The 'line' event 3.9 gives, or does not give, an exception handler
 * (v39/version.h, li_hold_handler_line()).
 *
 * As 3.9's loop jumps to a handler it makes the next instruction report a
 * line, whatever line it is on, unless the raising instruction began its
 * line's window (or the window was the code's first).  Without that, the
 * handler reports a line only where the line table starts one, or when it
 * lies before the raise.  A bare `raise` that begins its line natively
 * stands after the line's probes in a shadow, so the loop would report a
 * line at every handler it reaches.  Where 3.9 reports none, the trace
 * function's line events are held for that one instruction: the frame's
 * f_trace_lines is cleared, and the handler's caught marker, its first
 * instruction, sets it again and puts back the f_lineno the held event
 * overwrote.  What is held is kept per thread (another thread may run
 * between the raise and the handler), in the thread state's dict.
 */

#include "b310.h"

/* The thread's held frame: (frame, f_lineno) in the thread state's dict
 * under this key, while one is held. */
static PyObject *
held_key(void)
{
    static PyObject *key;
    if (key == NULL) {
        key = PyUnicode_InternFromString("lowimpact.engine.held_handler_line");
    }
    return key;
}

/* The handler an exception raised now reaches in `f`: the innermost block
 * that sets one up (3.9 keeps no loop blocks), as a byte offset; -1: none,
 * the exception leaves the frame. */
static int
handler_of(PyFrameObject *f)
{
    for (int i = f->f_iblock - 1; i >= 0; i--) {
        if (f->f_blockstack[i].b_type == SETUP_FINALLY) {
            return f->f_blockstack[i].b_handler;
        }
    }
    return -1;
}

void
li_hold_handler_line(PyFrameObject *f, li_shadow *map, int raise_orig)
{
    PyThreadState *ts = PyThreadState_Get();
    if (ts->c_tracefunc == NULL || f->f_trace == NULL || !f->f_trace_lines ||
        map->original == NULL) {
        return;
    }
    int handler = handler_of(f);
    if (handler < 0 || handler / 2 >= map->n_units) {
        return;
    }
    int handler_orig = map->orig_op[handler / 2];
    PyAddrPair bounds;
    _PyCode_CheckLineNumber(map->original, 2 * handler_orig, &bounds);
    if (bounds.ap_lower == 2 * handler_orig || handler_orig < raise_orig) {
        return;     /* 3.9 reports the handler's line too */
    }
    PyObject *dict = PyThreadState_GetDict();
    PyObject *key = held_key();
    PyObject *held = dict != NULL && key != NULL
                     ? Py_BuildValue("(ni)", (Py_ssize_t)f, f->f_lineno) : NULL;
    if (held == NULL || PyDict_SetItem(dict, key, held) < 0) {
        /* Not held: the trace function gets the extra line event. */
        Py_XDECREF(held);
        PyErr_Clear();
        return;
    }
    Py_DECREF(held);
    f->f_trace_lines = 0;
}

/* (Called where `f` has f_trace_lines off, by the caught marker.) */
void
li_release_handler_line(PyFrameObject *f)
{
    if (f->f_trace == NULL) {
        return;
    }
    PyObject *dict = PyThreadState_GetDict();
    PyObject *key = held_key();
    PyObject *held = dict != NULL && key != NULL ? PyDict_GetItemWithError(dict, key) : NULL;
    if (held == NULL) {
        PyErr_Clear();
        return;
    }
    Py_ssize_t frame;
    int lineno;
    if (!PyArg_ParseTuple(held, "ni", &frame, &lineno)) {
        PyErr_Clear();
        return;
    }
    if (frame == (Py_ssize_t)f) {
        f->f_trace_lines = 1;
        f->f_lineno = lineno;
        if (PyDict_DelItem(dict, key) < 0) {
            PyErr_Clear();
        }
    }
}
