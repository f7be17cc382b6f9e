/* Frames that were already running when their code came to need events.
 *
 * The frame evaluation function (hook.c) moves a frame onto its code's
 * shadow as it starts or resumes.  A frame whose evaluation loop already
 * runs cannot move: 3.10's loop keeps its code object and its position in
 * that code's bytecode in C locals.  So such a frame ("reached") is given
 * the events of the shadow it would run now through the interpreter's C
 * trace hook: while a thread has reached frames, its c_tracefunc is
 * running_trace(), which, for those frames only, delivers the probes of
 * that shadow at the frame's line events (LINE), return event (PY_RETURN,
 * PY_YIELD) and, where it needs others (CALL, INSTRUCTION; JUMP, BRANCH and
 * STOP_ITERATION at the instruction after the one they leave), opcode
 * events, which it asks for (f_trace_opcodes), as if the frame ran the
 * shadow; and the exception events from the trace events that show them
 * (running_exc.c).
 * Frames started meanwhile go through the evaluation function, which
 * starts them with use_tracing off (unless a trace or profile function of
 * the user's wants it), so they run their shadow at its usual cost; only
 * the reached frames' thread pays, and only until its last reached frame
 * returns or suspends (a suspended frame resumes on the shadow), when the
 * thread's trace hook is given back.
 *
 * A trace function set with sys.settrace() (or PyEval_SetTrace()) keeps
 * working: c_traceobj stays the user's, so sys.gettrace() shows it (and
 * None when there is none), and every event but the opcode events it did
 * not ask for goes on to the function it had; the same for a profile
 * function.  One set while a reached frame runs takes that hook away:
 * running_profile() stands beside running_trace() so that each can put the
 * other back (a C call such as sys.settrace() returns to the profile hook),
 * and the evaluation function puts both back at the next Python call.
 *
 * A reached frame leaves the list at its exit, which the trace hook
 * reports.  One that went unreported (it ended while a callback ran, or
 * while the user's function had the hook) is dropped when another leaves or
 * when the frames are next walked: the list holds a reference to each, so
 * that it can tell; the references of frames that may have ended are let go
 * at a point where no list is being changed, since their end runs code.
 */

#include "b310.h"

typedef struct {
    PyFrameObject *frame;   /* owned, see above */
    int line;               /* the line of its last line event */
    bool opcodes;           /* it needs opcode events (see reach()) */
    bool user_opcodes;      /* f_trace_opcodes as the user had it */
    /* The unit (of the code it runs) of its last line or opcode event, -1
       if none since it was reached or since an exception (arrive()), and
       whether that event was a line event, which an opcode event at the
       same instruction follows. */
    int at;
    bool lined;
    /* An exception left the instruction it was at: its next instruction
       is in a handler (running_exc.c), where it asks for an opcode event
       (3.9 makes no line event at a handler inside a line). */
    bool unwinding;
    /* Its last instruction event was its first in a handler, whose LINE
       the shadow delivers whatever line the frame was on. */
    bool landed;
    PyObject *exc;          /* owned: the exception last raised in it, or NULL */
    int exc_unit;           /* the original unit that raised it */
} li_reached;

typedef struct {
    PyThreadState *ts;      /* borrowed */
    Py_tracefunc user;      /* the thread's trace function before ours, or NULL */
    Py_tracefunc user_profile;  /* the same for its profile function */
    int n, cap;
    li_reached *frames;     /* owned (PyMem) */
    /* The frames that were running above a reached one as it was reached,
       whose use_tracing carries tracing down to it as they return: only
       compared with, never read (one freed since and another made in its
       place is taken for one of them, which costs only speed). */
    PyFrameObject **carriers;   /* owned (PyMem) */
    int n_carriers, cap_carriers;
    bool aside;             /* step_aside() took the thread's functions */
} li_runner;

static li_runner *runners;  /* owned (PyMem) */
static int n_runners, cap_runners;
int li_running_threads;
/* Threads whose hooks running_trace() put aside (step_aside()). */
int li_running_aside;

/* Frames (and exceptions) whose references are to be let go (owned; a
 * PyMem array). */
static PyObject **dropped;
static int n_dropped, cap_dropped;

/* Lets `o` go later (or never, if there is no memory to remember it). */
static void
drop(void *o)
{
    if (li_reserve((void **)&dropped, &cap_dropped, n_dropped, sizeof(PyObject *), 8) < 0) {
        PyErr_Clear();
        return;
    }
    dropped[n_dropped++] = o;
}

/* Lets the references of entry `e` go. */
static void
forget(li_reached *e)
{
    drop(e->frame);
    if (e->exc != NULL) {
        drop(e->exc);
        e->exc = NULL;
    }
}

/* Lets the dropped frames go: their ends may run code that changes events. */
static void
let_go(void)
{
    while (n_dropped > 0) {
        PyObject **frames = dropped;
        int n = n_dropped;
        dropped = NULL;
        n_dropped = cap_dropped = 0;
        for (int i = 0; i < n; i++) {
            Py_DECREF(frames[i]);
        }
        PyMem_Free(frames);
    }
}

static int running_trace(PyObject *obj, PyFrameObject *f, int what, PyObject *arg);
static int running_profile(PyObject *obj, PyFrameObject *f, int what, PyObject *arg);

/* Whether `f` runs: executes, or unwinds an exception (3.10 calls the
 * trace function at an exception with the frame unwinding already). */
static bool
is_running(PyFrameObject *f)
{
    return li_frame_on_stack(f);
}

static li_runner *
runner_of(PyThreadState *ts)
{
    for (int i = 0; i < n_runners; i++) {
        if (runners[i].ts == ts) {
            return &runners[i];
        }
    }
    return NULL;
}

