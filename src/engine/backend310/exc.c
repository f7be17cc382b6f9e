/* RAISE, RERAISE, EXCEPTION_HANDLED, PY_UNWIND and STOP_ITERATION on 3.10
 * (b310.h).
 *
 * 3.10 has no instruction where an exception starts: any instruction, or a
 * callee, raises, and the interpreter adds a traceback entry for the frame
 * and unwinds its block stack to a handler (the target of a SETUP_FINALLY,
 * SETUP_WITH or SETUP_ASYNC_WITH) or out of the frame.  Nothing but block
 * bookkeeping runs in between, so the raise is reported where it lands:
 *
 *   - a probe at each handler target delivers RAISE, then EXCEPTION_HANDLED.
 *     There the interpreter has pushed an EXCEPT_HANDLER block whose
 *     b_handler is the unit that raised and, from its b_level up, the
 *     exception handled before (traceback, value, type) and the one in
 *     flight (the same);
 *   - the frame evaluation function delivers RAISE, then PY_UNWIND, when a
 *     frame returns NULL (hook.c), for frames of any code;
 *   - a probe before each instruction that raises again what it handles
 *     (RERAISE, a bare `raise`, END_ASYNC_FOR of anything but
 *     StopAsyncIteration) delivers RERAISE and leaves a mark, so that where
 *     the exception lands reports no RAISE for it;
 *   - where it lands, after RAISE: EXCEPTION_HANDLED and RERAISE for each
 *     except, finally or with-exit body it left, which 3.11+ gives in the
 *     cleanup handler its compiler puts around each such body and 3.10
 *     does by popping the body's EXCEPT_HANDLER block as it unwinds
 *     (li_cleanups_of() counts them from where unwinding started).
 *
 * STOP_ITERATION: after a YIELD_FROM whose delegate returned (the value is
 * on the stack), and at FOR_ITER, whose iterator a probe wraps as the loop
 * starts: a generator that returns ends the loop with STOP_ITERATION, as
 * 3.12's specialised FOR_ITER_GEN reports it; any other iterator that ends
 * with a StopIteration gets it reported as RAISE, as 3.12's FOR_ITER does.
 *
 * 3.12 wraps the body of every generator and coroutine in a handler that
 * turns StopIteration into RuntimeError: what leaves one that had started
 * is reported as handled and raised again there before PY_UNWIND.  3.10
 * does that conversion in C after the frame exits; the events are the same
 * but for the conversion.
 */

#include "b310.h"

/* The mark a re-raise leaves for where its exception lands (borrowed
 * pointers, compared only): the frame, the traceback in flight, and the
 * original unit of the instruction.  Nothing but unwinding runs between
 * the probe and the landing, in the same frame. */
static _Thread_local struct {
    PyFrameObject *frame;
    PyObject *tb;
    int unit;
} reraised;

static bool
is_reraise(int opcode, int oparg)
{
    return opcode == RERAISE || (opcode == RAISE_VARARGS && oparg == 0) ||
           opcode == END_ASYNC_FOR;
}

#define RAISE_OR_HANDLED (LI_EVENT_BIT(LI_RAISE) | LI_EVENT_BIT(LI_EXCEPTION_HANDLED))
/* The events a handler's probe delivers: RAISE and EXCEPTION_HANDLED of
 * what it gets, and the EXCEPTION_HANDLED and RERAISE of the cleanup
 * handlers that exception passed (li_cleanups_passed()). */
#define LANDING_EVENTS (RAISE_OR_HANDLED | LI_EVENT_BIT(LI_RERAISE))

int
li_exc_probe_before_line(li_event_set events, int opcode, int prev_opcode, bool handler)
{
    if (handler && (events & LANDING_EVENTS)) {
        return LI_EXCEPTION_HANDLED;
    }
    if (opcode == FOR_ITER &&
        (events & (LI_EVENT_BIT(LI_STOP_ITERATION) | LI_EVENT_BIT(LI_RAISE)))) {
        return LI_STOP_ITERATION;
    }
    if (prev_opcode == YIELD_FROM && (events & LI_EVENT_BIT(LI_STOP_ITERATION))) {
        return LI_STOP_ITERATION;
    }
    return -1;
}

