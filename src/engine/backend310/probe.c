/* Probes: the sites a shadow's bytecode reaches C through (b310.h). */

#include "b310.h"
#include "structmember.h"

void
li_site_write(li_site *s, bool armed)
{
    uint8_t *b = (uint8_t *)PyBytes_AS_STRING(s->shadow->code->co_code) + 2 * s->unit;
    if (armed) {
        b[0] = (uint8_t)(s->first & 0xFF);
        b[1] = (uint8_t)(s->first >> 8);
    }
    else {
        b[0] = JUMP_FORWARD;
        b[1] = (uint8_t)li_jump_arg(s->size - 1);
    }
    s->armed = armed;
}

/* Disarms the probe for (event, orig) of the shadow new frames of the code
 * start on, where no tool wants it any more: a frame still running an older
 * shadow (one that was running when events changed) disables locations the
 * newer shadow was built with, and the next frames would run that one with
 * probes that only disarm themselves, never compacted away in a long call. */
static void
disarm_in_newest(li_shadow *newest, uint8_t event, int32_t orig)
{
    if (newest == NULL || newest->cs == NULL || li_tools_at(newest->cs, event, orig) != 0) {
        return;
    }
    for (int i = 0; i < newest->n_sites; i++) {
        li_site *s = newest->sites[i];
        if (s->orig == orig && s->event == event && s->armed) {
            li_site_disarm(s);
        }
    }
}

void
li_site_disarm(li_site *s)
{
    li_shadow *map = s->shadow;
    if (s->armed && map->code != NULL && !s->holds_handler_line) {
        if (s->event == LI_BRANCH) {
            li_branch_set(s, false);
        }
        else {
            li_site_write(s, false);
        }
        map->n_disarmed++;
        li_b310 *b = map->original != NULL ? map->cs->backend : NULL;
        if (b == NULL || b->shadow == NULL) {
            return;
        }
        if (b->shadow != map->code) {
            disarm_in_newest(li_shadow_of(b->shadow), s->event, s->orig);
        }
        /* The next frame of the code gets a shadow without it. */
        else if (li_worth_compacting(map)) {
            b->epoch = 0;
            map->resumes_plain_in = 0;
        }
    }
}

void
li_site_arm(li_site *s)
{
    if (!s->armed && s->shadow->code != NULL) {
        if (s->event == LI_BRANCH) {
            li_branch_set(s, true);
        }
        else {
            li_site_write(s, true);
        }
        s->shadow->n_disarmed--;
    }
}

void
li_rearm_shadow(li_shadow *map)
{
    if (map->original == NULL) {
        return;
    }
    for (int i = 0; i < map->n_sites; i++) {
        li_site *s = map->sites[i];
        if (!s->armed && li_tools_at(map->cs, s->event, s->orig) != 0) {
            li_site_arm(s);
        }
    }
}

void
li_rearm_all(void)
{
    for (li_shadow *map = li_live_shadows(); map != NULL; map = map->next) {
        li_rearm_shadow(map);
    }
}

int
li_call_tools_around_error(PyThreadState *ts, int event, uint8_t tools, li_code_state *cs,
                           Py_ssize_t unit, PyObject **args, size_t nargs, int value_slot)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (value_slot > 0) {
        PyErr_NormalizeException(&type, &value, &tb);
        args[value_slot] = value;
    }
    int err = li_call_tools(ts, event, tools, cs, unit, args, nargs);
    if (err < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
    else {
        PyErr_Restore(type, value, tb);
    }
    return err;
}

/* What fire() does once callbacks ran, when they may have changed
 * something (`epoch`: li_epoch before them): the probe disarmed where no
 * tool wants it any more, and a frame started over on the code it needs
 * now.  `result` is theirs; returns it, or -1 with li_restart set. */
static int
after_callbacks(PyThreadState *ts, li_site *s, int result, uint64_t epoch)
{
    li_shadow *map = s->shadow;
    if (map->original != NULL && li_tools_at(map->cs, s->event, s->orig) == 0) {
        li_site_disarm(s);
    }
    /* Tools commonly turn on local events for a code object as it starts:
       its frame has done nothing yet (but GEN_START), so it can start again
       on the code it needs now.  Not under sys.settrace or sys.setprofile,
       whose functions would see the frame start twice. */
    if (result == 0 && s->event == LI_PY_START && epoch != li_epoch && map->original != NULL &&
        !li_running_user_hooks(ts) &&
        li_exc_needed(map->original, li_wanted_events(map->cs) & LI_PROBED_EVENTS) != map->events)
    {
        PyErr_SetNone(li_restart);
        result = -1;
    }
    return result;
}

