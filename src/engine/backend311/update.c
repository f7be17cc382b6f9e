/* Keeping every code object that can run in line with what tools want:
 * which shadow new frames of a code object run (function objects, exec,
 * FunctionType), and moving frames that are not executing to the right
 * code (on-stack replacement). */

#include "b311.h"
#include "internal/pycore_gc.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_pystate.h"

/* Global events that needed probes at the last update: while it is the same,
 * a global change only re-arms probes in place. */
static li_event_set probed_globally;

PyCodeObject *
li_backend_original(PyCodeObject *code)
{
    li_probes *lp = li_shadow_probes(code);
    return lp != NULL ? lp->original : code;
}

static li_event_set
wanted_kinds(const li_code_state *cs)
{
    return li_wanted_events(cs) & LI_PROBED_EVENTS;
}

/* Whether `code` or a code object nested in it needs probes. */
static bool
needs_shadow(PyCodeObject *code)
{
    if (wanted_kinds(li_code_state_get(code))) {
        return true;
    }
    PyObject *consts = code->co_consts;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); i++) {
        PyObject *c = PyTuple_GET_ITEM(consts, i);
        if (PyCode_Check(c) && needs_shadow((PyCodeObject *)c)) {
            return true;
        }
    }
    return false;
}

static bool
needs_instrumenting(li_code_state *cs, PyCodeObject *original)
{
    if (cs != NULL && cs->excluded) {
        return false;
    }
    return wanted_kinds(cs) || needs_shadow(original);
}

static bool
defines_code(PyCodeObject *code)
{
    PyObject *consts = code->co_consts;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); i++) {
        if (PyCode_Check(PyTuple_GET_ITEM(consts, i))) {
            return true;
        }
    }
    return false;
}

bool
li_only_start_wanted(li_code_state *cs)
{
    return !cs->excluded && wanted_kinds(cs) == LI_EVENT_BIT(LI_PY_START) &&
           !defines_code(cs->code);
}

bool
li_start_wanted_nowhere(li_code_state *cs)
{
    li_code_backend *cb = (li_code_backend *)cs->backend;
    /* (A refresh as the code next starts would forget some marks: it is to
       start through its trampoline, as natively it fires again.) */
    return cb != NULL && cb->entry_site >= 0 && li_only_start_wanted(cs) &&
           !li_code_state_refresh_forgets(cs) &&
           li_tools_at_local(cs, LI_PY_START, cb->entry_site) == 0;
}

bool
li_start_disabled_everywhere(li_code_state *cs)
{
    li_code_backend *cb = (li_code_backend *)cs->backend;
    return cb != NULL && li_entry_bare(cb) && li_start_wanted_nowhere(cs);
}

bool
li_needs_instrumenting(PyCodeObject *original)
{
    return needs_instrumenting(li_code_state_get(original), original);
}

bool
li_refresh_awaited(PyCodeObject *original)
{
    /* (Not generator-like code: its frames would land on a shadow without
       probes, which broke pytest's hook wrappers: see landing.c.) */
    li_code_state *cs = li_code_state_get(original);
    return cs != NULL && !cs->excluded &&
           !(original->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) &&
           li_code_state_refresh_forgets(cs);
}

/* Whether frames running `code` (an original, or a shadow that lacks
 * probes) miss events tools want. */
static bool
needs_events(PyCodeObject *code)
{
    li_probes *lp = li_shadow_probes(code);
    if (lp != NULL) {
        /* (A restart may have left it to learn that at its next frame.) */
        li_probes_ready(lp);
        return lp->outdated;
    }
    li_code_state *cs = li_code_state_get(code);
    return (cs == NULL || !cs->excluded) && wanted_kinds(cs) != 0;
}

/* Functions of code run with `builtins` (NULL: not known, the usual). */
static bool
standard_builtins(PyObject *builtins)
{
    return builtins == NULL || builtins == _PyInterpreterState_GET()->builtins;
}

/* The current shadow of `cs`, if it has the probes tools want now and the
 * landing pads of every resume point. */
static li_probes *
usable_shadow(li_code_state *cs)
{
    li_probes *current = li_current_shadow(cs);
    if (current != NULL && current->kinds == wanted_kinds(cs) && !li_probes_stale(current) &&
        current->n_resume_points == ((li_code_backend *)cs->backend)->n_resume_points)
    {
        return current;
    }
    return NULL;
}

int
li_add_resume_point(li_code_backend *cb, li_landing to)
{
    for (int k = 0; k < cb->n_resume_points; k++) {
        if (li_same_landing(cb->resume_points[k], to)) {
            return 0;
        }
    }
    if (li_reserve((void **)&cb->resume_points, &cb->cap_resume_points, cb->n_resume_points,
                   sizeof(li_landing), 4) < 0)
    {
        return -1;
    }
    cb->resume_points[cb->n_resume_points++] = to;
    return 0;
}

static PyObject *desired_code(PyCodeObject *original, PyObject *builtins, bool starting);

/* What a function of `original`, or code that makes such functions, should
 * hold now: the original itself when nothing is wanted there; else its
 * shadow if one is built; else, when a trampoline can go in, the original
 * with a trampoline, which builds the shadow when a frame first starts (as
 * CPython 3.12 instruments code when it first runs); else a shadow built now.
 * New reference. */
