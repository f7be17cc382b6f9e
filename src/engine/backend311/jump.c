/* Setting frame.f_lineno from a monitoring callback (a debugger's `jump`).
 *
 * CPython 3.12 lets a callback of LINE, JUMP, BRANCH, PY_RESUME or PY_YIELD
 * move the frame of its event to the start of another line, with the checks
 * and the unwinding 3.11's setter does for a trace function's 'line' event.
 * Here the frame runs a shadow, whose units and stack are not the
 * original's, and its evaluation loop holds its position in C locals: so
 *
 * - 3.11's own setter decides, on a scratch frame that stands at the
 *   event's original instruction in a copy of the original code, with as
 *   many values on its stack as the frame has: where the jump goes and how
 *   many values it pops (which one, if any, becomes the exception being
 *   handled), or which error it raises;
 * - the probe then diverts the frame to a landing pad at that instruction,
 *   past its LINE (the target line reports none, as natively), and the
 *   landing pops those values from the real stack (landing.c calls
 *   li_jump_unwind()).
 *
 * Events recorded in the thread state's tracing_what (li_note_event(), by
 * every delivery) tell this setter which event's callbacks run; a trace
 * function's own events (smaller numbers) go to 3.11's setter unchanged.
 */

#include "b311.h"

/* A jump decided for the frame whose event's callbacks run: the probe
 * takes it when they are done (li_jump_take_landing), or forgets it. */
typedef struct {
    PyThreadState *tstate;
    _PyInterpreterFrame *frame;
    int target;          /* original unit */
    int pops;            /* values popped from the frame's stack */
    int handled;         /* index of the popped value that becomes the
                            exception being handled, or -1 */
} li_jump;

static li_jump *jumps;
static int n_jumps, cap_jumps;

/* The probe whose events a thread delivers where its frame is made to stand
 * at another unit meanwhile (events.c). */
static _Thread_local struct {
    _PyInterpreterFrame *frame;
    const li_probe *probe;
} delivering;

void
li_jump_delivering(_PyInterpreterFrame *frame, const li_probe *p)
{
    delivering.frame = frame;
    delivering.probe = p;
}

/* The probe firing for `frame` of `lp`, or NULL when another frame's
 * event is delivered. */
static const li_probe *
firing_probe(const li_probes *lp, _PyInterpreterFrame *frame)
{
    if (delivering.frame == frame) {
        return delivering.probe;
    }
    int here = (int)(frame->prev_instr - _PyCode_CODE(lp->shadow));
    return here >= 0 && here < lp->n_units ? li_probe_at(lp, here) : NULL;
}

static li_jump *
find_jump(PyThreadState *tstate, _PyInterpreterFrame *frame)
{
    for (int k = 0; k < n_jumps; k++) {
        if (jumps[k].tstate == tstate && jumps[k].frame == frame) {
            return &jumps[k];
        }
    }
    return NULL;
}

static void
drop_jump(li_jump *j)
{
    *j = jumps[--n_jumps];
}

void
li_jump_forget(PyThreadState *tstate, _PyInterpreterFrame *frame)
{
    li_jump *j = find_jump(tstate, frame);
    if (j != NULL) {
        drop_jump(j);
    }
}

int
li_jump_pending_unit(_PyInterpreterFrame *frame)
{
    li_jump *j = find_jump(_PyThreadState_GET(), frame);
    return j != NULL ? j->target : -1;
}

/* A copy of `original` with its own bytes (no trampoline), for 3.11's
 * analysis of where a frame may jump.  New reference. */
static PyObject *
plain_copy(PyCodeObject *original)
{
    PyObject *co_code = PyCode_GetCode(original);
    if (co_code == NULL) {
        return NULL;
    }
    PyObject *replace = PyObject_GetAttrString((PyObject *)original, "replace");
    if (replace == NULL) {
        Py_DECREF(co_code);
        return NULL;
    }
    PyObject *kwargs = Py_BuildValue("{sO}", "co_code", co_code);
    Py_DECREF(co_code);
    PyObject *copy = NULL;
    if (kwargs != NULL) {
        PyObject *empty = PyTuple_New(0);
        copy = empty != NULL ? PyObject_Call(replace, empty, kwargs) : NULL;
        Py_XDECREF(empty);
        Py_DECREF(kwargs);
    }
    Py_DECREF(replace);
    return copy;
}