int
li_exc_probe_after_line(li_event_set events, int opcode, int oparg)
{
    /* The mark tells where the handler's probe finds that its exception
       came from, for RAISE and for the cleanup handlers it passed: a
       RERAISE 1 leaves f_lasti where the exception was first raised. */
    bool wanted = events & LANDING_EVENTS;
    return wanted && is_reraise(opcode, oparg) ? LI_RERAISE : -1;
}

li_event_set
li_exc_needed(PyCodeObject *code, li_event_set want)
{
    if ((want & LI_EXC_PROBED_EVENTS) == 0) {
        return want;
    }
    const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(code->co_code);
    Py_ssize_t n = PyBytes_GET_SIZE(code->co_code) / 2;
    li_event_set can = 0;
    for (Py_ssize_t u = 0; u < n; u++) {
        int opcode = bytes[2 * u];
        if (li_sets_up_handler(opcode)) {
            can |= LANDING_EVENTS;
        }
        else if (is_reraise(opcode, bytes[2 * u + 1])) {
            can |= LI_EVENT_BIT(LI_RERAISE) | LI_EVENT_BIT(LI_RAISE);
        }
        else if (opcode == FOR_ITER) {
            can |= LI_EVENT_BIT(LI_STOP_ITERATION) | LI_EVENT_BIT(LI_RAISE);
        }
        else if (opcode == YIELD_FROM) {
            can |= LI_EVENT_BIT(LI_STOP_ITERATION);
        }
    }
    return want & (~LI_EXC_PROBED_EVENTS | can);
}

/* The exception in flight, as three owned references; its value is
 * normalized (what callbacks receive). */
typedef struct {
    PyObject *type, *value, *tb;
} exc_triple;

static void
triple_clear(exc_triple *e)
{
    Py_CLEAR(e->type);
    Py_CLEAR(e->value);
    Py_CLEAR(e->tb);
}

/* Takes the exception set, raised in `f` (a traceback entry of it is
 * added, with `f` where it stands, as if raised there). */
static void
take_raised_in(PyFrameObject *f, exc_triple *e)
{
    if (f != NULL) {
        PyTraceBack_Here(f);
    }
    PyErr_Fetch(&e->type, &e->value, &e->tb);
    PyErr_NormalizeException(&e->type, &e->value, &e->tb);
    if (e->tb != NULL && e->value != NULL) {
        PyException_SetTraceback(e->value, e->tb);
    }
}

/* Delivers `event` of `e` to `tools` at original unit `unit` of `code`.  A
 * callback's exception (or the ValueError of a DISABLE) replaces `e`, as
 * natively: unwinding goes on with it, raised in `f`. */
static void
deliver(PyThreadState *ts, int event, uint8_t tools, li_code_state *cs, PyCodeObject *code,
        int unit, exc_triple *e, PyFrameObject *f)
{
    if (tools == 0 || e->value == NULL) {
        return;
    }
    PyObject *offset = PyLong_FromLong(2L * unit);
    int err = -1;
    if (offset != NULL) {
        PyObject *args[4] = {NULL, (PyObject *)code, offset, e->value};
        err = li_call_tools(ts, event, tools, cs, unit, args, 3);
        Py_DECREF(offset);
    }
    if (err < 0) {
        triple_clear(e);
        take_raised_in(f, e);
    }
}

int
li_cleanups_passed(PyCodeObject *code, li_shadow *map, int unit)
{
    if (unit < 0 || unit >= PyBytes_GET_SIZE(code->co_code) / 2) {
        return 0;
    }
    if (map != NULL && map->cleanups != NULL) {
        return map->cleanups[unit];
    }
    uint8_t *counts = li_cleanups_of(code);
    if (counts == NULL) {
        return -1;
    }
    int passed = counts[unit];
    if (map != NULL) {
        map->cleanups = counts;
    }
    else {
        PyMem_Free(counts);
    }
    return passed;
}