PyObject *
li_prepared_code(PyCodeObject *original, PyObject *builtins)
{
    li_code_state *cs = li_code_state_get(original);
    if (!needs_instrumenting(cs, original)) {
        /* Its next frame sees it instrumented, as natively, if that would
           forget what tools disabled there: where the entry trampoline
           can go in (start_refreshing(), landing.c).  So do the frames of
           the functions it makes, from its nested code. */
        if (standard_builtins(builtins) && li_marks_may_exist() &&
            ((li_refresh_awaited(original) && li_trampoline_arm(cs) < 0) ||
             li_arm_nested(original, builtins) < 0))
        {
            return NULL;
        }
        return Py_NewRef(original);
    }
    if (cs == NULL && (cs = li_code_state_ensure(original)) == NULL) {
        return NULL;
    }
    if (li_start_disabled_everywhere(cs)) {
        li_code_state_refresh(cs);      /* (forgets nothing: see desired_code()) */
        return Py_NewRef(original);
    }
    if (usable_shadow(cs) == NULL && standard_builtins(builtins)) {
        int armed = li_trampoline_arm(cs);
        if (armed != 0) {
            return armed > 0 ? Py_NewRef(original) : NULL;
        }
    }
    return desired_code(original, builtins, false);
}

/* The constants a shadow of `original` should have: nested code objects
 * replaced by what their new functions should start with.  New reference. */
static PyObject *
desired_consts(PyCodeObject *original, PyObject *builtins)
{
    PyObject *consts = original->co_consts;
    Py_ssize_t n = PyTuple_GET_SIZE(consts);
    PyObject *result = PyTuple_New(n);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PyTuple_GET_ITEM(consts, i);
        PyObject *item = PyCode_Check(c) ? li_prepared_code((PyCodeObject *)c, builtins)
                                         : Py_NewRef(c);
        if (item == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, i, item);
    }
    return result;
}

/* Points constant `index` of a shadow at `value`.  A shadow's constants
 * tuple is private to lowimpact, so it may change. */
static void
set_const(li_probes *lp, Py_ssize_t index, PyObject *value)
{
    PyObject *own = lp->shadow->co_consts;
    PyObject *old = PyTuple_GET_ITEM(own, index);
    if (old != value) {
        PyTuple_SET_ITEM(own, index, Py_NewRef(value));
        Py_DECREF(old);
    }
}

static void
refresh_consts(li_probes *lp, PyObject *consts)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); i++) {
        set_const(lp, i, PyTuple_GET_ITEM(consts, i));
    }
}