/* The entry of `f` among the reached frames of `r`, for a frame known to
 * be alive. */
static li_reached *
find_reached(li_runner *r, PyFrameObject *f)
{
    for (int i = 0; r != NULL && i < r->n; i++) {
        if (r->frames[i].frame == f) {
            return &r->frames[i];
        }
    }
    return NULL;
}


/* Puts running_trace() and running_profile() in front of whatever trace
 * and profile functions the thread has. */
static void
stand_in_front(PyThreadState *ts, li_runner *r)
{
    if (ts->c_tracefunc != running_trace) {
        r->user = ts->c_tracefunc;
        li_set_tracefunc(ts, running_trace);
    }
    if (ts->c_profilefunc != running_profile) {
        r->user_profile = ts->c_profilefunc;
        ts->c_profilefunc = running_profile;
    }
}

/* 3.10 calls the trace function at every exception, in frames that do not
 * trace too, and call_trace() then has the frame trace on (and its callers
 * as it returns) because the thread has trace functions: ours.  So at such
 * an exception (in a frame neither reached nor carrying tracing down to
 * one) the thread goes without them, and the frame on untraced,
 * until the next frame returns through the evaluation function, which puts
 * them back (li_running_restore()). */
static void
step_aside(PyThreadState *ts, li_runner *r)
{
    li_set_tracefunc(ts, NULL);
    ts->c_profilefunc = NULL;
    r->aside = true;
    li_running_aside++;
}

/* The thread of `r` is back with its functions (or without a runner). */
static void
back_from_aside(li_runner *r)
{
    if (r->aside) {
        r->aside = false;
        li_running_aside--;
    }
}

/* Gives the thread of runner `i` its trace function back and forgets it. */
static void
step_back(int i)
{
    li_runner *r = &runners[i];
    PyThreadState *ts = r->ts;
    if (ts->c_tracefunc == running_trace) {
        li_set_tracefunc(ts, r->user);
    }
    if (ts->c_profilefunc == running_profile) {
        ts->c_profilefunc = r->user_profile;
    }
    /* Inside a callback or a trace function, leaving it sets use_tracing. */
    if (ts->tracing == 0) {
        LI_USE_TRACING(ts) = ts->c_tracefunc != NULL || ts->c_profilefunc != NULL;
    }
    for (int k = 0; k < r->n; k++) {
        forget(&r->frames[k]);
    }
    PyMem_Free(r->frames);
    PyMem_Free(r->carriers);
    back_from_aside(r);
    runners[i] = runners[--n_runners];
    li_running_threads = n_runners;
}

/* The first site of `map` at original unit `orig` or after. */
static int
first_site(li_shadow *map, int orig)
{
    int lo = 0, hi = map->n_sites;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (map->sites[mid]->orig < orig) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

/* The unit of shadow `running` where original instruction `orig` starts,
 * past the probes before it. */
static int
proper_start(li_shadow *running, int orig)
{
    int start = running->shadow_start[orig];
    for (int i = first_site(running, orig);
         i < running->n_sites && running->sites[i]->orig == orig; i++)
    {
        li_site *s = running->sites[i];
        if (s->unit + s->size > start) {
            start = s->unit + s->size;
        }
    }
    return start;
}

/* The original unit of the instruction `f` executes next, if its start is
 * where the probes of the shadow it should run would have run: the unit
 * itself in the original, the unit after its own probes in an older
 * shadow.  -1 elsewhere. */
static int
instruction_start(PyFrameObject *f, li_shadow *running, li_shadow *map)
{
    int unit = li_lasti(f);
    if (running == NULL) {
        return unit >= 0 && unit < map->n_orig_units && map->shadow_start[unit] >= 0 ? unit : -1;
    }
    if (unit < 0 || unit >= running->n_units) {
        return -1;
    }
    int orig = running->orig_start[unit];
    return unit == proper_start(running, orig) ? orig : -1;
}

/* Events reached frames get from their line events (LINE: 3.10 makes one
 * where the shadow has a LINE probe, and more, which the probes' own rule
 * leaves out), from their return event (the value is the event's) and from
 * their exception event (RAISE); the others need an opcode event per
 * instruction: INSTRUCTION and CALL at it, JUMP and BRANCH at the next
 * (arrive()), RERAISE at it and EXCEPTION_HANDLED at the next
 * (running_exc.c). */
#define LI_LINE_EVENTS LI_EVENT_BIT(LI_LINE)
#define LI_EXIT_EVENTS (LI_EVENT_BIT(LI_PY_RETURN) | LI_EVENT_BIT(LI_PY_YIELD))
#define LI_FLOW_EVENTS (LI_EVENT_BIT(LI_JUMP) | LI_EVENT_BIT(LI_BRANCH))
#define LI_NO_OPCODES (LI_LINE_EVENTS | LI_EXIT_EVENTS | LI_EVENT_BIT(LI_RAISE))
/* A frame that runs has started.  (STOP_ITERATION: reached frames get
 * YIELD_FROM's, not the one a for loop's generator gives as it returns,
 * which nothing of the original marks.) */
#define LI_NOT_REACHED LI_EVENT_BIT(LI_PY_START)
/* The exception events running_exc.c delivers. */
#define LI_REACHED_EXC_EVENTS (LI_EVENT_BIT(LI_RAISE) | LI_EVENT_BIT(LI_RERAISE) | \
                               LI_EVENT_BIT(LI_EXCEPTION_HANDLED) | \
                               LI_EVENT_BIT(LI_PY_UNWIND))

/* The events frame `f` misses from the shadow it should run now, which is
 * put in *want (borrowed); 0 if none. */
