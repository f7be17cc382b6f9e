/* PY_START on 3.10 (b310.h).
 *
 * 3.11+ deliver PY_START at RESUME, on the `def` line: a callback that
 * reads its frame (a debugger's "call" stop, pdb's `--Call--`) finds it
 * there.  3.10 has no instruction on that line; its probe is the body's
 * first.  So while PY_START callbacks run the frame stands where 3.10's
 * own 'call' trace event shows it: before its first instruction (f_lasti
 * -1), which 3.10 places on the `def` line (co_firstlineno).
 *
 * A callback that raises makes the exception leave the frame from there,
 * as natively from RESUME: the traceback entry the interpreter adds next
 * reads the frame's f_lasti, which stays negative, marked with the probe's
 * original unit u (li_set_start_mark()).  Any negative f_lasti is on
 * co_firstlineno for the line lookup, and the entry's tb_lasti, -2 - 2u,
 * is what caught.c's getter shows as the PY_START offset (a generator's is
 * after GEN_START on 3.10).
 * No instruction of the frame runs after it, and the frame object shows
 * f_lasti -1 for every negative value.
 *
 * Code whose only event with a probe is PY_START has no shadow: the frame
 * evaluation function delivers it before the frame runs its original
 * (li_start_before()), the same way, and an exception a callback raises is
 * thrown into the frame, which raises it from there.
 */

#include "b310.h"

int
li_fire_start(PyThreadState *ts, li_site *s, uint8_t tools, PyObject **args)
{
    PyFrameObject *f = ts->frame;
    int lasti = li_lasti(f), line = f->f_lineno;
    li_set_lasti(f, -1);
    li_show_start_line(f);
    int result = li_call_tools(ts, LI_PY_START, tools, s->shadow->cs, s->orig, args, 2);
    if (result < 0) {
        /* (It raises from the def line: its traceback entry takes the
           line the frame shows.) */
        li_set_start_mark(f, s->orig);
    }
    else {
        li_set_lasti(f, lasti);
        f->f_lineno = line;
    }
    return result;
}

int
li_start_before(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, li_code_state *cs,
                int unit, uint8_t tools)
{
    PyObject *offset = PyLong_FromLong(2L * unit);
    int result = -1;
    if (offset != NULL) {
        PyObject *args[3] = {NULL, (PyObject *)code, offset};
        /* From the frame, at its depth against the recursion limit, as the
           probe runs them once the frame has entered. */
        PyFrameObject *current = ts->frame;
        ts->frame = f;
        ts->recursion_depth++;
        result = li_call_tools(ts, LI_PY_START, tools, cs, unit, args, 2);
        ts->recursion_depth--;
        ts->frame = current;
        Py_DECREF(offset);
    }
    if (result < 0) {
        li_set_start_mark(f, unit);
    }
    return result;
}