li_code_backend *
li_code_backend_ensure(li_code_state *cs)
{
    if (cs->backend == NULL) {
        li_code_backend *cb = PyMem_Calloc(1, sizeof(li_code_backend));
        if (cb == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        cb->entry_site = cb->entry_tramp = cb->entry_owner = -1;
        cb->true_stacksize = -1;
        cb->saved_firsttraceable = -1;
        cb->patches.trampolines = cb->patches.first = &cb->first_trampoline;
        cb->patches.cap_trampolines = 1;
        cb->cs = cs;
        cs->backend = cb;
    }
    return (li_code_backend *)cs->backend;
}

/* ---- the shadows whose constants hold a code object ----------------------
 * A parent shadow holds its nested code objects as the original with a
 * trampoline until their shadow exists; then it should hold the shadow, so
 * that the functions it makes start there at once. */

static int
add_link(li_code_backend *cb, li_probes *parent, int index)
{
    if (li_reserve((void **)&cb->links, &cb->cap_links, cb->n_links, sizeof(li_const_link),
                   2) < 0)
    {
        return -1;
    }
    cb->links[cb->n_links++] = (li_const_link){parent, index};
    return 0;
}

/* Each nested code object of the new shadow `lp` learns it is held there. */
static int
link_nested(li_probes *lp)
{
    PyObject *consts = lp->shadow->co_consts;
    for (int i = 0; i < lp->probes_const; i++) {
        PyObject *c = PyTuple_GET_ITEM(consts, i);
        if (!PyCode_Check(c)) {
            continue;
        }
        li_code_state *cs = li_code_state_ensure(li_backend_original((PyCodeObject *)c));
        li_code_backend *cb = cs != NULL ? li_code_backend_ensure(cs) : NULL;
        if (cb == NULL || add_link(cb, lp, i) < 0) {
            return -1;
        }
    }
    return 0;
}

void
li_unlink_nested(li_probes *lp)
{
    PyObject *consts = lp->shadow->co_consts;
    for (int i = 0; i < lp->probes_const; i++) {
        PyObject *c = PyTuple_GET_ITEM(consts, i);
        li_code_state *cs = PyCode_Check(c)
            ? li_code_state_get(li_backend_original((PyCodeObject *)c)) : NULL;
        li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
        if (cb == NULL) {
            continue;
        }
        for (int k = 0; k < cb->n_links; k++) {
            if (cb->links[k].parent == lp && cb->links[k].index == i) {
                cb->links[k] = cb->links[--cb->n_links];
                break;
            }
        }
    }
}

/* Makes `lp` the shadow new frames of its original run.  0 or -1. */
static int
make_current(li_code_state *cs, li_probes *lp)
{
    li_code_backend *cb = li_code_backend_ensure(cs);
    if (cb == NULL) {
        return -1;
    }
    li_probes *previous = cb->current;
    cb->current = lp;
    if (previous != NULL && previous != lp) {
        li_make_obsolete(previous);
        li_dispatch_changed();
        li_probes_sync(previous);    /* arms its entry probe */
    }
    for (int k = 0; k < cb->n_links; k++) {
        set_const(cb->links[k].parent, cb->links[k].index, (PyObject *)lp->shadow);
    }
    return 0;
}

/* li_desired_code(), or with `starting` false for code that is not about to
 * run (li_prepared_code()). */
static PyObject *
desired_code(PyCodeObject *original, PyObject *builtins, bool starting)
{
    assert(li_shadow_probes(original) == NULL);
    li_code_state *cs = li_code_state_get(original);
    if (!needs_instrumenting(cs, original)) {
        return Py_NewRef(original);
    }
    if (cs == NULL && (cs = li_code_state_ensure(original)) == NULL) {
        return NULL;
    }
    PyObject *consts = desired_consts(original, builtins);
    if (consts == NULL) {
        return NULL;
    }
    li_probes *usable = usable_shadow(cs);
    /* CPython instruments code when it next starts, also where it keeps the
       probes it has (another tool wants the same events): a shadow that
       stays refreshes at its entry probe, when that forgets anything.  (A
       refresh that forgets nothing can come early: only the code's frames
       make marks, and they start on it.) */
    if (usable != NULL) {
        if (starting || !li_code_state_refresh_forgets(cs)) {
            li_code_state_refresh(cs);
        }
        else if (usable->entry_probe >= 0) {
            cs->refresh_pending = true;
            li_probes_sync(usable);
        }
        else {
            usable = NULL;      /* one that has an entry probe is built */
        }
    }
    PyObject *result;
    if (usable != NULL) {
        refresh_consts(usable, consts);
        result = Py_NewRef(usable->shadow);
    }
    else {
        /* CPython instruments code when it next starts: code that does not
           start now refreshes at its shadow's entry probe (probe.c) when
           that would change anything. */
        if (starting || !li_code_state_refresh_forgets(cs)) {
            li_code_state_refresh(cs);
        }
        else {
            cs->refresh_pending = true;
        }
        result = (PyObject *)li_build_shadow(original, cs, wanted_kinds(cs), consts, false);
        li_probes *lp = result != NULL ? li_shadow_probes((PyCodeObject *)result) : NULL;
        if (lp != NULL && (link_nested(lp) < 0 || make_current(cs, lp) < 0)) {
            Py_CLEAR(result);
        }
    }
    Py_DECREF(consts);
    return result;
}

PyObject *
li_desired_code(PyCodeObject *original, PyObject *builtins)
{
    return desired_code(original, builtins, true);
}

PyObject *
li_landing_code(PyCodeObject *original, li_landing to, int capacity, PyObject *builtins)
{
    PyObject *desired = li_desired_code(original, builtins);
    if (desired == NULL) {
        return NULL;
    }
    li_probes *lp = li_shadow_probes((PyCodeObject *)desired);
    if (lp != NULL && li_pad_unit(lp, to) >= 0 &&
        ((PyCodeObject *)desired)->co_stacksize <= capacity)
    {
        return desired;
    }
    Py_DECREF(desired);
    /* Without probes: the stack of the original is enough. */
    return li_bare_code(original, builtins);
}

PyObject *
li_bare_code(PyCodeObject *original, PyObject *builtins)
{
    li_code_state *cs = li_code_state_ensure(original);
    PyObject *consts = cs != NULL ? desired_consts(original, builtins) : NULL;
    if (consts == NULL) {
        return NULL;
    }
    PyObject *bare = (PyObject *)li_build_shadow(original, cs, 0, consts, false);
    Py_DECREF(consts);
    return bare;
}

void
li_retire_quietly(li_probes *lp)
{
    /* The next function to start builds a new shadow, and functions still
       pointing here move to it at their next start. */
    if (li_current_shadow(lp->cs) == lp) {
        ((li_code_backend *)lp->cs->backend)->current = NULL;
    }
    li_make_obsolete(lp);
}

void
li_retire(li_probes *lp)
{
    li_retire_quietly(lp);
    li_dispatch_changed();
}

int
li_compact(li_probes *lp)
{
    if (li_current_shadow(lp->cs) != lp) {
        return 0;
    }
    /* The new shadow goes without the disarmed probes. */
    li_retire(lp);
    li_probes_sync(lp);
    return 0;
}

static void
set_function_code(PyFunctionObject *func, PyObject *code)
{
    Py_SETREF(func->func_code, Py_NewRef(code));
    /* As assigning __code__ does: call sites specialised for the old code
       must not trust their caches. */
    func->func_version = 0;
}

/* Points `func` at the code its calls should run now.  0 or -1. */
static int
update_function(PyFunctionObject *func)
{
    PyCodeObject *code = (PyCodeObject *)func->func_code;
    PyObject *desired = li_prepared_code(li_backend_original(code), func->func_builtins);
    if (desired == NULL) {
        return -1;
    }
    if (desired != (PyObject *)code) {
        set_function_code(func, desired);
    }
    Py_DECREF(desired);
    return 0;
}

/* ---- on-stack replacement --------------------------------------------- */

/* The unit of `to` that corresponds to unit `unit` of `from` (both copies of
 * the same original), or -2 when there is none: a frame can only move at an
 * instruction of the original, never inside a probe. */
static int
map_unit(PyCodeObject *from, PyCodeObject *to, int unit)
{
    if (unit < 0) {
        return unit;   /* the frame has not started */
    }
    li_probes *src = li_shadow_probes(from);
    int orig = unit;
    if (src != NULL) {
        orig = li_orig_of(src, unit);
        if (li_shadow_of(src, orig) != unit) {
            return -2;
        }
    }
    li_probes *dst = li_shadow_probes(to);
    return dst != NULL ? li_shadow_of(dst, orig) : orig;
}

/* Moves a frame that is not executing to the code its code object should
 * run now, when its state maps and its stack has room.  0 or -1. */
static int
replace_frame_code(PyThreadState *ts, _PyInterpreterFrame *frame, _PyInterpreterFrame *above)
{
    PyCodeObject *code = frame->f_code;
    if (li_landing_expected(ts, frame)) {
        return 0;   /* the landing moves it, from where it is */
    }
    PyObject *desired = li_desired_code(li_backend_original(code), frame->f_builtins);
    if (desired == NULL) {
        return -1;
    }
    PyCodeObject *to = (PyCodeObject *)desired;
    int err = 0;
    if (to != code) {
        bool room = to->co_stacksize <= li_frame_capacity(ts, frame, above);
        int unit = map_unit(code, to, (int)(frame->prev_instr - _PyCode_CODE(code)));
        if (room) {
            err = unit != -2 ? li_frame_set_code(frame, to, unit) : 0;
        }
        else if (to->co_stacksize <= li_frame_landing_capacity(ts, frame, above)) {
            /* Its thread traces: it has room only once it gets the slot
               after its allocation, which a landing gives it. */
            err = li_trampolines_reach(ts, frame, above);
        }
    }
    Py_DECREF(desired);
    return err;
}

static bool
is_live(_PyInterpreterFrame *frame, PyThreadState *ts)
{
    /* The frame each C-level evaluation loop is executing keeps its position
       in C locals, so it cannot move; the others resume from their frame. */
    for (_PyCFrame *cf = ts->cframe; cf != NULL; cf = cf->previous) {
        if (cf->current_frame == frame) {
            return true;
        }
    }
    return false;
}

static int
update_frame(PyThreadState *ts, _PyInterpreterFrame *frame, _PyInterpreterFrame *above)
{
    /* CPython instruments the code objects that are running at once. */
    li_code_state *cs = li_code_state_get(li_backend_original(frame->f_code));
    if (cs != NULL) {
        /* What it forgets may be probes the current shadow left out:
           functions move on from it as they next start. */
        li_probes *current = li_current_shadow(cs);
        if (current != NULL && current->partial && li_code_state_refresh_forgets(cs)) {
            li_retire(current);
        }
        li_code_state_refresh(cs);
        /* A function's frame on a stack has started (or lands as it starts):
           where tools want PY_START alone, its original serves it to the
           end.  (Resume trampolines armed for it would also keep the entry
           one out, which restart_events() gives back to such code.) */
        if (frame->f_code == cs->code && li_only_start_wanted(cs) &&
            !(cs->code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)))
        {
            return 0;
        }
    }
    if (!is_live(frame, ts)) {
        return replace_frame_code(ts, frame, above);
    }
    /* A frame delivering a probe's events is diverted by the probe once
       they end, if its shadow lacks probes wanted now; one whose PY_START
       fires at its landing lands on the code wanted then. */
    if (li_frame_in_probe(frame) || li_frame_starting(frame)) {
        return 0;
    }
    return needs_events(frame->f_code) ? li_trampolines_reach(ts, frame, above) : 0;
}