/* EXCEPTION_HANDLED and RERAISE of `e` at each of the `passed` cleanup
 * handlers it went through, at original unit `unit` (where 3.10 popped
 * their blocks; natively the frame shows that unit too, the handler's
 * offset being one 3.10 does not have).  What an EXCEPTION_HANDLED
 * callback raises is caught by the same cleanup handler, as natively: it
 * is reported handled there in turn. */
static void
deliver_cleanups(PyThreadState *ts, int passed, li_code_state *cs, PyCodeObject *code, int unit,
                 exc_triple *e, PyFrameObject *f)
{
    for (int k = 0; k < passed; k++) {
        PyObject *handled;
        /* (Not a RecursionError, which a frame at the limit meets again at
           every callback: the callback could not run.) */
        do {
            handled = e->value;
            deliver(ts, LI_EXCEPTION_HANDLED, li_reg.global_tools[LI_EXCEPTION_HANDLED], cs,
                    code, unit, e, f);
        } while (e->value != handled && e->value != NULL &&
                 !PyErr_GivenExceptionMatches(e->type, PyExc_RecursionError));
        deliver(ts, LI_RERAISE, li_reg.global_tools[LI_RERAISE], cs, code, unit, e, f);
    }
}

static inline bool
cleanups_wanted(void)
{
    return (li_reg.global_tools[LI_EXCEPTION_HANDLED] | li_reg.global_tools[LI_RERAISE]) != 0;
}

/* Whether the exception whose traceback is `tb` lands in `f` after a
 * re-raise there (and forgets the mark); *unit is then where. */
static bool
take_reraised(PyFrameObject *f, PyObject *tb, int *unit)
{
    if (reraised.frame != f) {
        return false;
    }
    reraised.frame = NULL;
    if (reraised.tb != tb) {
        return false;
    }
    *unit = reraised.unit;
    return true;
}

/* The frame running `map`, if the probe runs in it (not in a callback's
 * code, nor in C code that got hold of the shadow). */
static PyFrameObject *
frame_of(PyThreadState *ts, li_shadow *map)
{
    if (ts->tracing || map->original == NULL) {
        return NULL;
    }
    PyFrameObject *f = ts->frame;
    return f != NULL && f->f_code == map->code ? f : NULL;
}

PyObject **
li_exc_handler_slots(PyFrameObject *f, PyTryBlock **block)
{
    if (f->f_iblock <= 0) {
        return NULL;
    }
    PyTryBlock *b = &f->f_blockstack[f->f_iblock - 1];
    if (b->b_type != EXCEPT_HANDLER || b->b_level < 0) {
        return NULL;
    }
    PyObject **slots = f->f_valuestack + b->b_level;
    if (!PyExceptionClass_Check(slots[5]) || !PyExceptionInstance_Check(slots[4])) {
        return NULL;
    }
    *block = b;
    return slots;
}

/* A handler of the frame is entered: RAISE (unless a re-raise brought the
 * exception), the events of the cleanup handlers it passed, and
 * EXCEPTION_HANDLED, with sys.exc_info() showing what was handled before,
 * as natively.  An exception of a callback replaces the one the handler
 * gets. */