/* Runs 3.11's setter (`native`) for `value` on `f` standing at `unit` of a
 * copy of `original` with `depth` stand-ins on its stack, and reads what it
 * did into *out.  0, or -1 with its error. */
static int
decide(PyFrameObject *f, PyObject *value, setter native, void *closure,
       PyCodeObject *original, int unit, int depth, li_jump *out)
{
    PyThreadState *tstate = _PyThreadState_GET();
    PyCodeObject *copy = (PyCodeObject *)plain_copy(original);
    if (copy == NULL) {
        return -1;
    }
    int nlocals = copy->co_nlocalsplus;
    if (depth < 0 || depth > copy->co_stacksize) {
        PyErr_SetString(PyExc_SystemError, "lowimpact: a jumping frame's stack is not its code's");
        Py_DECREF(copy);
        return -1;
    }
    size_t slots = (size_t)nlocals + (size_t)copy->co_stacksize;
    _PyInterpreterFrame *scratch = PyMem_Calloc(1, sizeof(_PyInterpreterFrame) +
                                                   slots * sizeof(PyObject *));
    PyObject **stand_ins = PyMem_Calloc((size_t)depth + 1, sizeof(PyObject *));
    int err = -1;
    if (scratch == NULL || stand_ins == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int k = 0; k < depth; k++) {
        /* Exceptions: 3.11's setter asserts that what it makes the
           exception being handled is one. */
        stand_ins[k] = PyObject_CallNoArgs(PyExc_Exception);
        if (stand_ins[k] == NULL) {
            goto done;
        }
        scratch->localsplus[nlocals + k] = Py_NewRef(stand_ins[k]);
    }
    scratch->f_code = copy;
    scratch->f_globals = f->f_frame->f_globals;
    scratch->f_builtins = f->f_frame->f_builtins;
    scratch->prev_instr = _PyCode_CODE(copy) + unit;
    scratch->stacktop = nlocals + depth;
    scratch->owner = FRAME_OWNED_BY_THREAD;

    _PyErr_StackItem *exc_info = tstate->exc_info;
    PyObject *handled_before = Py_XNewRef(exc_info->exc_value);
    _PyInterpreterFrame *real = f->f_frame;
    PyObject *trace = f->f_trace;
    int what = tstate->tracing_what;
    f->f_frame = scratch;
    if (trace == NULL) {
        f->f_trace = Py_NewRef(Py_None);
    }
    tstate->tracing_what = PyTrace_LINE;
    err = native((PyObject *)f, value, closure);
    tstate->tracing_what = what;
    if (trace == NULL) {
        /* (Code run meanwhile, by a finalizer, may have set another.) */
        Py_CLEAR(f->f_trace);
    }
    f->f_frame = real;
    Py_CLEAR(scratch->f_locals);

    out->handled = -1;
    if (exc_info->exc_value != handled_before) {
        /* A stand-in became the exception being handled: the real value
           does at the landing; the exception handled now stays so. */
        for (int k = 0; k < depth; k++) {
            if (exc_info->exc_value == stand_ins[k]) {
                out->handled = k;
            }
        }
        Py_XSETREF(exc_info->exc_value, handled_before);
    }
    else {
        Py_XDECREF(handled_before);
    }
    if (err == 0) {
        out->target = (int)(scratch->prev_instr - _PyCode_CODE(copy));
        out->pops = nlocals + depth - scratch->stacktop;
    }
    /* What the setter did not pop. */
    for (int k = nlocals; k < scratch->stacktop; k++) {
        Py_XDECREF(scratch->localsplus[k]);
    }

done:
    if (stand_ins != NULL) {
        for (int k = 0; k < depth; k++) {
            Py_XDECREF(stand_ins[k]);
        }
    }
    PyMem_Free(stand_ins);
    PyMem_Free(scratch);
    Py_DECREF(copy);
    return err;
}

