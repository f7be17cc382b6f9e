/* What each event's callbacks receive, read from the frame a probe runs in,
 * and the little state some events carry from one probe to another:
 * - calls: CALL records the callable and first argument of a call to
 *   anything but a Python function, for C_RETURN/C_RAISE after it;
 * - RERAISE marks the exception it re-raises, so that where it arrives no
 *   RAISE is reported;
 * - a generator a FOR_ITER exhausted leaves its return value for
 *   STOP_ITERATION (the interpreter drops it inside FOR_ITER).
 * All of it is per thread.
 */

#include "b311.h"

/* ---- calls ------------------------------------------------------------ */

typedef struct {
    _PyInterpreterFrame *frame;
    int32_t unit;            /* original unit of the call */
    uint8_t tools;           /* the tools that got its CALL event */
    PyObject *callable;      /* owned */
    PyObject *arg0;          /* owned */
} pending_call;

#define MAX_PENDING_CALLS 4096

/* The calls in progress of one thread.  All threads' stacks are listed, so
 * that they can be emptied when no tool wants calls any more; a stack whose
 * thread is gone is emptied and left for another thread (not freed: its old
 * thread may still point at it, and checks the id before using it). */
typedef struct pending_stack {
    uint64_t thread_id;      /* PyThreadState.id of its thread; 0 if free */
    pending_call *calls;
    int n, cap;
    struct pending_stack *next;
} pending_stack;

static pending_stack *all_stacks;
static _Thread_local pending_stack *my_stack;

static void
drop_pending(pending_stack *stack, int keep)
{
    while (stack->n > keep) {
        stack->n--;
        Py_DECREF(stack->calls[stack->n].callable);
        Py_DECREF(stack->calls[stack->n].arg0);
    }
}

/* The stack of the current thread; NULL if it has none and `create` is
 * false, or with MemoryError. */
static pending_stack *
thread_stack(bool create)
{
    uint64_t id = _PyThreadState_GET()->id;
    if (my_stack != NULL && my_stack->thread_id == id) {
        return my_stack;
    }
    pending_stack *free_one = NULL;
    for (pending_stack *stack = all_stacks; stack != NULL; stack = stack->next) {
        if (stack->thread_id == id) {
            return my_stack = stack;
        }
        free_one = stack->thread_id == 0 ? stack : free_one;
    }
    if (!create) {
        return NULL;
    }
    if (free_one == NULL) {
        free_one = PyMem_Calloc(1, sizeof(pending_stack));
        if (free_one == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        free_one->next = all_stacks;
        all_stacks = free_one;
    }
    free_one->thread_id = id;
    return my_stack = free_one;
}

static int
push_pending(_PyInterpreterFrame *frame, int32_t unit, uint8_t tools, PyObject *callable,
             PyObject *arg0)
{
    pending_stack *stack = thread_stack(true);
    if (stack == NULL) {
        return -1;
    }
    if (stack->n == MAX_PENDING_CALLS) {
        /* Calls whose end was never seen (their tools went away meanwhile). */
        drop_pending(stack, 0);
    }
    if (li_reserve((void **)&stack->calls, &stack->cap, stack->n, sizeof(pending_call),
                   16) < 0)
    {
        return -1;
    }
    stack->calls[stack->n++] = (pending_call){frame, unit, tools, Py_NewRef(callable),
                                              Py_NewRef(arg0)};
    return 0;
}

/* The innermost pending call made at `unit` by `frame`, taken off the stack
 * (with any stale ones above it); false if there is none. */
static bool
pop_pending(_PyInterpreterFrame *frame, int32_t unit, pending_call *out)
{
    pending_stack *stack = thread_stack(false);
    for (int k = stack != NULL ? stack->n - 1 : -1; k >= 0; k--) {
        if (stack->calls[k].frame == frame && stack->calls[k].unit == unit) {
            drop_pending(stack, k + 1);
            *out = stack->calls[k];
            stack->n = k;
            return true;
        }
    }
    return false;
}

static bool
thread_alive(PyInterpreterState *interp, uint64_t id)
{
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        if (ts->id == id) {
            return true;
        }
    }
    return false;
}

