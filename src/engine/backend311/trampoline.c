/* Trampolines: moving frames onto a shadow from the original code they run.
 *
 * A frame moves between code objects only where its position is not held in
 * C locals of an evaluation loop.  Trampolines make such places in an
 * original code object: three units
 *
 *     PUSH_NULL; LOAD_BUILD_CLASS; CALL 0
 *
 * LOAD_BUILD_CLASS fetches builtins.__build_class__, which lowimpact replaces
 * by a Python function: called with no arguments it calls
 * _trampoline_landed(), which finds the frame that called it (suspended in a
 * Python-to-Python call, whose return reloads the position from the frame)
 * and moves it onto the landing pad of a shadow for the trampoline's unit
 * (shadow.c), which drops the call's result and goes on where the frame
 * would have.  With arguments it is the builtin __build_class__.  The plain
 * CALL reads no inline cache, so the units after it, which the interpreter
 * counts as its cache, are never read: the caller never resumes there.
 *
 * Two kinds:
 * - the entry trampoline over RESUME 0 starts new frames on a shadow, built
 *   then: functions of code that needs events keep their original code until
 *   it first runs, as CPython 3.12 instruments code when it first runs;
 * - resume trampolines reach a frame that was running when events were
 *   enabled: one where it goes on after the instruction it is in, and one at
 *   each loop header of its code, so that it moves within an iteration.
 *
 * Replaced units are saved and put back when the code no longer needs
 * events.  While any is armed the code is kept from being quickened (which
 * would make the trampoline's CALL adaptive, with the original's next units
 * as its cache).  co_code keeps showing the original: CPython caches it
 * before the first change.
 */

#include "b311.h"
#include "internal/pycore_interp.h"

static li_code_backend *armed;        /* codes with a trampoline armed */
static PyObject *landing_function;    /* the __build_class__ replacement */

/* Whether builtins.__build_class__ is the landing function, installing it
 * over the builtin if needed.  False when someone else replaced it: then no
 * trampoline can work. */
static bool
landing_function_installed(void)
{
    if (landing_function == NULL) {
        return false;
    }
    PyObject *builtins = _PyInterpreterState_GET()->builtins;
    PyObject *current = PyDict_GetItemString(builtins, "__build_class__");
    if (current == landing_function) {
        return true;
    }
    if (current == NULL || !PyCFunction_Check(current)) {
        return false;
    }
    if (PyDict_SetItemString(builtins, "__build_class__", landing_function) < 0) {
        PyErr_Clear();
        return false;
    }
    return true;
}

/* ---- where a trampoline can go ------------------------------------------- */

/* The deoptimised opcode and full oparg of the instruction at *unit, which
 * moves past it (prefixes and inline caches included). */
static int
read_instruction(const _Py_CODEUNIT *code, int n_units, int *unit, int *oparg)
{
    int arg = 0, opcode;
    while ((opcode = _PyOpcode_Deopt[_Py_OPCODE(code[*unit])]) == EXTENDED_ARG &&
           *unit + 1 < n_units)
    {
        arg = (arg << 8) | _Py_OPARG(code[*unit]);
        (*unit)++;
    }
    *oparg = (arg << 8) | _Py_OPARG(code[*unit]);
    *unit += 1 + _PyOpcode_Caches[opcode];
    return opcode;
}

/* Whether a frame of some thread executing `code` is at a unit in
 * [low, high). */
static bool
frame_between(PyCodeObject *code, int low, int high)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            int unit = (int)(f->prev_instr - _PyCode_CODE(code));
            if (f->f_code == code && f->owner != FRAME_OWNED_BY_FRAME_OBJECT &&
                unit >= low && unit < high)
            {
                return true;
            }
        }
    }
    return false;
}

/* Whether a frame of some thread executing `code` is in one of the units a
 * trampoline at `at` replaces, or goes on into one after `at`. */