static li_event_set
missed(PyFrameObject *f, li_shadow **want)
{
    li_shadow *running = li_shadow_of(f->f_code);
    PyCodeObject *original = running != NULL ? running->original : f->f_code;
    if (original == NULL) {
        return 0;
    }
    PyCodeObject *shadow = li_shadow_for(original);
    if (shadow == NULL || shadow == f->f_code) {
        return 0;
    }
    *want = li_shadow_of(shadow);
    /* (An event whose probes the running shadow left out in places is
       missed there: reach() fires only where it has none.) */
    li_event_set has = running != NULL ? running->events & ~running->omitted_events : 0;
    return (*want)->events & ~has & ~LI_NOT_REACHED;
}

/* Whether shadow `running` (or NULL: the original) has a probe of `event`
 * for original unit `orig`. */
static bool
runs_probe(li_shadow *running, int event, int orig)
{
    if (running == NULL || !(running->events & LI_EVENT_BIT(event))) {
        return false;
    }
    for (int i = first_site(running, orig);
         i < running->n_sites && running->sites[i]->orig == orig; i++)
    {
        if (running->sites[i]->event == event) {
            return true;
        }
    }
    return false;
}

/* The trace event `what` (with `value`) of reached frame `f`: the probes
 * that the shadow it should run has at the instruction, for the events the
 * code it runs misses and that event stands for.  0, or -1 with an
 * exception set (raised where the frame is). */
static int
reach(PyThreadState *ts, li_reached *reached, PyFrameObject *f, int what, PyObject *value)
{
    li_shadow *map = NULL;
    li_event_set events = missed(f, &map);
    li_shadow *running = li_shadow_of(f->f_code);
    int orig = -1;
    if (what == PyTrace_LINE) {
        /* As the shadow: not when a jump comes back to the line the frame
           was on; always in a handler. */
        bool landed = reached->landed;
        reached->landed = false;
        /* Not f_lineno: 3.9 leaves the line of a frame's last line event
           there, or co_firstlineno, and gives it to a line event at a
           backward jump within the line it found the frame on (a frame
           traced from the middle of it); nor at the opcode event a handler
           may be landed in. */
        int line = PyCode_Addr2Line(f->f_code, 2 * li_lasti(f));
        if (line < 0) {
            return 0;   /* (3.10: an instruction of no line has no LINE) */
        }
        bool due = line != reached->line || landed;
        reached->line = line;
        if (due) {
            /* What a line event sets, for a frame with a trace function
               (3.9 shows the field then, also in an opcode event). */
            f->f_lineno = line;
        }
        events = due ? events & LI_LINE_EVENTS : 0;
        if (running == NULL) {
            orig = li_lasti(f);
        }
        else if (li_lasti(f) >= 0 && li_lasti(f) < running->n_units) {
            orig = running->orig_start[li_lasti(f)];
        }
    }
    else if (what == PyTrace_OPCODE) {
        events &= LI_EVENT_BIT(LI_INSTRUCTION) | LI_EVENT_BIT(LI_CALL);
        orig = events ? instruction_start(f, running, map) : -1;
    }
    else if (what == PyTrace_RETURN && value != NULL) {
        events &= LI_EXIT_EVENTS;
        if (running == NULL) {
            orig = li_lasti(f);
        }
        else if (li_lasti(f) >= 0 && li_lasti(f) < running->n_units) {
            orig = running->orig_start[li_lasti(f)];
        }
    }
    if (events == 0 || orig < 0 || orig >= map->n_orig_units) {
        return 0;
    }
    int err = 0;
    /* The sites live as long as the shadow, which callbacks may replace. */
    PyCodeObject *shadow = (PyCodeObject *)Py_NewRef(map->code);
    /* fire() delivers nothing while the thread traces, as call_trace() says
       it does now. */
    ts->tracing--;
    for (int i = first_site(map, orig); i < map->n_sites && map->sites[i]->orig == orig; i++) {
        li_site *s = map->sites[i];
        if (s->armed && (events & LI_EVENT_BIT(s->event)) &&
            !runs_probe(running, s->event, orig) &&
            (err = li_site_fire(s, (events & LI_EXIT_EVENTS) ? value : NULL)) < 0)
        {
            break;
        }
    }
    ts->tracing++;
    Py_DECREF(shadow);
    return err;
}

/* The original unit of the instruction that unit `unit` of the code `f`
 * runs belongs to (running: its map, or NULL on the original); -1 if none. */
static int
original_unit(PyFrameObject *f, li_shadow *running, int unit)
{
    if (running == NULL) {
        return unit >= 0 && 2 * unit < PyBytes_GET_SIZE(f->f_code->co_code) ? unit : -1;
    }
    return unit >= 0 && unit < running->n_units ? running->orig_start[unit] : -1;
}

/* The unit of the opcode of the instruction that starts at `start` in
 * `code`, past its EXTENDED_ARG prefixes. */
static int
opcode_unit(PyCodeObject *code, int start)
{
    const _Py_CODEUNIT *units = (const _Py_CODEUNIT *)PyBytes_AS_STRING(code->co_code);
    int n = (int)(PyBytes_GET_SIZE(code->co_code) / 2);
    while (start < n - 1 && _Py_OPCODE(units[start]) == EXTENDED_ARG) {
        start++;
    }
    return start;
}

/* The exception events reached frame `f`, running `running` (NULL: the
 * original), gets from running_exc.c: none on a shadow with exception
 * probes, whose probes and frame evaluation (exc.c) deliver them. */
