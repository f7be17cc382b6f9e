/* The 3.10 side of the block-stack back end's version interface (the 3.9
 * side is v39/version.h, the same names): how frames, bytecode and line
 * tables are laid out.  Units are 16-bit code units throughout the back
 * end; 3.10 itself counts in them. */
#ifndef LI_VERSION_H
#define LI_VERSION_H

#include <Python.h>
#include "frameobject.h"
#include "opcode.h"

/* ---- bytecode ---- */

/* A jump's argument for a distance or target of `units` code units, and
 * back. */
static inline unsigned int
li_jump_arg(int units)
{
    return (unsigned int)units;
}

static inline int
li_jump_units(unsigned int arg)
{
    return (int)arg;
}

/* Whether `opcode` is the generator prologue (GEN_START, which pops the
 * value sent to start it), which frames run before their first event. */
static inline bool
li_is_gen_start(int opcode)
{
    return opcode == GEN_START;
}

/* RERAISE with oparg 1 puts f_lasti back where the exception was first
 * raised; a finally body's RERAISE 0 and 3.9's RERAISE leave it. */
static inline bool
li_reraise_restores_lasti(int oparg)
{
    return oparg != 0;
}

/* The name cleanup of `except E as name:` ends with RERAISE 1, a finally
 * body with RERAISE 0. */
static inline bool
li_reraise_may_end_name_cleanup(int oparg)
{
    return oparg == 1;
}

/* ---- line tables ---- */

/* The line of each of the `n_units` units of `code` (-1: none). */
void li_unit_lines(PyCodeObject *code, int *lines, int n_units);
/* The line that starts at each of the `n_units` units of `code` (-1: none
 * starts there), as frame.f_lineno's setter looks for them. */
void li_unit_line_starts(PyCodeObject *code, int *starts, int n_units);
/* The line table (the last argument of PyCode_NewWithPosOnlyArgs) of code
 * whose `n_units` units have `lines`.  A new bytes object, or NULL with an
 * exception. */
PyObject *li_encode_lines(const int *lines, int n_units, int firstlineno);

/* The units of `code` (whose units have `lines`) that start no line
 * however they are reached (*lineless: PyMem flags, or NULL for none).
 * 3.10's compiler gives each instruction the line of the source it comes
 * from (PEP 626): a line starts wherever it changes, as on 3.12, but for a
 * RERAISE that only jumps reach (the end of a finally body's exceptional
 * copy), where 3.12 keeps the jumps' line (v310/lineless.c).  0, or -1 with
 * an exception set. */
int li_lineless_units(PyCodeObject *code, const int *lines, int n, bool **lineless);

/* Whether the interpreter makes a line event wherever a jump lands on
 * another line than the one it left, not only at line starts. */
static inline bool
li_line_event_where_jumps_land(void)
{
    return true;
}

/* Whether where a raising instruction stands in its line decides if its
 * handler gets a line event (3.9); 3.10 gives every handler one. */
static inline bool
li_raise_window_decides_handler_line(void)
{
    return false;
}

struct li_shadow;

static inline void
li_hold_handler_line(PyFrameObject *f, struct li_shadow *map, int raise_orig)
{
    (void)f;
    (void)map;
    (void)raise_orig;
}

static inline void
li_release_handler_line(PyFrameObject *f)
{
    (void)f;
}

/* ---- frames ---- */

/* The unit of the last instruction started (-1: none yet; -1 - u encodes u
 * where the back end marks a frame as not started at unit u). */
static inline int
li_lasti(PyFrameObject *f)
{
    return f->f_lasti;
}

static inline void
li_set_lasti(PyFrameObject *f, int unit)
{
    f->f_lasti = unit;
}

/* A block's handler, in units (-1: none, an EXCEPT_HANDLER block). */
static inline int
li_handler(const PyTryBlock *b)
{
    return b->b_handler;
}

static inline void
li_set_handler(PyTryBlock *b, int unit)
{
    b->b_handler = unit;
}

/* How many values a frame that is not executing keeps on its stack, also
 * while a trace function runs (-1 while it executes). */
static inline int
li_stack_depth(PyFrameObject *f)
{
    return f->f_stackdepth;
}