static int
fire_handled(PyThreadState *ts, li_site *s)
{
    li_shadow *map = s->shadow;
    PyFrameObject *f = frame_of(ts, map);
    PyTryBlock *b;
    PyObject **slots = f != NULL ? li_exc_handler_slots(f, &b) : NULL;
    if (slots == NULL) {
        return 0;
    }
    int unit = 0;
    bool again = take_reraised(f, slots[3] != Py_None ? slots[3] : NULL, &unit);
    uint8_t raise_tools = again ? 0 : li_reg.global_tools[LI_RAISE];
    uint8_t handled_tools = li_reg.global_tools[LI_EXCEPTION_HANDLED];
    if ((raise_tools | handled_tools) == 0 && !cleanups_wanted()) {
        return 0;
    }
    /* Unwinding started at the re-raise, or where it was raised. */
    int from = unit;
    int raised_at = li_raised_unit(f, b, slots[3]);
    if (raised_at >= 0 && raised_at < map->n_units) {
        unit = map->orig_op[raised_at];
    }
    if (!again) {
        from = unit;
    }
    int passed = cleanups_wanted() ? li_cleanups_passed(map->original, map, from) : 0;
    if (passed < 0) {
        return -1;
    }
    exc_triple e = {Py_NewRef(slots[5]), Py_NewRef(slots[4]), Py_NewRef(slots[3])};
    /* Callbacks see the exception handled before (borrowed meanwhile: code
       they run hands exc_info's references back as it found them). */
    _PyErr_StackItem *info = ts->exc_info;
    PyObject *saved[3] = {info->exc_type, info->exc_value, info->exc_traceback};
    info->exc_type = slots[2];
    info->exc_value = slots[1];
    info->exc_traceback = slots[0];
    /* ... and the frame where it raised, as natively. */
    int lasti = li_lasti(f), line = f->f_lineno;
    if (raised_at >= 0 && raised_at < map->n_units) {
        li_set_lasti(f, raised_at);
        li_show_lasti_line(f);
    }
    Py_INCREF(map->code);   /* the map may go while callbacks run */
    PyCodeObject *shadow = map->code;
    deliver(ts, LI_RAISE, raise_tools, map->cs, map->original, unit, &e, f);
    if (passed > 0 && map->original != NULL) {
        deliver_cleanups(ts, passed, map->cs, map->original, from, &e, f);
    }
    if (map->original != NULL) {
        deliver(ts, LI_EXCEPTION_HANDLED, handled_tools, map->cs, map->original, s->orig, &e, f);
    }
    li_set_lasti(f, lasti);
    f->f_lineno = line;
    info->exc_type = saved[0];
    info->exc_value = saved[1];
    info->exc_traceback = saved[2];
    Py_DECREF(shadow);
    if (e.value == NULL) {
        return -1;  /* not even the replacement could be made */
    }
    if (e.value != slots[4]) {
        /* The handler goes on with the callback's exception. */
        PyObject *tb = e.tb != NULL ? e.tb : Py_None;
        Py_SETREF(slots[3], Py_NewRef(tb));
        Py_SETREF(slots[4], Py_NewRef(e.value));
        Py_SETREF(slots[5], Py_NewRef(e.type));
        Py_XSETREF(info->exc_traceback, Py_XNewRef(e.tb));
        Py_XSETREF(info->exc_value, Py_NewRef(e.value));
        Py_XSETREF(info->exc_type, Py_NewRef(e.type));
    }
    triple_clear(&e);
    return 0;
}

/* Before an instruction that raises again what it handles: RERAISE, and
 * the mark for where the exception lands.  Nothing if it will not (a bare
 * `raise` with nothing handled raises RuntimeError; END_ASYNC_FOR ends
 * the loop on StopAsyncIteration). */
static int
fire_reraise(PyThreadState *ts, li_site *s)
{
    li_shadow *map = s->shadow;
    PyFrameObject *f = frame_of(ts, map);
    if (f == NULL) {
        return 0;
    }
    PyObject *value, *tb;
    if (s->call_op == RAISE_VARARGS) {
        _PyErr_StackItem *info = _PyErr_GetTopmostException(ts);
        if (info->exc_type == NULL || info->exc_type == Py_None) {
            return 0;
        }
        value = info->exc_value;
        tb = info->exc_traceback;
    }
    else {
        PyTryBlock *b;
        PyObject **slots = li_exc_handler_slots(f, &b);
        if (slots == NULL) {
            return 0;
        }
        if (s->call_op == END_ASYNC_FOR &&
            PyErr_GivenExceptionMatches(slots[5], PyExc_StopAsyncIteration)) {
            return 0;
        }
        value = slots[4];
        tb = slots[3];
    }
    if (tb == Py_None) {
        tb = NULL;
    }
    uint8_t tools = li_reg.global_tools[LI_RERAISE];
    if (tools != 0 && value != NULL) {
        PyObject *args[4] = {NULL, (PyObject *)map->original, s->arg, value};
        Py_INCREF(value);
        int err = li_call_tools(ts, LI_RERAISE, tools, map->cs, s->orig, args, 3);
        Py_DECREF(value);
        if (err < 0) {
            return -1;  /* raised by the probe: a RAISE where it lands */
        }
    }
    reraised.frame = f;
    reraised.tb = tb;
    reraised.unit = s->orig;
    return 0;
}

