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
/* The stack used last: under the GIL one thread at a time runs here, and a
 * global costs less to read than a thread-local in a shared object. */
static pending_stack *last_stack;
/* How many calls pending in all stacks have each hash of (frame, unit): the
 * C_RETURN probe after each call of a Python function, which never has one,
 * mostly answers without looking through its thread's stack. */
#define PENDING_HASHES 256
static uint32_t pending_hashed[PENDING_HASHES];

static inline uint32_t *
pending_count(_PyInterpreterFrame *frame, int32_t unit)
{
    uintptr_t h = ((uintptr_t)frame >> 3) ^ (uintptr_t)(uint32_t)unit;
    return &pending_hashed[h & (PENDING_HASHES - 1)];
}

static void
drop_pending(pending_stack *stack, int keep)
{
    while (stack->n > keep) {
        stack->n--;
        (*pending_count(stack->calls[stack->n].frame, stack->calls[stack->n].unit))--;
        Py_DECREF(stack->calls[stack->n].callable);
        Py_DECREF(stack->calls[stack->n].arg0);
    }
}

/* The stack of thread `id`; NULL if it has none and `create` is false, or
 * with MemoryError. */
static pending_stack *
thread_stack(uint64_t id, bool create)
{
    if (last_stack != NULL && last_stack->thread_id == id) {
        return last_stack;
    }
    pending_stack *free_one = NULL;
    for (pending_stack *stack = all_stacks; stack != NULL; stack = stack->next) {
        if (stack->thread_id == id) {
            return last_stack = stack;
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
    return last_stack = free_one;
}

/* li_push_pending_call() when the thread's stack is not the last one used
 * or is full. */
static __attribute__((noinline)) int
push_pending_slowly(PyThreadState *tstate, pending_call call)
{
    pending_stack *stack = thread_stack(tstate->id, true);
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
    stack->calls[stack->n++] = call;
    return 0;
}

int
li_push_pending_call(PyThreadState *tstate, _PyInterpreterFrame *frame, int32_t unit,
                     uint8_t tools, PyObject *callable, PyObject *arg0)
{
    pending_call call = {frame, unit, tools, callable, arg0};
    pending_stack *stack = last_stack;
    if (stack != NULL && stack->thread_id == tstate->id && stack->n < stack->cap &&
        stack->n < MAX_PENDING_CALLS)
    {
        stack->calls[stack->n++] = call;
    }
    else if (push_pending_slowly(tstate, call) < 0) {
        return -1;
    }
    Py_INCREF(callable);
    Py_INCREF(arg0);
    (*pending_count(frame, unit))++;
    return 0;
}

/* pop_pending() when the call is not on top of the last stack used: stale
 * calls above it are dropped. */
static __attribute__((noinline)) bool
pop_pending_slowly(PyThreadState *tstate, _PyInterpreterFrame *frame, int32_t unit,
                   pending_call *out)
{
    pending_stack *stack = thread_stack(tstate->id, false);
    for (int k = stack != NULL ? stack->n - 1 : -1; k >= 0; k--) {
        if (stack->calls[k].frame == frame && stack->calls[k].unit == unit) {
            drop_pending(stack, k + 1);
            *out = stack->calls[k];
            stack->n = k;
            (*pending_count(frame, unit))--;
            return true;
        }
    }
    return false;
}

/* The innermost pending call made at `unit` by `frame`, taken off the stack
 * (with any stale ones above it); false if there is none.  Mostly it is on
 * top of the stack used last, or (after a call of a Python function) there
 * is none. */
static inline bool
pop_pending(PyThreadState *tstate, _PyInterpreterFrame *frame, int32_t unit,
            pending_call *out)
{
    uint32_t *count = pending_count(frame, unit);
    if (*count == 0) {
        return false;
    }
    pending_stack *stack = last_stack;
    if (stack != NULL && stack->thread_id == tstate->id && stack->n > 0 &&
        stack->calls[stack->n - 1].frame == frame && stack->calls[stack->n - 1].unit == unit)
    {
        *out = stack->calls[--stack->n];
        (*count)--;
        return true;
    }
    return pop_pending_slowly(tstate, frame, unit, out);
}

bool
li_take_pending_call(PyThreadState *tstate, _PyInterpreterFrame *frame, int32_t unit,
                     uint8_t *tools, PyObject **callable, PyObject **arg0)
{
    pending_call call;
    if (!pop_pending(tstate, frame, unit, &call)) {
        return false;
    }
    *tools = call.tools;
    *callable = call.callable;
    *arg0 = call.arg0;
    return true;
}

bool
li_thread_alive(PyInterpreterState *interp, uint64_t id)
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
        bool gone = stack->thread_id != 0 && !li_thread_alive(interp, stack->thread_id);
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
int
li_call_arguments(PyObject **stack, int depth, int nargs, PyObject **callable, PyObject **arg0)
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
    li_call_arguments_of_call(stack, depth, nargs, callable, arg0);
    return 0;
}

/* Whether a call of `callable` runs a Python function (then no C_RETURN or
 * C_RAISE follows it). */
bool
li_calls_python(PyObject *callable)
{
    if (PyMethod_Check(callable)) {
        callable = PyMethod_GET_FUNCTION(callable);
    }
    return PyFunction_Check(callable);
}

/* ---- exceptions --------------------------------------------------------- */

/* An exception sent on without being raised anew by an instruction that
 * re-raises (its probe sets this just before it runs).  The exception goes
 * straight to a handler of the same frame or its UNWIND stub, whose probe
 * takes the mark: an exception that arrives unmarked was raised (RAISE).
 * The frame is only compared, and only with the very next arrival. */
static _Thread_local struct {
    _PyInterpreterFrame *frame;
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

int
li_raised_at(_PyInterpreterFrame *frame, PyObject *exc)
{
    /* Normally an exception; a jump set by a trace function (f_lineno) can
       land a frame at a handler with something else on the stack. */
    PyObject *tb = (exc != NULL && PyExceptionInstance_Check(exc))
                   ? PyException_GetTraceback(exc) : NULL;
    int unit = -1;
    if (tb != NULL && PyTraceBack_Check(tb)) {
        PyTracebackObject *entry = (PyTracebackObject *)tb;
        if (entry->tb_frame != NULL && entry->tb_frame->f_frame == frame) {
            unit = entry->tb_lasti / (int)sizeof(_Py_CODEUNIT);
        }
    }
    Py_XDECREF(tb);
    return unit;
}

/* How `exc` came to a handler or the UNWIND stub of `frame`.  `record`
 * remembers the arrival (not for mere look-ups). */
static arrival
exception_arrival(_PyInterpreterFrame *frame, li_probes *lp, PyObject *exc, int here,
                  bool record)
{
    arrival a = {false, false, here};
    a.reraised = reraise_mark.frame == frame;
    int unit = li_raised_at(frame, exc);
    /* The entry of a frame that changed code since (a trampoline moved it)
       counts units of the other code: unusable. */
    if (unit >= 0 && unit < lp->n_units) {
        a.unit = unit;
        a.thrown = !a.reraised && marks_suspension(lp->shadow, a.unit);
    }
    if (record) {
        reraise_mark.frame = NULL;
    }
    return a;
}

/* ---- generators a FOR_ITER exhausted ------------------------------------ */

static iternextfunc gen_iternext;    /* the interpreter's, while ours is in */

static _Thread_local struct {
    _PyInterpreterFrame *frame;
    _Py_CODEUNIT *instr;
    PyObject *value;                 /* owned */
} exhausted;

/* The iterator of the loop whose FOR_ITER `frame` (running a shadow) is
 * executing, or NULL.  Borrowed. */
static PyObject *
loop_iterator(_PyInterpreterFrame *frame)
{
    li_probes *lp = li_shadow_probes(frame->f_code);
    if (lp == NULL || _Py_OPCODE(*frame->prev_instr) != FOR_ITER) {
        return NULL;
    }
    int unit = (int)(frame->prev_instr - _PyCode_CODE(lp->shadow));
    for (int k = 0; k < lp->n_for_iters; k++) {
        if (lp->for_iters[k].unit == unit && lp->for_iters[k].depth > 0) {
            return frame->localsplus[lp->shadow->co_nlocalsplus + lp->for_iters[k].depth - 1];
        }
    }
    return NULL;
}

/* tp_iternext of generators while STOP_ITERATION is wanted anywhere: when
 * a FOR_ITER of an instrumented frame exhausts the generator it iterates
 * (not one that a C iterator it iterates consumes), keeps its return value
 * (FOR_ITER drops it, with the StopIteration that carries it). */
static PyObject *
gen_iternext_watching(PyObject *gen)
{
    PyObject *next = gen_iternext(gen);
    if (next != NULL) {
        return next;
    }
    _PyInterpreterFrame *frame = _PyThreadState_GET()->cframe->current_frame;
    if (frame == NULL || loop_iterator(frame) != gen) {
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

/* ---- the StopIteration that ends a loop -----------------------------------
 *
 * CPython 3.12 reports a RAISE at the FOR_ITER of a loop whose iterator
 * (a Python class's __next__, zip or map passing on a generator's return
 * value) ends it by setting StopIteration; FOR_ITER clears it unseen.  The
 * probe before the FOR_ITER that starts a loop wraps such an iterator on
 * the frame's stack in a watcher, which the loop alone sees. */

typedef struct {
    PyObject_HEAD
    PyObject *iterator;      /* owned */
} loop_watcher;

static PyTypeObject loop_watcher_type;

/* Iterators that never end with an exception: no need to watch them.
 * Generators end a loop with STOP_ITERATION instead (see above). */
static bool
ends_quietly(PyObject *it)
{
    PyTypeObject *type = Py_TYPE(it);
    return type == &PyListIter_Type || type == &PyTupleIter_Type ||
           type == &PyRangeIter_Type || type == &PyLongRangeIter_Type ||
           type == &PyUnicodeIter_Type || type == &PyBytesIter_Type ||
           type == &PyDictIterKey_Type || type == &PyDictIterValue_Type ||
           type == &PyDictIterItem_Type || type == &PySetIter_Type ||
           type == &PyGen_Type || type == &PyCoro_Type || type == &loop_watcher_type;
}

static PyObject *
loop_watcher_next(PyObject *self)
{
    PyObject *it = ((loop_watcher *)self)->iterator;
    PyObject *next = Py_TYPE(it)->tp_iternext(it);
    if (next != NULL || !PyErr_ExceptionMatches(PyExc_StopIteration)) {
        return next;
    }
    PyThreadState *tstate = _PyThreadState_GET();
    _PyInterpreterFrame *frame = tstate->cframe->current_frame;
    li_probes *lp = frame != NULL ? li_shadow_probes(frame->f_code) : NULL;
    uint8_t tools = li_reg.global_tools[LI_RAISE];
    if (lp == NULL || tools == 0 || tstate->tracing || loop_iterator(frame) != self) {
        return NULL;
    }
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(exc, tb);
    }
    int unit = li_original_unit(lp->shadow, (int)(frame->prev_instr - _PyCode_CODE(lp->shadow)));
    PyObject *offset = offset_of(unit);
    int err = offset == NULL ? -1 : deliver(tstate, LI_RAISE, tools, lp, unit, offset, exc, NULL);
    Py_XDECREF(offset);
    if (err < 0) {
        /* What the callback raised replaces the StopIteration, and ends
           the loop with an error, as natively. */
        Py_XDECREF(type);
        Py_XDECREF(exc);
        Py_XDECREF(tb);
        return NULL;
    }
    PyErr_Restore(type, exc, tb);
    return NULL;
}

static int
loop_watcher_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((loop_watcher *)self)->iterator);
    return 0;
}

static void
loop_watcher_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(((loop_watcher *)self)->iterator);
    PyObject_GC_Del(self);
}