static li_event_set
exc_events(li_shadow *running)
{
    if (running != NULL &&
        (running->events & LI_EXC_PROBED_EVENTS & ~LI_EVENT_BIT(LI_STOP_ITERATION))) {
        return 0;
    }
    li_event_set events = 0;
    for (int e = 0; e < LI_EVENT_COUNT; e++) {
        if ((LI_REACHED_EXC_EVENTS & LI_EVENT_BIT(e)) && li_reg.global_tools[e] != 0) {
            events |= LI_EVENT_BIT(e);
        }
    }
    return events;
}

/* Fires the probe of `map` for one of `events` at original unit `orig`
 * (JUMP and BRANCH: the one whose destination is original unit `dest`),
 * with `value` (STOP_ITERATION's), unless shadow `running` runs one there.
 * 0, or -1 with an exception set. */
static int
fire_at(PyThreadState *ts, li_shadow *map, li_shadow *running, int orig, li_event_set events,
        int dest, PyObject *value)
{
    li_site *s = NULL;
    for (int i = first_site(map, orig); i < map->n_sites && map->sites[i]->orig == orig; i++) {
        li_site *site = map->sites[i];
        if ((events & LI_EVENT_BIT(site->event)) && site->armed &&
            (site->dest == NULL || PyLong_AsLong(site->dest) == 2L * dest) &&
            !runs_probe(running, site->event, orig))
        {
            s = site;
            break;
        }
    }
    if (s == NULL) {
        return 0;
    }
    PyCodeObject *shadow = (PyCodeObject *)Py_NewRef(map->code);
    ts->tracing--;
    int err = li_site_fire(s, value);
    ts->tracing++;
    Py_DECREF(shadow);
    return err;
}

/* Reached frame `f` has the first event (line or opcode) of an instruction:
 * the events of the way it came from the instruction of its last one (a
 * jump, a branch, an exception that a handler here catches).  0, or -1
 * with an exception set. */
static int
arrive(PyThreadState *ts, li_reached *reached, PyFrameObject *f)
{
    int from = reached->at, unit = li_lasti(f);
    bool unwound = reached->unwinding;
    int raised = reached->exc != NULL ? reached->exc_unit : -1;
    reached->at = unit;
    reached->unwinding = false;
    reached->landed = unwound;
    f->f_trace_opcodes = reached->user_opcodes || reached->opcodes;
    if (unwound) {
        /* Caught: any exit by exception comes after another exception
           event or re-raise, which keep() the exception that leaves.
           (Letting it go may run code, which may move `reached`.) */
        Py_CLEAR(reached->exc);
    }
    li_shadow *map = NULL;
    li_event_set events = missed(f, &map);
    li_shadow *running = li_shadow_of(f->f_code);
    int to = events != 0 ? original_unit(f, running, unit) : -1;
    if (to < 0 || to >= map->n_orig_units) {
        return 0;
    }
    if (unwound) {
        if (!(exc_events(running) &
              (LI_EVENT_BIT(LI_EXCEPTION_HANDLED) | LI_EVENT_BIT(LI_RERAISE)))) {
            return 0;
        }
        int passed = raised >= 0 ? li_cleanups_passed(map->original, map, raised) : 0;
        return passed < 0 ? -1 : li_reached_handled(ts, f, map->original, to, raised, passed);
    }
    int was = original_unit(f, running, from);
    /* (Units of one instruction in a shadow: its probes, then itself.) */
    if (was < 0 || (was == to && unit > from)) {
        return 0;
    }
    int op = opcode_unit(map->original, was);
    const _Py_CODEUNIT *units = (const _Py_CODEUNIT *)PyBytes_AS_STRING(map->original->co_code);
    if (_Py_OPCODE(units[op]) != YIELD_FROM) {
        return events & LI_FLOW_EVENTS
               ? fire_at(ts, map, running, op, events & LI_FLOW_EVENTS, to, NULL) : 0;
    }
    /* Its delegate returned: the value is on top of the stack (the trace
       event set f_stackdepth). */
    if ((events & LI_EVENT_BIT(LI_STOP_ITERATION)) && to == op + 1 && li_stack_depth(f) > 0) {
        return fire_at(ts, map, running, to, LI_EVENT_BIT(LI_STOP_ITERATION), -1,
                       f->f_valuestack[li_stack_depth(f) - 1]);
    }
    return 0;
}

/* A line event of reached frame `f` comes where the shadow it runs has an
 * exception probe before its LINE probe (EXCEPTION_HANDLED at a handler,
 * exc.c), which would run after it: the probe runs now, so that its events
 * come first, as natively, and the frame goes on past it.  0, or -1 with
 * an exception set. */
static int
probe_before_line(PyThreadState *ts, PyFrameObject *f)
{
    li_shadow *running = li_shadow_of(f->f_code);
    int orig = running != NULL ? original_unit(f, running, li_lasti(f)) : -1;
    if (orig < 0) {
        return 0;
    }
    for (int i = first_site(running, orig);
         i < running->n_sites && running->sites[i]->orig == orig; i++)
    {
        li_site *s = running->sites[i];
        if (s->unit == li_lasti(f) && s->event == LI_EXCEPTION_HANDLED) {
            li_set_lasti(f, s->unit + s->size);     /* (the interpreter goes on there) */
            PyCodeObject *shadow = (PyCodeObject *)Py_NewRef(running->code);
            /* The line the trace event gave the frame is the handler's;
               the probe shows the line that raised. */
            int line = f->f_lineno;
            li_show_lasti_line(f);
            ts->tracing--;
            int err = li_fire_exc(s);
            ts->tracing++;
            f->f_lineno = line;
            Py_DECREF(shadow);
            return err;
        }
    }
    return 0;
}

/* The exception in flight in reached frame `f` is `value`, raised at
 * original unit `unit`.  (Letting the one before go may run code, which may
 * move `reached`.) */