static bool
frame_in_the_way(PyCodeObject *code, int at)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            if (f->f_code != code || f->owner == FRAME_OWNED_BY_FRAME_OBJECT) {
                continue;
            }
            int unit = (int)(f->prev_instr - _PyCode_CODE(code));
            int next = unit < 0 ? 0 : unit + 1 + _PyOpcode_Caches[
                _PyOpcode_Deopt[_Py_OPCODE(_PyCode_CODE(code)[unit])]];
            if ((unit >= at && unit < at + LI_TRAMPOLINE_UNITS) ||
                (next > at && next < at + LI_TRAMPOLINE_UNITS))
            {
                return true;
            }
        }
    }
    /* Suspended generators stop at a YIELD_VALUE and go on at the RESUME
       after it, which no trampoline replaces. */
    return false;
}

/* Units from a trampoline's start to just after its CALL's inline cache:
 * an error while it runs (LOAD_BUILD_CLASS failing, a RecursionError as
 * the call starts a frame) unwinds from one of them. */
#define LI_TRAMPOLINE_REACH (LI_TRAMPOLINE_UNITS + 4)

static const li_handler *
handler_at(const li_handler *handlers, int n_handlers, int unit)
{
    for (int h = 0; h < n_handlers; h++) {
        if (handlers[h].start <= unit && unit < handlers[h].end) {
            return &handlers[h];
        }
    }
    return NULL;
}

static bool
same_handler(const li_handler *a, const li_handler *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return a->target == b->target && a->depth == b->depth && a->lasti == b->lasti;
}

/* Whether an error raised anywhere a trampoline at `at` runs is handled as
 * one raised by the instruction it replaced. */
static bool
handled_as_at(const li_handler *handlers, int n_handlers, int at)
{
    const li_handler *first = handler_at(handlers, n_handlers, at);
    for (int unit = at + 1; unit < at + LI_TRAMPOLINE_REACH; unit++) {
        if (!same_handler(first, handler_at(handlers, n_handlers, unit))) {
            return false;
        }
    }
    return true;
}

/* Where the entry trampoline can go in `code`: the unit of its RESUME 0, or
 * -1.  It must not change what the original does for a frame that does not
 * take it:
 * - no jump may land on the units after RESUME that it replaces (RESUME
 *   itself is never jumped to);
 * - an error while it runs must be handled as one at RESUME (only the
 *   generator wrappers' handlers cover it), not by a try block that begins
 *   after it;
 * - it pushes two values: a generator whose code needs one slot may have
 *   been created before lowimpact's import, without spare slots. */
static int
entry_site(PyCodeObject *code)
{
    const _Py_CODEUNIT *units = _PyCode_CODE(code);
    int n = (int)Py_SIZE(code), at = -1;
    if ((code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) &&
        code->co_stacksize < 2)
    {
        return -1;
    }
    for (int unit = 0; unit < n;) {
        int here = unit, oparg;
        int opcode = read_instruction(units, n, &unit, &oparg);
        if (opcode == RESUME && oparg == 0 && at < 0) {
            at = here;
        }
        if (li_is_jump(opcode)) {
            int target = li_is_jump_backward(opcode) ? unit - oparg : unit + oparg;
            if (at >= 0 && target > at && target < at + LI_TRAMPOLINE_UNITS) {
                return -1;
            }
            if (at < 0 && target > here) {
                /* A jump before RESUME (none in 3.11): keep away. */
                return -1;
            }
        }
    }
    if (at < 0 || at + LI_TRAMPOLINE_UNITS > n) {
        return -1;
    }
    li_handler *handlers = NULL;
    int n_handlers = li_decode_handlers(code, &handlers);
    if (n_handlers < 0) {
        PyErr_Clear();
        return -1;
    }
    const li_handler *own = handler_at(handlers, n_handlers, at);
    if ((own != NULL && own->depth > 0) || !handled_as_at(handlers, n_handlers, at)) {
        at = -1;
    }
    PyMem_Free(handlers);
    return at;
}

static bool
is_conditional_jump(int opcode)
{
    switch (opcode) {
    case POP_JUMP_FORWARD_IF_FALSE:
    case POP_JUMP_FORWARD_IF_TRUE:
    case POP_JUMP_BACKWARD_IF_FALSE:
    case POP_JUMP_BACKWARD_IF_TRUE:
        return true;
    default:
        return false;
    }
}