static PyTypeObject loop_watcher_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine._LoopWatcher",
    .tp_basicsize = sizeof(loop_watcher),
    .tp_dealloc = loop_watcher_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The iterator of a loop, watched for the StopIteration that ends it.",
    .tp_traverse = loop_watcher_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = loop_watcher_next,
};

/* The probe before the FOR_ITER starting a loop of `frame`: wraps its
 * iterator, on top of the stack.  0 or -1. */
static int
watch_loop(PyObject **top)
{
    if (!(loop_watcher_type.tp_flags & Py_TPFLAGS_READY) && PyType_Ready(&loop_watcher_type) < 0) {
        return -1;
    }
    if (*top == NULL || ends_quietly(*top) || Py_TYPE(*top)->tp_iternext == NULL) {
        return 0;
    }
    loop_watcher *watcher = PyObject_GC_New(loop_watcher, &loop_watcher_type);
    if (watcher == NULL) {
        return -1;
    }
    watcher->iterator = *top;     /* the stack's reference passes to it */
    *top = (PyObject *)watcher;
    PyObject_GC_Track(watcher);
    return 0;
}

int
li_cache_site_arg(li_site *s)
{
    if (s->arg == NULL) {
        s->arg = s->event == LI_LINE ? PyLong_FromLong(s->aux) : offset_of(s->orig);
    }
    return s->arg != NULL ? 0 : -1;
}