int
li_jump_set_lineno(PyFrameObject *f, PyObject *value, setter native, void *closure)
{
    PyThreadState *tstate = _PyThreadState_GET();
    _PyInterpreterFrame *frame = f->f_frame;
    if (value == NULL || !tstate->tracing || tstate->tracing_what < LI_WHAT_EVENT_BASE ||
        frame->owner == FRAME_OWNED_BY_FRAME_OBJECT)
    {
        return 1;   /* no monitoring callback runs: 3.11's own answer */
    }
    const char *refused = li_jump_refusal(tstate->tracing_what - LI_WHAT_EVENT_BASE);
    if (refused != NULL) {
        PyErr_SetString(PyExc_ValueError, refused);
        return -1;
    }
    li_probes *lp = li_shadow_probes(frame->f_code);
    const li_probe *p = lp != NULL && li_frame_on_thread(tstate, frame) ? firing_probe(lp, frame)
                                                                    : NULL;
    if (p == NULL) {
        /* Not the frame of the event (3.12 would move it, from wherever
           it stands). */
        PyErr_SetString(PyExc_ValueError,
                        "lowimpact: f_lineno can only be set on the frame of the event "
                        "being delivered");
        return -1;
    }
    if (p->resume_unit < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "lowimpact: the engine cannot move this frame from this event");
        return -1;
    }
    /* A second jump from the same event goes on from the first. */
    li_jump *earlier = find_jump(tstate, frame);
    li_jump decided = {tstate, frame, li_orig_of(lp, p->unit + p->size - 1), 0, -1};
    if (earlier != NULL) {
        decided = *earlier;
    }
    li_jump from = decided;
    if (decide(f, value, native, closure, lp->original, from.target, p->depth - from.pops,
               &decided) < 0)
    {
        return -1;
    }
    decided.pops += from.pops;
    if (decided.handled < 0) {
        decided.handled = from.handled;
    }
    /* As 3.12 does: locals the compiler proved bound where the frame goes
       may not be; they get None, with a warning (which may fail). */
    int unbound = 0;
    for (int k = 0; k < lp->original->co_nlocalsplus; k++) {
        unbound += frame->localsplus[k] == NULL;
    }
    if (unbound && PyErr_WarnFormat(PyExc_RuntimeWarning, 0, "assigning None to %d unbound local%s",
                                    unbound, unbound == 1 ? "" : "s") < 0)
    {
        return -1;
    }
    for (int k = 0; k < lp->original->co_nlocalsplus; k++) {
        if (frame->localsplus[k] == NULL) {
            frame->localsplus[k] = Py_NewRef(Py_None);
        }
    }
    /* Python code ran since the look-up (an audit hook, the warning): it
       may have set f_lineno too; this setting comes last. */
    earlier = find_jump(tstate, frame);
    if (earlier != NULL) {
        *earlier = decided;
    }
    else {
        if (li_reserve((void **)&jumps, &cap_jumps, n_jumps, sizeof(li_jump), 2) < 0) {
            return -1;
        }
        jumps[n_jumps++] = decided;
    }
    /* The probe's fast path ends by looking for it. */
    li_dispatch_changed();
    return 0;
}

bool
li_jump_take_landing(PyThreadState *tstate, _PyInterpreterFrame *frame, li_landing *to,
                     li_unwind *unwind)
{
    li_jump *j = find_jump(tstate, frame);
    if (j == NULL) {
        return false;
    }
    *to = (li_landing){j->target, LI_LAND_AFTER_LINE};
    *unwind = (li_unwind){j->pops, j->handled};
    drop_jump(j);
    return true;
}

void
li_jump_unwind(PyThreadState *tstate, _PyInterpreterFrame *frame, li_unwind unwind)
{
    int base = frame->f_code->co_nlocalsplus;
    int depth = frame->stacktop - base;
    /* The values go as 3.11's setter let them go: the lowest one that held
       an exception becomes the exception being handled. */
    for (int k = depth - 1; k >= depth - unwind.pops && k >= 0; k--) {
        PyObject *v = frame->localsplus[base + k];
        frame->stacktop--;
        if (k == unwind.handled) {
            Py_XSETREF(tstate->exc_info->exc_value, v);
        }
        else {
            Py_XDECREF(v);
        }
    }
}
