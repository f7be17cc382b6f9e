/* Landing: moving a frame that is executing, in C locals of an evaluation
 * loop, onto a shadow.
 *
 * Such a frame can only change code where the interpreter reloads its
 * position from the frame: when a Python-to-Python call it made returns.
 * So the frame is made to call the landing function, a private Python
 * function that runs
 *
 *     return _lander.token if _lander else None
 *
 * The truth test of the lander moves the calling frame onto the landing pad
 * of a shadow (shadow.c), where the frame resumes when the call returns:
 * the pad drops the result and jumps to where the frame goes on.  Two things
 * make frames call it: trampolines written into the code they run
 * (trampoline.c), and probes, which divert their frame to a stub that calls
 * it (probe.c).  Either first says where the frame goes (li_expect_landing).
 *
 * Trace and profile functions must not see the landing function run: its
 * code starts no traceable instruction (no call or line events), and from
 * the move until the landing pad drops the token it returned, the thread
 * counts as tracing (no return event).  Nothing in it is a call a profiler
 * would report.
 */

#include "b311.h"
#include "internal/pycore_interp.h"

static PyObject *landing_function;    /* strong */

PyObject *
li_landing_function(void)
{
    return landing_function;
}

/* ---- landings expected -------------------------------------------------- */

/* Where frames that are about to call the landing function go.  Usually one
 * at a time; more when code that runs before the call lands too: another
 * thread, or a trace function that `f_trace_opcodes` calls at the
 * trampoline's CALL, whose own frames may land.
 *
 * An entry whose call never ran (the trace function raised there, or the
 * call failed as it started a frame) stays behind when its frame goes on
 * elsewhere or is gone, and frames are allocated on a stack: another frame,
 * of any code (the same, even), may later stand at its address.  So an
 * entry counts only while its frame is on its thread's stack, runs the code
 * object it ran, and stands on the path from where it was when the entry
 * was made to the call (`current()`); the others are dropped as its thread
 * lands. */
typedef struct {
    PyThreadState *tstate;
    _PyInterpreterFrame *frame;
    PyCodeObject *original;      /* borrowed: the frame's code holds it */
    /* Only compared with the code of a frame on the thread's stack, which
       holds that one: never read unless it is the same object. */
    PyCodeObject *code;
    /* Units of `code`: where the frame stood, the first unit it goes to
       from there, and the CALL of the landing function (-1 if the code
       showed none: then any position counts). */
    int from, first, call;
    _Py_CODEUNIT from_unit;      /* the units at `from` and `call` then */
    _Py_CODEUNIT call_unit;
    li_landing to;
    li_unwind unwind;            /* what a jump pops as the frame lands */
} expected_landing;

static expected_landing *expected;
static int n_expected, cap_expected;

/* The CALL of the landing function that a frame standing at unit `from` of
 * `code` goes to, in a straight line from the next unit, or from the
 * target of the jump of a probe that diverts it: the CALL of a trampoline
 * after its UNARY_POSITIVE, or that of a DIVERT stub (shadow.c).  *first:
 * the first unit it goes to.  -1 if there is none within a few
 * instructions. */
static int
landing_call(PyCodeObject *code, int from, int *first)
{
    const _Py_CODEUNIT *units = _PyCode_CODE(code);
    int n_units = (int)Py_SIZE(code);
    if (from < 0 || from >= n_units) {
        return -1;
    }
    int opcode = _PyOpcode_Deopt[_Py_OPCODE(units[from])];
    int next = from + 1 + _PyOpcode_Caches[opcode];
    int u = next;
    if (opcode == POP_JUMP_FORWARD_IF_TRUE) {
        u = next + _Py_OPARG(units[from]);
    }
    else if (opcode == POP_JUMP_BACKWARD_IF_TRUE) {
        u = next - _Py_OPARG(units[from]);
    }
    *first = u;
    for (int steps = 0; steps < 8 && u >= 0 && u < n_units; steps++) {
        opcode = _PyOpcode_Deopt[_Py_OPCODE(units[u])];
        if (opcode == CALL) {
            return u;
        }
        if (opcode != PUSH_NULL && opcode != EXTENDED_ARG && opcode != LOAD_CONST &&
            opcode != PRECALL)
        {
            return -1;
        }
        u += 1 + _PyOpcode_Caches[opcode];
    }
    return -1;
}