int
li_fire_exc(li_site *s)
{
    PyThreadState *ts = PyThreadState_Get();
    return s->event == LI_RERAISE ? fire_reraise(ts, s) : fire_handled(ts, s);
}

/* STOP_ITERATION of `value`, the return value of a generator or
 * coroutine, to `tools` at site `s` (the offset of its YIELD_FROM or
 * FOR_ITER).  0, or -1 with an exception set. */
int
li_fire_stop(PyThreadState *ts, li_site *s, uint8_t tools, PyObject *value)
{
    /* Made as raising StopIteration(value) would make it, with no context:
       the frame may be handling another exception. */
    PyObject *stop = value == Py_None ? PyObject_CallNoArgs(PyExc_StopIteration)
                     : PyTuple_Check(value) ? PyObject_Call(PyExc_StopIteration, value, NULL)
                     : PyObject_CallOneArg(PyExc_StopIteration, value);
    if (stop == NULL) {
        return -1;
    }
    li_shadow *map = s->shadow;
    PyObject *args[4] = {NULL, (PyObject *)map->original, s->arg, stop};
    int err = li_call_tools(ts, LI_STOP_ITERATION, tools, map->cs, s->orig, args, 3);
    Py_DECREF(stop);
    return err;
}

/* ---- the iterator of a for loop ---- */

typedef struct {
    PyObject_HEAD
    PyObject *it;           /* owned: the loop's iterator */
    PyCodeObject *shadow;   /* owned: keeps the map and the site alive */
    li_site *site;          /* borrowed: a constant of the shadow */
} li_loop_iter;

/* RAISE of the StopIteration set by the loop's iterator (not a
 * generator), at FOR_ITER; a callback's exception replaces it. */
static void
report_stop_raised(PyThreadState *ts, li_loop_iter *w)
{
    li_site *s = w->site;
    li_shadow *map = s->shadow;
    uint8_t tools = li_reg.global_tools[LI_RAISE];
    if (tools == 0 || ts->tracing || map->original == NULL ||
        !PyErr_ExceptionMatches(PyExc_StopIteration)) {
        return;
    }
    exc_triple e = {NULL, NULL, NULL};
    PyErr_Fetch(&e.type, &e.value, &e.tb);
    PyErr_NormalizeException(&e.type, &e.value, &e.tb);
    int unit = map->orig_op[s->unit];
    deliver(ts, LI_RAISE, tools, map->cs, map->original, unit, &e, NULL);
    PyErr_Restore(e.type, e.value, e.tb);
}

static PyObject *
loop_iter_next(PyObject *self)
{
    li_loop_iter *w = (li_loop_iter *)self;
    if (!PyGen_CheckExact(w->it)) {
        PyObject *item = Py_TYPE(w->it)->tp_iternext(w->it);
        if (item == NULL && PyErr_Occurred()) {
            report_stop_raised(PyThreadState_Get(), w);
        }
        return item;
    }
    PyObject *result;
    li_send_result status = li_iter_send(w->it, Py_None, &result);
    if (status != LI_SEND_RETURN) {
        return status == LI_SEND_NEXT ? result : NULL;
    }
    /* The generator returned: the loop ends with the StopIteration that
       3.10's own next() of a generator sets for a value other than None,
       which FOR_ITER shows a sys.settrace function ('exception', as bdb's
       `next` out of a generator expects), or with a callback's exception. */
    li_site *s = w->site;
    li_shadow *map = s->shadow;
    PyThreadState *ts = PyThreadState_Get();
    int err = 0;
    if (!ts->tracing && map->original != NULL) {
        uint8_t tools = li_tools_at(map->cs, LI_STOP_ITERATION, s->orig);
        if (tools != 0) {
            err = li_fire_stop(ts, s, tools, result);
        }
    }
    if (err == 0 && result != Py_None) {
        (void)_PyGen_SetStopIterationValue(result);
    }
    Py_DECREF(result);
    return NULL;
}