static void
keep(li_reached *reached, PyObject *value, int unit)
{
    PyObject *old = reached->exc;
    reached->exc = Py_NewRef(value);
    reached->exc_unit = unit;
    reached->unwinding = true;
    reached->frame->f_trace_opcodes = 1;
    reached->at = -1;
    Py_XDECREF(old);
}

/* The exception the thread has set now is what reached frame `f` goes on
 * with (a callback's, in place of the one it was given). */
static void
keep_raised(PyThreadState *ts, PyFrameObject *f, int unit)
{
    li_reached *reached = find_reached(runner_of(ts), f);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (reached != NULL && value != NULL) {
        keep(reached, value, unit);
    }
    PyErr_Restore(type, value, tb);
}

/* The exception event of reached frame `f` (arg: type, value, traceback):
 * RAISE.  0, or -1 with the exception of a callback set. */
static int
raised(PyThreadState *ts, li_reached *reached, PyFrameObject *f, PyObject *arg)
{
    li_shadow *map = NULL;
    li_event_set events = missed(f, &map);
    li_shadow *running = li_shadow_of(f->f_code);
    int start = events != 0 ? original_unit(f, running, li_lasti(f)) : -1;
    if (start < 0 || !PyTuple_Check(arg) || PyTuple_GET_SIZE(arg) != 3) {
        return 0;
    }
    PyCodeObject *original = map->original;
    int unit = opcode_unit(original, start);
    PyObject *value = PyTuple_GET_ITEM(arg, 1);
    PyObject *tb = PyTuple_GET_ITEM(arg, 2);
    if (PyErr_GivenExceptionMatches(value, li_restart)) {
        return 0;   /* the frame starts again (hook.c) */
    }
    int opcode = _Py_OPCODE(((const _Py_CODEUNIT *)PyBytes_AS_STRING(original->co_code))[unit]);
    bool stop = PyErr_GivenExceptionMatches(value, PyExc_StopIteration);
    if (opcode == YIELD_FROM && stop) {
        /* Its delegate returned (a YIELD_FROM that finds a trace function
           as its delegate ends shows the StopIteration: always on 3.9, on
           3.10 when the function was there as it started): the frame's
           next instruction event reports STOP_ITERATION (arrive()), and
           no RAISE, as the shadow's probes report it. */
        return 0;
    }
    /* The StopIteration that ends a for loop goes no further. */
    if (opcode != FOR_ITER || !stop) {
        /* 3.10 stores it in the exception only as a handler takes it;
           natively callbacks find it there. */
        if (PyTraceBack_Check(tb) && PyException_SetTraceback(value, tb) < 0) {
            return -1;
        }
        keep(reached, value, unit);
    }
    if (!(exc_events(running) & LI_EVENT_BIT(LI_RAISE))) {
        return 0;
    }
    original = (PyCodeObject *)Py_NewRef(original);
    int err = li_reached_deliver(ts, LI_RAISE, original, unit, value);
    Py_DECREF(original);
    if (err < 0) {
        keep_raised(ts, f, unit);
    }
    return err;
}

/* The opcode event of reached frame `f`, after the events of the
 * instruction: RERAISE if it raises again what it handles.  0, or -1 with
 * an exception set. */
static int
reraise(PyThreadState *ts, li_reached *reached, PyFrameObject *f)
{
    const _Py_CODEUNIT *units = (const _Py_CODEUNIT *)PyBytes_AS_STRING(f->f_code->co_code);
    int at = li_lasti(f);
    if (at < 0 || 2 * at >= PyBytes_GET_SIZE(f->f_code->co_code)) {
        return 0;
    }
    int opcode = _Py_OPCODE(units[at]), oparg = _Py_OPARG(units[at]);
    if (opcode != RERAISE && opcode != RAISE_VARARGS && opcode != END_ASYNC_FOR) {
        return 0;
    }
    li_shadow *map = NULL;
    li_event_set events = missed(f, &map);
    li_shadow *running = li_shadow_of(f->f_code);
    int start = events != 0 ? original_unit(f, running, at) : -1;
    PyObject *value = start >= 0 ? li_reached_reraises(ts, f, opcode, oparg) : NULL;
    if (value == NULL) {
        return 0;
    }
    PyCodeObject *original = (PyCodeObject *)Py_NewRef(map->original);
    int unit = opcode_unit(original, start);
    Py_INCREF(value);
    keep(reached, value, unit);
    int err = 0;
    if (exc_events(running) & LI_EVENT_BIT(LI_RERAISE)) {
        err = li_reached_deliver(ts, LI_RERAISE, original, unit, value);
    }
    Py_DECREF(value);
    Py_DECREF(original);
    return err;
}

/* Reached frame `f` exits with the exception it last raised: PY_UNWIND
 * (after EXCEPTION_HANDLED and RERAISE in a generator or coroutine, whose
 * body 3.12 wraps in a handler, as exc.c reports them).  0, or -1 with the
 * exception of a callback set. */