int
li_expect_landing_unwinding(PyThreadState *tstate, _PyInterpreterFrame *frame,
                            PyCodeObject *code, li_landing to, li_unwind unwind)
{
    if (li_reserve((void **)&expected, &cap_expected, n_expected, sizeof(expected_landing),
                   4) < 0)
    {
        return -1;
    }
    assert(frame->f_code == code);
    const _Py_CODEUNIT *units = _PyCode_CODE(code);
    int from = (int)(frame->prev_instr - units);
    int first = -1;
    int call = landing_call(code, from, &first);
    assert(call >= 0);
    expected[n_expected++] = (expected_landing){
        .tstate = tstate, .frame = frame, .original = li_backend_original(code),
        .code = code, .from = from, .first = first, .call = call,
        .from_unit = call >= 0 ? units[from] : 0, .call_unit = call >= 0 ? units[call] : 0,
        .to = to, .unwind = unwind};
    return 0;
}

int
li_expect_landing(PyThreadState *tstate, _PyInterpreterFrame *frame, PyCodeObject *code,
                  li_landing to)
{
    return li_expect_landing_unwinding(tstate, frame, code, to, (li_unwind){0, -1});
}

/* Whether two units hold the same instruction (the interpreter may have
 * specialised either). */
static inline bool
same_instruction(_Py_CODEUNIT a, _Py_CODEUNIT b)
{
    return _PyOpcode_Deopt[_Py_OPCODE(a)] == _PyOpcode_Deopt[_Py_OPCODE(b)] &&
           _Py_OPARG(a) == _Py_OPARG(b);
}

/* Whether the landing `e` expects is still on its way: its frame is on its
 * thread's stack, runs the code object it ran, whose units there are those
 * it had, and stands where it stood or further on the path to the call,
 * at the CALL (its trace function running, or the call failing) or at the
 * CALL's last inline-cache unit (the landing function's frame started). */
static bool
current(const expected_landing *e)
{
    _PyInterpreterFrame *f = e->frame;
    if (!li_frame_on_thread(e->tstate, f) || f->f_code != e->code) {
        return false;
    }
    if (e->call < 0) {
        return true;
    }
    /* (The frame holds the code object; one freed since, of the same
       address, may be smaller.) */
    const _Py_CODEUNIT *units = _PyCode_CODE(e->code);
    if (e->from >= Py_SIZE(e->code) || e->call >= Py_SIZE(e->code) ||
        !same_instruction(units[e->from], e->from_unit) ||
        !same_instruction(units[e->call], e->call_unit))
    {
        return false;
    }
    int at = (int)(f->prev_instr - units);
    return at == e->from || (at >= e->first && at <= e->call) ||
           at == e->call + _PyOpcode_Caches[CALL];
}

bool
li_landing_expected(PyThreadState *tstate, _PyInterpreterFrame *frame)
{
    for (int k = 0; k < n_expected; k++) {
        if (expected[k].tstate == tstate && expected[k].frame == frame &&
            current(&expected[k]))
        {
            return true;
        }
    }
    return false;
}

/* Takes the landing expected for `frame` of `tstate`, which is calling the
 * landing function, into *out: its newest one (every way to that call
 * makes one).  Drops its older ones, and the thread's entries that no
 * longer count (see current()).  A frame further down the stack may still
 * be on its way to the landing function, its trace function running at
 * the trampoline's CALL: its entry stays.  False if there is none. */
static bool
take_expected(PyThreadState *tstate, _PyInterpreterFrame *frame, expected_landing *out)
{
    int k = n_expected - 1;
    while (k >= 0 && (expected[k].tstate != tstate || expected[k].frame != frame)) {
        k--;
    }
    if (k < 0) {
        return false;
    }
    *out = expected[k];
    int kept = 0;
    for (int j = 0; j < n_expected; j++) {
        bool drop = expected[j].tstate == tstate &&
                    (expected[j].frame == frame ? j <= k : !current(&expected[j]));
        if (!drop) {
            expected[kept++] = expected[j];
        }
    }
    n_expected = kept;
    return true;
}

static bool
thread_alive(PyInterpreterState *interp, PyThreadState *tstate)
{
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        if (ts == tstate) {
            return true;
        }
    }
    return false;
}