static bool
is_fast_or_const(int opcode)
{
    return opcode == LOAD_FAST || opcode == STORE_FAST || opcode == LOAD_CONST;
}

/* Whether the instruction before instruction `i` may, specialised, run
 * instruction `i` itself and go on after it, or depends on what it is:
 * call groups (KW_NAMES, PRECALL), a PRECALL for list.append that skips
 * CALL and POP_TOP, COMPARE_OP before its jump, in-place string addition
 * before its STORE_FAST, and the pairs that become superinstructions. */
static bool
runs_into(const li_analysis *an, int i)
{
    if (i == 0) {
        return false;
    }
    int op = an->instrs[i].opcode, prev = an->instrs[i - 1].opcode;
    return prev == KW_NAMES || prev == PRECALL ||
           (prev == CALL && op == POP_TOP) ||
           (prev == COMPARE_OP && is_conditional_jump(op)) ||
           (prev == BINARY_OP && op == STORE_FAST) ||
           (is_fast_or_const(prev) && is_fast_or_const(op));
}

/* Whether a resume trampoline can replace instruction `i` and what follows
 * it, for frames with room for `capacity` values:
 * - it pushes two values;
 * - nothing may go on into the replaced units after the first: no jump or
 *   handler lands there, and no instruction before runs into them;
 * - generators find out whether they are in a `yield from` by reading the
 *   units around their YIELD_VALUE: those stay;
 * - an error while it runs must be handled as one raised by the instruction
 *   it replaces. */
static bool
resume_site_ok(const li_analysis *an, int i, int capacity)
{
    const li_instr *in = &an->instrs[i];
    int at = in->start, end = at + LI_TRAMPOLINE_UNITS;
    if (in->depth < 0 || in->depth + 2 > capacity || end > an->n_units ||
        !(in->flags & LI_I_TRACEABLE) || runs_into(an, i))
    {
        return false;
    }
    for (int k = i; k < an->n_instrs && an->instrs[k].start < end; k++) {
        const li_instr *replaced = &an->instrs[k];
        if (k > i && (replaced->flags & (LI_I_JUMP_TARGET | LI_I_HANDLER_TARGET))) {
            return false;
        }
        switch (replaced->opcode) {
        case RESUME:
        case SEND:
        case YIELD_VALUE:
        case RETURN_GENERATOR:
        case JUMP_BACKWARD_NO_INTERRUPT:
            return false;
        }
    }
    return handled_as_at(an->handlers, an->n_handlers, at);
}

/* ---- arming --------------------------------------------------------------- */

static li_trampoline *
find_trampoline(li_code_backend *cb, int at)
{
    for (int k = 0; k < cb->n_trampolines; k++) {
        if (cb->trampolines[k].at == at) {
            return &cb->trampolines[k];
        }
    }
    return NULL;
}

/* Whether an armed trampoline other than at `at` overlaps [at, at + 3). */
static bool
overlaps_armed(li_code_backend *cb, int at)
{
    for (int k = 0; k < cb->n_trampolines; k++) {
        const li_trampoline *t = &cb->trampolines[k];
        if (t->armed && t->at != at && t->at < at + LI_TRAMPOLINE_UNITS &&
            at < t->at + LI_TRAMPOLINE_UNITS)
        {
            return true;
        }
    }
    return false;
}