int
li_cache_site_dest(li_site *s)
{
    if (s->dest == NULL) {
        s->dest = offset_of(s->aux);
    }
    return s->dest != NULL ? 0 : -1;
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

static int deliver_site(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp,
                        li_probe *p, li_site *s, arrival a, PyObject *top, PyObject **stack);

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
    /* Inside a callback the frame stands at the instruction the event
       belongs to, as natively (f_lasti, f_lineno, tracebacks of errors it
       catches); for events of an exception in flight, where it was raised. */
    _Py_CODEUNIT *saved = frame->prev_instr, *first = _PyCode_CODE(lp->shadow);
    int err = 0;
    li_jump_delivering(frame, p);
    for (int k = 0; k < p->n_sites && err == 0; k++) {
        li_site *s = &lp->sites[p->first_site + k];
        frame->prev_instr = exceptional ? first + a.unit
                                        : first + li_shadow_of(lp, s->orig);
        err = deliver_site(tstate, frame, lp, p, s, a, top, stack);
        if (err < 0 && exceptional && top != NULL) {
            /* What a callback of an exception event raises replaces the
               exception in flight, as natively: it goes on to the handler
               (or out of the frame) in its place, with the events still to
               come, and this frame adds no traceback entry to it. */
            PyObject *value = li_fetch_exception();
            if (value == NULL) {
                err = -1;
                break;
            }
            Py_SETREF(stack[p->depth - 1], value);
            top = value;
            err = 0;
        }
    }
    li_jump_delivering(NULL, NULL);
    frame->prev_instr = saved;
    return err;
}