void
li_forget_landings_of_dead_threads(void)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    int kept = 0;
    for (int j = 0; j < n_expected; j++) {
        if (thread_alive(interp, expected[j].tstate)) {
            expected[kept++] = expected[j];
        }
    }
    n_expected = kept;
}

/* ---- the lander ----------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
} lander_object;

typedef struct {
    PyObject_HEAD
    PyThreadState *tstate;      /* whose tracing it suspends while alive */
    /* A frame that goes on in its original code (start_before_building())
       drops the token at the unit where it starts, made a POP_TOP for it:
       the unit goes back as it does.  Owned; NULL otherwise. */
    PyCodeObject *restore_code;
    int restore_at;
    _Py_CODEUNIT restore_unit;
    /* The frame whose next 'line' event the thread's trace function must
       not see (compared only), or NULL. */
    _PyInterpreterFrame *quiet_frame;
    /* The frame that landed (compared only): its thread may trace, and it
       may have landed on a shadow that needs the slot after its
       allocation, which it gets as the token drops. */
    _PyInterpreterFrame *landed;
} token_object;

static _Thread_local token_object *waiting_token;

/* A landing pad jumps back to where its frame goes on: a trace function
 * sees a 'line' event there, also where the frame goes on in the line it
 * was in, as after a trampoline in the inline cache of a call, where the
 * original reports none.  For such a landing the thread's trace function
 * (tstate->c_tracefunc; c_traceobj stays) is wrapped in line_filter() from
 * the token's drop until the frame's next event: its 'line' event is
 * dropped, other events go through, and the trace function is back as soon
 * as an event other than that frame's 'opcode' events (the pad's jump, with
 * f_trace_opcodes) comes.  Per thread, as trace functions are. */
static _Thread_local Py_tracefunc filtered_func;
static _Thread_local _PyInterpreterFrame *filtered_frame;

static int
line_filter(PyObject *obj, PyFrameObject *f, int what, PyObject *arg)
{
    Py_tracefunc func = filtered_func;
    bool own = f->f_frame == filtered_frame;
    if (!(own && what == PyTrace_OPCODE)) {
        PyThreadState *tstate = _PyThreadState_GET();
        /* Unless a trace function was set since.  (CPython passes the
           opcode event that may follow the line event here too: `func`
           stays this thread's until the next filter.) */
        if (tstate->c_tracefunc == line_filter) {
            tstate->c_tracefunc = func;
        }
        filtered_frame = NULL;
        if (own && what == PyTrace_LINE) {
            return 0;
        }
    }
    return func(obj, f, what, arg);
}

