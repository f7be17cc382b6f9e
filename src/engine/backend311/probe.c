/* Probes at run time: the li_probes object of each shadow, arming and
 * disarming probes in place, and delivering the events of a probe. */

#include "b311.h"

/* co_extra slot that marks shadows and points at their li_probes. */
static Py_ssize_t shadow_index = -1;
static li_probes *all_shadows;
/* The shadows restart_events() re-arms at once, linked by next_restart. */
static li_probes *restartable;

/* The first unit of each start probe of the shadows that the next
 * restart_events() leaves to their next frame, and the unit that arms it:
 * all that restart does for them is these stores.  Those of a shadow that
 * no longer needs it point at `no_unit` (n_dropped of them), until the
 * array is squeezed.  `lp` (borrowed) finds the shadow's slot again. */
typedef struct {
    _Py_CODEUNIT *unit;
    li_probes *lp;
    _Py_CODEUNIT armed;
} start_unit;
static start_unit *to_arm;
static int n_to_arm, cap_to_arm, n_dropped;
static _Py_CODEUNIT no_unit;
/* How many times restart_events() ran: the epochs of restart_due.  64 bits:
 * a shadow that no frame ran since it was due keeps its epoch for ever, and
 * one that came round again would look due in the current epoch (its slot
 * in to_arm long reused, its catch-up skipped). */
static uint64_t restarts;

li_probes *
li_all_shadows(void)
{
    return all_shadows;
}

li_probes *
li_shadows_of(li_code_state *cs)
{
    li_code_backend *cb = (li_code_backend *)cs->backend;
    return cb != NULL ? cb->shadows : NULL;
}

bool
li_frame_in_probe(_PyInterpreterFrame *frame)
{
    li_probes *lp = li_shadow_probes(frame->f_code);
    if (lp == NULL) {
        return false;
    }
    /* A probe's last unit calls into C only to fire it. */
    int here = (int)(frame->prev_instr - _PyCode_CODE(lp->shadow));
    const li_probe *p = here >= 0 && here < lp->n_units ? li_probe_at(lp, here) : NULL;
    return p != NULL && p->resume_unit >= 0;
}

/* co_extra's layout, which 3.11 keeps to Objects/codeobject.c. */
typedef struct {
    Py_ssize_t ce_size;
    void *ce_extras[1];
} code_extra;

li_probes *
li_shadow_probes(PyCodeObject *code)
{
    /* _PyCode_GetExtra()'s read without its call and checks: every
       collection asks this of each function it traverses (transparency.c). */
    const code_extra *extra = (const code_extra *)code->co_extra;
    if (shadow_index < 0 || extra == NULL || shadow_index >= extra->ce_size) {
        return NULL;
    }
    return (li_probes *)extra->ce_extras[shadow_index];
}

/* Whether `lp`'s restart is left to the next frame that comes in: frames
 * come in only at its start probes (not a generator's full shadow, which a
 * suspended generator may resume where it has none; partial shadows keep a
 * probe at each resumption). */
static inline bool
restarts_lazily(const li_probes *lp)
{
    return lp->partial || lp->entered_at_start;
}

/* Whether a restart_events() since `lp` was due left work to its next frame. */
static inline bool
restart_pending(const li_probes *lp)
{
    return lp->restart_due && lp->restart_epoch != restarts;
}

/* Drops the entries of to_arm that point at no_unit, in a program that
 * makes and drops many shadows between restarts. */
static void
squeeze_to_arm(void)
{
    int kept = 0;
    li_probes *last = NULL;
    for (int i = 0; i < n_to_arm; i++) {
        if (to_arm[i].unit == &no_unit) {
            continue;
        }
        if (to_arm[i].lp != last) {
            last = to_arm[i].lp;
            last->restart_slot = kept;
        }
        to_arm[kept++] = to_arm[i];
    }
    n_to_arm = kept;
    n_dropped = 0;
}

/* `lp` is partial, or a DISABLE disarmed some of its probes: the next
 * restart_events() has work there.  0 or -1. */
static int
link_restartable(li_probes *lp)
{
    assert(!restart_pending(lp));
    if (lp->restart_due) {
        return 0;
    }
    if (restarts_lazily(lp)) {
        int slot = n_to_arm;
        _Py_CODEUNIT *units = _PyCode_CODE(lp->shadow);
        for (int k = 0; k < lp->n_starts; k++) {
            if (li_reserve((void **)&to_arm, &cap_to_arm, n_to_arm, sizeof(start_unit), 64) < 0) {
                n_to_arm = slot;
                return -1;
            }
            to_arm[n_to_arm++] = (start_unit){units + lp->starts[k], lp, lp->armed_unit};
        }
        lp->restart_slot = slot;
    }
    else {
        lp->prev_restart = NULL;
        lp->next_restart = restartable;
        if (restartable != NULL) {
            restartable->prev_restart = lp;
        }
        restartable = lp;
    }
    lp->restart_due = true;
    lp->restart_epoch = restarts;
    return 0;
}

/* The next restart_events() has nothing to do in `lp`. */
static void
unlink_restartable(li_probes *lp)
{
    if (!lp->restart_due) {
        return;
    }
    lp->restart_due = false;
    if (restarts_lazily(lp)) {
        /* (Entries of an earlier epoch were armed and dropped.) */
        if (lp->restart_epoch == restarts) {
            for (int k = 0; k < lp->n_starts; k++) {
                to_arm[lp->restart_slot + k].unit = &no_unit;
            }
            n_dropped += lp->n_starts;
            if (n_dropped > 64 && n_dropped * 2 > n_to_arm) {
                squeeze_to_arm();
            }
        }
        return;
    }
    if (lp->prev_restart != NULL) {
        lp->prev_restart->next_restart = lp->next_restart;
    }
    else {
        restartable = lp->next_restart;
    }
    if (lp->next_restart != NULL) {
        lp->next_restart->prev_restart = lp->prev_restart;
    }
    lp->next_restart = lp->prev_restart = NULL;
}