void
li_forget_pending_calls(bool all)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (pending_stack *stack = all_stacks; stack != NULL; stack = stack->next) {
        bool gone = stack->thread_id != 0 && !thread_alive(interp, stack->thread_id);
        if (all || gone) {
            drop_pending(stack, 0);
        }
        if (gone) {
            stack->thread_id = 0;
        }
    }
}

Py_ssize_t
li_pending_call_count(void)
{
    Py_ssize_t n = 0;
    for (pending_stack *stack = all_stacks; stack != NULL; stack = stack->next) {
        n += stack->n;
    }
    return n;
}

/* Callable and first argument of the call about to run, as CPython 3.12
 * reports them: for obj.m(...) the function and obj, else the callable and
 * its first argument or MISSING.  Borrowed.  0; 1 when the call is to
 * raise before it starts (no event); -1 on error. */
static int
call_arguments(PyObject **stack, int depth, int nargs, PyObject **callable, PyObject **arg0)
{
    if (nargs < 0) {
        /* CALL_FUNCTION_EX: NULL, callable, positional tuple [, mapping]. */
        int has_kwargs = (-1 - nargs) & 1;
        PyObject **args = &stack[depth - 1 - has_kwargs];
        *callable = stack[depth - 2 - has_kwargs];
        if (!PyTuple_CheckExact(*args)) {
            /* The call turns the positional arguments into a tuple first,
               and CPython 3.12 does so before reporting the call (an error
               while iterating comes from the call).  What is not iterable
               is left to the call, which raises its own error. */
            if (Py_TYPE(*args)->tp_iter == NULL && !PySequence_Check(*args)) {
                return 1;
            }
            PyObject *tuple = PySequence_Tuple(*args);
            if (tuple == NULL) {
                return -1;
            }
            Py_SETREF(*args, tuple);
        }
        bool has_first = PyTuple_GET_SIZE(*args) > 0;
        *arg0 = has_first ? PyTuple_GET_ITEM(*args, 0) : li_reg.missing;
        return 0;
    }
    PyObject *method = stack[depth - nargs - 2];
    if (method != NULL) {
        *callable = method;
        *arg0 = stack[depth - nargs - 1];
    }
    else {
        *callable = stack[depth - nargs - 1];
        *arg0 = nargs > 0 ? stack[depth - nargs] : li_reg.missing;
    }
    return 0;
}

/* Whether a call of `callable` runs a Python function (then no C_RETURN or
 * C_RAISE follows it). */
static bool
calls_python(PyObject *callable)
{
    if (PyMethod_Check(callable)) {
        callable = PyMethod_GET_FUNCTION(callable);
    }
    return PyFunction_Check(callable);
}

/* ---- exceptions --------------------------------------------------------- */

/* An exception sent on without being raised anew: by an instruction that
 * re-raises (its probe sets this just before it runs), or by a callback of
 * an exception event that raised.  The exception goes straight to a handler
 * of the same frame or its UNWIND stub, whose probe takes the mark: an
 * exception that arrives unmarked was raised (RAISE).  Frame and exception
 * are only compared, and only with the very next arrival. */
static _Thread_local struct {
    _PyInterpreterFrame *frame;
    PyObject *exc;           /* borrowed; NULL: whatever a RERAISE re-raises */
} reraise_mark;

typedef struct {
    bool reraised;           /* sent on from this frame, not raised anew */
    bool thrown;             /* throw() sent it into this suspended frame */
    int unit;                /* shadow unit where it was raised */
} arrival;

static bool
marks_suspension(PyCodeObject *shadow, int unit)
{
    int opcode = _PyOpcode_Deopt[_Py_OPCODE(_PyCode_CODE(shadow)[unit])];
    /* Suspended at a yield; or in a `yield from` loop whose subiterator
       failed, where the generator continues after the loop's last unit; or
       not started (in the prologue). */
    return opcode == YIELD_VALUE || opcode == JUMP_BACKWARD_NO_INTERRUPT ||
           unit < shadow->_co_firsttraceable;
}