static void
token_dealloc(PyObject *self)
{
    token_object *token = (token_object *)self;
    li_frame_claim_slot(token->tstate, token->landed);
    PyThreadState_LeaveTracing(token->tstate);
    Py_tracefunc func = token->tstate->c_tracefunc;
    if (token->quiet_frame != NULL && func != NULL && func != line_filter) {
        filtered_func = func;
        filtered_frame = token->quiet_frame;
        token->tstate->c_tracefunc = line_filter;
    }
    if (token->restore_code != NULL) {
        _PyCode_CODE(token->restore_code)[token->restore_at] = token->restore_unit;
        Py_DECREF(token->restore_code);
    }
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

/* A frame that came to the entry trampoline of its code with values on its
 * stack came with an exception raised at a unit that an exception route
 * sends there (trampoline.c): *to becomes where that goes on.  The newest
 * traceback entry of the exception, on top of the stack, says which unit. */
static bool
raised_landing(_PyInterpreterFrame *frame, li_landing *to)
{
    int unit = li_raised_at(frame, frame->localsplus[frame->stacktop - 1]);
    return unit >= 0 && li_trampoline_raised_landing(frame->f_code, unit, to);
}

/* Frames whose PY_START callbacks run at their landing, which decides where
 * they go once they return (start_before_building()): one per thread at
 * most, as callbacks get no events.  Meanwhile their code counts its RESUME
 * as traceable (the frames are seen as started); `first` is the code's
 * _co_firsttraceable to put back when the last of its frames is done (the
 * callbacks let other threads run, whose frames of the code may start
 * meanwhile and finish in any order), if its entry trampoline is still
 * armed then. */
typedef struct {
    _PyInterpreterFrame *frame;
    int first;
} starting_frame;

static starting_frame *starting;
static int n_starting, cap_starting;

bool
li_frame_starting(_PyInterpreterFrame *frame)
{
    for (int k = 0; k < n_starting; k++) {
        if (starting[k].frame == frame) {
            return true;
        }
    }
    return false;
}

/* A starting frame of `code`, or NULL. */
static starting_frame *
starting_of_code(PyCodeObject *code)
{
    for (int k = 0; k < n_starting; k++) {
        if (starting[k].frame->f_code == code) {
            return &starting[k];
        }
    }
    return NULL;
}

static void
forget_starting(_PyInterpreterFrame *frame)
{
    for (int k = 0; k < n_starting; k++) {
        if (starting[k].frame == frame) {
            starting[k] = starting[--n_starting];
            return;
        }
    }
}

enum { START_NOT_FIRED, START_FIRED, START_BARE };

/* The frame at the entry trampoline of `cs`'s code, at unit `at`, goes on
 * from its RESUME in the original, which the trampoline leaves; the token
 * the landing function returns is dropped where the frame starts (the frame
 * cannot be anywhere else meanwhile: no thread switch, no trace function
 * until it is dropped).  Whether it does: not while a frame of any thread
 * stands in the trampoline's units. */
static bool
go_on_in_original(_PyInterpreterFrame *frame, li_code_state *cs, int at, token_object *token)
{
    PyCodeObject *code = cs->code;
    _Py_CODEUNIT *saved_prev = frame->prev_instr;
    /* (Out of the trampoline's units first, or it would stay for it.) */
    frame->prev_instr = _PyCode_CODE(code) + at - 1;
    if (!li_trampolines_disarm_original(cs)) {
        frame->prev_instr = saved_prev;
        return false;
    }
    _Py_CODEUNIT *unit = _PyCode_CODE(code) + at;
    token->restore_code = (PyCodeObject *)Py_NewRef(code);
    token->restore_at = at;
    token->restore_unit = *unit;
    *unit = _Py_MAKECODEUNIT(POP_TOP, 0);
    return true;
}

/* A frame at the entry trampoline of code that no shadow runs yet, where
 * PY_START is the one event wanted: its PY_START fires here, before any
 * shadow is built.  The callbacks see the frame as natively, standing at its
 * RESUME (f_lasti, f_lineno), with the landing function's frame out of the
 * way.  If they left nothing wanted there (DISABLE, no local events: what a
 * coverage tool does for files it does not measure, a debugger for code
 * without breakpoints), the frame goes on in its original code, and so do
 * its functions from then on: no shadow is built for it.  Else the frame
 * lands on a shadow past its PY_START (to->to says where).
 * START_BARE, START_FIRED, START_NOT_FIRED (nothing done), or -1 on error. */
static int
start_before_building(PyThreadState *tstate, _PyInterpreterFrame *here,
                      _PyInterpreterFrame *frame, expected_landing *to, token_object *token)
{
    PyCodeObject *code = to->original;
    li_code_state *cs = li_code_state_get(code);
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    int at = to->to.unit;
    /* (Tracing once: the lander's own; inside a callback no event fires.)
       A thread with a sys.settrace or sys.setprofile function gets its call
       event at the RESUME of the shadow the frame lands on: neither the
       POP_TOP a frame going on in its original starts at, nor a landing
       past that RESUME, would make one. */
    if (tstate->tracing != 1 || tstate->c_tracefunc != NULL || tstate->c_profilefunc != NULL ||
        cb == NULL || frame->f_code != code || cb->current != NULL ||
        at != cb->entry_site || cb->saved_firsttraceable < 0 ||
        (code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) ||
        !li_only_start_wanted(cs))
    {
        return START_NOT_FIRED;
    }
    /* CPython instruments code as it starts. */
    li_code_state_refresh(cs);
    uint8_t tools = li_tools_at_local(cs, LI_PY_START, at);
    if (tools == 0) {
        return START_NOT_FIRED;
    }
    PyObject *offset = PyLong_FromLong(at * (long)sizeof(_Py_CODEUNIT));   /* owned */
    if (offset == NULL ||
        li_reserve((void **)&starting, &cap_starting, n_starting, sizeof(*starting), 4) < 0)
    {
        Py_XDECREF(offset);
        return -1;
    }
    starting_frame *other = starting_of_code(code);
    int saved_first = other != NULL ? other->first : code->_co_firsttraceable;
    starting[n_starting++] = (starting_frame){frame, saved_first};
    _Py_CODEUNIT *saved_prev = frame->prev_instr;
    frame->prev_instr = _PyCode_CODE(code) + at;
    code->_co_firsttraceable = cb->saved_firsttraceable;
    tstate->cframe->current_frame = frame;
    PyObject *args[3] = {NULL, (PyObject *)code, offset};
    PyThreadState_LeaveTracing(tstate);
    int err = li_call_tools(tstate, LI_PY_START, tools, cs, at, args, 2);
    PyThreadState_EnterTracing(tstate);
    Py_DECREF(offset);
    if (err < 0) {
        /* Natively the frame's entry in the traceback is at its RESUME; as
           it is, the frame counts as not started. */
        PyFrameObject *f = PyThreadState_GetFrame(tstate);   /* owned: the frame's */
        if (f != NULL) {
            (void)PyTraceBack_Here(f);   /* an error replaces the exception */
            Py_DECREF(f);
        }
    }
    tstate->cframe->current_frame = here;
    frame->prev_instr = saved_prev;
    forget_starting(frame);
    /* Unless the entry trampoline went meanwhile (the callbacks of another
       frame of the code, started first, disabled it there), which put back
       the code's own value: the one these frames saw, to keep. */
    if (starting_of_code(code) == NULL && cb->saved_firsttraceable >= 0) {
        code->_co_firsttraceable = saved_first;
    }
    if (err < 0) {
        return -1;
    }
    if (cb->current == NULL && li_start_wanted_nowhere(cs)) {
        if (li_started_bare_reserve() < 0) {
            return -1;
        }
        if (go_on_in_original(frame, cs, at, token)) {
            li_note_started_bare(cb);
            return START_BARE;
        }
        return START_FIRED;     /* lands at RESUME 0, whose PY_START no tool wants now */
    }
    to->to = (li_landing){at + 1, LI_LAND_FALLTHROUGH};
    return li_add_resume_point(cb, to->to) < 0 ? -1 : START_FIRED;
}

/* A frame at the entry trampoline of code, not generator-like, that no tool
 * wants events from: the trampoline stayed so that the code is instrumented
 * as it next starts, as natively, which forgets what tools disabled of the
 * events they turned off since (li_refresh_awaited()).  Then the frame goes
 * on in its original, as do the code's later frames.  1 if it does, 0 if it
 * lands (on a shadow without probes), -1 on error. */
static int
start_refreshing(PyThreadState *tstate, _PyInterpreterFrame *frame, expected_landing *to,
                 token_object *token)
{
    PyCodeObject *code = to->original;
    li_code_state *cs = li_code_state_get(code);
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    if (cb == NULL || li_needs_instrumenting(code) ||
        (code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)))
    {
        return 0;
    }
    li_code_state_refresh(cs);
    /* Its functions come from the original's nested code, which is to
       refresh as it starts too (a shadow without probes holds them
       prepared). */
    if (li_arm_nested(code, frame->f_builtins) < 0) {
        return -1;
    }
    /* (As start_before_building(): trace and profile functions get their
       call event on a shadow.) */
    if (tstate->tracing == 1 && tstate->c_tracefunc == NULL &&
        tstate->c_profilefunc == NULL && frame->f_code == code &&
        to->to.unit == cb->entry_site && cb->saved_firsttraceable >= 0 &&
        go_on_in_original(frame, cs, to->to.unit, token))
    {
        /* Nothing is left for restart_events() to re-arm, nor room to keep
           for its frames. */
        li_forget_started_bare(cb);
        li_release_shadow_stack(cb);
        return 1;
    }
    /* The later frames start in the original (the trampoline goes once this
       frame has left its units). */
    return li_trampolines_disarm_unneeded_of(cs) < 0 ? -1 : 0;
}