/* co_extra free function: the shadow is being deallocated (its constants,
 * which hold the li_probes object, are released right after). */
static void
shadow_dying(void *ptr)
{
    li_probes *lp = (li_probes *)ptr;
    if (lp == NULL) {
        return;
    }
    if (lp->prev != NULL) {
        lp->prev->next = lp->next;
    }
    else {
        all_shadows = lp->next;
    }
    if (lp->next != NULL) {
        lp->next->prev = lp->prev;
    }
    lp->next = lp->prev = NULL;
    li_code_backend *cb = lp->cs != NULL ? (li_code_backend *)lp->cs->backend : NULL;
    if (lp->prev_of_code != NULL) {
        lp->prev_of_code->next_of_code = lp->next_of_code;
    }
    else if (cb != NULL && cb->shadows == lp) {
        cb->shadows = lp->next_of_code;
    }
    if (lp->next_of_code != NULL) {
        lp->next_of_code->prev_of_code = lp->prev_of_code;
    }
    lp->next_of_code = lp->prev_of_code = NULL;
    unlink_restartable(lp);
    li_unlink_nested(lp);
    if (lp->patches != NULL) {
        li_patches_forget(lp->patches);
        PyMem_Free(lp->patches);
        lp->patches = NULL;
    }
    if (lp->cs != NULL && li_current_shadow(lp->cs) == lp) {
        ((li_code_backend *)lp->cs->backend)->current = NULL;
    }
    lp->shadow = NULL;
}

int
li_probes_init(void)
{
    shadow_index = _PyEval_RequestCodeExtraIndex(shadow_dying);
    if (shadow_index < 0) {
        PyErr_SetString(PyExc_RuntimeError, "lowimpact: no code object extra slot left");
        return -1;
    }
    return PyType_Ready(&li_probes_type) < 0 ? -1 : PyType_Ready(&li_wide_probes_type);
}

/* Records where frames start or resume on `lp` (its entry probe, its
 * PY_START and PY_RESUME probes and the placeholders there and at
 * handlers), which
 * restart_events() arms, and whether frames come in only there.  0 or -1. */
static int
find_starts(li_probes *lp, PyCodeObject *shadow)
{
    lp->starts = li_alloc_filled_later((size_t)lp->n_probes, sizeof(int32_t));
    if (lp->starts == NULL) {
        return -1;
    }
    lp->n_starts = 0;
    for (int i = 0; i < lp->n_probes; i++) {
        const li_probe *p = &lp->probes[i];
        int first = p->n_sites > 0 ? lp->sites[p->first_site].event : -1;
        if (i == lp->entry_probe || p->n_sites == 0 || first == LI_PY_START ||
            first == LI_PY_RESUME)
        {
            lp->starts[lp->n_starts++] = p->unit;
        }
    }
    /* Suspended generators resume where a full shadow may have no probe. */
    lp->entered_at_start = lp->entry_probe >= 0 &&
        !(shadow->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR));
    return 0;
}

int
li_probes_attach(li_probes *lp, PyCodeObject *shadow)
{
    li_code_backend *cb = lp->cs != NULL ? li_code_backend_ensure(lp->cs) : NULL;
    if ((lp->cs != NULL && cb == NULL) || find_starts(lp, shadow) < 0) {
        return -1;
    }
    if (_PyCode_SetExtra((PyObject *)shadow, shadow_index, lp) < 0) {
        /* (It sets no exception when it runs out of memory.) */
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        return -1;
    }
    lp->shadow = shadow;
    lp->next = all_shadows;
    if (all_shadows != NULL) {
        all_shadows->prev = lp;
    }
    all_shadows = lp;
    if (cb != NULL) {
        lp->next_of_code = cb->shadows;
        if (cb->shadows != NULL) {
            cb->shadows->prev_of_code = lp;
        }
        cb->shadows = lp;
    }
    if (lp->partial && link_restartable(lp) < 0) {
        return -1;
    }
    li_probes_sync(lp);
    return 0;
}

static inline _Py_CODEUNIT *
probe_first_unit(const li_probes *lp, const li_probe *p)
{
    return _PyCode_CODE(lp->shadow) + p->unit;
}

/* LOAD_FAST__LOAD_CONST made of the LOAD_FAST before probe `p` and the
 * probe's LOAD_CONST would run a disarmed probe's jump as the LOAD_CONST:
 * `before`, that LOAD_FAST's unit, goes back to a plain LOAD_FAST.
 * (Quickening makes superinstructions once, when the code warms up.) */
static void
unfuse(const li_probe *p, _Py_CODEUNIT *before)
{
    if (p->after_load_fast && _Py_OPCODE(*before) == LOAD_FAST__LOAD_CONST) {
        _Py_SET_OPCODE(*before, LOAD_FAST);
    }
}

void
li_unfuse_before(const li_probes *lp, int unit, _Py_CODEUNIT *before)
{
    int last = unit + lp->probe_size - 1;
    const li_probe *p = last < lp->n_units ? li_probe_at(lp, last) : NULL;
    if (p != NULL) {
        if (p->unit == unit) {
            unfuse(p, before);
        }
    }
}

static void
set_armed(li_probes *lp, const li_probe *p, bool armed)
{
    _Py_CODEUNIT *first = probe_first_unit(lp, p);
    bool was_armed = _Py_OPCODE(*first) != JUMP_FORWARD;
    lp->n_armed += (int)armed - (int)was_armed;
    if (armed) {
        *first = lp->armed_unit;
        return;
    }
    unfuse(p, &first[-1]);
    /* One aligned 16-bit store: other threads see the old or the new unit. */
    _Py_CODEUNIT unit;
    uint8_t *u = (uint8_t *)&unit;
    u[0] = JUMP_FORWARD;
    u[1] = (uint8_t)(p->size - 1);
    *first = unit;
}