static int
loop_iter_traverse(PyObject *self, visitproc visit, void *arg)
{
    li_loop_iter *w = (li_loop_iter *)self;
    Py_VISIT(w->it);
    Py_VISIT(w->shadow);
    return 0;
}

static int
loop_iter_clear(PyObject *self)
{
    li_loop_iter *w = (li_loop_iter *)self;
    Py_CLEAR(w->it);
    Py_CLEAR(w->shadow);
    return 0;
}

static void
loop_iter_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    loop_iter_clear(self);
    PyObject_GC_Del(self);
}

static PyTypeObject li_loop_iter_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine.loop_iterator",
    .tp_basicsize = sizeof(li_loop_iter),
    .tp_dealloc = loop_iter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = loop_iter_traverse,
    .tp_clear = loop_iter_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = loop_iter_next,
    .tp_doc = "The iterator of a for loop, reporting how the loop ends.",
};

/* Iterators of the builtin containers, which end without an exception:
 * a loop over one has no RAISE to report. */
static PyTypeObject *quiet_iterators[16];
static int n_quiet;

static bool
is_quiet(PyObject *it)
{
    for (int k = 0; k < n_quiet; k++) {
        if (Py_IS_TYPE(it, quiet_iterators[k])) {
            return true;
        }
    }
    return false;
}

static int
find_quiet_iterators(void)
{
    static const char *const sources[] = {
        "iter([])", "iter(())", "iter(range(0))", "iter(range(1 << 70))", "iter({})",
        "iter({}.values())", "iter({}.items())", "iter(set())", "iter('')", "iter(b'')",
        "iter(bytearray())", "reversed([])",
    };
    PyObject *builtins = PyEval_GetBuiltins();   /* borrowed */
    PyObject *globals = PyDict_New();
    if (globals == NULL || PyDict_SetItemString(globals, "__builtins__", builtins) < 0) {
        Py_XDECREF(globals);
        return -1;
    }
    n_quiet = 0;
    for (size_t k = 0; k < sizeof(sources) / sizeof(sources[0]); k++) {
        PyObject *it = PyRun_String(sources[k], Py_eval_input, globals, NULL);
        if (it == NULL) {
            Py_DECREF(globals);
            return -1;
        }
        /* Builtin types are static: the pointer outlives the object. */
        quiet_iterators[n_quiet++] = Py_TYPE(it);
        Py_DECREF(it);
    }
    Py_DECREF(globals);
    return 0;
}

PyObject *
li_exc_wrap(li_site *s, PyObject *it)
{
    li_shadow *map = s->shadow;
    PyThreadState *ts = PyThreadState_Get();
    if (ts->tracing || map->original == NULL || Py_TYPE(it)->tp_iternext == NULL ||
        Py_IS_TYPE(it, &li_loop_iter_type)) {
        return Py_NewRef(it);
    }
    bool stop = li_tools_at(map->cs, LI_STOP_ITERATION, s->orig) != 0;
    bool raise = li_reg.global_tools[LI_RAISE] != 0;
    if (!stop && !raise) {
        li_site_disarm(s);
        return Py_NewRef(it);
    }
    /* A generator ends with STOP_ITERATION, anything else with RAISE. */
    if (PyGen_CheckExact(it) ? !stop : !raise || is_quiet(it)) {
        return Py_NewRef(it);
    }
    li_loop_iter *w = PyObject_GC_New(li_loop_iter, &li_loop_iter_type);
    if (w == NULL) {
        return NULL;
    }
    w->it = Py_NewRef(it);
    w->shadow = (PyCodeObject *)Py_NewRef(map->code);
    w->site = s;
    PyObject_GC_Track(w);
    return (PyObject *)w;
}