static inline void
li_set_stack_depth(PyFrameObject *f, int depth)
{
    f->f_stackdepth = depth;
}

/* A generator's frame that yielded (rather than returned or raised). */
static inline bool
li_frame_suspended(PyFrameObject *f)
{
    return f->f_state == FRAME_SUSPENDED;
}

/* In the 'return' trace event of `f`: whether it yielded (rather than
 * returned or raised). */
static inline bool
li_frame_yielded(PyFrameObject *f)
{
    return f->f_state == FRAME_SUSPENDED;
}

/* A frame executing its code, not unwinding an exception out of it. */
static inline bool
li_frame_executing(PyFrameObject *f)
{
    return f->f_state == FRAME_EXECUTING;
}

/* A frame on the thread's stack: executing or unwinding. */
static inline bool
li_frame_on_stack(PyFrameObject *f)
{
    return f->f_state == FRAME_EXECUTING || f->f_state == FRAME_UNWINDING;
}

/* Leaves `f` before its first instruction, marked as having started at
 * unit `unit` (start.c): li_lasti() gives -1 - unit, and the traceback
 * entry the interpreter makes there records 2 * f_lasti, -2 - 2 * unit. */
static inline void
li_set_start_mark(PyFrameObject *f, int unit)
{
    f->f_lasti = -1 - unit;
}

/* Makes `f` as it was made: not started, nothing on its stack, no block. */
static inline void
li_frame_reset(PyFrameObject *f)
{
    f->f_lasti = -1;
    f->f_stackdepth = 0;
    f->f_iblock = 0;
    f->f_state = FRAME_CREATED;
}

/* Has frame.f_lineno show the line of the f_lasti that the caller gave `f`
 * for callbacks to see (the caller puts the field back with f_lasti). */
static inline void
li_show_lasti_line(PyFrameObject *f)
{
    f->f_lineno = 0;    /* PyFrame_GetLineNumber() looks f_lasti up */
}

/* The same for a frame whose f_lasti is -1. */
static inline void
li_show_start_line(PyFrameObject *f)
{
    li_show_lasti_line(f);
}

/* ---- exceptions ---- */

/* Where (unit of f_code) the exception that handler block `b` (the
 * EXCEPT_HANDLER block a handler of `f` was entered with) was raised, its
 * traceback `tb` in flight; -1 if not known. */
static inline int
li_raised_unit(PyFrameObject *f, const PyTryBlock *b, PyObject *tb)
{
    (void)f;
    (void)tb;
    return b->b_handler;    /* 3.10 records it there */
}

/* ---- threads ---- */

/* Sets the thread's C trace or profile function, as far as the interpreter
 * needs to know (sys.settrace's bookkeeping is the caller's). */
static inline void
li_set_tracefunc(PyThreadState *ts, Py_tracefunc func)
{
    ts->c_tracefunc = func;
}

/* ---- calls ---- */

/* A new frame of Python function `callback` called with the `nargs`
 * arguments at `argv`, where the interpreter would take a longer path than
 * that: 1 and *frame (a new reference, ready to evaluate), 0 where its own
 * path is as short, -1 with an exception set.  3.10 calls every function
 * through the same short path (_PyEval_Vector). */
static inline int
li_callback_frame(PyThreadState *ts, PyObject *callback, PyObject *const *argv, size_t nargs,
                  PyFrameObject **frame)
{
    (void)ts;
    (void)callback;
    (void)argv;
    (void)nargs;
    (void)frame;
    return 0;
}

/* (Never called: li_callback_frame() makes no frame.) */
static inline void
li_callback_frame_done(PyThreadState *ts, PyFrameObject *f)
{
    (void)ts;
    Py_DECREF(f);
}

static inline void
li_callback_frames_forget(void)
{
}

/* ---- generators ---- */

/* PyIter_Send's contract. */
#define li_iter_send PyIter_Send
typedef PySendResult li_send_result;
#define LI_SEND_RETURN PYGEN_RETURN
#define LI_SEND_ERROR PYGEN_ERROR
#define LI_SEND_NEXT PYGEN_NEXT

#endif /* LI_VERSION_H */