/* Arms a trampoline at `at`, whose place the caller checked.  0 or -1. */
static int
arm_at(li_code_backend *cb, int at)
{
    PyCodeObject *code = cb->cs->code;
    li_trampoline *t = find_trampoline(cb, at);
    if (t != NULL && t->armed) {
        return 0;
    }
    if (t == NULL) {
        if (li_reserve((void **)&cb->trampolines, &cb->cap_trampolines, cb->n_trampolines,
                       sizeof(li_trampoline), 2) < 0)
        {
            return -1;
        }
        t = &cb->trampolines[cb->n_trampolines++];
        t->at = at;
        t->armed = false;
    }
    if (cb->n_armed == 0) {
        /* co_code must go on showing the original: make CPython cache it. */
        PyObject *co_code = PyCode_GetCode(code);
        if (co_code == NULL) {
            return -1;
        }
        Py_DECREF(co_code);
        cb->saved_warmup = code->co_warmup;
        code->co_warmup = 0;
        cb->next_armed = armed;
        cb->prev_armed = NULL;
        if (armed != NULL) {
            armed->prev_armed = cb;
        }
        armed = cb;
    }
    static const uint8_t trampoline[LI_TRAMPOLINE_UNITS][2] = {
        {PUSH_NULL, 0}, {LOAD_BUILD_CLASS, 0}, {CALL, 0},
    };
    _Py_CODEUNIT *units = _PyCode_CODE(code) + at;
    memcpy(t->saved, units, sizeof(t->saved));
    memcpy(units, trampoline, sizeof(trampoline));
    t->armed = true;
    cb->n_armed++;
    return 0;
}

static void
unlink_armed(li_code_backend *cb)
{
    if (cb->prev_armed != NULL) {
        cb->prev_armed->next_armed = cb->next_armed;
    }
    else if (armed == cb) {
        armed = cb->next_armed;
    }
    if (cb->next_armed != NULL) {
        cb->next_armed->prev_armed = cb->prev_armed;
    }
    cb->next_armed = cb->prev_armed = NULL;
}

static void
disarm_all(li_code_backend *cb)
{
    PyCodeObject *code = cb->cs->code;
    for (int k = 0; k < cb->n_trampolines; k++) {
        li_trampoline *t = &cb->trampolines[k];
        if (t->armed) {
            memcpy(_PyCode_CODE(code) + t->at, t->saved, sizeof(t->saved));
            t->armed = false;
        }
    }
    cb->n_armed = 0;
    code->co_warmup = cb->saved_warmup;
    if (cb->saved_firsttraceable >= 0) {
        code->_co_firsttraceable = cb->saved_firsttraceable;
        cb->saved_firsttraceable = -1;
    }
    if (cb->true_stacksize >= 0) {
        code->co_stacksize = cb->true_stacksize;
        cb->true_stacksize = -1;
    }
    unlink_armed(cb);
}

int
li_trampoline_arm(li_code_state *cs)
{
    PyCodeObject *code = cs->code;
    if (cs->excluded) {
        return 0;
    }
    li_code_backend *cb = li_code_backend_ensure(cs);
    if (cb == NULL) {
        return -1;
    }
    if (cb->entry_site == -1) {
        cb->entry_site = entry_site(code);
        if (cb->entry_site < 0) {
            cb->entry_site = -2;
        }
    }
    int at = cb->entry_site;
    if (at < 0) {
        return 0;
    }
    li_trampoline *t = find_trampoline(cb, at);
    if (t != NULL && t->armed) {
        return 1;
    }
    if (frame_in_the_way(code, at) || overlaps_armed(cb, at) ||
        _PyInterpreterState_GET()->eval_frame != NULL || !landing_function_installed())
    {
        return 0;
    }
    if (arm_at(cb, at) < 0) {
        return -1;
    }
    /* Tracing starts at RESUME (the call event), which the trampoline
       replaces: it is not traced, and the shadow's RESUME is.  Until it
       returns, the frame counts as not started (CPython leaves such frames
       out of tracebacks and f_back), as it would be natively if its call
       failed (a RecursionError as the trampoline's own call starts a frame);
       unless a frame that ran before is at those units. */
    cb->saved_firsttraceable = code->_co_firsttraceable;
    bool started_there = frame_between(code, at + LI_TRAMPOLINE_UNITS, at + LI_TRAMPOLINE_REACH);
    code->_co_firsttraceable = at + (started_there ? LI_TRAMPOLINE_UNITS : LI_TRAMPOLINE_REACH);
    /* Frames that start from now on are allocated with room for any shadow
       they may land on (generators have theirs, see frames.c). */
    if (cb->true_stacksize < 0 &&
        !(code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)))
    {
        cb->true_stacksize = code->co_stacksize;
        code->co_stacksize = li_shadow_stack_bound(code->co_stacksize);
    }
    return 1;
}