/* Delivers the event of site `s` of probe `p`, where the frame's exception
 * (if the probe is for one) came as `a` says.  0 or -1. */
static int
deliver_site(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp, li_probe *p,
             li_site *s, arrival a, PyObject *top, PyObject **stack)
{
    int event = s->event;
    if (event == LI_RERAISE && p->kind != LI_PROBE_UNWIND) {
        if (s->aux == 2 && PyErr_GivenExceptionMatches(top, PyExc_StopAsyncIteration)) {
            return 0;      /* END_ASYNC_FOR ends the loop */
        }
        reraise_mark.frame = frame;
    }
    if (event == LI_RAISE && s->aux == LI_AUX_WATCH_LOOP && p->kind == LI_PROBE_AFTER) {
        return li_reg.global_tools[LI_RAISE] ? watch_loop(&stack[p->depth - 1]) : 0;
    }
    uint8_t tools = li_tools_at(lp->cs, event, s->orig);
    if (event == LI_C_RETURN || event == LI_C_RAISE) {
        /* The tools that saw the call see its end, even one that has
           disabled the call site meanwhile. */
        pending_call call;
        if (!pop_pending(tstate, frame, s->orig, &call)) {
            return 0;
        }
        int err = deliver_at(tstate, s, call.tools, lp, call.callable, call.arg0);
        Py_DECREF(call.callable);
        Py_DECREF(call.arg0);
        return err;
    }
    if (tools == 0) {
        return 0;
    }
    int err = 0;
    switch (event) {
    case LI_LINE:
        if (p->kind == LI_PROBE_LINE_HANDLER && raised_on_same_line(frame, lp, top, s->aux)) {
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
        err = li_cache_site_dest(s) < 0 ? -1 : deliver_at(tstate, s, tools, lp, s->dest, NULL);
        break;
    case LI_BRANCH:
        li_reg.ways_done = 0;
        err = li_cache_site_dest(s) < 0 ? -1 : deliver_at(tstate, s, tools, lp, s->dest, NULL);
        /* Only for one tool: between two tools' callbacks another thread may
           run and answer for its own branch. */
        if (err == 0 && s->way != 0 && tools != 0 && li_reg.ways_done == tools &&
            (tools & (tools - 1)) == 0)
        {
            err = li_code_state_disable(lp->cs, s->way, s->orig, __builtin_ctz(tools));
        }
        li_reg.ways_done = 0;
        break;
    case LI_CALL: {
        PyObject *callable, *arg0;
        err = li_call_arguments(stack, p->depth, s->aux, &callable, &arg0);
        if (err > 0) {
            return 0;
        }
        /* The references the stack holds keep them alive meanwhile. */
        if (err == 0) {
            err = deliver_at(tstate, s, tools, lp, callable, arg0);
        }
        /* C_RETURN or C_RAISE will follow a call of C code. */
        if (err == 0 && !li_calls_python(callable)) {
            err = li_push_pending_call(tstate, frame, s->orig, tools, callable, arg0);
        }
        break;
    }
    case LI_RERAISE: {
        if (p->kind == LI_PROBE_UNWIND) {
            goto at_raising_unit;
        }
        /* RERAISE and END_ASYNC_FOR re-raise their operand, a bare `raise`
           the exception being handled (if none, it raises an error
           instead). */
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
                 exhausted.instr == _PyCode_CODE(lp->shadow) + li_shadow_of(lp, s->orig))
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
        /* The handler that generators get in 3.12 (see shadow.c) does not
           cover a generator that has not started yet. */
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
        err = deliver(tstate, event, tools, lp, unit, offset, top, NULL);
        Py_DECREF(offset);
        break;
    }
    }
    return err;
}