/* Brings the frames on the threads' stacks into line: those of `only`'s
 * code, or all when it is NULL.  0 or -1. */
static int
update_thread_frames(li_code_state *only)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        _PyInterpreterFrame *above = NULL;   /* the last one on the data stack */
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            if (f->owner == FRAME_OWNED_BY_FRAME_OBJECT || _PyFrame_IsIncomplete(f)) {
                continue;
            }
            if (only == NULL || li_backend_original(f->f_code) == only->code) {
                if (update_frame(ts, f, above) < 0) {
                    return -1;
                }
            }
            if (f->owner == FRAME_OWNED_BY_THREAD) {
                above = f;
            }
        }
    }
    return 0;
}

/* ---- a trace function comes ------------------------------------------- */

/* Adds `original` to `originals` (a list) once: the same object, not an
 * equal one (code objects compare by value).  0 or -1. */
static int
note_original(PyObject *originals, PyCodeObject *original)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(originals); i++) {
        if (PyList_GET_ITEM(originals, i) == (PyObject *)original) {
            return 0;
        }
    }
    return PyList_Append(originals, (PyObject *)original);
}

/* Gets `frame` of `ts`, which has the borrowed slot, off what needs it now
 * that its thread traces: a shadow too big for it, if it can move (a live
 * frame's position is in C locals), goes for the original, as if it had
 * never had the room.  If it runs such a shadow or code with trampolines,
 * its code goes on `originals` to be reached again.  0 or -1. */