/* Whether `frame`, traced, lands where it goes on in the line it was in,
 * by falling through in the original: the original would report no 'line'
 * event there, the landing pad's jump back would (token_dealloc()).  Its
 * `line` must not be -1, so that the event dropped is that one. */
static bool
goes_on_in_its_line(PyThreadState *tstate, _PyInterpreterFrame *frame,
                    const expected_landing *to)
{
    /* A frame on a shadow as its thread's trace function came (update.c)
       stood at a unit of the shadow. */
    li_probes *lp = to->code != to->original ? li_shadow_probes(to->code) : NULL;
    int from = lp == NULL ? to->from
               : to->from >= 0 && to->from < lp->n_units ? li_orig_of(lp, to->from) : -1;
    if (tstate->c_tracefunc == NULL || frame->f_code != to->code ||
        (to->code != to->original && lp == NULL) || from < 0 || to->to.unit <= 0 ||
        (to->to.phase != LI_LAND_BEFORE_AFTER && to->to.phase != LI_LAND_FALLTHROUGH))
    {
        return false;
    }
    /* A trampoline armed in place holds the frame in its own units, at or
       past the instruction it lands at: the frame fell through to it from
       the unit before (caches share their instruction's line). */
    int came_from = from < to->to.unit ? from : to->to.unit - 1;
    if (frame->frame_obj != NULL && !frame->frame_obj->f_trace_lines) {
        return false;
    }
    /* From the location table: the line array hides trampolines' units
       (trampoline.c). */
    int line, from_line, ignored;
    if (!PyCode_Addr2Location(to->original, to->to.unit * (int)sizeof(_Py_CODEUNIT), &line,
                              &ignored, &ignored, &ignored) ||
        !PyCode_Addr2Location(to->original, came_from * (int)sizeof(_Py_CODEUNIT), &from_line,
                              &ignored, &ignored, &ignored))
    {
        return false;
    }
    return line >= 0 && line == from_line;
}

