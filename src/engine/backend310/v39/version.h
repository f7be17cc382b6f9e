/* The 3.9 side of the block-stack back end's version interface (see
 * v310/version.h for what each name means).  3.9 counts jumps, f_lasti and
 * block handlers in bytes, where the back end counts code units; has no
 * generator prologue (a generator refuses a first value in C); keeps one
 * use_tracing per thread and a per-interpreter count of trace functions
 * that its evaluation loop tests; and a frame that is not executing keeps
 * a pointer to its stack's top, not a depth. */
#ifndef LI_VERSION_H
#define LI_VERSION_H

#include <Python.h>
#include "frameobject.h"
#include "opcode.h"

/* ---- bytecode ---- */

static inline unsigned int
li_jump_arg(int units)
{
    return 2 * (unsigned int)units;
}

static inline int
li_jump_units(unsigned int arg)
{
    return (int)(arg / 2);
}

static inline bool
li_is_gen_start(int opcode)
{
    (void)opcode;
    return false;
}

static inline bool
li_reraise_restores_lasti(int oparg)
{
    (void)oparg;
    return false;
}

/* 3.9's RERAISE has no argument: the name cleanup of `except E as name:`
 * and a finally body that does the same are told apart by what comes
 * before their SETUP_FINALLY (jump.c). */
static inline bool
li_reraise_may_end_name_cleanup(int oparg)
{
    (void)oparg;
    return true;
}

/* ---- line tables (v39/lnotab.c) ---- */

void li_unit_lines(PyCodeObject *code, int *lines, int n_units);
void li_unit_line_starts(PyCodeObject *code, int *starts, int n_units);
PyObject *li_encode_lines(const int *lines, int n_units, int firstlineno);

/* 3.9's compiler gives the code it adds after a statement's body (a try's
 * or a with's POP_BLOCK, a with's exit, a loop's exit, what deletes the
 * name of `except E as name`) the line of the last statement it compiled,
 * which need not have run: `try: if c: x = 1` reaches x = 1's POP_BLOCK
 * when c is false.  3.9 itself reports a line only where its table starts
 * one or after a backward jump (maybe_call_line_trace), so a jump starts a
 * line there only, a handler everywhere (shadow.c, by
 * li_line_event_where_jumps_land() below); and 3.12 reports none of these
 * lines (its code there has no line, or the with's), so some of that code
 * starts none: a with's exit, the name's cleanup (a finally body that is
 * exactly `name = None; del name` looks the same and loses its line), and
 * what follows a finally body that a return, break or continue runs (3.9
 * gives it the statement's line again; 3.12 none), found from the blocks
 * (v39/lineless.c).  Where the table starts a line at the end of a body (a
 * POP_BLOCK, a POP_EXCEPT), the body's last statement is a pass, which
 * 3.12 reports, or dead code 3.9 gave its line to that code (as 3.9's own
 * line events, tests/conformance/fuzzprog.py's CompilerGaps).
 *
 * *lineless: PyMem array of `n` flags, true at the units of `code` (whose
 * units have `lines`) that start no line however they are reached.  0, or
 * -1 with an exception set. */
int li_lineless_units(PyCodeObject *code, const int *lines, int n, bool **lineless);

/* 3.9 makes one at the start of a line and after a backward jump only. */
static inline bool
li_line_event_where_jumps_land(void)
{
    return false;
}

/* 3.9's loop gives an exception handler a 'line' event, whatever line it
 * starts, when the instruction that raised did not begin its line's window
 * of the line table (its other rule: at a line start, or back from the
 * raise).  In a shadow, probes begin the line of a bare `raise`, where
 * natively the raise does: li_hold_handler_line(), called by the last probe
 * before such a raise, keeps the trace function from that event where 3.9
 * makes none, and li_release_handler_line(), at the handler's caught
 * marker, gives the frame its line tracing and f_lineno back
 * (v39/handlerline.c). */
static inline bool
li_raise_window_decides_handler_line(void)
{
    return true;
}

struct li_shadow;
void li_hold_handler_line(PyFrameObject *f, struct li_shadow *map, int raise_orig);
void li_release_handler_line(PyFrameObject *f);

/* ---- frames ---- */

/* f_lasti counts bytes: -1 before the first instruction, as on 3.10, and
 * the back end's -1 - u marks as -1 - 2u (odd, so never an instruction). */
static inline int
li_lasti(PyFrameObject *f)
{
    int lasti = f->f_lasti;
    return lasti >= 0 ? lasti / 2 : (lasti - 1) / 2;
}

static inline void
li_set_lasti(PyFrameObject *f, int unit)
{
    f->f_lasti = unit >= 0 ? 2 * unit : 2 * unit + 1;
}

static inline int
li_handler(const PyTryBlock *b)
{
    return b->b_handler >= 0 ? b->b_handler / 2 : b->b_handler;
}