/* How `exc` came to a handler or the UNWIND stub of `frame`.  `record`
 * remembers the arrival (not for mere look-ups). */
static arrival
exception_arrival(_PyInterpreterFrame *frame, li_probes *lp, PyObject *exc, int here,
                  bool record)
{
    arrival a = {false, false, here};
    /* Normally an exception; a jump set by a trace function (f_lineno) can
       land here with something else on the stack. */
    PyObject *tb = (exc != NULL && PyExceptionInstance_Check(exc))
                   ? PyException_GetTraceback(exc) : NULL;
    a.reraised = reraise_mark.frame == frame &&
                 (reraise_mark.exc == NULL || reraise_mark.exc == exc);
    if (tb != NULL && PyTraceBack_Check(tb)) {
        PyTracebackObject *entry = (PyTracebackObject *)tb;
        int unit = entry->tb_lasti / (int)sizeof(_Py_CODEUNIT);
        /* The entry of a frame that changed code since (a trampoline moved
           it) counts units of the other code: unusable. */
        if (entry->tb_frame != NULL && entry->tb_frame->f_frame == frame &&
            unit >= 0 && unit < lp->n_units)
        {
            a.unit = unit;
            a.thrown = !a.reraised && marks_suspension(lp->shadow, a.unit);
        }
    }
    if (record) {
        reraise_mark.frame = NULL;
        reraise_mark.exc = NULL;
    }
    Py_XDECREF(tb);
    return a;
}

/* ---- generators a FOR_ITER exhausted ------------------------------------ */

static iternextfunc gen_iternext;    /* the interpreter's, while ours is in */

static _Thread_local struct {
    _PyInterpreterFrame *frame;
    _Py_CODEUNIT *instr;
    PyObject *value;                 /* owned */
} exhausted;

/* tp_iternext of generators while STOP_ITERATION is wanted anywhere: when
 * a FOR_ITER of an instrumented frame exhausts the generator, keeps its
 * return value (FOR_ITER drops it, with the StopIteration that carries it). */
static PyObject *
gen_iternext_watching(PyObject *gen)
{
    PyObject *next = gen_iternext(gen);
    if (next != NULL) {
        return next;
    }
    _PyInterpreterFrame *frame = _PyThreadState_GET()->cframe->current_frame;
    if (frame == NULL || _Py_OPCODE(*frame->prev_instr) != FOR_ITER ||
        li_shadow_probes(frame->f_code) == NULL)
    {
        return NULL;
    }
    PyObject *value = Py_None;
    PyObject *type = NULL, *exc = NULL, *tb = NULL;
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
            return NULL;
        }
        PyErr_Fetch(&type, &exc, &tb);
        PyErr_NormalizeException(&type, &exc, &tb);
        value = exc != NULL ? ((PyStopIterationObject *)exc)->value : Py_None;
    }
    Py_XSETREF(exhausted.value, Py_NewRef(value));
    exhausted.frame = frame;
    exhausted.instr = frame->prev_instr;
    if (type != NULL) {
        PyErr_Restore(type, exc, tb);
    }
    return NULL;
}

void
li_watch_exhausted_generators(bool on)
{
    if (on && gen_iternext == NULL) {
        gen_iternext = PyGen_Type.tp_iternext;
        PyGen_Type.tp_iternext = gen_iternext_watching;
    }
    else if (!on && gen_iternext != NULL) {
        PyGen_Type.tp_iternext = gen_iternext;
        gen_iternext = NULL;
    }
}

/* ---- delivering a probe ------------------------------------------------- */

static PyObject *
offset_of(int unit)
{
    return PyLong_FromLong((long)unit * (long)sizeof(_Py_CODEUNIT));
}

/* Whether an exception arriving at a handler's LINE probe was raised on the
 * handler's own line, in which case CPython 3.12 reports no LINE event. */