static int
stop_borrowing(PyThreadState *ts, _PyInterpreterFrame *frame, _PyInterpreterFrame *above,
               PyObject *originals)
{
    PyCodeObject *code = frame->f_code;
    PyCodeObject *original = li_backend_original(code);
    bool too_big = code != original &&
                   code->co_stacksize > li_frame_capacity(ts, frame, above);
    if (!too_big && !li_trampolines_armed_in(code)) {
        return 0;
    }
    /* The frame may hold the last reference to its shadow: the original
       (which the shadow holds) is noted before it moves. */
    if (note_original(originals, original) < 0) {
        return -1;
    }
    if (too_big && !is_live(frame, ts) && !li_landing_expected(ts, frame)) {
        int unit = map_unit(code, original, (int)(frame->prev_instr - _PyCode_CODE(code)));
        if (unit != -2 && li_frame_set_code(frame, original, unit) < 0) {
            return -1;
        }
    }
    else if (too_big) {
        /* It waits in C (its probe's callbacks set the trace function, or a
           call: see waits_in_c_without_room()): the end of its probe, or of
           the first that fires after, gives it the slot
           (li_frame_claim_slot()), which their fast path reaches once the
           epoch changed. */
        li_dispatch_changed();
    }
    return 0;
}

/* Whether `frame` of `ts`, which is about to trace, waits in a C call (not
 * a probe's: its end gives the frame the slot) on a shadow too big for it
 * without the slot after its allocation: it cannot move, and a probe at
 * the full depth of its stack right after the call would meet the trace
 * function's frame there.  A trampoline where it goes on lands it, which
 * gives it the slot (li_frame_landing_capacity()). */
static bool
waits_in_c_without_room(PyThreadState *ts, _PyInterpreterFrame *frame,
                        _PyInterpreterFrame *above)
{
    PyCodeObject *code = frame->f_code;
    return code != li_backend_original(code) && is_live(frame, ts) &&
           !li_frame_in_probe(frame) && !li_frame_starting(frame) &&
           !li_landing_expected(ts, frame) &&
           code->co_stacksize > li_frame_capacity(ts, frame, above);
}

/* Re-reaches the frames of `original`'s code on every thread, as an update
 * does, after letting go of the trampolines they had.  0 or -1. */
static int
reach_again(PyCodeObject *original)
{
    li_code_state *cs = li_code_state_get(original);
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    if (cb == NULL) {
        return 0;
    }
    li_trampolines_let_go(original);
    for (li_probes *lp = cb->shadows; lp != NULL; lp = lp->next_of_code) {
        li_trampolines_let_go(lp->shadow);
    }
    return update_thread_frames(cs);
}

/* Thread `ts` is about to get a trace function (the audit event
 * "sys.settrace", which CPython raises before it sets one: from
 * sys.settrace, threading's hook in a new thread, and PyEval_SetTrace,
 * always in the thread that traces).  Its frames reached while it did not
 * trace may use one value slot beyond their allocation, across the units
 * of a trampoline or a probe (frames.c); a trace function, which CPython
 * calls between any two units with f_trace_opcodes, starts its frame at
 * that slot.  Such frames are made to stop: those on a shadow too big for
 * them without it move back to the original where they can, and the
 * trampolines of their code are chosen again for the room they have from
 * now on.  (Turning the trace function's opcode events at those units into
 * nothing instead would need it wrapped, and CPython sets it only after
 * the audit event: a wrapper could not be in place before it is first
 * called.)  0 or -1. */
int
li_backend_trace_coming(PyThreadState *ts)
{
    /* Marked first: events may go on before the trace function is set
       (frames.c), when there is nothing to undo yet. */
    if (li_frames_trace_coming(ts) < 0) {
        return -1;
    }
    if (li_all_shadows() == NULL && li_trampolines_armed_count() == 0) {
        return 0;   /* no frame was ever reached */
    }
    PyObject *originals = PyList_New(0);
    if (originals == NULL) {
        return -1;
    }
    int err = 0;
    _PyInterpreterFrame *above = NULL;   /* as in update_thread_frames() */
    for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL && err == 0;
         f = f->previous)
    {
        if (f->owner != FRAME_OWNED_BY_THREAD || _PyFrame_IsIncomplete(f)) {
            continue;
        }
        if (li_frame_borrows(ts, f, above)) {
            err = stop_borrowing(ts, f, above, originals);
        }
        above = f;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(originals) && err == 0; i++) {
        err = reach_again((PyCodeObject *)PyList_GET_ITEM(originals, i));
    }
    above = NULL;
    for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL && err == 0;
         f = f->previous)
    {
        if (f->owner != FRAME_OWNED_BY_THREAD || _PyFrame_IsIncomplete(f)) {
            continue;
        }
        if (waits_in_c_without_room(ts, f, above)) {
            err = li_trampolines_reach(ts, f, above);
        }
        above = f;
    }
    li_fix_moved_tracebacks();
    Py_DECREF(originals);
    return err;
}

int
li_arm_nested(PyCodeObject *code, PyObject *builtins)
{
    if (li_shadow_probes(code) != NULL || !standard_builtins(builtins)) {
        return 0;   /* a shadow holds what its functions need */
    }
    PyObject *consts = code->co_consts;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); i++) {
        PyObject *c = PyTuple_GET_ITEM(consts, i);
        if (!PyCode_Check(c)) {
            continue;
        }
        PyObject *prepared = li_prepared_code((PyCodeObject *)c, builtins);
        if (prepared == NULL) {
            return -1;
        }
        Py_DECREF(prepared);
    }
    return 0;
}

static int
arm_nested(_PyInterpreterFrame *frame)
{
    return li_arm_nested(frame->f_code, frame->f_builtins);
}