/* The smallest room of the frames of `code` on any thread's stack, or of
 * frames that may start on it unseen. */
static int
least_capacity(PyCodeObject *code)
{
    int least = li_true_stacksize(code) + 1;
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        _PyInterpreterFrame *above = NULL;
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            if (f->f_code == code && f->owner != FRAME_OWNED_BY_FRAME_OBJECT) {
                int capacity = li_frame_capacity(ts, f, above);
                least = capacity < least ? capacity : least;
            }
            if (f->owner == FRAME_OWNED_BY_THREAD) {
                above = f;
            }
        }
    }
    return least;
}

static bool
is_loop_header(const li_analysis *an, int i)
{
    for (int j = i; j < an->n_instrs; j++) {
        if (an->instrs[j].opcode == JUMP_BACKWARD && an->instrs[j].target == i &&
            an->instrs[j].depth >= 0)
        {
            return true;
        }
    }
    return false;
}

/* Candidate places for the resume trampolines of a frame at instruction
 * `current`: the first fit along the instructions it goes on to without a
 * jump, then where its instruction may jump, then every loop header. */
static int
choose_sites(const li_analysis *an, int current, int capacity, int *sites, int max)
{
    int n = 0;
    for (int i = current + 1, steps = 0; i < an->n_instrs && steps < 6; i++, steps++) {
        if (resume_site_ok(an, i, capacity)) {
            sites[n++] = i;
            break;
        }
        if (!(an->instrs[i].flags & LI_I_FALLS_THROUGH) || an->instrs[i].target >= 0) {
            break;
        }
    }
    int target = an->instrs[current].target;
    if (target >= 0 && resume_site_ok(an, target, capacity)) {
        sites[n++] = target;
    }
    for (int j = 0; j < an->n_instrs && n < max; j++) {
        const li_instr *in = &an->instrs[j];
        if (in->opcode == JUMP_BACKWARD && in->depth >= 0 &&
            resume_site_ok(an, in->target, capacity))
        {
            sites[n++] = in->target;
        }
    }
    return n;
}

int
li_trampolines_reach(PyThreadState *ts, _PyInterpreterFrame *frame,
                     _PyInterpreterFrame *above)
{
    PyCodeObject *code = frame->f_code;
    li_code_state *cs = li_code_state_get(code);
    if (cs == NULL || cs->excluded || li_shadow_probes(code) != NULL ||
        _PyInterpreterState_GET()->eval_frame != NULL || !landing_function_installed())
    {
        return 0;
    }
    li_code_backend *cb = li_code_backend_ensure(cs);
    if (cb == NULL) {
        return -1;
    }
    /* Analysed as it was: armed trampolines swapped out meanwhile. */
    bool swapped = li_trampoline_swap(code);
    li_analysis an;
    int err = li_analyse(code, &an);
    if (swapped) {
        li_trampoline_swap(code);
    }
    if (err < 0) {
        return -1;
    }
    int unit = (int)(frame->prev_instr - _PyCode_CODE(code));
    int capacity = least_capacity(code);
    int *sites = PyMem_Malloc(sizeof(int) * ((size_t)an.n_instrs + 2));
    if (sites == NULL) {
        li_analysis_clear(&an);
        PyErr_NoMemory();
        return -1;
    }
    int n = unit >= 0 ? choose_sites(&an, an.instr_at[unit], capacity, sites, an.n_instrs + 2)
                      : 0;
    /* Loop headers have landing pads in every shadow; the other places get
       theirs in shadows built from now on. */
    for (int k = 0; k < n && err == 0; k++) {
        if (!is_loop_header(&an, sites[k])) {
            err = li_add_resume_point(cb, an.instrs[sites[k]].start);
        }
    }
    /* The frame must have room for the shadow it will land on. */
    PyObject *landing = NULL;
    if (err == 0 && n > 0) {
        landing = li_landing_code(code, an.instrs[sites[0]].start,
                                  li_frame_capacity(ts, frame, above), frame->f_builtins);
        err = landing == NULL ? -1 : 0;
    }
    li_probes *lp = landing != NULL ? li_shadow_probes((PyCodeObject *)landing) : NULL;
    bool fits = lp != NULL && lp->kinds != 0;
    for (int k = 0; k < n && err == 0 && fits; k++) {
        int at = an.instrs[sites[k]].start;
        if (!frame_in_the_way(code, at) && !overlaps_armed(cb, at)) {
            err = arm_at(cb, at);
        }
    }
    Py_XDECREF(landing);
    PyMem_Free(sites);
    li_analysis_clear(&an);
    return err;
}

