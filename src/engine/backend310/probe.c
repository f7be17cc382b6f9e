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
    if (epoch == li_epoch && dispatch == li_reg.dispatch_epoch) {
        /* (No DISABLE, no change of events or callbacks: what follows
           has nothing to do.) */
        Py_DECREF(shadow);
        return result;
    }
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
    Py_DECREF(shadow);
    return result;
}

int
li_site_fire(li_site *s, PyObject *value)
{
    return fire(s, value);
}

static PyObject *
site_invert(PyObject *self)
{
    li_site *s = (li_site *)self;
    /* Exception events are not local: their probes are never disarmed. */
    bool exc = s->event == LI_EXCEPTION_HANDLED || s->event == LI_RERAISE;
    if ((exc ? li_fire_exc(s) : fire(s, NULL)) < 0) {
        return NULL;
    }
    if (s->holds_handler_line && s->shadow->original != NULL) {
        li_hold_handler_line(PyThreadState_Get()->frame, s->shadow, s->orig);
    }
    Py_RETURN_NONE;
}

static int
site_contains(PyObject *self, PyObject *value)
{
    return fire((li_site *)self, value) < 0 ? -1 : 0;
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