/* Moves the frame that called the landing function where it was expected
 * to go.  1 if it did, 0 if no landing was expected for that frame, -1 on
 * error. */
static int
land(PyThreadState *tstate)
{
    _PyInterpreterFrame *here = tstate->cframe->current_frame;
    _PyInterpreterFrame *frame = here != NULL ? here->previous : NULL;
    expected_landing to;
    if (frame == NULL || frame->owner == FRAME_OWNED_BY_FRAME_OBJECT ||
        !take_expected(tstate, frame, &to))
    {
        return 0;
    }
    if (here->is_entry) {
        /* Not called from the caller's evaluation loop (a PEP 523 frame
           evaluator was installed since): the caller cannot be moved, and
           it cannot go on where it is either. */
        PyErr_SetString(PyExc_SystemError,
                        "lowimpact: a frame evaluation function was installed while "
                        "monitoring was on");
        return -1;
    }
    PyCodeObject *original = to.original;
    if (li_backend_original(frame->f_code) != original) {
        PyErr_SetString(PyExc_SystemError, "lowimpact: a landing frame changed code");
        return -1;
    }
    /* The landing function's call was inlined (not is_entry), which set
       the caller's stack top. */
    if (to.to.phase == LI_LAND_START && frame->stacktop > frame->f_code->co_nlocalsplus &&
        !raised_landing(frame, &to.to))
    {
        PyErr_SetString(PyExc_SystemError, "lowimpact: a frame came to its entry trampoline "
                                           "with values on its stack");
        return -1;
    }
    if (li_trampoline_routes_done(frame->f_code, frame) < 0) {
        return -1;
    }
    /* A trampoline kept armed for this frame when its code stopped needing
       it can go now that the frame is past its units (the frame stands at
       its CALL's inline cache, and moves below); so can those kept for
       frames that left theirs otherwise. */
    li_trampolines_settle();
    token_object *token = PyObject_New(token_object, &token_type);
    if (token == NULL) {
        return -1;
    }
    token->tstate = tstate;
    token->landed = frame;
    token->restore_code = NULL;
    token->quiet_frame = goes_on_in_its_line(tstate, frame, &to) ? frame : NULL;
    bool starting = to.to.phase == LI_LAND_START;
    int refreshed = starting ? start_refreshing(tstate, frame, &to, token) : 0;
    if (refreshed < 0) {
        PyObject_Free(token);
        return -1;
    }
    if (refreshed) {
        PyThreadState_EnterTracing(tstate);
        Py_XSETREF(waiting_token, token);
        return 1;
    }
    if (starting) {
        int started = start_before_building(tstate, here, frame, &to, token);
        if (started < 0) {
            PyObject_Free(token);
            return -1;
        }
        if (started == START_BARE) {
            PyThreadState_EnterTracing(tstate);
            Py_XSETREF(waiting_token, token);
            return 1;
        }
    }
    PyObject *landing = li_landing_code(original, to.to,
                                        li_frame_landing_capacity(tstate, frame, here),
                                        frame->f_builtins);
    if (landing == NULL) {
        PyObject_Free(token);
        return -1;
    }
    li_probes *lp = li_shadow_probes((PyCodeObject *)landing);
    int pad = li_pad_unit(lp, to.to);
    assert(pad >= 0);
    li_jump_unwind(tstate, frame, to.unwind);
    if (li_frame_set_code(frame, lp->shadow, pad - 1) < 0) {
        Py_DECREF(landing);
        PyObject_Free(token);
        return -1;
    }
    /* A frame reached while running can have tracebacks already. */
    li_fix_moved_tracebacks();
    /* A function that started through the entry trampoline starts on the
       shadow from now on. */
    PyFunctionObject *func = frame->f_func;
    li_code_state *cs = li_code_state_get(original);
    if (starting && func != NULL &&
        func->func_code == (PyObject *)original && cs != NULL && lp == li_current_shadow(cs))
    {
        Py_SETREF(func->func_code, Py_NewRef(landing));
        func->func_version = 0;
    }
    Py_DECREF(landing);
    PyThreadState_EnterTracing(tstate);
    Py_XSETREF(waiting_token, token);
    return 1;
}