static bool
raised_on_same_line(_PyInterpreterFrame *frame, li_probes *lp, PyObject *exc, int line)
{
    if (exc == NULL || !PyExceptionInstance_Check(exc)) {
        return false;
    }
    arrival a = exception_arrival(frame, lp, exc, -1, false);
    return a.unit >= 0 && PyCode_Addr2Line(lp->shadow, a.unit * 2) == line;
}

static int
deliver(PyThreadState *tstate, int event, uint8_t tools, li_probes *lp,
        int32_t orig, PyObject *arg, PyObject *third, PyObject *fourth)
{
    PyObject *args[5] = {NULL, (PyObject *)lp->original, arg, third, fourth};
    size_t nargs = fourth != NULL ? 4 : third != NULL ? 3 : 2;
    return li_call_tools(tstate, event, tools, lp->cs, orig, args, nargs);
}

int
li_cache_site_arg(li_site *s)
{
    if (s->arg == NULL) {
        s->arg = s->event == LI_LINE ? PyLong_FromLong(s->aux) : offset_of(s->orig);
    }
    return s->arg != NULL ? 0 : -1;
}

/* Delivers an event whose second argument is the site's own. */
static int
deliver_at(PyThreadState *tstate, li_site *s, uint8_t tools, li_probes *lp,
           PyObject *third, PyObject *fourth)
{
    if (li_cache_site_arg(s) < 0) {
        return -1;
    }
    return deliver(tstate, s->event, tools, lp, s->orig, s->arg, third, fourth);
}