static int
arm_trampolines(PyObject *runnables)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            if (f->owner != FRAME_OWNED_BY_FRAME_OBJECT && !_PyFrame_IsIncomplete(f) &&
                arm_nested(f) < 0)
            {
                return -1;
            }
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(runnables); i++) {
        PyGenObject *gen = (PyGenObject *)PyList_GET_ITEM(runnables, i);
        if (!PyFunction_Check(gen) && gen->gi_frame_state == FRAME_SUSPENDED &&
            arm_nested((_PyInterpreterFrame *)gen->gi_iframe) < 0)
        {
            return -1;
        }
    }
    return 0;
}

/* ---- finding what can run ------------------------------------------------ */

int
li_walk_heap(int (*visit)(PyObject *op, void *arg), void *arg)
{
    struct _gc_runtime_state *gcstate = &PyInterpreterState_Get()->gc;
    for (int g = 0; g <= NUM_GENERATIONS; g++) {
        PyGC_Head *head = g < NUM_GENERATIONS ? &gcstate->generations[g].head
                                              : &gcstate->permanent_generation.head;
        for (PyGC_Head *gc = _PyGCHead_NEXT(head); gc != head; gc = _PyGCHead_NEXT(gc)) {
            if (visit((PyObject *)(gc + 1), arg) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

static int
collect_runnable(PyObject *op, void *found)
{
    bool runnable = Py_IS_TYPE(op, &PyFunction_Type) || li_is_generator_like(op);
    /* Appending to a list allocates nothing the collector tracks. */
    return runnable ? PyList_Append(found, op) : 0;
}

/* Every function and generator-like object the garbage collector tracks. */
static PyObject *
collect_runnables(void)
{
    PyObject *found = PyList_New(0);
    if (found != NULL && li_walk_heap(collect_runnable, found) < 0) {
        Py_CLEAR(found);
    }
    return found;
}

static bool
anything_wanted(void)
{
    return (li_global_events() & LI_PROBED_EVENTS) != 0 || li_local_codes() != NULL;
}

static int install_hooks(void);

/* Whether some tool selected local event `event` globally or anywhere. */
static bool
wanted_anywhere(int event)
{
    if (li_global_events() & LI_EVENT_BIT(event)) {
        return true;
    }
    for (li_code_state *cs = li_local_codes(); cs != NULL; cs = cs->local.next) {
        if (cs->local_tools[event]) {
            return true;
        }
    }
    return false;
}

static int
update_generator(PyGenObject *gen)
{
    if (gen->gi_frame_state != FRAME_CREATED && gen->gi_frame_state != FRAME_SUSPENDED) {
        return 0;
    }
    return replace_frame_code(NULL, (_PyInterpreterFrame *)gen->gi_iframe, NULL);
}

int
li_backend_update(bool grew)
{
    li_dispatch_changed();
    /* Probes of events no tool wants any more deliver nothing (they check
       the tools when they run), and the frames that start from now on get
       code without them: re-arming every live shadow is for new events. */
    if (grew && li_backend_rearm() < 0) {
        return -1;
    }
    li_watch_exhausted_generators(wanted_anywhere(LI_STOP_ITERATION));
    li_forget_pending_calls(!wanted_anywhere(LI_CALL));
    li_forget_landings_of_dead_threads();
    li_event_set global = li_global_events() & LI_PROBED_EVENTS;
    bool wanted = anything_wanted();
    if (!wanted && li_all_shadows() == NULL && probed_globally == 0) {
        return 0;   /* nothing was ever instrumented */
    }
    if (wanted && install_hooks() < 0) {
        return -1;
    }
    probed_globally = global;
    PyObject *runnables = collect_runnables();
    if (runnables == NULL) {
        return -1;
    }
    int err = 0;
    li_trampolines_note_stacks();
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(runnables) && err == 0; i++) {
        PyObject *op = PyList_GET_ITEM(runnables, i);
        err = PyFunction_Check(op) ? update_function((PyFunctionObject *)op)
                                   : update_generator((PyGenObject *)op);
    }
    li_trampolines_forget_stacks();
    if (err == 0) {
        err = update_thread_frames(NULL);
    }
    if (err == 0) {
        err = arm_trampolines(runnables);
    }
    if (err == 0) {
        err = li_trampolines_disarm_unneeded();
    }
    li_fix_moved_tracebacks();
    Py_DECREF(runnables);
    return err;
}

/* Whether a frame that starts on `lp`, once retired, is sent on to the
 * shadow with the events `wanted` without missing one: its entry probe
 * delivers what the shadow it goes to has before the point where it lands,
 * as PY_START's probe does (the frame goes on after PY_START) and any
 * probe of a shadow that has every event wanted and left none out.  A
 * shadow with no probe right after RESUME 0 has no entry probe. */
static bool
entry_redirects(const li_probes *lp, li_event_set wanted)
{
    if (lp->entry_probe < 0) {
        return false;
    }
    const li_probe *p = &lp->probes[lp->entry_probe];
    if (p->n_sites > 0 && lp->sites[p->first_site].event == LI_PY_START) {
        return true;
    }
    return !lp->partial && (wanted & ~lp->kinds) == 0;
}

static int
relink_parents(li_code_state *cs)
{
    li_code_backend *cb = (li_code_backend *)cs->backend;
    PyObject *prepared = li_prepared_code(cs->code, NULL);
    if (prepared == NULL) {
        return -1;
    }
    for (int k = 0; k < cb->n_links; k++) {
        set_const(cb->links[k].parent, cb->links[k].index, prepared);
    }
    Py_DECREF(prepared);
    return 0;
}

typedef struct {
    PyCodeObject *original;
    PyObject *found;          /* a list */
} generators_of;

static int
collect_generator_of(PyObject *op, void *arg)
{
    generators_of *of = (generators_of *)arg;
    if (!li_is_generator_like(op)) {
        return 0;
    }
    PyGenObject *gen = (PyGenObject *)op;
    if (gen->gi_frame_state != FRAME_CREATED && gen->gi_frame_state != FRAME_SUSPENDED) {
        return 0;
    }
    PyCodeObject *code = ((_PyInterpreterFrame *)gen->gi_iframe)->f_code;
    return li_backend_original(code) == of->original ? PyList_Append(of->found, op) : 0;
}

/* Moves the generators of `cs`'s code that have not started or are
 * suspended to the code they should run now.  0 or -1. */
static int
update_generators_of(li_code_state *cs)
{
    /* Collected first: moving one may allocate objects the collector
       tracks, which a walk must not meet. */
    generators_of of = {cs->code, PyList_New(0)};
    if (of.found == NULL) {
        return -1;
    }
    int err = li_walk_heap(collect_generator_of, &of);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(of.found) && err == 0; i++) {
        err = update_generator((PyGenObject *)PyList_GET_ITEM(of.found, i));
    }
    Py_DECREF(of.found);
    return err;
}

int
li_backend_update_code(li_code_state *cs, bool grew)
{
    PyCodeObject *code = cs->code;
    /* Functions that point at a shadow that must go find the current one
       at its entry probe, unless that probe cannot redirect them without
       losing events: then every function of the code is pointed elsewhere. */
    li_probes *current = li_current_shadow(cs);
    bool retiring = current != NULL && usable_shadow(cs) != current;
    if (retiring && !entry_redirects(current, wanted_kinds(cs))) {
        return li_backend_update(grew);
    }
    li_dispatch_changed();
    li_watch_exhausted_generators(wanted_anywhere(LI_STOP_ITERATION));
    li_forget_pending_calls(!wanted_anywhere(LI_CALL));
    li_forget_landings_of_dead_threads();
    if (anything_wanted() && install_hooks() < 0) {
        return -1;
    }
    /* Shadows of the code: the current one goes if it no longer has the
       probes wanted (functions that point at it move on at their next
       start), and each is re-armed for the events wanted now. */
    if (retiring) {
        li_retire(current);
    }
    for (li_probes *lp = li_shadows_of(cs); lp != NULL; lp = lp->next_of_code) {
        li_probes_sync(lp);
    }
    /* Shadows that make functions of the code stop handing out the retired
       one, whose entry probe would divert every new function's first call. */
    if (retiring && relink_parents(cs) < 0) {
        return -1;
    }
    /* Functions that still run the original (made from it since, or never
       started) start through its entry trampoline, which moves them onto
       the current shadow, or builds it, as the first one starts.  (So do
       the functions that frames running originals make: nothing else
       changed for the code objects those frames hold.)  Without room for
       one, only a walk of the heap finds them, unless global events that
       need probes are on: every function of the code then already points
       at a shadow of it, which the update of its events has just dealt
       with. */
    if (needs_instrumenting(cs, code)) {
        int armed = li_trampoline_arm(cs);
        if (armed < 0) {
            return -1;
        }
        if (armed == 0 && !(li_global_events() & LI_PROBED_EVENTS)) {
            return li_backend_update(grew);
        }
    }
    int err = update_thread_frames(cs);
    /* Its generators that wait to start or to resume are found only by
       walking the heap (but only they need a look: a whole update, which
       looks at every function too, cost a big program milliseconds for each
       generator function that a coverage tool gave LINE as it started). */
    if (err == 0 && (code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR))) {
        err = update_generators_of(cs);
    }
    if (err == 0) {
        err = li_trampolines_disarm_unneeded_of(cs);
        li_trampolines_settle();
    }
    li_fix_moved_tracebacks();
    return err;
}

int
li_backend_restart(void)
{
    li_dispatch_changed();
    li_probes_restart();
    /* Frames running shadows made outdated: callers move at once, the
       frames executing in C at trampolines, which count on the probes of
       such a shadow to move the frame where it meets one first.  The
       shadows they run catch up with the restart now, and outdated or
       obsolete ones (which restart_events() may not have seen) are
       re-armed for these: per frame on a stack, as natively. */
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            li_probes *lp = li_shadow_probes(f->f_code);
            if (lp == NULL) {
                continue;
            }
            li_probes_ready(lp);
            if (lp->outdated || lp->obsolete) {
                li_probes_sync(lp);
            }
        }
    }
    int err = update_thread_frames(NULL);
    li_fix_moved_tracebacks();
    /* PY_START fires again where callbacks disabled it before any shadow
       was built: its functions start through the entry trampoline. */
    bool unreached = false;
    if (err == 0) {
        err = li_trampolines_restart_bare(&unreached);
    }
    /* Where no trampoline could go (a frame stands in its units), only the
       functions know the code: the walk of the heap finds them. */
    return err == 0 && unreached ? li_backend_update(true) : err;
}