/* ---- frames that exit by exception ---- */

static bool
is_generator_code(PyCodeObject *code)
{
    return (code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) != 0;
}

/* A frame whose exit running.c reported, and the exception it left with
 * (borrowed, compared only: the exception keeps the frame alive). */
static _Thread_local struct {
    PyFrameObject *frame;
    PyObject *value;
} reported;

void
li_exc_exit_reported(PyFrameObject *f, PyObject *value)
{
    reported.frame = f;
    reported.value = value;
}

void
li_exc_frame_exit(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code)
{
    exc_triple e = {NULL, NULL, NULL};
    PyErr_Fetch(&e.type, &e.value, &e.tb);
    if (e.type == NULL) {
        return;
    }
    PyErr_NormalizeException(&e.type, &e.value, &e.tb);
    bool done = reported.frame == f && reported.value == e.value;
    reported.frame = NULL;
    if (done) {
        PyErr_Restore(e.type, e.value, e.tb);
        return;
    }
    /* 3.10 stores the traceback in the exception only as a handler takes
       it; natively callbacks find it there (debuggers read it at
       PY_UNWIND to tell an uncaught exception). */
    if (e.tb != NULL && PyException_SetTraceback(e.value, e.tb) < 0) {
        PyErr_WriteUnraisable(e.value);
    }
    /* (A PY_START callback's exception leaves f_lasti at -1 - its unit,
       start.c.) */
    int unit = li_lasti(f) >= 0 ? li_lasti(f) : -1 - li_lasti(f);
    bool again = take_reraised(f, e.tb, &unit);
    if (!again && e.tb != NULL && PyTraceBack_Check(e.tb)) {
        PyTracebackObject *head = (PyTracebackObject *)e.tb;
        if (head->tb_frame == f) {
            unit = head->tb_lasti >= 0 ? head->tb_lasti / 2
                   : head->tb_lasti <= -2 ? (-2 - head->tb_lasti) / 2 : 0;
        }
    }
    li_code_state *cs = li_code_state_get(code);
    /* Callbacks run as if from the frame, which has left the thread; and
       at its depth, which natively still counts against the recursion
       limit (a frame whose PY_START callback hit it fails its RAISE and
       PY_UNWIND callbacks too). */
    PyFrameObject *current = ts->frame;
    ts->frame = f;
    ts->recursion_depth++;
    /* A callback's exception replaces the one leaving the frame without an
       entry for it, as natively (3.12 adds the frame's entry before RAISE,
       and none after these events): no frame for deliver(). */
    if (!again) {
        deliver(ts, LI_RAISE, li_reg.global_tools[LI_RAISE], cs, code, unit, &e, NULL);
    }
    if (cleanups_wanted()) {
        li_b310 *b = cs != NULL ? cs->backend : NULL;
        li_shadow *map = b != NULL && b->shadow != NULL ? li_shadow_of(b->shadow) : NULL;
        int passed = li_cleanups_passed(code, map, unit);
        if (passed < 0) {
            triple_clear(&e);
            take_raised_in(f, &e);
        }
        deliver_cleanups(ts, passed, cs, code, unit, &e, f);
    }
    if (is_generator_code(code) && li_lasti(f) >= 0) {
        deliver(ts, LI_EXCEPTION_HANDLED, li_reg.global_tools[LI_EXCEPTION_HANDLED], cs, code,
                unit, &e, NULL);
        deliver(ts, LI_RERAISE, li_reg.global_tools[LI_RERAISE], cs, code, unit, &e, NULL);
    }
    deliver(ts, LI_PY_UNWIND, li_reg.global_tools[LI_PY_UNWIND], cs, code, unit, &e, NULL);
    ts->recursion_depth--;
    ts->frame = current;
    PyErr_Restore(e.type, e.value, e.tb);
}

int
li_exc_init(void)
{
    if (find_quiet_iterators() < 0) {
        return -1;
    }
    return PyType_Ready(&li_loop_iter_type);
}