/* Whether this thread's next landing function call starts on a lent
 * recursion level (left set only if that call failed to start a frame). */
static _Thread_local bool recursion_lent;

static void
take_back_recursion(PyThreadState *tstate)
{
    if (recursion_lent) {
        tstate->recursion_remaining--;
        recursion_lent = false;
    }
}

void
li_landing_lend_recursion(PyThreadState *tstate)
{
    take_back_recursion(tstate);
    if (tstate->recursion_remaining <= 0) {
        tstate->recursion_remaining++;
        recursion_lent = true;
    }
}

static int
lander_bool(PyObject *Py_UNUSED(self))
{
    /* Nothing landing does may be seen by tracers (land() keeps the thread
       tracing once it moved the frame, until the token goes). */
    PyThreadState *tstate = _PyThreadState_GET();
    take_back_recursion(tstate);
    PyThreadState_EnterTracing(tstate);
    li_exec_unpause();
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
    {"token", lander_token, NULL, "What the landing function returns after a landing.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject lander_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine._Lander",
    .tp_basicsize = sizeof(lander_object),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "True once it moved its caller's caller where it was expected to go.",
    .tp_as_number = &lander_as_number,
    .tp_getset = lander_getset,
};

static PyObject *
set_landing_function(PyObject *Py_UNUSED(module), PyObject *function)
{
    if (!PyFunction_Check(function)) {
        PyErr_SetString(PyExc_TypeError, "the landing function must be a function");
        return NULL;
    }
    /* No instruction of it is traceable: tracers see no call or line. */
    PyCodeObject *code = (PyCodeObject *)PyFunction_GET_CODE(function);
    code->_co_firsttraceable = (int)Py_SIZE(code);
    /* Its RESUME takes the oparg of a resumption after `yield from`, which
       never handles the eval breaker: a signal handler's exception (or
       another thread taking the GIL) at its start would surface in the
       caller past the instruction the caller was at. */
    _Py_CODEUNIT *units = _PyCode_CODE(code);
    for (Py_ssize_t i = 0; i < Py_SIZE(code); i++) {
        if (_PyOpcode_Deopt[_Py_OPCODE(units[i])] == RESUME) {
            units[i] = _Py_MAKECODEUNIT(_Py_OPCODE(units[i]), 2);
            break;
        }
    }
    Py_XSETREF(landing_function, Py_NewRef(function));
    Py_RETURN_NONE;
}

static PyMethodDef landing_methods[] = {
    {"_set_landing_function", set_landing_function, METH_O,
     "_set_landing_function($module, function, /)\n--\n\n"
     "Register the function that frames call to move onto instrumented code."},
    {NULL, NULL, 0, NULL},
};

int
li_landing_init(PyObject *module)
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
    return PyModule_AddFunctions(module, landing_methods);
}