static bool
probe_wanted(const li_probes *lp, const li_probe *p, int index)
{
    assert(!restart_pending(lp));
    if (index == lp->entry_probe && (lp->obsolete || lp->cs->refresh_pending)) {
        return true;    /* it redirects functions to the current shadow */
    }
    if (lp->outdated && p->resume_unit >= 0) {
        return true;    /* it moves its frame onto a shadow that is not */
    }
    for (int k = 0; k < p->n_sites; k++) {
        const li_site *s = &lp->sites[p->first_site + k];
        if (li_tools_at_site(lp->cs, s->event, s->orig, s->way)) {
            return true;
        }
        /* Re-raises also matter to RAISE and PY_THROW (events.c). */
        if (s->event == LI_RERAISE &&
            (li_reg.global_tools[LI_RAISE] | li_reg.global_tools[LI_PY_THROW]))
        {
            return true;
        }
        /* A call in progress ends with the events of the tools that saw it
           start, even those that disabled its CALL meanwhile (events.c). */
        if ((s->event == LI_C_RETURN || s->event == LI_C_RAISE) &&
            li_tools_selecting(lp->cs, LI_CALL))
        {
            return true;
        }
    }
    return false;
}

/* Whether `lp` lacks probes that some tool wants now. */
static bool
lacks_probes(const li_probes *lp)
{
    return (li_probed_events(lp->cs) & ~lp->kinds) != 0 || li_probes_stale(lp);
}

/* What restart_events() left to `lp`'s next frame, but the re-arming
 * itself: a partial shadow lacks the probes that fire again, and frames
 * should leave an obsolete one anyway, so new frames start elsewhere.
 * Whether that was the case. */
static bool
restart_catch_up(li_probes *lp)
{
    lp->restart_due = false;
    /* The restart armed its start probes behind the count's back. */
    const _Py_CODEUNIT *units = _PyCode_CODE(lp->shadow);
    lp->n_armed = 0;
    for (int i = 0; i < lp->n_probes; i++) {
        lp->n_armed += _Py_OPCODE(units[lp->probes[i].unit]) != JUMP_FORWARD;
    }
    if (lp->partial || lp->obsolete) {
        li_retire_quietly(lp);
        return true;
    }
    return false;
}

void
li_probes_sync(li_probes *lp)
{
    if (lp->shadow == NULL) {
        return;
    }
    if (restart_pending(lp)) {
        restart_catch_up(lp);
    }
    lp->outdated = lacks_probes(lp);
    li_dispatch_changed();
    for (int i = 0; i < lp->n_probes; i++) {
        set_armed(lp, &lp->probes[i], probe_wanted(lp, &lp->probes[i], i));
    }
}

void
li_probes_ready(li_probes *lp)
{
    if (!restart_pending(lp)) {
        return;
    }
    if (restart_catch_up(lp)) {
        /* Only frames that start or resume on it need to learn that, at
           the start probes the restart armed (suspended generators at
           their next resumption): each of its probes moves its frame on. */
        lp->outdated = true;
        li_dispatch_changed();
        return;
    }
    li_probes_sync(lp);
}

void
li_probes_restart(void)
{
    /* Native restart_events() bumps a version and leaves the work to each
       code object's next run; so does this, but for one store per start
       probe of the shadows where it has work (a frame that starts on them
       meets no probe otherwise): it costs what the DISABLEs that made
       the work cost, not the heap (each such shadow once an epoch).  The
       caller takes care of the frames on the stack; a frame that lands on
       such a shadow catches up first (li_probes_ready()). */
    li_dispatch_changed();
    for (int i = 0; i < n_to_arm; i++) {
        *to_arm[i].unit = to_arm[i].armed;
    }
    n_to_arm = n_dropped = 0;
    restarts++;
    /* The shadows that frames may enter where no probe is.  (Dying shadows
       leave the list: each here has its shadow.) */
    li_probes *lp = restartable;
    restartable = NULL;
    while (lp != NULL) {
        li_probes *next = lp->next_restart;
        lp->next_restart = lp->prev_restart = NULL;
        lp->restart_due = false;
        li_probes_sync(lp);
        lp = next;
    }
}

/* A callback of probe `p` raised: the traceback entry of the frame takes
 * the unit of the instruction the events belong to, which has a location,
 * as natively (where the probe has none, see shadow.c): for the UNWIND
 * stub, the raising unit its handler entry pushed under the exception.
 * Where the error goes still follows the probe's own unit.  -1. */
LI_COLD static int
fire_failed(_PyInterpreterFrame *frame, li_probes *lp, const li_probe *p)
{
    PyThreadState *tstate = _PyThreadState_GET();
    li_jump_forget(tstate, frame);
    /* A handler of the frame may take the error (after_events()). */
    li_frame_claim_slot(tstate, frame);
    _Py_CODEUNIT *first = _PyCode_CODE(lp->shadow);
    if (p->kind == LI_PROBE_UNWIND) {
        PyObject *lasti = frame->localsplus[lp->shadow->co_nlocalsplus];
        long unit = PyLong_CheckExact(lasti) ? PyLong_AsLong(lasti) : -1;
        if (unit >= 0 && unit < lp->n_units) {
            frame->prev_instr = first + unit;
        }
    }
    else if (p->kind != LI_PROBE_LINE && p->kind != LI_PROBE_LINE_HANDLER &&
             p->kind != LI_PROBE_INSTR)
    {
        frame->prev_instr = first + li_shadow_of(lp, li_orig_of(lp, p->unit));
    }
    return -1;
}