static int
unwound(PyThreadState *ts, li_reached *reached, PyFrameObject *f)
{
    li_shadow *map = NULL;
    if (reached->exc == NULL || missed(f, &map) == 0 ||
        exc_events(li_shadow_of(f->f_code)) == 0) {
        return 0;
    }
    PyObject *value = Py_NewRef(reached->exc);
    int unit = reached->exc_unit;
    PyCodeObject *original = (PyCodeObject *)Py_NewRef(map->original);
    li_exc_exit_reported(f, value);
    int passed = li_cleanups_passed(original, map, unit);
    int err = passed < 0 ? -1 : li_reached_cleanups(ts, original, unit, passed, value);
    if (err == 0 && (original->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) &&
        li_lasti(f) >= 0) {
        err = li_reached_deliver(ts, LI_EXCEPTION_HANDLED, original, unit, value);
        if (err == 0) {
            err = li_reached_deliver(ts, LI_RERAISE, original, unit, value);
        }
    }
    if (err == 0) {
        err = li_reached_deliver(ts, LI_PY_UNWIND, original, unit, value);
    }
    if (err < 0) {
        /* The frame leaves with the callback's exception. */
        PyObject *type, *now, *tb;
        PyErr_Fetch(&type, &now, &tb);
        PyErr_NormalizeException(&type, &now, &tb);
        li_exc_exit_reported(f, now);
        PyErr_Restore(type, now, tb);
    }
    Py_DECREF(original);
    Py_DECREF(value);
    return err;
}

/* Reached frame `f`, on the original, suspends in YIELD_FROM, yielding
 * `value`: PY_YIELD (hook.c delivers it for frames on shadows).  0, or -1
 * with an exception set. */
static int
yield_from(PyThreadState *ts, PyFrameObject *f, PyObject *value)
{
    if (value == NULL || !li_frame_yielded(f) || li_shadow_of(f->f_code) != NULL) {
        return 0;
    }
    PyCodeObject *code = f->f_code;
    int unit = li_lasti(f) + 1;
    if (unit <= 0 || 2 * unit >= PyBytes_GET_SIZE(code->co_code) ||
        ((const uint8_t *)PyBytes_AS_STRING(code->co_code))[2 * unit] != YIELD_FROM)
    {
        return 0;
    }
    li_code_state *cs = li_code_state_get(code);
    uint8_t tools = li_tools_at(cs, LI_PY_YIELD, unit);
    if (tools == 0) {
        return 0;
    }
    PyObject *offset = PyLong_FromLong(2L * unit);
    if (offset == NULL) {
        return -1;
    }
    PyObject *args[4] = {NULL, (PyObject *)code, offset, value};
    ts->tracing--;
    int err = li_call_tools(ts, LI_PY_YIELD, tools, cs, unit, args, 3);
    ts->tracing++;
    Py_DECREF(offset);
    return err;
}

/* Reached frame `f` of thread `ts` ends or suspends. */
static void
leave(PyThreadState *ts, PyFrameObject *f)
{
    li_runner *r = runner_of(ts);
    li_reached *reached = find_reached(r, f);
    if (reached == NULL) {
        return;
    }
    f->f_trace_opcodes = reached->user_opcodes;
    forget(reached);
    *reached = r->frames[--r->n];
    /* Frames that ended or suspended unreported. */
    for (int i = 0; i < r->n; i++) {
        if (!is_running(r->frames[i].frame)) {
            forget(&r->frames[i]);
            r->frames[i--] = r->frames[--r->n];
        }
    }
    if (r->n == 0) {
        step_back((int)(r - runners));
    }
    let_go();
}

/* Passes trace event `what` of `f` on to the trace function the user has
 * now (callbacks may have set another, or freed the one the event came
 * with).  Its result. */
static int
chain(PyThreadState *ts, PyFrameObject *f, int what, PyObject *arg)
{
    li_runner *r = runner_of(ts);
    Py_tracefunc user = ts->c_tracefunc != running_trace ? ts->c_tracefunc
                        : r != NULL ? r->user : NULL;
    if (user == NULL) {
        return 0;
    }
    PyObject *obj = Py_XNewRef(ts->c_traceobj);
    int err = user(obj, f, what, arg);
    Py_XDECREF(obj);
    return err;
}

static bool
carries(const li_runner *r, PyFrameObject *f)
{
    for (int i = 0; i < r->n_carriers; i++) {
        if (r->carriers[i] == f) {
            return true;
        }
    }
    return false;
}

void
li_running_restore(PyThreadState *ts)
{
    li_runner *r = runner_of(ts);
    if (r != NULL && r->aside) {
        back_from_aside(r);
        stand_in_front(ts, r);
    }
}