int
li_fire_probe(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp,
              li_probe *p)
{
    PyObject **stack = frame->localsplus + lp->shadow->co_nlocalsplus;
    PyObject *top = p->depth > 0 ? stack[p->depth - 1] : NULL;
    bool exceptional = p->kind == LI_PROBE_HANDLER || p->kind == LI_PROBE_UNWIND;
    int here = (int)(frame->prev_instr - _PyCode_CODE(lp->shadow));
    arrival a = {false, false, here};
    if (exceptional) {
        a = exception_arrival(frame, lp, top, here, true);
        /* close() of a generator that never started: CPython 3.12 does not
           run it, so it reports nothing (3.11 throws into it). */
        if (a.thrown && a.unit < lp->shadow->_co_firsttraceable && top != NULL &&
            PyErr_GivenExceptionMatches(top, PyExc_GeneratorExit))
        {
            return 0;
        }
    }
    for (int k = 0; k < p->n_sites; k++) {
        li_site *s = &lp->sites[p->first_site + k];
        int event = s->event;
        if (event == LI_RERAISE && p->kind != LI_PROBE_UNWIND) {
            if (s->aux == 2 && PyErr_GivenExceptionMatches(top, PyExc_StopAsyncIteration)) {
                continue;      /* END_ASYNC_FOR ends the loop */
            }
            reraise_mark.frame = frame;
            reraise_mark.exc = NULL;
        }
        uint8_t tools = li_tools_at(lp->cs, event, s->orig);
        if (event == LI_C_RETURN || event == LI_C_RAISE) {
            /* The tools that saw the call see its end, even one that has
               disabled the call site meanwhile. */
            pending_call call;
            if (!pop_pending(frame, s->orig, &call)) {
                continue;
            }
            int err = deliver_at(tstate, s, call.tools, lp, call.callable, call.arg0);
            Py_DECREF(call.callable);
            Py_DECREF(call.arg0);
            if (err < 0) {
                return -1;
            }
            continue;
        }
        if (tools == 0) {
            continue;
        }
        int err = 0;
        switch (event) {
        case LI_LINE:
            if (p->kind == LI_PROBE_LINE_HANDLER &&
                raised_on_same_line(frame, lp, top, s->aux))
            {
                break;
            }
            /* fall through */
        case LI_PY_START:
        case LI_PY_RESUME:
        case LI_INSTRUCTION:
            err = deliver_at(tstate, s, tools, lp, NULL, NULL);
            break;
        case LI_EXCEPTION_HANDLED:
            if (p->kind == LI_PROBE_UNWIND) {
                goto at_raising_unit;
            }
            /* fall through */
        case LI_PY_RETURN:
        case LI_PY_YIELD:
            err = deliver_at(tstate, s, tools, lp, top, NULL);
            break;
        case LI_JUMP:
        case LI_BRANCH: {
            PyObject *destination = offset_of(s->aux);
            err = destination == NULL ? -1 : deliver_at(tstate, s, tools, lp, destination, NULL);
            Py_XDECREF(destination);
            break;
        }
        case LI_CALL: {
            PyObject *callable, *arg0;
            err = call_arguments(stack, p->depth, s->aux, &callable, &arg0);
            if (err > 0) {
                err = 0;
                break;
            }
            /* The references the stack holds keep them alive meanwhile. */
            if (err == 0) {
                err = deliver_at(tstate, s, tools, lp, callable, arg0);
            }
            /* C_RETURN or C_RAISE will follow a call of C code. */
            if (err == 0 && !calls_python(callable)) {
                err = push_pending(frame, s->orig, tools, callable, arg0);
            }
            break;
        }
        case LI_RERAISE: {
            if (p->kind == LI_PROBE_UNWIND) {
                goto at_raising_unit;
            }
            /* RERAISE and END_ASYNC_FOR re-raise their operand, a bare
               `raise` the exception being handled (if none, it raises an
               error instead). */
            PyObject *exc = s->aux == 1 ? PyErr_GetHandledException() : Py_XNewRef(top);
            if (exc != NULL && exc != Py_None) {
                err = deliver_at(tstate, s, tools, lp, exc, NULL);
            }
            Py_XDECREF(exc);
            break;
        }
        case LI_STOP_ITERATION: {
            PyObject *value = NULL;
            if (_PyOpcode_Deopt[_Py_OPCODE(_PyCode_CODE(lp->original)[s->orig])] == SEND) {
                value = Py_NewRef(top);   /* SEND jumped with the return value */
            }
            else if (exhausted.frame == frame &&
                     exhausted.instr == _PyCode_CODE(lp->shadow) + lp->shadow_of[s->orig])
            {
                value = exhausted.value;
                exhausted.value = NULL;
                exhausted.frame = NULL;
            }
            if (value == NULL) {
                break;
            }
            PyObject *exc = li_stop_iteration(value);
            Py_DECREF(value);
            err = exc == NULL ? -1 : deliver_at(tstate, s, tools, lp, exc, NULL);
            Py_XDECREF(exc);
            break;
        }
        case LI_PY_THROW:
        case LI_RAISE:
        case LI_PY_UNWIND:
        at_raising_unit: {
            if ((event == LI_PY_THROW && !a.thrown) || (event == LI_RAISE && a.reraised)) {
                break;
            }
            /* The handler that generators get in 3.12 (see shadow.c) does
               not cover a generator that has not started yet. */
            if ((event == LI_EXCEPTION_HANDLED || event == LI_RERAISE) &&
                a.unit < lp->shadow->_co_firsttraceable)
            {
                break;
            }
            int unit = li_original_unit(lp->shadow, a.unit);
            PyObject *offset = offset_of(unit);
            if (offset == NULL) {
                return -1;
            }
            /* Inside the callback the frame stands where it raised. */
            _Py_CODEUNIT *saved = frame->prev_instr;
            frame->prev_instr = _PyCode_CODE(lp->shadow) + a.unit;
            err = deliver(tstate, event, tools, lp, unit, offset, top, NULL);
            frame->prev_instr = saved;
            Py_DECREF(offset);
            break;
        }
        }
        if (err < 0) {
            if (event >= LI_RAISE && event != LI_C_RETURN && event != LI_C_RAISE &&
                p->kind != LI_PROBE_UNWIND)
            {
                /* What a callback of an exception event raised replaces the
                   exception in flight, and is not raised again here.  From
                   the UNWIND stub it leaves the frame instead: the caller
                   sees it raised, and no mark may outlive the frame (a later
                   frame at the same address would take it). */
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                PyErr_NormalizeException(&type, &value, &tb);
                reraise_mark.frame = frame;
                reraise_mark.exc = value;
                PyErr_Restore(type, value, tb);
            }
            return -1;
        }
    }
    return 0;
}