/* Whether a shadow without `lp`'s disarmed probes would serve frames
 * better: once a quarter of its probes are disarmed jumps, except those
 * where frames start or resume, which a compacted shadow keeps as the
 * same disarmed placeholders (so that restart_events() can arm them).
 * A shadow that only disabled where frames start, as a tool that turns
 * PY_START off everywhere leaves the shadows it made, stays: a new one
 * would be built for nothing. */
static bool
worth_compacting(const li_probes *lp)
{
    const _Py_CODEUNIT *units = _PyCode_CODE(lp->shadow);
    int disarmed = lp->n_probes - lp->n_armed;
    for (int k = 0; k < lp->n_starts && disarmed > 0; k++) {
        disarmed -= _Py_OPCODE(units[lp->starts[k]]) == JUMP_FORWARD;
    }
    return disarmed > 0 && disarmed * 4 >= lp->n_probes;
}

/* A callback returned DISABLE somewhere: probe `p` may no longer be
 * wanted.  Tools that went away meanwhile had their probes synced by the
 * update that removed them; only a DISABLE can leave it unwanted.  1 when
 * it disarmed the probe, 0 when it stays armed, -1 on error. */
LI_COLD static int
after_disable(li_probes *lp, li_probe *p, int index)
{
    if (probe_wanted(lp, p, index)) {
        return 0;
    }
    set_armed(lp, p, false);
    /* Disarmed probes still cost a jump each; once a quarter are, a shadow
       without them serves better.  (Code whose probes are mostly where it
       never goes, as in big functions under line and branch coverage, would
       otherwise keep running the jumps where it does.) */
    if (!lp->obsolete && worth_compacting(lp) && li_compact(lp) < 0) {
        return -1;
    }
    /* An obsolete shadow that frames enter only at its start needs nothing
       from restart_events(): its armed entry probe sends frames that start
       on it to the current shadow, and the frames on the stack are re-armed
       there (update.c). */
    if (lp->obsolete && lp->entered_at_start) {
        unlink_restartable(lp);
    }
    else if (link_restartable(lp) < 0) {
        return -1;
    }
    return 1;
}

bool
li_probes_stale(const li_probes *lp)
{
    if (!lp->partial) {
        return false;
    }
    if (lp->built_epoch != li_reg.disable_epoch) {
        return true;
    }
    for (int e = 0; e < LI_LOCAL_EVENT_COUNT; e++) {
        uint8_t now = li_reg.global_tools[e] | lp->cs->local_tools[e];
        if (now & (uint8_t)~lp->built_tools[e]) {
            return true;
        }
    }
    return false;
}

void
li_make_obsolete(li_probes *lp)
{
    lp->obsolete = true;
    /* A frame that starts on it moves away at its entry probe, before its
       PY_START (slow_path()), and meets that probe's line again where it
       lands: a trace function must not see it here too. */
    if (lp->entry_only_at_start && lp->entry_probe >= 0) {
        const li_probe *p = &lp->probes[lp->entry_probe];
        for (int u = p->unit; u < p->unit + p->size; u++) {
            li_line_array_set(lp->shadow, u, -1);
        }
    }
}

/* A function still running an obsolete shadow starts here, at its entry
 * probe: its later calls run the current code of its original.  The frame
 * itself moves there too, landing at `to`, so the shadow built here gets
 * the landing pad it needs: built without it, it would be replaced at once
 * by one that has it, and the function would start on the replaced one
 * next time. */
LI_COLD static int
redirect(_PyInterpreterFrame *frame, li_probes *lp, const li_landing *to)
{
    PyFunctionObject *func = frame->f_func;
    if (func == NULL || func->func_code != (PyObject *)lp->shadow) {
        return 0;
    }
    if (to->unit >= 0) {
        li_code_backend *cb = li_code_backend_ensure(lp->cs);
        if (cb == NULL || li_add_resume_point(cb, *to) < 0) {
            return -1;
        }
    }
    PyObject *desired = li_desired_code(lp->original, frame->f_builtins);
    if (desired == NULL) {
        return -1;
    }
    Py_SETREF(func->func_code, desired);
    func->func_version = 0;
    return 0;
}

/* Sends `frame`, at probe `p`, to a DIVERT stub (shadow.c), whose call of
 * the landing function moves it onto a shadow with the probes tools want.
 * 1 (the probe's jump to the stub is taken), or -1 on error. */
LI_COLD static int
divert(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp, li_landing to,
       li_unwind unwind)
{
    li_code_backend *cb = li_code_backend_ensure(lp->cs);
    if (cb == NULL || li_add_resume_point(cb, to) < 0 ||
        li_expect_landing_unwinding(tstate, frame, lp->shadow, to, unwind) < 0)
    {
        return -1;
    }
    li_exec_pause();
    return 1;
}

/* The end of firing probe `p`: the frame diverts where tools want probes
 * its shadow lacks (a callback may have just asked for them): it moves onto
 * a shadow that has them, and goes on there after this probe's events.  The
 * landing function's frame must fit under the recursion limit. */
static inline int
after_events(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp, li_probe *p)
{
    /* A frame at the entry of an obsolete shadow (a function that starts
       on it, or a loop back to its first line) moves to the current one
       too: it may run long, on disarmed probes. */
    bool move = lp->outdated || (lp->obsolete && lp->entry_probe >= 0 &&
                                 p == &lp->probes[lp->entry_probe]);
    /* A callback set a trace function (li_backend_trace_coming() could not
       move the frame, which runs this probe): its frame would start on the
       slot this frame may have borrowed for its next probe or stub. */
    li_frame_claim_slot(tstate, frame);
    li_landing to = {p->resume_unit, p->resume_phase};
    li_unwind unwind = {0, -1};
    /* A callback set the frame's f_lineno (jump.c; it checked that the
       probe can divert). */
    if (li_jump_take_landing(tstate, frame, &to, &unwind)) {
        move = true;
    }
    if (move && p->resume_unit >= 0 && tstate->recursion_remaining > 0) {
        return divert(tstate, frame, lp, to, unwind);
    }
    return 0;
}