/* The trace function of threads with reached frames. */
static int
running_trace(PyObject *obj, PyFrameObject *f, int what, PyObject *arg)
{
    (void)obj;      /* chain() reads the user's own */
    if (what == PyTrace_OPCODE && PyErr_Occurred()) {
        /* 3.9 calls the opcode event even when the function of the same
           instruction's line event raised, and goes by what the opcode
           event returns (with the exception set: SystemError); 3.10 skips
           it.  The line event's failure stands. */
        return -1;
    }
    PyThreadState *ts = PyThreadState_Get();
    li_runner *r = runner_of(ts);
    li_reached *reached = find_reached(r, f);
    if (reached == NULL && what == PyTrace_EXCEPTION && r != NULL && r->user == NULL &&
        r->user_profile == NULL && !carries(r, f)) {
        step_aside(ts, r);
        return 0;
    }
    if (reached == NULL) {
        return chain(ts, f, what, arg);
    }
    if (what == PyTrace_RETURN) {
        int err = reach(ts, reached, f, what, arg);
        if (err == 0) {
            err = yield_from(ts, f, arg);
        }
        if (err == 0 && arg == NULL && (reached = find_reached(runner_of(ts), f)) != NULL) {
            err = unwound(ts, reached, f);
        }
        leave(ts, f);
        return err < 0 ? -1 : chain(ts, f, what, arg);
    }
    if (ts->c_profilefunc != running_profile) {
        stand_in_front(ts, r);      /* sys.setprofile() from a reached frame */
    }
    bool user_opcodes = reached->user_opcodes;
    int err = 0;
    bool by_opcode = false;     /* the instruction's first event is this opcode event */
    if (what == PyTrace_EXCEPTION) {
        err = raised(ts, reached, f, arg);
    }
    else if (what == PyTrace_LINE || !reached->lined || reached->at != li_lasti(f)) {
        by_opcode = what == PyTrace_OPCODE;
        reached->lined = what == PyTrace_LINE;
        err = arrive(ts, reached, f);
    }
    else {
        reached->lined = false;     /* the line event had it */
    }
    if (err == 0 && what == PyTrace_LINE) {
        err = probe_before_line(ts, f);
    }
    /* Callbacks may have moved or ended what `reached` points to.  An
       instruction whose first event is an opcode event had no line event:
       3.9 makes none where a jump (or an exception) lands inside a line,
       where the shadow has its LINE. */
    if (err == 0 && by_opcode && (reached = find_reached(runner_of(ts), f)) != NULL) {
        err = reach(ts, reached, f, PyTrace_LINE, NULL);
    }
    if (err == 0 && (reached = find_reached(runner_of(ts), f)) != NULL) {
        err = reach(ts, reached, f, what, arg);
    }
    if (err == 0 && what == PyTrace_OPCODE &&
        (reached = find_reached(runner_of(ts), f)) != NULL) {
        err = reraise(ts, reached, f);
    }
    if (err < 0) {
        return -1;
    }
    if (what == PyTrace_OPCODE && !user_opcodes) {
        return 0;
    }
    /* The user's function sees, and may change, its own f_trace_opcodes. */
    reached = find_reached(runner_of(ts), f);
    if (reached == NULL) {
        return chain(ts, f, what, arg);
    }
    f->f_trace_opcodes = reached->user_opcodes;
    err = chain(ts, f, what, arg);
    reached = find_reached(runner_of(ts), f);
    if (reached != NULL) {
        reached->user_opcodes = f->f_trace_opcodes != 0;
        f->f_trace_opcodes = reached->user_opcodes || reached->opcodes || reached->unwinding;
    }
    return err;
}

/* The profile function of threads with reached frames: it is there so that
 * sys.settrace() called from a reached frame does not end its events (the
 * C call returns to it, and use_tracing stays on for it). */
static int
running_profile(PyObject *obj, PyFrameObject *f, int what, PyObject *arg)
{
    PyThreadState *ts = PyThreadState_Get();
    li_runner *r = runner_of(ts);
    if (r == NULL) {
        return 0;
    }
    if (what == PyTrace_C_RETURN || what == PyTrace_C_EXCEPTION) {
        stand_in_front(ts, r);
    }
    return r->user_profile != NULL ? r->user_profile(obj, f, what, arg) : 0;
}

/* The events frame `f` misses, if it runs (0 if not), from shadow *want
 * (borrowed). */
static li_event_set
to_reach(PyFrameObject *f, li_shadow **want)
{
    return is_running(f) ? missed(f, want) : 0;
}

/* Whether shadow `map` has LINE probes where the interpreter makes no line
 * event for a frame running its original: inside a line, which a jump
 * enters (3.9).  A frame that misses them needs opcode events. */
static bool
lines_inside(li_shadow *map)
{
    if (li_line_event_where_jumps_land() || !(map->events & LI_EVENT_BIT(LI_LINE)) ||
        map->original == NULL) {
        return false;
    }
    int n = map->n_orig_units;
    int *starts = PyMem_Malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (starts == NULL) {
        return true;    /* (opcode events cost time, not events) */
    }
    li_unit_line_starts(map->original, starts, n);
    bool inside = false;
    for (int i = 0; i < map->n_sites && !inside; i++) {
        li_site *s = map->sites[i];
        inside = s->event == LI_LINE && s->orig >= 0 && s->orig < n && starts[s->orig] < 0;
    }
    PyMem_Free(starts);
    return inside;
}

/* The reached frames of `ts`, from its frames.  0, or -1 with an
 * exception set (the thread then has none). */