/* Delivers the event of `s` (with `value` for PY_RETURN and PY_YIELD).
 * 0, or -1 with an exception set. */
static int
fire(li_site *s, PyObject *value)
{
    PyThreadState *ts = PyThreadState_Get();
    li_shadow *map = s->shadow;
    if (ts->tracing || map->original == NULL) {
        return 0;
    }
    li_code_state *cs = map->cs;
    uint8_t tools = li_tools_at(cs, s->event, s->orig);
    if (tools == 0) {
        li_site_disarm(s);
        return 0;
    }
    if (value == NULL) {
        value = s->dest;    /* JUMP and BRANCH */
    }
    PyObject *args[4] = {NULL, (PyObject *)map->original, s->arg, value};
    /* The code state and the map may go while callbacks run. */
    Py_INCREF(map->code);
    PyCodeObject *shadow = map->code;
    uint64_t epoch = li_epoch;
    uint32_t dispatch = li_reg.dispatch_epoch;
    int result = s->event == LI_CALL ? li_fire_call(ts, s, tools)
                 : s->event == LI_PY_START ? li_fire_start(ts, s, tools, args)
                 : s->event == LI_STOP_ITERATION ? li_fire_stop(ts, s, tools, value)
                 : li_call_tools(ts, s->event, tools, cs, s->orig, args, value != NULL ? 3 : 2);
    /* (No DISABLE, no change of events or callbacks: nothing follows.) */
    if (epoch != li_epoch || dispatch != li_reg.dispatch_epoch) {
        result = after_callbacks(ts, s, result, epoch);
    }
    Py_DECREF(shadow);
    return result;
}

int
li_site_fire(li_site *s, PyObject *value)
{
    return fire(s, value);
}

/* Events whose probes may take the fast path: those fire() delivers
 * through li_call_tools() alone, and PY_START. */
static bool
may_go_fast(int event)
{
    return event == LI_PY_START || event == LI_PY_RETURN || event == LI_PY_YIELD ||
           event == LI_LINE || event == LI_INSTRUCTION || event == LI_JUMP ||
           event == LI_BRANCH;
}

/* After fire() delivered the event of `s` from its probe: keeps in `s` the
 * C callback its event goes to, when that is all there is to do, for
 * fire_fast() to call while nothing changes (the dispatch epoch changes
 * with callbacks, event sets, DISABLE marks and restarts).  Once an epoch:
 * the probes of Python callbacks do not look again at every event. */
static void
keep_fast_path(li_site *s)
{
    li_shadow *map = s->shadow;
    s->checked_epoch = li_reg.dispatch_epoch;
    if (!may_go_fast(s->event) || map->original == NULL) {
        return;
    }
    uint8_t tools = li_tools_at(map->cs, s->event, s->orig);
    if (tools == 0 || (tools & (tools - 1)) != 0) {
        return;
    }
    int tool = __builtin_ctz(tools);
    PyObject *callback = li_reg.callbacks[tool][s->event];
    if (callback == NULL || !Py_IS_TYPE(callback, li_reg.c_callback_type)) {
        return;
    }
    li_ccallback *c = (li_ccallback *)callback;
    s->fast_func = c->func;
    s->fast_data = c->data;
    s->fast_event = (uint8_t)c->event;
    s->fast_tool = (uint8_t)tool;
    s->fast_epoch = li_reg.dispatch_epoch;
}

/* A callback of fire_fast() did not just return 0 (`result`, a C
 * callback's), or its callbacks changed what follows. */
static LI_COLD int
fast_end(PyThreadState *ts, li_site *s, int result, uint64_t epoch)
{
    if (result < 0) {
        li_c_callback_failed();
        return -1;
    }
    li_shadow *map = s->shadow;
    /* (Its events are all local.) */
    if (result == LOWIMPACT_DISABLE && map->original != NULL &&
        li_code_state_disable(map->cs, s->event, s->orig, s->fast_tool) < 0)
    {
        return -1;
    }
    return after_callbacks(ts, s, 0, epoch);
}

/* The kept C callback of `s` called with args[1..nargs] (args[0] is
 * scratch space): what li_call_one() does around it.  Its result. */