void
li_trampoline_forget(li_code_backend *cb)
{
    if (cb->n_armed > 0) {
        unlink_armed(cb);   /* the code is being freed: its bytes do not matter */
        cb->n_armed = 0;
    }
    PyMem_Free(cb->trampolines);
    PyMem_Free(cb->resume_points);
}

bool
li_trampoline_swap(PyCodeObject *code)
{
    li_code_state *cs = li_code_state_get(code);
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    if (cb == NULL || cb->n_armed == 0) {
        return false;
    }
    for (int k = 0; k < cb->n_trampolines; k++) {
        li_trampoline *t = &cb->trampolines[k];
        if (t->armed) {
            _Py_CODEUNIT current[LI_TRAMPOLINE_UNITS];
            _Py_CODEUNIT *units = _PyCode_CODE(code) + t->at;
            memcpy(current, units, sizeof(current));
            memcpy(units, t->saved, sizeof(current));
            memcpy(t->saved, current, sizeof(current));
        }
    }
    return true;
}

int
li_trampolines_disarm_unneeded(void)
{
    for (li_code_backend *cb = armed, *next; cb != NULL; cb = next) {
        next = cb->next_armed;
        if (!li_needs_instrumenting(cb->cs->code)) {
            disarm_all(cb);
        }
    }
    return 0;
}

/* ---- landing ---------------------------------------------------------------- *
 *
 * The __build_class__ replacement runs, in Python,
 *
 *     if args or kwargs or not _lander: return <the builtin>(*args, **kwargs)
 *     return _lander.token
 *
 * The truth test of the lander moves the frame that called it out of a
 * trampoline.  Trace and profile functions must not see the replacement run:
 * its code starts no traceable instruction (no call or line events), and
 * from the move until the landing pad drops the token it returned, the
 * thread counts as tracing (no return event).  Nothing in it is a call a
 * profiler would report.
 */

typedef struct {
    PyObject_HEAD
} lander_object;

typedef struct {
    PyObject_HEAD
    PyThreadState *tstate;      /* whose tracing it suspends while alive */
} token_object;

static _Thread_local token_object *waiting_token;

static void
token_dealloc(PyObject *self)
{
    PyThreadState_LeaveTracing(((token_object *)self)->tstate);
    PyObject_Free(self);
}

static PyTypeObject token_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine._LandingToken",
    .tp_basicsize = sizeof(token_object),
    .tp_dealloc = token_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Dropped by a landing pad: ends the landing.",
};

/* Moves the frame that called the __build_class__ replacement out of a
 * trampoline.  1 if it did, 0 if that frame came from no trampoline, -1 on
 * error. */