static inline void
li_set_handler(PyTryBlock *b, int unit)
{
    b->b_handler = unit >= 0 ? 2 * unit : unit;
}

/* f_stacktop is NULL while the frame executes, but for the time of a line
 * trace event. */
static inline int
li_stack_depth(PyFrameObject *f)
{
    return f->f_stacktop != NULL ? (int)(f->f_stacktop - f->f_valuestack) : -1;
}

static inline void
li_set_stack_depth(PyFrameObject *f, int depth)
{
    f->f_stacktop = depth >= 0 ? f->f_valuestack + depth : NULL;
}

/* gen_send_ex's test: a frame that returned or raised has no stack top. */
static inline bool
li_frame_suspended(PyFrameObject *f)
{
    return !f->f_executing && f->f_stacktop != NULL && f->f_lasti >= 0;
}

/* 3.9 marks a frame suspended only after its 'return' trace event: in it,
 * a frame that yields is still executing, and is the one with a stack. */
static inline bool
li_frame_yielded(PyFrameObject *f)
{
    return f->f_stacktop != NULL;
}

/* 3.9 does not tell unwinding from executing. */
static inline bool
li_frame_executing(PyFrameObject *f)
{
    return f->f_executing;
}

static inline bool
li_frame_on_stack(PyFrameObject *f)
{
    return f->f_executing;
}

/* See v310/version.h.  3.9's traceback entry records f_lasti itself: the
 * same -2 - 2 * unit is stored there (even, unlike li_set_lasti()'s
 * negative values; li_lasti() still gives -1 - unit). */
static inline void
li_set_start_mark(PyFrameObject *f, int unit)
{
    f->f_lasti = -2 - 2 * unit;
}

static inline void
li_frame_reset(PyFrameObject *f)
{
    f->f_lasti = -1;
    f->f_stacktop = f->f_valuestack;
    f->f_iblock = 0;
    f->f_executing = 0;
}

/* PyFrame_GetLineNumber() gives the field itself in a frame with a trace
 * function (the line of its last line event), whatever its value. */
static inline void
li_show_lasti_line(PyFrameObject *f)
{
    f->f_lineno = PyCode_Addr2Line(f->f_code, f->f_lasti);
}

/* li_show_lasti_line() of a frame whose f_lasti is -1: PyCode_Addr2Line()
 * gives co_firstlineno before any instruction. */
static inline void
li_show_start_line(PyFrameObject *f)
{
    f->f_lineno = f->f_code->co_firstlineno;
}

/* ---- exceptions ---- */

/* Where (unit of f_code) the exception that handler block `b` (the
 * EXCEPT_HANDLER block a handler of `f` was entered with) was raised, its
 * traceback `tb` in flight; -1 if not known. */
static inline int
li_raised_unit(PyFrameObject *f, const PyTryBlock *b, PyObject *tb)
{
    /* The block records nothing; the traceback's newest entry is the
       frame's own unless the exception was raised again (RERAISE adds
       none). */
    (void)b;
    if (tb == NULL || !PyTraceBack_Check(tb) || ((PyTracebackObject *)tb)->tb_frame != f) {
        return -1;
    }
    return ((PyTracebackObject *)tb)->tb_lasti / 2;
}

/* ---- threads (v39/ceval39.c) ---- */

/* Also keeps the interpreter's count of threads with a trace function,
 * without which 3.9's evaluation loop calls none. */
void li_set_tracefunc(PyThreadState *ts, Py_tracefunc func);

/* ---- calls (v39/ceval39.c) ---- */

/* A new frame of Python function `callback` called with the `nargs`
 * arguments at `argv`, where the interpreter would take its general path:
 * 1 and *frame (a new reference, ready to evaluate), 0 where its own path is
 * as short, -1 with an exception set. */
int li_callback_frame(PyThreadState *ts, PyObject *callback, PyObject *const *argv, size_t nargs,
                      PyFrameObject **frame);
/* Lets go of `f`, a frame li_callback_frame() made, once evaluated: kept
 * for the next call of its code when nothing else holds it. */
void li_callback_frame_done(PyThreadState *ts, PyFrameObject *f);
/* Lets go of the frames kept (their callbacks may be gone). */
void li_callback_frames_forget(void);

/* ---- generators (v39/ceval39.c) ---- */

typedef enum {
    LI_SEND_RETURN = 0,
    LI_SEND_ERROR = -1,
    LI_SEND_NEXT = 1,
} li_send_result;

/* PyIter_Send of 3.10: `arg` sent into iterator `iter`, *result the value
 * it yielded (NEXT) or returned (RETURN), or NULL with an exception. */
li_send_result li_iter_send(PyObject *iter, PyObject *arg, PyObject **result);

#endif /* LI_VERSION_H */