static LI_HOT_INLINE int
call_kept(PyThreadState *ts, const li_site *s, PyObject **args, size_t nargs)
{
    li_note_event(ts, s->event);
    li_tracing_state before = li_enter_tracing(ts);
    int result = s->fast_func(s->fast_data, s->fast_event, args + 1, (Py_ssize_t)nargs);
    li_leave_tracing(ts, before);
    return result;
}

/* The frame a kept fast path of `s` delivers on: the thread's, when it
 * runs the shadow of `s` and is not in a callback (code run by one gets no
 * events); else NULL. */
static LI_HOT_INLINE PyFrameObject *
fast_frame(PyThreadState *ts, const li_site *s)
{
    PyFrameObject *f = ts->frame;
    if (ts->tracing || f == NULL || f->f_code != s->shadow->code || s->shadow->original == NULL) {
        return NULL;
    }
    return f;
}

/* What a probe of `s` returns once its event was delivered (`err`: 0, or
 * -1 with an exception set). */
static LI_HOT_INLINE PyObject *
delivered(li_site *s, int err)
{
    if (err < 0) {
        return NULL;
    }
    if (s->holds_handler_line && s->shadow->original != NULL) {
        li_hold_handler_line(PyThreadState_Get()->frame, s->shadow, s->orig);
    }
    Py_RETURN_NONE;
}

/* The UNARY_INVERT of a PY_START probe with its C callback kept (every
 * call's, under a C profiler), whose frame stands before its first
 * instruction meanwhile (li_fire_start()): what fire_fast() does, apart so
 * that the other events' path keeps fewer values across its call, and
 * reached from site_invert() by a tail call.  The frame's f_lasti is put
 * back as it was, in the version's own unit, without li_lasti()'s
 * conversions. */
static LI_NOINLINE PyObject *
fire_fast_start(li_site *s)
{
    PyThreadState *ts = _PyThreadState_UncheckedGet();
    PyFrameObject *f = fast_frame(ts, s);
    if (f == NULL) {
        return delivered(s, 0);
    }
    PyObject *args[3] = {NULL, (PyObject *)s->shadow->original, s->arg};
    uint32_t dispatch = s->fast_epoch;
    uint64_t epoch = li_epoch;
    int lasti = f->f_lasti, line = f->f_lineno;
    li_set_lasti(f, -1);
    li_show_start_line(f);
    int result = call_kept(ts, s, args, 2);
    if (result < 0) {
        li_set_start_mark(f, s->orig);
    }
    else {
        f->f_lasti = lasti;
        f->f_lineno = line;
    }
    if (result == 0 && dispatch == li_reg.dispatch_epoch) {
        return delivered(s, 0);
    }
    return delivered(s, fast_end(ts, s, result, epoch));
}

/* The probe of `s`, not a PY_START one, fires with the fast path kept
 * (keep_fast_path()): what fire(), li_call_tools() and li_call_one() do
 * for one C callback, with nothing looked up.  `value` for an event with
 * a value whose probe passes it (NULL: on the frame's stack, or none).
 * The frame that runs the probe holds its shadow, which holds `s`.  0, or
 * -1 with an exception set. */
static LI_HOT_INLINE int
fire_fast(li_site *s, PyObject *value)
{
    PyThreadState *ts = _PyThreadState_UncheckedGet();
    PyFrameObject *f = fast_frame(ts, s);
    if (f == NULL) {
        return 0;
    }
    PyObject *args[4] = {NULL, (PyObject *)s->shadow->original, s->arg, value};
    if (s->value_on_stack) {
        args[3] = f->f_valuestack[s->depth - 1];
    }
    else if (s->dest != NULL) {
        args[3] = s->dest;  /* JUMP and BRANCH */
    }
    uint32_t dispatch = s->fast_epoch;
    int result = call_kept(ts, s, args, args[3] != NULL ? 3 : 2);
    if (result == 0 && dispatch == li_reg.dispatch_epoch) {
        return 0;
    }
    /* (Only PY_START's callbacks have frames start over: no epoch.) */
    return fast_end(ts, s, result, li_epoch);
}

/* The value of an event with one, left on the frame's stack by the probe
 * of `s` that runs; NULL if the frame that runs it is not on its shadow
 * (someone else evaluated the probe's operation). */
static PyObject *
value_on_stack(li_site *s)
{
    PyFrameObject *f = _PyThreadState_UncheckedGet()->frame;
    if (f == NULL || f->f_code != s->shadow->code) {
        return NULL;
    }
    return f->f_valuestack[s->depth - 1];
}