int
li_backend_rearm(void)
{
    for (li_probes *lp = li_all_shadows(); lp != NULL; lp = lp->next) {
        li_probes_sync(lp);
    }
    return 0;
}

void
li_backend_code_state_free(li_code_state *cs)
{
    li_code_backend *cb = (li_code_backend *)cs->backend;
    if (cb == NULL) {
        return;
    }
    /* Shadows hold their original, so none can outlive it, and a shadow
       that held it in its constants held it alive. */
    assert(cb->current == NULL && cb->n_links == 0);
    li_forget_started_bare(cb);
    li_patches_forget(&cb->patches);
    PyMem_Free(cb->resume_points);
    PyMem_Free(cb->links);
    PyMem_Free(cb);
    cs->backend = NULL;
}

PyObject *
li_backend_debug_shadow(PyCodeObject *code, li_event_set events)
{
    li_code_state *cs = li_code_state_ensure(code);
    if (cs == NULL) {
        return NULL;
    }
    /* Every site of the events, as if tools wanted them there. */
    li_code_state scratch = *cs;
    for (int e = 0; e < LI_MARK_COUNT; e++) {
        scratch.disabled[e] = NULL;
    }
    PyCodeObject *shadow = li_build_shadow(code, &scratch, events & LI_PROBED_EVENTS,
                                           code->co_consts, true);
    if (shadow == NULL) {
        return NULL;
    }
    li_probes *lp = li_shadow_probes(shadow);
    lp->cs = cs;    /* the scratch state dies here */
    PyObject *orig_of = PyList_New(lp->n_units);
    PyObject *shadow_of = PyList_New(lp->n_orig_units);
    for (int u = 0; orig_of != NULL && shadow_of != NULL && u < lp->n_units; u++) {
        PyObject *unit = PyLong_FromLong(li_orig_of(lp, u));
        if (unit == NULL) {
            Py_CLEAR(orig_of);
            break;
        }
        PyList_SET_ITEM(orig_of, u, unit);
    }
    for (int u = 0; orig_of != NULL && shadow_of != NULL && u < lp->n_orig_units; u++) {
        PyObject *unit = PyLong_FromLong(li_shadow_of(lp, u));
        if (unit == NULL) {
            Py_CLEAR(shadow_of);
            break;
        }
        PyList_SET_ITEM(shadow_of, u, unit);
    }
    if (orig_of == NULL || shadow_of == NULL) {
        Py_XDECREF(orig_of);
        Py_XDECREF(shadow_of);
        Py_DECREF(shadow);
        return NULL;
    }
    return Py_BuildValue("(NNN)", shadow, orig_of, shadow_of);
}