static int
sync_thread(PyThreadState *ts)
{
    li_reached *frames = NULL;
    int n = 0, cap = 0, err = 0;
    /* Finding what a frame needs may run code (building a shadow can start
       the collector), which may walk the frames again: the frames found go
       into the lists only once they are all known. */
    for (PyFrameObject *f = ts->frame; f != NULL; f = f->f_back) {
        li_shadow *want = NULL;
        li_event_set events = to_reach(f, &want);
        if (events == 0) {
            continue;
        }
        if (li_reserve((void **)&frames, &cap, n, sizeof(li_reached), 8) < 0) {
            for (int k = 0; k < n; k++) {
                drop(frames[k].frame);
            }
            PyMem_Free(frames);
            frames = NULL;
            n = 0;
            err = -1;
            break;
        }
        /* (Its next instruction event comes from the one it is at.) */
        frames[n++] = (li_reached){.frame = (PyFrameObject *)Py_NewRef(f), .line = -1,
                                   .opcodes = (events & ~LI_NO_OPCODES) != 0 ||
                                              ((events & LI_LINE_EVENTS) && lines_inside(want)),
                                   .at = li_lasti(f)};
    }
    li_runner *r = runner_of(ts);
    for (int k = 0; k < n; k++) {
        PyFrameObject *f = frames[k].frame;
        li_reached *was = find_reached(r, f);
        bool opcodes = frames[k].opcodes;
        if (was != NULL) {
            frames[k] = *was;   /* the old list's reference is dropped below */
            frames[k].opcodes = opcodes;
        }
        else {
            /* The line it is on has had its line event. */
            frames[k].line = PyCode_Addr2Line(f->f_code, 2 * (li_lasti(f) > 0 ? li_lasti(f) : 0));
            frames[k].user_opcodes = f->f_trace_opcodes != 0;
        }
        f->f_trace_opcodes = frames[k].user_opcodes || opcodes;
    }
    /* Frames of the thread it reached: kept above (with a reference of
       their own), or needing it no more, or ended. */
    for (int i = 0; r != NULL && i < r->n; i++) {
        PyFrameObject *f = r->frames[i].frame;
        bool kept = false;
        for (int k = 0; k < n && !kept; k++) {
            kept = frames[k].frame == f;
        }
        if (!kept) {
            f->f_trace_opcodes = r->frames[i].user_opcodes;
            forget(&r->frames[i]);
        }
        else {
            drop(f);    /* its exception went to the new list */
        }
    }
    if (r != NULL) {
        r->n = 0;
    }
    if (n == 0) {
        PyMem_Free(frames);
        if (r != NULL) {
            step_back((int)(r - runners));
        }
        return err;
    }
    if (r == NULL) {
        if (li_reserve((void **)&runners, &cap_runners, n_runners, sizeof(li_runner), 4) < 0) {
            for (int k = 0; k < n; k++) {
                frames[k].frame->f_trace_opcodes = frames[k].user_opcodes;
                drop(frames[k].frame);
            }
            PyMem_Free(frames);
            return -1;
        }
        r = &runners[n_runners++];
        *r = (li_runner){.ts = ts};
        li_running_threads = n_runners;
    }
    PyMem_Free(r->frames);
    r->frames = frames;
    r->n = n;
    r->cap = cap;
    r->n_carriers = 0;
    for (PyFrameObject *f = ts->frame; f != NULL && f != frames[n - 1].frame; f = f->f_back) {
        if (li_reserve((void **)&r->carriers, &r->cap_carriers, r->n_carriers,
                       sizeof(PyFrameObject *), 8) < 0) {
            PyErr_Clear();      /* (fewer carriers: more frames stay traced) */
            r->n_carriers = 0;
            break;
        }
        r->carriers[r->n_carriers++] = f;
    }
    back_from_aside(r);
    stand_in_front(ts, r);
    /* The frame running now goes on through its trace hook; the others get
       use_tracing from it as their callees return.  Inside a callback or a
       trace function, leaving it sets use_tracing. */
    if (ts->tracing == 0) {
        LI_USE_TRACING(ts) = 1;
    }
    else if (ts == PyThreadState_Get()) {
        li_trace_on_leave = 1;
    }
    return err;
}

int
li_running_sync(void)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    /* Runners of threads that are gone. */
    for (int i = 0; i < n_runners; i++) {
        PyThreadState *ts = PyInterpreterState_ThreadHead(interp);
        while (ts != NULL && ts != runners[i].ts) {
            ts = PyThreadState_Next(ts);
        }
        if (ts == NULL) {
            for (int k = 0; k < runners[i].n; k++) {
                forget(&runners[i].frames[k]);
            }
            PyMem_Free(runners[i].frames);
            runners[i--] = runners[--n_runners];
        }
    }
    li_running_threads = n_runners;
    int err = 0;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL && err == 0;
         ts = PyThreadState_Next(ts))
    {
        err = sync_thread(ts);
    }
    let_go();
    return err;
}

bool
li_running_user_hooks(PyThreadState *ts)
{
    li_runner *r = runner_of(ts);
    Py_tracefunc trace = ts->c_tracefunc != running_trace ? ts->c_tracefunc
                         : r != NULL ? r->user : NULL;
    Py_tracefunc profile = ts->c_profilefunc != running_profile ? ts->c_profilefunc
                           : r != NULL ? r->user_profile : NULL;
    return trace != NULL || profile != NULL;
}

PyObject *
li_running_eval(PyThreadState *ts, PyFrameObject *f, int throwflag, li_evaluator evaluate)
{
    /* A caller that is not traced (no reached frame waits in it, no trace
       or profile function of the user's wants it: those turn use_tracing
       on) passes nothing on, and gets back what the frame leaves. */
    if (!LI_USE_TRACING(ts)) {
        PyObject *result = evaluate(ts, f, throwflag);
        if (li_running_aside) {
            li_running_restore(ts);
        }
        return result;
    }
    li_runner *r = runner_of(ts);
    if (r == NULL || ts->tracing) {
        return evaluate(ts, f, throwflag);
    }
    stand_in_front(ts, r);
    /* The frame copies use_tracing from its caller's CFrame as it starts,
       and gives its own back as it ends. */
    int caller_traced = LI_USE_TRACING(ts);
    LI_USE_TRACING(ts) = r->user != NULL || r->user_profile != NULL;
    if (!LI_USE_TRACING(ts)) {
        /* Neither this frame nor its callees are reached: the thread goes
           without its hooks until the frame returns or suspends (frames
           reached meanwhile put them back, sync_thread()).  3.9 would call
           running_trace() at every line of them, and its evaluation loop
           leaves its fast path only while some thread has a trace
           function; 3.10's YIELD_FROM takes a slower way (tp_iternext or a
           send() method call instead of PyIter_Send()) whenever the thread
           has one, which bench's json (a `yield from` at every level of
           its encoder) paid for as long as the driver's frames, which
           turned events on, stayed reached. */
        li_set_tracefunc(ts, NULL);
        ts->c_profilefunc = NULL;
    }
    PyObject *result = evaluate(ts, f, throwflag);
    r = runner_of(ts);
    if (r != NULL) {
        /* The caller goes on traced if it was (it or a frame below it is
           reached), or if the frame gave back tracing turned on meanwhile
           (frames reached while it ran): a caller that started on its
           shadow after events came must not pay 3.10's tracing path. */
        back_from_aside(r);
        stand_in_front(ts, r);
        LI_USE_TRACING(ts) |= caller_traced;
    }
    return result;
}