/* The UNARY_INVERT of a probe whose fast path is kept, but for PY_START:
 * apart from site_invert(), for its tail calls. */
static LI_NOINLINE PyObject *
invert_fast(li_site *s)
{
    return delivered(s, fire_fast(s, NULL));
}

/* The UNARY_INVERT of a probe without its fast path kept. */
static LI_NOINLINE PyObject *
invert_slow(li_site *s)
{
    int err;
    /* Exception events are not local: their probes are never disarmed. */
    if (s->event == LI_EXCEPTION_HANDLED || s->event == LI_RERAISE) {
        err = li_fire_exc(s);
    }
    else if (s->value_on_stack) {
        PyObject *value = value_on_stack(s);
        err = value != NULL ? fire(s, value) : 0;
    }
    else {
        err = fire(s, NULL);
    }
    if (err == 0 && s->checked_epoch != li_reg.dispatch_epoch) {
        keep_fast_path(s);
    }
    return delivered(s, err);
}

/* nb_invert: the probe's UNARY_INVERT.  Only tail calls, so that no path
 * pays for the registers another keeps across its callbacks. */
static PyObject *
site_invert(PyObject *self)
{
    li_site *s = (li_site *)self;
    if (s->fast_epoch != li_reg.dispatch_epoch) {
        return invert_slow(s);
    }
    return s->event == LI_PY_START ? fire_fast_start(s) : invert_fast(s);
}

static int
site_contains(PyObject *self, PyObject *value)
{
    li_site *s = (li_site *)self;
    if (s->fast_epoch == li_reg.dispatch_epoch) {
        return fire_fast(s, value) < 0 ? -1 : 0;
    }
    if (fire(s, value) < 0) {
        return -1;
    }
    if (s->checked_epoch != li_reg.dispatch_epoch) {
        keep_fast_path(s);
    }
    return 0;
}

/* FOR_ITER's probe: the loop's iterator in, the one it runs on out. */
static PyObject *
site_subscript(PyObject *self, PyObject *it)
{
    return li_exc_wrap((li_site *)self, it);
}

static void
site_dealloc(PyObject *self)
{
    Py_XDECREF(((li_site *)self)->arg);
    Py_XDECREF(((li_site *)self)->dest);
    PyObject_Free(self);
}

static PyNumberMethods site_as_number = {
    .nb_invert = site_invert,
};

static PySequenceMethods site_as_sequence = {
    .sq_contains = site_contains,
};

static PyMappingMethods site_as_mapping = {
    .mp_subscript = site_subscript,
};

/* Read by tests/engine/shadowcheck310.py, which checks every probe of a
 * shadow against the instruction it stands before. */
static PyMemberDef site_members[] = {
    {"orig", T_INT, offsetof(li_site, orig), READONLY, NULL},
    {"unit", T_INT, offsetof(li_site, unit), READONLY, NULL},
    {"size", T_UBYTE, offsetof(li_site, size), READONLY, NULL},
    {"event", T_UBYTE, offsetof(li_site, event), READONLY, NULL},
    {"armed", T_BOOL, offsetof(li_site, armed), READONLY, NULL},
    {"value_on_stack", T_BOOL, offsetof(li_site, value_on_stack), READONLY, NULL},
    {"depth", T_INT, offsetof(li_site, depth), READONLY, NULL},
    {"arg", T_OBJECT, offsetof(li_site, arg), READONLY, NULL},
    {"dest", T_OBJECT, offsetof(li_site, dest), READONLY, NULL},
    {"twin", T_OBJECT, offsetof(li_site, twin), READONLY, NULL},
    {"jump_unit", T_INT, offsetof(li_site, jump.unit), READONLY, NULL},
    {"jump_size", T_UBYTE, offsetof(li_site, jump.size), READONLY, NULL},
    {"jump_via_stub", T_UINT, offsetof(li_site, jump.via_stub), READONLY, NULL},
    {"jump_direct", T_UINT, offsetof(li_site, jump.direct), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject li_site_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine.probe",
    .tp_basicsize = sizeof(li_site),
    .tp_dealloc = site_dealloc,
    .tp_as_number = &site_as_number,
    .tp_as_sequence = &site_as_sequence,
    .tp_as_mapping = &site_as_mapping,
    .tp_members = site_members,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A probe of an instrumented code object.",
};