/* ---- twins --------------------------------------------------------------- */

/* A Python callback's function runs a shadow when its code needs events
 * (a tool's global events reach its own code), whose probes would only find
 * the thread tracing and deliver nothing.  The fast path calls a twin
 * instead: a function of the same globals, defaults and closure on a copy
 * of the original without probes (not the original, which may hold an
 * entry trampoline).  It is kept per tool and event, for the callback it was
 * made for, and used while the function's code, defaults and keyword
 * defaults are those it was made with (else the callback is called).  The
 * collector does not track twins: nothing reachable from Python sees them. */
typedef struct li_twin {
    PyObject *callback;          /* strong: the callback it is for */
    PyFunctionObject *function;  /* the callback or the function it binds */
    PyObject *self;              /* what the callback binds, or NULL */
    PyObject *code_seen;         /* function->func_code when made */
    PyObject *bare;              /* the twin's code */
    PyFunctionObject *twin;      /* strong, or NULL: none for the callback */
    uint32_t epoch;              /* li_reg.dispatch_epoch when decided */
} li_twin;

static li_twin twins[LI_TOOL_COUNT][LI_EVENT_COUNT];

static inline bool
twin_valid(const li_twin *t)
{
    return t->twin != NULL && t->function->func_code == t->code_seen &&
           t->twin->func_code == t->bare &&
           t->function->func_defaults == t->twin->func_defaults &&
           t->function->func_kwdefaults == t->twin->func_kwdefaults;
}

static PyFunctionObject *
make_twin(PyFunctionObject *f, PyCodeObject *original)
{
    PyObject *bare = li_bare_code(original, f->func_builtins);
    if (bare == NULL) {
        return NULL;
    }
    PyFunctionObject *twin = (PyFunctionObject *)PyFunction_NewWithQualName(
        bare, f->func_globals, f->func_qualname);
    Py_DECREF(bare);
    if (twin == NULL) {
        return NULL;
    }
    PyObject_GC_UnTrack(twin);
    Py_XSETREF(twin->func_defaults, Py_XNewRef(f->func_defaults));
    Py_XSETREF(twin->func_kwdefaults, Py_XNewRef(f->func_kwdefaults));
    Py_XSETREF(twin->func_closure, Py_XNewRef(f->func_closure));
    twin->func_version = 0;
    return twin;
}

static void
drop_twin(li_twin *t)
{
    if (t->twin != NULL) {
        /* Functions untrack themselves as they go. */
        PyObject_GC_Track(t->twin);
        Py_CLEAR(t->twin);
    }
    Py_CLEAR(t->callback);
}

void
li_backend_forget_callback(int tool, int event)
{
    /* Probes' fast paths that point at it are of an older dispatch epoch. */
    drop_twin(&twins[tool][event]);
}

/* The twin to call for `callback` of `tool` and `event`, or NULL (none
 * needed or possible; a failure to make one is not an error). */
static const li_twin *
twin_for(int tool, int event, PyObject *callback)
{
    li_twin *t = &twins[tool][event];
    if (t->callback == callback) {
        if (twin_valid(t)) {
            return t;
        }
        if (t->epoch == li_reg.dispatch_epoch) {
            return NULL;    /* decided already: tried again at the next change */
        }
    }
    drop_twin(t);
    t->callback = Py_NewRef(callback);
    t->epoch = li_reg.dispatch_epoch;
    PyObject *self = NULL;
    PyObject *function = callback;
    if (PyMethod_Check(callback)) {
        self = PyMethod_GET_SELF(callback);
        function = PyMethod_GET_FUNCTION(callback);
    }
    if (!PyFunction_Check(function)) {
        return NULL;
    }
    PyFunctionObject *f = (PyFunctionObject *)function;
    PyCodeObject *original = li_backend_original((PyCodeObject *)f->func_code);
    li_code_state *cs = li_code_state_get(original);
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    /* Not instrumented and not about to be: nothing to skip. */
    if ((PyObject *)original == f->func_code && (cb == NULL || cb->patches.n_armed == 0)) {
        return NULL;
    }
    PyFunctionObject *twin = make_twin(f, original);
    if (twin == NULL) {
        PyErr_Clear();
        return NULL;
    }
    t->twin = twin;
    t->function = f;
    t->self = self;
    t->code_seen = f->func_code;
    t->bare = twin->func_code;
    return t;
}

PyObject *
li_backend_twin(int tool, int event, PyObject *callback, PyObject **self)
{
    const li_twin *t = twin_for(tool, event, callback);
    if (t == NULL) {
        return NULL;
    }
    *self = t->self;
    return (PyObject *)t->twin;
}