static int
land(PyThreadState *tstate)
{
    _PyInterpreterFrame *here = tstate->cframe->current_frame;
    _PyInterpreterFrame *frame = here != NULL ? here->previous : NULL;
    if (frame == NULL || frame->owner == FRAME_OWNED_BY_FRAME_OBJECT) {
        return 0;
    }
    PyCodeObject *code = frame->f_code;
    li_code_state *cs = li_code_state_get(code);
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    /* The interpreter left the caller's position after CALL's inline cache. */
    int at = (int)(frame->prev_instr - _PyCode_CODE(code)) -
             (LI_TRAMPOLINE_UNITS - 1) - _PyOpcode_Caches[CALL];
    if (cb == NULL || find_trampoline(cb, at) == NULL) {
        return 0;
    }
    if (here->is_entry) {
        /* Not called from the caller's evaluation loop (a PEP 523 frame
           evaluator was installed since): the caller cannot be moved, and
           it cannot go on in the original either. */
        PyErr_SetString(PyExc_SystemError,
                        "lowimpact: a frame evaluation function was installed while "
                        "monitoring was on");
        return -1;
    }
    token_object *token = PyObject_New(token_object, &token_type);
    if (token == NULL) {
        return -1;
    }
    token->tstate = tstate;
    PyObject *landing = li_landing_code(code, at, li_frame_capacity(tstate, frame, here),
                                        frame->f_builtins);
    if (landing == NULL) {
        PyObject_Free(token);
        return -1;
    }
    li_probes *lp = li_shadow_probes((PyCodeObject *)landing);
    int pad = li_pad_unit(lp, at);
    assert(pad >= 0);
    if (li_frame_set_code(frame, lp->shadow, pad - 1) < 0) {
        Py_DECREF(landing);
        PyObject_Free(token);
        return -1;
    }
    /* A frame reached while running can have tracebacks already. */
    li_fix_moved_tracebacks();
    PyFunctionObject *func = frame->f_func;
    if (at == cb->entry_site && func != NULL && func->func_code == (PyObject *)code &&
        lp == li_current_shadow(cs))
    {
        Py_SETREF(func->func_code, Py_NewRef(landing));
        func->func_version = 0;
    }
    Py_DECREF(landing);
    PyThreadState_EnterTracing(tstate);
    Py_XSETREF(waiting_token, token);
    return 1;
}

static int
lander_bool(PyObject *Py_UNUSED(self))
{
    /* Nothing landing does may be seen by tracers (land() keeps the thread
       tracing once it moved the frame, until the token goes). */
    PyThreadState *tstate = _PyThreadState_GET();
    PyThreadState_EnterTracing(tstate);
    int landed = land(tstate);
    PyThreadState_LeaveTracing(tstate);
    return landed;
}

static PyObject *
lander_token(PyObject *Py_UNUSED(self), void *Py_UNUSED(closure))
{
    token_object *token = waiting_token;
    waiting_token = NULL;
    return token != NULL ? (PyObject *)token : Py_NewRef(Py_None);
}

static PyNumberMethods lander_as_number = {
    .nb_bool = lander_bool,
};

static PyGetSetDef lander_getset[] = {
    {"token", lander_token, NULL, "What the replacement returns after a landing.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject lander_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine._Lander",
    .tp_basicsize = sizeof(lander_object),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "True once it moved its caller's caller out of a trampoline.",
    .tp_as_number = &lander_as_number,
    .tp_getset = lander_getset,
};

static PyObject *
set_trampoline_target(PyObject *Py_UNUSED(module), PyObject *function)
{
    if (!PyFunction_Check(function)) {
        PyErr_SetString(PyExc_TypeError, "the trampoline target must be a function");
        return NULL;
    }
    /* No instruction of it is traceable: tracers see no call or line. */
    PyCodeObject *code = (PyCodeObject *)PyFunction_GET_CODE(function);
    code->_co_firsttraceable = (int)Py_SIZE(code);
    Py_XSETREF(landing_function, Py_NewRef(function));
    Py_RETURN_NONE;
}

static PyMethodDef trampoline_methods[] = {
    {"_set_trampoline_target", set_trampoline_target, METH_O,
     "_set_trampoline_target($module, function, /)\n--\n\n"
     "Register the function that replaces builtins.__build_class__."},
    {NULL, NULL, 0, NULL},
};

int
li_trampoline_init(PyObject *module)
{
    if (PyType_Ready(&token_type) < 0 || PyType_Ready(&lander_type) < 0) {
        return -1;
    }
    PyObject *lander = (PyObject *)PyObject_New(lander_object, &lander_type);
    if (lander == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "_lander", lander) < 0) {
        Py_DECREF(lander);
        return -1;
    }
    return PyModule_AddFunctions(module, trampoline_methods);
}

Py_ssize_t
li_trampolines_armed_count(void)
{
    Py_ssize_t n = 0;
    for (li_code_backend *cb = armed; cb != NULL; cb = cb->next_armed) {
        n++;
    }
    return n;
}
