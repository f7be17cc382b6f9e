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
 * PY_YIELD) and, where it needs others (CALL), opcode events, which it asks
 * for (f_trace_opcodes), as if the frame ran the shadow.
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

/* Frames whose references are to be let go (owned; a PyMem array). */
static PyFrameObject **dropped;
static int n_dropped, cap_dropped;

/* Lets `f` go later (or never, if there is no memory to remember it). */
static void
drop(PyFrameObject *f)
{
    if (li_reserve((void **)&dropped, &cap_dropped, n_dropped, sizeof(PyFrameObject *), 8) < 0) {
        PyErr_Clear();
        return;
    }
    dropped[n_dropped++] = f;
}

/* Lets the dropped frames go: their ends may run code that changes events. */
static void
let_go(void)
{
    while (n_dropped > 0) {
        PyFrameObject **frames = dropped;
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
        ts->c_tracefunc = running_trace;
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
    ts->c_tracefunc = NULL;
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
        ts->c_tracefunc = r->user;
    }
    if (ts->c_profilefunc == running_profile) {
        ts->c_profilefunc = r->user_profile;
    }
    /* Inside a callback or a trace function, leaving it sets use_tracing. */
    if (ts->tracing == 0) {
        ts->cframe->use_tracing = ts->c_tracefunc != NULL || ts->c_profilefunc != NULL;
    }
    for (int k = 0; k < r->n; k++) {
        drop(r->frames[k].frame);
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
    int unit = f->f_lasti;
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
 * leaves out) and from their return event (the value is the event's); the
 * others need an opcode event per instruction. */
#define LI_LINE_EVENTS LI_EVENT_BIT(LI_LINE)
#define LI_EXIT_EVENTS (LI_EVENT_BIT(LI_PY_RETURN) | LI_EVENT_BIT(LI_PY_YIELD))
/* A frame that runs has started; BRANCH probes sit after their branch and
 * in stubs it jumps through, which no trace event of the original marks;
 * the exception events' probes read the block stack and the values of a
 * frame on the shadow (exc.c). */
#define LI_NOT_REACHED (LI_EVENT_BIT(LI_PY_START) | LI_EVENT_BIT(LI_BRANCH) | \
                        LI_EVENT_BIT(LI_JUMP) | LI_EXC_PROBED_EVENTS)

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
        /* As the shadow: not when a jump (or a handler) comes back to the
           line the frame was on. */
        int line = f->f_lineno;     /* call_trace() set it for the event */
        bool due = line != reached->line;
        reached->line = line;
        events = due ? events & LI_LINE_EVENTS : 0;
        if (running == NULL) {
            orig = f->f_lasti;
        }
        else if (f->f_lasti >= 0 && f->f_lasti < running->n_units) {
            orig = running->orig_start[f->f_lasti];
        }
    }
    else if (what == PyTrace_OPCODE) {
        events &= ~(LI_LINE_EVENTS | LI_EXIT_EVENTS);
        orig = events ? instruction_start(f, running, map) : -1;
    }
    else if (what == PyTrace_RETURN && value != NULL) {
        events &= LI_EXIT_EVENTS;
        if (running == NULL) {
            orig = f->f_lasti;
        }
        else if (f->f_lasti >= 0 && f->f_lasti < running->n_units) {
            orig = running->orig_start[f->f_lasti];
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

/* Reached frame `f`, on the original, suspends in YIELD_FROM, yielding
 * `value`: PY_YIELD (hook.c delivers it for frames on shadows).  0, or -1
 * with an exception set. */
static int
yield_from(PyThreadState *ts, PyFrameObject *f, PyObject *value)
{
    if (value == NULL || f->f_state != FRAME_SUSPENDED || li_shadow_of(f->f_code) != NULL) {
        return 0;
    }
    PyCodeObject *code = f->f_code;
    int unit = f->f_lasti + 1;
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
    drop(f);
    *reached = r->frames[--r->n];
    /* Frames that ended or suspended unreported. */
    for (int i = 0; i < r->n; i++) {
        if (r->frames[i].frame->f_state != FRAME_EXECUTING) {
            drop(r->frames[i].frame);
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
        leave(ts, f);
        return err < 0 ? -1 : chain(ts, f, what, arg);
    }
    if (ts->c_profilefunc != running_profile) {
        stand_in_front(ts, r);      /* sys.setprofile() from a reached frame */
    }
    bool user_opcodes = reached->user_opcodes;
    if (reach(ts, reached, f, what, arg) < 0) {
        return -1;
    }
    if (what == PyTrace_OPCODE && !user_opcodes) {
        return 0;
    }
    /* Callbacks may have moved or ended what `reached` points to.  The
       user's function sees, and may change, its own f_trace_opcodes. */
    reached = find_reached(runner_of(ts), f);
    if (reached == NULL) {
        return chain(ts, f, what, arg);
    }
    f->f_trace_opcodes = reached->user_opcodes;
    int err = chain(ts, f, what, arg);
    reached = find_reached(runner_of(ts), f);
    if (reached != NULL) {
        reached->user_opcodes = f->f_trace_opcodes != 0;
        f->f_trace_opcodes = reached->user_opcodes || reached->opcodes;
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

/* The events frame `f` misses, if it runs (0 if not). */
static li_event_set
to_reach(PyFrameObject *f)
{
    li_shadow *want;
    return f->f_state == FRAME_EXECUTING ? missed(f, &want) : 0;
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
        li_event_set events = to_reach(f);
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
        frames[n++] = (li_reached){(PyFrameObject *)Py_NewRef(f), -1,
                                   (events & ~(LI_LINE_EVENTS | LI_EXIT_EVENTS)) != 0, false};
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
            frames[k].line = PyCode_Addr2Line(f->f_code, 2 * (f->f_lasti > 0 ? f->f_lasti : 0));
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
        }
        drop(f);
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
        ts->cframe->use_tracing = 1;
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
                drop(runners[i].frames[k].frame);
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
    if (!ts->cframe->use_tracing) {
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
    int caller_traced = ts->cframe->use_tracing;
    ts->cframe->use_tracing = r->user != NULL || r->user_profile != NULL;
    PyObject *result = evaluate(ts, f, throwflag);
    r = runner_of(ts);
    if (r != NULL) {
        /* The caller goes on traced if it was (it or a frame below it is
           reached), or if the frame gave back tracing turned on meanwhile
           (frames reached while it ran): a caller that started on its
           shadow after events came must not pay 3.10's tracing path. */
        back_from_aside(r);
        stand_in_front(ts, r);
        ts->cframe->use_tracing |= caller_traced;
    }
    return result;
}