/* ---- code that starts running later ------------------------------------ */

/* types.FunctionType(code, globals, ...) makes a function of the right code. */
static newfunc function_new;

static PyObject *
function_new_hook(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *func = function_new(type, args, kwargs);
    if (func != NULL && anything_wanted() &&
        update_function((PyFunctionObject *)func) < 0)
    {
        Py_CLEAR(func);
    }
    return func;
}

static int
install_hooks(void)
{
    if (function_new != NULL) {
        return 0;
    }
    function_new = PyFunction_Type.tp_new;
    PyFunction_Type.tp_new = function_new_hook;
    return 0;
}

bool
li_anything_wanted(void)
{
    return anything_wanted();
}

int
li_backend_init(PyObject *module)
{
    if (li_probes_init() < 0 || li_frames_init() < 0 || li_install_transparency() < 0 ||
        li_trampoline_init() < 0 || li_landing_init(module) < 0 || li_exec_init() < 0)
    {
        return -1;
    }
    return 0;
}

/* Counts, in *shadows and *trampolined, the shadows that frames of threads
 * other than this one run, and the code objects with trampolines armed
 * that such frames run: what those threads hold and let go of when their
 * frames move on, whatever this thread does.  0 or -1. */
static int
count_elsewhere(Py_ssize_t *shadows, Py_ssize_t *trampolined)
{
    PyThreadState *self = _PyThreadState_GET();
    PyObject *seen = PySet_New(NULL);   /* owned: addresses of codes counted */
    if (seen == NULL) {
        return -1;
    }
    *shadows = *trampolined = 0;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(self->interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        if (ts == self) {
            continue;
        }
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            PyObject *key = PyLong_FromVoidPtr(f->f_code);
            int known = key != NULL ? PySet_Contains(seen, key) : -1;
            if (known == 0) {
                known = PySet_Add(seen, key);
                *shadows += li_shadow_probes(f->f_code) != NULL;
                *trampolined += li_trampolines_armed_in(f->f_code);
            }
            Py_XDECREF(key);
            if (known < 0) {
                Py_DECREF(seen);
                return -1;
            }
        }
    }
    Py_DECREF(seen);
    return 0;
}

int
li_backend_stats(PyObject *stats)
{
    Py_ssize_t shadows = 0, shadows_elsewhere, trampolined_elsewhere;
    for (li_probes *lp = li_all_shadows(); lp != NULL; lp = lp->next) {
        shadows++;
    }
    if (count_elsewhere(&shadows_elsewhere, &trampolined_elsewhere) < 0) {
        return -1;
    }
    if (li_stats_set(stats, "shadows", shadows) < 0 ||
        li_stats_set(stats, "shadows_elsewhere", shadows_elsewhere) < 0 ||
        li_stats_set(stats, "trampolined_codes", li_trampolines_armed_count()) < 0 ||
        li_stats_set(stats, "trampolined_elsewhere", trampolined_elsewhere) < 0 ||
        li_stats_set(stats, "trampolines_kept", li_trampolines_kept_count()) < 0 ||
        li_stats_set(stats, "pending_calls", li_pending_call_count()) < 0 ||
        li_stats_set(stats, "shadows_built", li_shadows_built()) < 0)
    {
        return -1;
    }
    return 0;
}