PyObject *
li_backend_call(PyThreadState *tstate, PyObject *callback, PyObject **argv, size_t nargs)
{
    (void)tstate;
    return PyObject_Vectorcall(callback, argv, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* What the fast path does: call a C callback (the case probes_run() serves
 * itself) or a Python one with the site's arguments, or serve a CALL or a
 * C_RETURN (fire_call()). */
enum { LI_FAST_C, LI_FAST_PYTHON, LI_FAST_CALL, LI_FAST_C_RETURN };

/* Sets up the fast path of a probe whose first event is `simple`, or is
 * CALL (not of CALL_FUNCTION_EX, which may build a tuple first) or C_RETURN,
 * or BRANCH to a C callback, when that event goes to one tool's callback,
 * and nothing else needs doing at the probe (`alone`: the other sites are
 * idle).  (A Python callback of BRANCH may set its frame's f_lineno, which
 * needs the frame placed at the branch: li_fire_probe() does that.) */
static void
prepare_fast_path(li_probes *lp, li_probe *p, int index, bool alone)
{
    li_site *s = &lp->sites[p->first_site];
    /* A C_RETURN after calls of Python functions only has never been
       delivered, so its argument was never made: it is made here, or the
       probe would take the slow path for ever.  (Without memory, the slow
       path stays.) */
    if (p->n_sites > 0 && s->event == LI_C_RETURN && s->arg == NULL &&
        li_cache_site_arg(s) < 0)
    {
        PyErr_Clear();
    }
    if (lp->outdated || p->n_sites == 0 || s->arg == NULL ||
        (index == lp->entry_probe && (lp->obsolete || lp->cs->refresh_pending)))
    {
        return;
    }
    uint8_t call = 0;   /* or LI_FAST_CALL, LI_FAST_C_RETURN */
    bool branch = s->event == LI_BRANCH && (p->n_sites == 1 || alone);
    if (s->event == LI_CALL && s->aux >= 0 && alone) {
        call = LI_FAST_CALL;
    }
    else if (s->event == LI_C_RETURN && p->n_sites == 1) {
        call = LI_FAST_C_RETURN;
    }
    else if (!branch && !p->simple && !(p->lead_simple && alone)) {
        return;
    }
    /* (C_RETURN goes to the tools that saw its call start: those selecting
       CALL then.) */
    uint8_t tools = call == LI_FAST_C_RETURN ? li_tools_at(lp->cs, s->event, s->orig)
                                             : li_tools_at_local(lp->cs, s->event, s->orig);
    if (tools == 0 || (tools & (tools - 1)) != 0) {
        return;
    }
    int tool = __builtin_ctz(tools);
    PyObject *callback = li_reg.callbacks[tool][s->event];
    if (callback == NULL) {
        return;
    }
    bool c_callback = Py_IS_TYPE(callback, li_reg.c_callback_type);
    if (branch && (!c_callback || li_cache_site_dest(s) < 0)) {
        PyErr_Clear();   /* (without memory, the slow path stays) */
        return;
    }
    bool value = s->event == LI_PY_RETURN || s->event == LI_PY_YIELD;
    p->fast = callback;
    p->fast_c = c_callback;
    p->fast_twin = p->fast_c ? NULL : twin_for(tool, s->event, callback);
    p->fast_tool = (uint8_t)tool;
    p->fast_event = (uint8_t)s->event;
    p->fast_arg = s->arg;
    p->fast_slot = value ? lp->shadow->co_nlocalsplus + p->depth - 1 : -1;
    p->fast_dest = branch ? s->dest : NULL;
    p->fast_nargs = value || branch ? 3 : 2;
    p->fast_kind = call ? call : c_callback ? LI_FAST_C : LI_FAST_PYTHON;
    p->fast_epoch = li_reg.dispatch_epoch;
}

/* The rest of the fast path's work when the callback did not just return
 * 0 or the dispatch epoch moved on: `result` is what a C callback returned,
 * or for a Python one -1 (it raised), LOWIMPACT_DISABLE or 0. */
LI_COLD static int
fast_path_end(PyThreadState *tstate, li_probes *lp, li_probe *p, int result)
{
    /* (The callback returned to this probe's frame.) */
    _PyInterpreterFrame *frame = tstate->cframe->current_frame;
    int index = (int)(p - lp->probes);
    if (result < 0) {
        if (p->fast_c) {
            li_c_callback_failed();
        }
        return fire_failed(frame, lp, p);
    }
    const li_site *s = &lp->sites[p->first_site];
    if (result == LOWIMPACT_DISABLE || (result == LOWIMPACT_DISABLE_WAY && s->way != 0)) {
        int mark = result == LOWIMPACT_DISABLE ? s->event : s->way;
        if (li_code_state_disable(lp->cs, mark, s->orig, p->fast_tool) < 0) {
            return fire_failed(frame, lp, p);
        }
        if (after_disable(lp, p, index) < 0) {
            return -1;
        }
    }
    return after_events(tstate, frame, lp, p);
}

/* Whether the sites of `p` after its first do nothing now: no tool wants
 * their events, and none has work of its own (a re-raise marks its frame;
 * the end of a call drops what its start kept). */
static bool
companions_idle(const li_probes *lp, const li_probe *p)
{
    for (int k = 1; k < p->n_sites; k++) {
        const li_site *s = &lp->sites[p->first_site + k];
        if (s->event == LI_RERAISE || s->event == LI_C_RETURN || s->event == LI_C_RAISE ||
            li_tools_at(lp->cs, s->event, s->orig) != 0)
        {
            return false;
        }
    }
    return true;
}

/* A frame starts the code of `lp`, which was built ahead of time without
 * the refresh CPython does as code starts (update.c): it happens now.  The
 * DISABLE marks it forgets may belong to probes `lp` left out; then the
 * frame moves on to a shadow that has them. */
LI_COLD static void
starts_refreshed(li_probes *lp)
{
    li_code_state_refresh(lp->cs);
    if (lp->partial) {
        li_retire(lp);
    }
    li_probes_sync(lp);
}

/* Everything else probes_run() does. */
LI_COLD static int
slow_path(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp, li_probe *p)
{
    int index = (int)(p - lp->probes);
    li_probes_ready(lp);
    if (index == lp->entry_probe && lp->cs->refresh_pending) {
        starts_refreshed(lp);
    }
    if (lp->obsolete && index == lp->entry_probe) {
        /* A frame that has only just started (RESUME 0 done) moves to the
           current shadow before its PY_START: this probe's events would
           come before it, or without it. */
        if (lp->entry_only_at_start && p->resume_unit >= 0 &&
            tstate->recursion_remaining > 0)
        {
            li_landing started = {p->resume_unit, LI_LAND_BEFORE_AFTER};
            if (redirect(frame, lp, &started) < 0) {
                return -1;
            }
            return divert(tstate, frame, lp, started, (li_unwind){0, -1});
        }
        if (redirect(frame, lp, &(li_landing){p->resume_unit, p->resume_phase}) < 0) {
            return -1;
        }
    }
    uint64_t disables = li_reg.disables;
    int err = p->simple ? li_fire_simple(tstate, frame, lp, p) : li_fire_probe(tstate, frame, lp, p);
    if (err < 0) {
        return fire_failed(frame, lp, p);
    }
    /* Disarmed when nothing wants it now: it DISABLEd, or another probe of
       its location did (the other direction of a branch, which would else
       come here for nothing on every pass).  A disarmed probe runs again
       only once something re-arms it, and that first run prepares its fast
       path: prepared now, it would go unused (a DISABLE, such as coverage
       and debuggers answer, leaves most probes so after one run). */
    int disarmed = 0;
    if (li_reg.disables != disables || !probe_wanted(lp, p, index)) {
        disarmed = after_disable(lp, p, index);
        if (disarmed < 0) {
            return -1;
        }
    }
    if (!disarmed) {
        prepare_fast_path(lp, p, index, companions_idle(lp, p));
    }
    return after_events(tstate, frame, lp, p);
}

/* The fast path's call of the probe's C callback with args[1..nargs]
 * (args[0] is scratch space): 0, LOWIMPACT_DISABLE or -1. */
static LI_HOT_INLINE int
call_c(PyThreadState *tstate, const li_probe *p, PyObject **args, size_t nargs)
{
    li_tracing_state before = li_enter_tracing(tstate);
    /* The callback may unregister itself while it runs: nothing here
       touches the object after the call. */
    li_ccallback *c = (li_ccallback *)p->fast;
    int result = c->func(c->data, c->event, args + 1, (Py_ssize_t)nargs);
    /* (Looked up again rather than kept in a register saved across the
       call: fire_c() then keeps nothing but its epoch.) */
    li_leave_tracing(_PyThreadState_GET(), before);
    return result;
}

/* The same for a Python callback. */
static LI_HOT_INLINE int
call_python(PyThreadState *tstate, const li_probe *p, PyObject **args, size_t nargs)
{
    li_tracing_state before = li_enter_tracing(tstate);
    /* (C callbacks set no frame's f_lineno.) */
    li_note_event(tstate, p->fast_event);
    PyObject *callable = p->fast, *self = NULL;
    const li_twin *t = p->fast_twin;
    if (t != NULL && twin_valid(t)) {
        callable = (PyObject *)t->twin;
        self = t->self;
    }
    PyObject *res = li_call_bound(callable, self, args + 1, nargs);
    li_leave_tracing(tstate, before);
    int result = res == NULL ? -1 : res == li_reg.disable ? LOWIMPACT_DISABLE : 0;
    Py_XDECREF(res);
    return result;
}

static LI_HOT_INLINE int
call_fast(PyThreadState *tstate, const li_probe *p, PyObject **args, size_t nargs)
{
    return p->fast_c ? call_c(tstate, p, args, nargs) : call_python(tstate, p, args, nargs);
}

/* The fast path of CALL and C_RETURN, whose last two arguments are the
 * call's callable and first argument: on the stack at CALL, kept from then
 * for the C_RETURN of a call of C code (events.c). */
static __attribute__((noinline)) int
fire_call(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp, li_probe *p,
          uint32_t epoch)
{
    const li_site *s = &lp->sites[p->first_site];
    PyObject *args[5];      /* args[0]: the callee's scratch space, or a twin's self */
    args[1] = (PyObject *)lp->original;
    args[2] = p->fast_arg;
    uint8_t tools = (uint8_t)(1 << p->fast_tool);
    int result;
    if (p->fast_kind == LI_FAST_CALL) {
        /* The stack holds them across the callback. */
        PyObject **stack = frame->localsplus + lp->shadow->co_nlocalsplus;
        li_call_arguments_of_call(stack, p->depth, s->aux, &args[3], &args[4]);
        result = call_fast(tstate, p, args, 4);
        if (result >= 0 && !li_calls_python(args[3]) &&
            li_push_pending_call(tstate, frame, s->orig, tools, args[3], args[4]) < 0)
        {
            result = -1;
        }
    }
    else {
        uint8_t saw_start;
        if (!li_take_pending_call(tstate, frame, s->orig, &saw_start, &args[3], &args[4])) {
            return 0;
        }
        if (saw_start == tools) {
            result = call_fast(tstate, p, args, 4);
            if (result == LOWIMPACT_DISABLE) {
                result = li_bad_disable(p->fast_tool, LI_C_RETURN);
            }
        }
        else {
            result = li_call_tools(tstate, LI_C_RETURN, saw_start, lp->cs, s->orig, args, 4);
        }
        Py_DECREF(args[3]);
        Py_DECREF(args[4]);
    }
    if (result == 0 && li_reg.dispatch_epoch == epoch) {
        return 0;
    }
    return fast_path_end(tstate, lp, p, result);
}

/* The fast path's callback arguments after the code (args[1]): the site's
 * argument and the probe's third one, if any. */
static LI_HOT_INLINE void
fast_arguments(const li_probe *p, _PyInterpreterFrame *frame, PyObject **args)
{
    args[2] = p->fast_arg;
    if (p->fast_slot >= 0) {
        args[3] = frame->localsplus[p->fast_slot];
    }
    else {
        args[3] = p->fast_dest;
    }
}

/* fast_path_end() for fire_c(), which keeps nothing but the epoch across
 * the callback's call: the callback returned to the probe's frame, which
 * is still where the probe fired, on the shadow of `lp`. */
LI_COLD static int
fire_c_end(int result)
{
    PyThreadState *tstate = _PyThreadState_GET();
    _PyInterpreterFrame *frame = tstate->cframe->current_frame;
    li_probes *lp = li_shadow_probes(frame->f_code);
    assert(lp != NULL);
    li_probe *p = li_probe_at(lp, (int)(frame->prev_instr - _PyCode_CODE(lp->shadow)));
    assert(p != NULL);
    return fast_path_end(tstate, lp, p, result);
}

/* The fast path of a C callback (what coverage and profiling tools
 * register): it keeps only the epoch across the callback's call, so that
 * this costs a few instructions more than the call. */
static __attribute__((noinline)) int
fire_c(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp, li_probe *p,
       uint32_t epoch)
{
    PyObject *args[4];      /* args[0]: the callee's scratch space */
    args[1] = (PyObject *)lp->original;
    fast_arguments(p, frame, args);
    int result = call_c(tstate, p, args, p->fast_nargs);
    if (result == 0 && li_reg.dispatch_epoch == epoch) {
        return 0;
    }
    return fire_c_end(result);
}

/* The fast path of a Python callback. */
static __attribute__((noinline)) int
fire_python(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp, li_probe *p,
            uint32_t epoch)
{
    /* What li_fire_simple() and li_call_one() do, with what they look up
       kept since. */
    PyObject *args[4];      /* args[0]: the callee's scratch space, or a twin's self */
    args[1] = (PyObject *)lp->original;
    fast_arguments(p, frame, args);
    int result = call_python(tstate, p, args, p->fast_nargs);
    if (result == 0 && li_reg.dispatch_epoch == epoch) {
        return 0;
    }
    return fast_path_end(tstate, lp, p, result);
}

/* What nb_bool does at probe `p`, where the frame stands. */
static LI_HOT_INLINE int
run_probe(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp, li_probe *p)
{
    /* The running frame holds the shadow, which holds `lp`: callbacks
       cannot free the probe. */
    uint32_t epoch = li_reg.dispatch_epoch;
    if (p->fast_epoch != epoch) {
        return slow_path(tstate, frame, lp, p);
    }
    if (p->fast_kind == LI_FAST_C) {
        return fire_c(tstate, frame, lp, p, epoch);
    }
    if (p->fast_kind == LI_FAST_PYTHON) {
        return fire_python(tstate, frame, lp, p, epoch);
    }
    return fire_call(tstate, frame, lp, p, epoch);
}

/* nb_bool of li_probes: a probe's POP_JUMP_IF_TRUE runs it.  0, 1 when the
 * frame must divert (see divert()), or -1 with an exception set, which the
 * probe raises at its instruction.  Code that callbacks run meets probes
 * that do nothing: that exit costs no more than these few tests.  (It
 * calls nothing but in tail position, so that it saves no registers.)  Each
 * width of the unit maps has its own type (shadow.c), so that finding the
 * probe tests no width. */
#define PROBES_RUN(name, entry_type, none, scale)                                          \
    static int                                                                              \
    name(PyObject *self)                                                                    \
    {                                                                                       \
        li_probes *lp = (li_probes *)self;                                                  \
        PyThreadState *tstate = _PyThreadState_GET();                                       \
        _PyInterpreterFrame *frame = tstate->cframe->current_frame;                         \
        /* (Once the shadow is gone, lp->shadow is NULL: no frame runs it.) */              \
        if (frame == NULL || frame->f_code != lp->shadow) {                                 \
            return 1;   /* someone else evaluated the object's truth */                     \
        }                                                                                   \
        if (tstate->tracing) {                                                              \
            /* Code run by a callback (or by a sys.settrace function) gets no events. */    \
            return 0;                                                                       \
        }                                                                                   \
        entry_type at =                                                                     \
            ((const entry_type *)lp->probe_at)[frame->prev_instr - _PyCode_CODE(lp->shadow)]; \
        if (at == (none)) {                                                                 \
            return 1;   /* the shadow's frame, but not at a probe */                        \
        }                                                                                   \
        return run_probe(tstate, frame, lp,                                                 \
                         (li_probe *)((char *)lp->probes + (size_t)at * (scale)));          \
    }

PROBES_RUN(probes_run, uint16_t, LI_NARROW_NONE, 8)
PROBES_RUN(probes_run_wide, int32_t, -1, 1)

static void
probes_dealloc(PyObject *self)
{
    li_probes *lp = (li_probes *)self;
    assert(lp->shadow == NULL);
    for (int i = 0; i < lp->n_sites; i++) {
        Py_XDECREF(lp->sites[i].arg);
        Py_XDECREF(lp->sites[i].dest);
    }
    /* The start of one block with the sites, pads, loops and unit maps
       (shadow.c). */
    PyMem_Free(lp->probes);
    PyMem_Free(lp->starts);
    Py_XDECREF(lp->original);
    PyObject_Free(self);
}

static PyNumberMethods probes_as_number = {
    .nb_bool = probes_run,
};

static PyNumberMethods wide_probes_as_number = {
    .nb_bool = probes_run_wide,
};

PyTypeObject li_probes_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine.probes",
    .tp_doc = "Run-time data of the probes of one instrumented code object.",
    .tp_basicsize = sizeof(li_probes),
    .tp_dealloc = probes_dealloc,
    .tp_as_number = &probes_as_number,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

PyTypeObject li_wide_probes_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine.probes",
    .tp_doc = "Run-time data of the probes of one instrumented code object "
              "(with 32-bit unit maps).",
    .tp_basicsize = sizeof(li_probes),
    .tp_dealloc = probes_dealloc,
    .tp_as_number = &wide_probes_as_number,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};
