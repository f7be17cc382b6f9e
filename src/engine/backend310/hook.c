/* Frames onto shadows: a PEP 523 frame evaluation function, installed only
 * while some tool wants events, runs each frame of an instrumented code
 * object on its shadow (b310.h).
 *
 * 3.10 makes a frame object, with its arguments in place, before it
 * evaluates it, and evaluates it again at each resumption of a generator or
 * coroutine.  For the time it executes, the frame's f_code is the shadow,
 * and its f_lasti and block stack (handler units) are translated into the
 * shadow's units; when it returns, they are translated back.  A frame that
 * suspends stays on its shadow, and resumes there unmapped while its code
 * still needs it (else it goes back to the original first).  So function
 * objects, generators and code objects only ever hold originals, code that
 * starts later (functions made later, exec, module bodies, FunctionType) is
 * reached as it starts, and a suspended generator at its next resumption.
 *
 * A shadow may need a deeper value stack than its original (its probes
 * push, shadow.c): a frame too small for it executes on a borrowed stack,
 * on the C stack of the evaluation that runs it unless it is large.  The
 * original's co_stacksize stays as compiled, as users see it.
 */

#include "b310.h"

uint64_t li_epoch = 1;

/* What evaluates frames under the hook: the function it replaced. */
static _PyFrameEvalFunction next_eval = _PyEval_EvalFrameDefault;
static bool installed;
/* Events some tool wants globally, among those probes deliver. */
static li_event_set global_probed;

static inline PyObject *
evaluate(PyThreadState *ts, PyFrameObject *f, int throwflag)
{
    return next_eval(ts, f, throwflag);
}

/* shadow_for() when what `code` needs may have changed since it was last
 * chosen (`cs`: its code state, or NULL if it has none). */
static LI_COLD PyCodeObject *
choose_shadow(PyCodeObject *code, li_code_state *cs)
{
    if (cs == NULL && (cs = li_code_state_ensure(code)) == NULL) {
        goto error;
    }
    li_b310 *b = cs->backend;
    if (b == NULL) {
        b = PyMem_Calloc(1, sizeof(li_b310));
        if (b == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        cs->backend = b;
    }
    li_event_set want = li_exc_needed(code, li_wanted_events(cs) & LI_PROBED_EVENTS);
    /* CPython instruments the code object as it starts (rearm.c). */
    bool stale = li_code_state_stale(cs);
    bool forgets = stale && li_code_state_refresh_forgets(cs);
    /* (A shadow let go while its events stayed the same is no reason: the
       events changed since, it is stale.) */
    if (want != b->events || want == 0 || stale) {
        li_code_state_refresh(cs);
    }
    b->epoch = li_epoch;
    b->starts = false;
    if (want == 0) {
        Py_CLEAR(b->shadow);
        b->run = NULL;
        b->events = 0;
        return NULL;
    }
    if (want == LI_EVENT_BIT(LI_PY_START)) {
        /* Delivered before the frame runs its original (start_here()), as
           3.12 does from RESUME: code whose tools disable PY_START where it
           fires (coverage and debuggers away from their breakpoints) never
           gets a shadow. */
        if (b->events != want) {
            Py_CLEAR(b->shadow);
        }
        else if (forgets && b->shadow != NULL) {
            li_rearm_shadow(li_shadow_of(b->shadow));
        }
        b->run = NULL;
        b->events = want;
        b->starts = li_tools_at(cs, LI_PY_START, li_start_unit(code)) != 0;
        return NULL;
    }
    if (b->shadow != NULL && b->events == want) {
        li_shadow *map = li_shadow_of(b->shadow);
        /* (What a restart, or marks forgotten, want again is re-armed in
           place before a shadow is built for fewer probes.) */
        if (forgets || li_worth_compacting(map)) {
            li_rearm_shadow(map);
        }
        /* With every probe disarmed the original does the same, and needs
           no build; the shadow stays, to be re-armed in place. */
        bool spent = map->n_disarmed == map->n_sites && !map->yields_from;
        if ((!li_worth_compacting(map) || spent) && !li_shadow_misses(map)) {
            b->run = map->n_disarmed < map->n_sites || map->yields_from ? b->shadow : NULL;
            b->run_map = map;
            return b->run;
        }
    }
    /* Without the probes disabled everywhere they are wanted, as native
       instrumentation leaves them out of the bytecode: new frames pay
       nothing for them, and run the original once none is left.  Frames
       already on the older shadow stay there. */
    PyCodeObject *shadow = li_build_shadow(code, cs, want, true);
    if (shadow == NULL) {
        b->epoch = 0;
        if (b->shadow != NULL) {
            li_shadow_of(b->shadow)->resumes_plain_in = 0;
        }
        goto error;
    }
    Py_XSETREF(b->shadow, shadow);
    b->events = want;
    li_shadow *map = li_shadow_of(shadow);
    b->run = map->n_sites > 0 || map->yields_from ? shadow : NULL;
    b->run_map = map;
    b->run_fits = shadow->co_stacksize <= code->co_stacksize;
    return b->run;
error:
    PyErr_WriteUnraisable((PyObject *)code);
    return NULL;
}

/* The shadow that frames of `code` (whose code state is `cs`, or NULL if
 * it has none) should run now, or NULL: the original.  Borrowed (the code
 * state holds it).  A failure to build one is reported as unraisable and
 * the original runs. */
static inline PyCodeObject *
shadow_for(PyCodeObject *code, li_code_state *cs)
{
    if (cs != NULL) {
        li_b310 *b = cs->backend;
        if (b != NULL && b->epoch == li_epoch) {
            return b->run;
        }
        if (cs->excluded) {
            return NULL;
        }
    }
    else if (global_probed == 0) {
        return NULL;
    }
    else if (li_shadow_of(code) != NULL) {
        return NULL;    /* a shadow that C code got hold of */
    }
    return choose_shadow(code, cs);
}

PyCodeObject *
li_shadow_for(PyCodeObject *code)
{
    return shadow_for(code, li_code_state_get(code));
}

/* Translates the tracebacks of `f` that the exception leaving it carries. */
static void
translate_traceback(PyThreadState *ts, PyFrameObject *f, li_shadow *map)
{
    PyObject *tb = ts->curexc_traceback;
    while (tb != NULL && PyTraceBack_Check(tb)) {
        PyTracebackObject *t = (PyTracebackObject *)tb;
        if (t->tb_frame == f && t->tb_lasti >= 0 && t->tb_lasti / 2 < map->n_units) {
            t->tb_lasti = 2 * map->orig_op[t->tb_lasti / 2];
        }
        tb = (PyObject *)t->tb_next;
    }
}

/* A suspended frame `f` of `code` (code state `cs`, or NULL) resumes
 * (PY_RESUME), or has an exception thrown in (PY_THROW), at original unit
 * `unit`, where `tools` want that event.  0, or -1 with an exception set:
 * the frame then starts with it, raised where it resumes, as natively. */
static LI_COLD int
fire_resume(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, li_code_state *cs,
            int unit, uint8_t tools, int throwflag)
{
    int event = throwflag ? LI_PY_THROW : LI_PY_RESUME;
    /* DISABLE needs somewhere to be recorded. */
    if (cs == NULL && li_event_is_local(event) && (cs = li_code_state_ensure(code)) == NULL) {
        return -1;
    }
    PyObject *offset = PyLong_FromLong(2L * unit);
    if (offset == NULL) {
        return -1;
    }
    PyObject *args[4] = {NULL, (PyObject *)code, offset, NULL};
    /* Callbacks run as if from the frame (sys._getframe(1)), which the
       interpreter makes the thread's current frame only later. */
    PyFrameObject *current = ts->frame;
    ts->frame = f;
    int err = throwflag
              ? li_call_tools_around_error(ts, event, tools, cs, unit, args, 3, 3)
              : li_call_tools(ts, event, tools, cs, unit, args, 2);
    ts->frame = current;
    Py_DECREF(offset);
    return err;
}

/* The frame suspended at the YIELD_FROM of shadow unit `unit` (its
 * delegate yielded `value`): PY_YIELD, which 3.10 has no instruction of its
 * own for.  0, or -1 with an exception set. */
static int
fire_yield_from(PyThreadState *ts, li_shadow *map, int unit, PyObject *value)
{
    int orig = map->orig_op[unit];
    uint8_t tools = li_tools_at(map->cs, LI_PY_YIELD, orig);
    if (tools == 0) {
        return 0;
    }
    PyObject *offset = PyLong_FromLong(2L * orig);
    if (offset == NULL) {
        return -1;
    }
    PyObject *args[4] = {NULL, (PyObject *)map->original, offset, value};
    int err = li_call_tools(ts, LI_PY_YIELD, tools, map->cs, orig, args, 3);
    Py_DECREF(offset);
    return err;
}

PyObject *li_restart;

/* Slots of value stack a frame too small for its shadow borrows from the C
 * stack (run_borrowing). */
#define LI_BORROWED_STACK 32

/* Translates f_lasti and the handlers of `f`, on `map`'s shadow, into the
 * original's units. */
static void
unmap_frame(PyFrameObject *f, li_shadow *map)
{
    if (li_lasti(f) + 1 >= 0 && li_lasti(f) + 1 <= map->n_units) {
        li_set_lasti(f, map->orig_start[li_lasti(f) + 1] - 1);
    }
    for (int i = 0; i < f->f_iblock; i++) {
        int h = li_handler(&f->f_blockstack[i]);
        if (h >= 0 && h <= map->n_units) {
            li_set_handler(&f->f_blockstack[i], map->orig_start[h]);
        }
    }
}

/* f_lasti of `f`, which raised at shadow unit `unit` of `map`: the
 * instruction it was in, or the one the probe it was in comes before (a
 * callback's exception, or a signal handler's that 3.9 runs after a probe's
 * UNARY_INVERT), as its traceback entry says and as natively, where the
 * instrumented instruction raises; not the one before, where a frame that
 * goes on would resume. */
static void
unmap_raised(PyFrameObject *f, li_shadow *map, int unit)
{
    if (unit >= 0 && unit < map->n_units && !PyErr_ExceptionMatches(li_restart)) {
        li_set_lasti(f, map->orig_op[unit]);
    }
}

/* After `f` executed `shadow` (its f_code, which holds it) with `result`:
 * PY_YIELD of a YIELD_FROM, and the frame back on `code`, its original,
 * unless it suspended and `may_stay`: a frame suspended on the shadow its
 * code still needs resumes without being mapped again (li_eval).  The
 * caller's reference to `code` passes to this function. */
static LI_HOT_INLINE PyObject *
finish(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, PyCodeObject *shadow,
       li_shadow *map, PyObject *result, bool may_stay)
{
    if (result != NULL && li_frame_suspended(f)) {
        /* The map lives as long as the shadow, which the frame holds. */
        /* (Not the shadow's events: PY_YIELD may have come on while the
           frame ran on it, and a YIELD_FROM has no probe to miss.) */
        if (map->original != NULL &&
            (li_reg.global_tools[LI_PY_YIELD] | map->cs->local_tools[LI_PY_YIELD]) &&
            li_lasti(f) + 1 < map->n_units &&
            PyBytes_AS_STRING(shadow->co_code)[2 * (li_lasti(f) + 1)] == YIELD_FROM)
        {
            PyFrameObject *current = ts->frame;
            ts->frame = f;      /* as at PY_RESUME */
            if (fire_yield_from(ts, map, li_lasti(f) + 1, result) < 0) {
                Py_CLEAR(result);
            }
            ts->frame = current;
        }
        if (result != NULL && may_stay) {
            /* The original stays alive: its generator holds it. */
            Py_DECREF(code);
            return result;
        }
    }
    int unit = li_lasti(f);
    unmap_frame(f, map);
    if (result == NULL) {
        unmap_raised(f, map, unit);
        translate_traceback(ts, f, map);
    }
    f->f_code = code;
    Py_DECREF(shadow);
    return result;
}

/* Evaluates `f`, a frame of `code` whose f_lasti and handlers are
 * instruction starts, on `shadow`: from where it stands, or, with
 * `restarted`, from the shadow's unit after PY_START. */
static LI_HOT_INLINE PyObject *
run_mapped(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, PyCodeObject *shadow,
           li_shadow *map, int throwflag, bool restarted, bool may_stay)
{
    li_set_lasti(f, (restarted ? map->after_start : map->shadow_start[li_lasti(f) + 1]) - 1);
    for (int i = 0; i < f->f_iblock; i++) {
        int h = li_handler(&f->f_blockstack[i]);
        if (h >= 0) {
            li_set_handler(&f->f_blockstack[i], map->shadow_start[h]);
        }
    }
    /* The frame's reference to the original passes to this function. */
    f->f_code = (PyCodeObject *)Py_NewRef(shadow);
    PyObject *result = evaluate(ts, f, throwflag);
    return finish(ts, f, code, shadow, map, result, may_stay);
}

/* run_mapped() for a frame too small for the shadow: it executes with a
 * value stack of the shadow's depth, and gets back what it leaves on it (a
 * suspended generator's values: no more than the original's depth there,
 * since probes leave the stack as they found it).  Apart, so that only the
 * frames that borrow carry the borrowed stack on the C stack. */
static LI_COLD PyObject *
run_borrowing(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, PyCodeObject *shadow,
              li_shadow *map, int throwflag, bool restarted)
{
    PyObject *borrowed[LI_BORROWED_STACK];
    PyObject **stack = borrowed;
    if (shadow->co_stacksize > LI_BORROWED_STACK &&
        (stack = PyMem_Malloc(sizeof(PyObject *) * (size_t)shadow->co_stacksize)) == NULL)
    {
        return PyErr_NoMemory();
    }
    PyObject **own_stack = f->f_valuestack;
    int depth = li_stack_depth(f);
    if (depth > 0) {
        memcpy(stack, own_stack, sizeof(PyObject *) * (size_t)depth);
    }
    f->f_valuestack = stack;
    li_set_stack_depth(f, depth);   /* (3.9 keeps a pointer into it) */
    PyObject *result = run_mapped(ts, f, code, shadow, map, throwflag, restarted, false);
    depth = li_stack_depth(f);
    if (depth > 0) {
        memcpy(own_stack, stack, sizeof(PyObject *) * (size_t)depth);
    }
    f->f_valuestack = own_stack;
    li_set_stack_depth(f, depth);
    if (stack != borrowed) {
        PyMem_Free(stack);
    }
    return result;
}

static PyObject *restart(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code);

/* Evaluates `f`, a frame of `code` (its f_code), on `shadow`: from where
 * it stands, or, with `restarted`, from the shadow's unit after PY_START. */
static LI_HOT_INLINE PyObject *
run_on(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, PyCodeObject *shadow,
       int throwflag, bool restarted)
{
    li_shadow *map = li_shadow_of(shadow);
    /* Where it resumes, and its handlers, must be instruction starts (a
       frame that starts is at the first, with none). */
    int resume = li_lasti(f) + 1;
    if (resume != 0 || f->f_iblock != 0) {
        if (resume < 0 || resume > map->n_orig_units || map->shadow_start[resume] < 0) {
            return evaluate(ts, f, throwflag);
        }
        for (int i = 0; i < f->f_iblock; i++) {
            int h = li_handler(&f->f_blockstack[i]);
            if (h >= 0 && (h > map->n_orig_units || map->shadow_start[h] < 0)) {
                return evaluate(ts, f, throwflag);
            }
        }
    }
    PyObject *result;
    /* (A frame made for the original has at least its depth.) */
    if (shadow->co_stacksize > code->co_stacksize &&
        Py_SIZE(f) - code->co_nlocals - PyTuple_GET_SIZE(code->co_cellvars) -
            PyTuple_GET_SIZE(code->co_freevars) < shadow->co_stacksize) {
        result = run_borrowing(ts, f, code, shadow, map, throwflag, restarted);
    }
    else {
        result = run_mapped(ts, f, code, shadow, map, throwflag, restarted, true);
    }
    if (result == NULL && PyErr_ExceptionMatches(li_restart)) {
        return restart(ts, f, code);
    }
    return result;
}

/* A PY_START probe of `f` raised li_restart: nothing ran but the probe (and
 * GEN_START, whose value is gone), and the frame starts again, as it was
 * made, past PY_START, on what its code needs now. */
static LI_COLD PyObject *
restart(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code)
{
    PyErr_Clear();
    li_frame_reset(f);
    PyCodeObject *now = shadow_for(code, li_code_state_get(code));
    if (now != NULL) {
        return run_on(ts, f, code, now, 0, true);
    }
    li_set_lasti(f, li_start_unit(code) - 1);
    return evaluate(ts, f, 0);
}

/* `f` resumes suspended on `shadow` (its f_code), a shadow of `code`. */
static PyObject *
resume_on_shadow(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, PyCodeObject *shadow,
                 li_shadow *map, int throwflag)
{
    Py_INCREF(code);    /* whatever callbacks do */
    li_code_state *cs = map->cs;
    int unit = map->orig_start[li_lasti(f) + 1];
    uint8_t tools = ts->tracing ? 0 : li_tools_at(cs, throwflag ? LI_PY_THROW : LI_PY_RESUME, unit);
    if (tools != 0 && fire_resume(ts, f, code, cs, unit, tools, throwflag) < 0) {
        throwflag = 1;
    }
    PyCodeObject *now = ts->tracing ? shadow : shadow_for(code, map->cs);
    if (now == shadow) {
        return finish(ts, f, code, shadow, map, evaluate(ts, f, throwflag), true);
    }
    /* Its code needs another shadow now, or none: the frame goes back to
       the original and on from there. */
    unmap_frame(f, map);
    f->f_code = code;   /* our reference passes to the frame */
    Py_DECREF(shadow);
    if (now == NULL) {
        return evaluate(ts, f, throwflag);
    }
    return run_on(ts, f, code, now, throwflag, false);
}

/* A new frame of `code` (state `cs`), whose shadow choice is current and
 * says `starts`: PY_START, then the frame on what its code needs now. */
static LI_NOINLINE PyObject *
start_here(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, li_code_state *cs)
{
    li_b310 *b = cs->backend;
    if (li_running_user_hooks(ts)) {
        /* A trace or profile function sees the frame start (its 'call'
           event) before PY_START, as natively: from a probe. */
        if (b->shadow == NULL &&
            (b->shadow = li_build_shadow(code, cs, b->events, true)) == NULL) {
            PyErr_WriteUnraisable((PyObject *)code);
            return evaluate(ts, f, 0);
        }
        return run_on(ts, f, code, b->shadow, 0, false);
    }
    int unit = li_start_unit(code);
    uint8_t tools = li_tools_at(cs, LI_PY_START, unit);
    /* (At the limit the frame's entry raises RecursionError first.) */
    if (tools == 0 || ts->recursion_depth >= Py_GetRecursionLimit()) {
        return evaluate(ts, f, 0);
    }
    uint64_t epoch = li_epoch;
    if (li_start_before(ts, f, code, cs, unit, tools) < 0) {
        return evaluate(ts, f, 1);
    }
    if (li_tools_at(cs, LI_PY_START, unit) == 0) {
        b->starts = false;  /* disabled: later frames go straight on */
    }
    /* Callbacks commonly turn on local events for the code that starts. */
    PyCodeObject *now = epoch != li_epoch ? shadow_for(code, li_code_state_get(code)) : NULL;
    if (now == NULL) {
        return evaluate(ts, f, 0);
    }
    if (li_stack_depth(f) > 0) {
        /* GEN_START's value, which a shadow's start past PY_START skips */
        Py_DECREF(li_stack_pop(f));
    }
    return run_on(ts, f, code, now, 0, true);
}

/* Inlined in li_eval(), where threads without reached frames (running.c)
 * pay only the test for them. */
static LI_HOT_INLINE PyObject *
eval_frame(PyThreadState *ts, PyFrameObject *f, int throwflag)
{
    PyCodeObject *code = f->f_code;
    li_shadow *on = li_lasti(f) >= 0 ? li_shadow_of(code) : NULL;
    if (on != NULL) {
        /* Suspended on a shadow (finish()); or made from one by C code, or
           its original gone: it runs as it is. */
        if (on->original == NULL || li_lasti(f) + 1 > on->n_units) {
            return evaluate(ts, f, throwflag);
        }
        PyObject *result = resume_on_shadow(ts, f, on->original, code, on, throwflag);
        /* The frame ended on the original's f_code (finish()). */
        if (result == NULL && li_exc_exit_wanted()) {
            li_exc_frame_exit(ts, f, f->f_code);
        }
        return result;
    }
    if (ts->tracing) {
        return evaluate(ts, f, throwflag);
    }
    if (throwflag && li_lasti(f) < 0 && PyErr_ExceptionMatches(PyExc_GeneratorExit)) {
        /* close() of a generator that never started: 3.12 runs nothing. */
        return evaluate(ts, f, throwflag);
    }
    li_code_state *cs = li_code_state_get(code);
    if (li_lasti(f) >= 0 || throwflag) {
        int unit = li_lasti(f) + 1;
        uint8_t tools = li_tools_at(cs, throwflag ? LI_PY_THROW : LI_PY_RESUME, unit);
        if (tools != 0) {
            if (fire_resume(ts, f, code, cs, unit, tools, throwflag) < 0) {
                throwflag = 1;
            }
            cs = li_code_state_get(code);
        }
    }
    PyCodeObject *shadow = shadow_for(code, cs);
    PyObject *result;
    if (shadow != NULL) {
        result = run_on(ts, f, code, shadow, throwflag, false);
    }
    else if (li_lasti(f) < 0 && !throwflag && (cs = li_code_state_get(code)) != NULL &&
             cs->backend != NULL && ((li_b310 *)cs->backend)->starts &&
             ((li_b310 *)cs->backend)->epoch == li_epoch) {
        result = start_here(ts, f, code, cs);
    }
    else {
        result = evaluate(ts, f, throwflag);
    }
    if (result == NULL && li_exc_exit_wanted()) {
        li_exc_frame_exit(ts, f, code);
    }
    return result;
}

/* The code state of `code`: what li_code_state_get() gives, read without
 * the call and the error handling of _PyCode_GetExtra() on every frame
 * start, from 3.10's co_extra (private to Objects/codeobject.c, and the
 * same in every 3.10 release). */
typedef struct {
    Py_ssize_t ce_size;
    void *ce_extras[1];
} code_extra310;

static Py_ssize_t extra_index = PY_SSIZE_T_MAX;

static inline li_code_state *
code_state_of(PyCodeObject *code)
{
    const code_extra310 *extra = code->co_extra;
    return extra != NULL && extra_index < extra->ce_size ? extra->ce_extras[extra_index] : NULL;
}

/* The frames li_eval() leaves to eval_frame(), apart so that the common
 * path stays short. */
static LI_NOINLINE PyObject *
eval_other(PyThreadState *ts, PyFrameObject *f, int throwflag)
{
    return li_running_threads ? li_running_eval(ts, f, throwflag, eval_frame)
                              : eval_frame(ts, f, throwflag);
}

/* What follows the evaluation of `f`, a frame of `code` (NULL if it
 * suspended), that gave `result`: PY_UNWIND and the like when it raised
 * (on the original's f_code), and the thread's functions back if they were
 * put aside meanwhile (running.c). */
static inline PyObject *
ended(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, PyObject *result)
{
    if (result == NULL && li_exc_exit_wanted()) {
        li_exc_frame_exit(ts, f, code);
    }
    if (li_running_aside) {
        li_running_restore(ts);
    }
    return result;
}

/* A generator suspended on its f_code, a shadow, resumed there with
 * nothing to do around it (li_eval) and gave `result`: the rest, when it
 * did not suspend again, or when the thread's functions were put aside
 * meanwhile (running.c). */
static LI_NOINLINE PyObject *
after_plain_resume(PyFrameObject *f, PyObject *result)
{
    PyThreadState *ts = PyThreadState_Get();
    if (result != NULL && li_frame_suspended(f)) {
        return ended(ts, f, NULL, result);
    }
    PyCodeObject *shadow = f->f_code;
    li_shadow *map = li_shadow_of(shadow);
    PyCodeObject *original = map->original;
    /* (No PY_YIELD to deliver: the epoch said no tool wants one.) */
    result = finish(ts, f, (PyCodeObject *)Py_NewRef(original), shadow, map, result, true);
    return ended(ts, f, original, result);
}

/* A generator suspended on `shadow` (its f_code) resumes: there, if its
 * code still runs that shadow and no tool wants PY_RESUME/PY_THROW. */
static LI_NOINLINE PyObject *
resume_on(PyThreadState *ts, PyFrameObject *f, PyCodeObject *shadow, li_shadow *on,
          int throwflag)
{
    int event = throwflag ? LI_PY_THROW : LI_PY_RESUME;
    li_b310 *ob = on->original != NULL ? on->cs->backend : NULL;
    if (ob == NULL || ob->epoch != li_epoch || ob->run != shadow ||
        li_lasti(f) + 1 > on->n_units ||
        (li_reg.global_tools[event] | on->cs->local_tools[event]) != 0) {
        return eval_other(ts, f, throwflag);
    }
    if (!throwflag && (li_reg.global_tools[LI_PY_YIELD] | on->cs->local_tools[LI_PY_YIELD]) == 0) {
        on->resumes_plain_in = li_epoch;
    }
    PyCodeObject *original = on->original;
    PyObject *result = finish(ts, f, (PyCodeObject *)Py_NewRef(original), shadow, on,
                              evaluate(ts, f, throwflag), true);
    /* (It ended on the original's f_code, or stays on the shadow.) */
    return ended(ts, f, original, result);
}

/* A frame that ran its original, or a shadow it left (run_on()), gave
 * `result`: what follows when it raised, or when the thread's functions
 * were put aside meanwhile (running.c). */
static LI_NOINLINE PyObject *
after_evaluate(PyFrameObject *f, PyObject *result)
{
    return ended(PyThreadState_Get(), f, f->f_code, result);
}

/* A frame of `code` starts on `b->run`, which its frame has room for:
 * run_on() with only the tests such a frame needs (it has no blocks, and
 * has none left when it returns or raises: finish()'s end without its
 * block walk, about 10 instructions a frame, 0.2% of bench's calls). */
static LI_NOINLINE PyObject *
start_on(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, li_b310 *b)
{
    PyCodeObject *shadow = b->run;  /* (the frame holds it from here on) */
    li_shadow *map = b->run_map;
    li_set_lasti(f, map->shadow_start[0] - 1);
    f->f_code = (PyCodeObject *)Py_NewRef(shadow);
    PyObject *result = evaluate(ts, f, 0);
    if (result != NULL && li_frame_suspended(f)) {
        return ended(ts, f, NULL, finish(ts, f, code, shadow, map, result, true));
    }
    int unit = li_lasti(f);
    if (li_lasti(f) + 1 >= 0 && li_lasti(f) + 1 <= map->n_units) {
        li_set_lasti(f, map->orig_start[li_lasti(f) + 1] - 1);
    }
    if (result == NULL) {
        unmap_raised(f, map, unit);
        translate_traceback(ts, f, map);
    }
    f->f_code = code;   /* the frame's reference, which it lent the shadow */
    Py_DECREF(shadow);  /* (and the map with it, maybe) */
    if (result == NULL && PyErr_ExceptionMatches(li_restart)) {
        result = restart(ts, f, code);
    }
    return ended(ts, f, code, result);
}

/* A frame of `code` (state `cs`) that starts on `shadow`, or resumes on
 * the original; apart from li_eval() so that its common paths keep few
 * values across the call that evaluates. */
static LI_NOINLINE PyObject *
run_chosen(PyThreadState *ts, PyFrameObject *f, int throwflag, PyCodeObject *code,
           li_code_state *cs)
{
    li_b310 *b = cs->backend;
    if (li_lasti(f) < 0 && !throwflag) {
        return after_evaluate(f, b->run != NULL ? run_on(ts, f, code, b->run, 0, false)
                                                : start_here(ts, f, code, cs));
    }
    /* A generator resumes, on its original, which it goes on running:
       unless a tool wants PY_RESUME/PY_THROW there. */
    int event = throwflag ? LI_PY_THROW : LI_PY_RESUME;
    if (b->run != NULL || li_tools_at_local(cs, event, li_lasti(f) + 1) != 0) {
        return eval_other(ts, f, throwflag);
    }
    return after_evaluate(f, evaluate(ts, f, throwflag));
}

static LI_NOINLINE PyObject *
eval_traced(PyThreadState *ts, PyFrameObject *f, int throwflag)
{
    if (ts->tracing && li_lasti(f) < 0) {
        return evaluate(ts, f, throwflag);     /* a callback's frames run as they are */
    }
    return eval_other(ts, f, throwflag);
}

/* The frame evaluation function.  Most frames start (or resume) in code
 * whose shadow, or original, when no tool wants its events or they were
 * all disabled, was chosen since events last changed, below a caller no
 * reached frame waits in (running.c), outside callbacks: what eval_frame()
 * does for them, with the fewest tests, keeping only the frame across the
 * call that evaluates it. */
static PyObject *
li_eval(PyThreadState *ts, PyFrameObject *f, int throwflag)
{
    if (ts->tracing | LI_USE_TRACING(ts)) {
        return eval_traced(ts, f, throwflag);
    }
    PyCodeObject *code = f->f_code;
    li_code_state *cs = code_state_of(code);    /* (a shadow has none) */
    PyObject *result;
    if (cs == NULL) {
        li_shadow *on = li_lasti(f) >= 0 ? li_shadow_of(code) : NULL;
        if (on != NULL) {
            /* Generators whose code keeps a probe that never fires
               resume on its shadow again and again. */
            if (on->resumes_plain_in != li_epoch || throwflag || li_lasti(f) + 1 > on->n_units) {
                return resume_on(ts, f, code, on, throwflag);
            }
            result = evaluate(ts, f, 0);
            /* (Its evaluation just left it: li_frame_yielded() is
               li_frame_suspended() there, with fewer tests on 3.9.) */
            if (result == NULL || !li_frame_yielded(f) || li_running_aside) {
                return after_plain_resume(f, result);
            }
            return result;
        }
        /* (Unless a tool wants PY_RESUME/PY_THROW of a generator.) */
        if (global_probed != 0 ||
            ((throwflag || li_lasti(f) >= 0) &&
             li_reg.global_tools[throwflag ? LI_PY_THROW : LI_PY_RESUME] != 0)) {
            return eval_other(ts, f, throwflag);
        }
    }
    else {
        li_b310 *b = cs->backend;
        if (b == NULL || b->epoch != li_epoch) {
            return eval_other(ts, f, throwflag);
        }
        if (b->run != NULL && li_lasti(f) < 0 && !throwflag && b->run_fits) {
            return start_on(ts, f, code, b);
        }
        if (b->run != NULL || li_lasti(f) >= 0 || throwflag || b->starts) {
            return run_chosen(ts, f, throwflag, code, cs);
        }
    }
    result = evaluate(ts, f, throwflag);
    if (result == NULL || li_running_aside) {
        return after_evaluate(f, result);
    }
    return result;
}

void
li_hook_sync(void)
{
    global_probed = li_global_events() & LI_PROBED_EVENTS;
    bool wanted = li_global_events() != 0 || li_local_codes() != NULL;
    PyInterpreterState *interp = PyInterpreterState_Get();
    if (wanted && !installed) {
        next_eval = _PyInterpreterState_GetEvalFrameFunc(interp);
        _PyInterpreterState_SetEvalFrameFunc(interp, li_eval);
        installed = true;
    }
    else if (!wanted && installed) {
        if (_PyInterpreterState_GetEvalFrameFunc(interp) == li_eval) {
            _PyInterpreterState_SetEvalFrameFunc(interp, next_eval);
        }
        installed = false;
    }
}

/* Lets go of the shadow of `cs` if no tool wants events from its code any
 * more, as 3.11 and native instrumentation give their memory back when
 * events go (frames running it keep it until they leave it).  Which events
 * it had a shadow for stays known: its code's next start decides on the
 * marks to forget as it would have. */
static void
release_if_unwanted(li_code_state *cs)
{
    li_b310 *b = cs->backend;
    if (b == NULL || b->shadow == NULL ||
        li_exc_needed(li_shadow_of(b->shadow)->original,
                      li_wanted_events(cs) & LI_PROBED_EVENTS) != 0) {
        return;
    }
    b->run = NULL;
    /* (Its map and its constants die with it, and unlink it.) */
    Py_CLEAR(b->shadow);
}

static void
release_unwanted_shadows(void)
{
    li_shadow *next;
    for (li_shadow *map = li_live_shadows(); map != NULL; map = next) {
        next = map->next;
        /* (Only the code state's own: older shadows that frames still run
           are not its to let go, and may be the next one.) */
        li_b310 *b = map->cs != NULL ? map->cs->backend : NULL;
        if (b != NULL && b->shadow == map->code) {
            release_if_unwanted(map->cs);
        }
    }
}

static int
update(li_code_state *cs, bool grew)
{
    li_epoch++;
    li_hook_sync();
    if (cs != NULL) {
        release_if_unwanted(cs);
    }
    else {
        release_unwanted_shadows();
    }
    /* What started while no hook was installed forgets before anything
       refreshes as of now (the code of the frames running does, as
       li_running_sync() looks for what they need), and before the probes
       that marks no longer hold back are re-armed; what runs refreshes
       before the hook goes. */
    bool forgot = installed && li_watch_end();
    int err = li_running_sync();
    if (forgot || grew) {
        li_rearm_all();
    }
    return err == 0 && !installed ? li_watch_begin() : err;
}

int
li_backend_update(bool grew)
{
    return update(NULL, grew);
}

int
li_backend_update_code(li_code_state *cs, bool grew)
{
    return update(cs, grew);
}

int
li_backend_rearm(void)
{
    return li_backend_update(true);
}

int
li_backend_restart(void)
{
    /* Shadows built without disabled probes are chosen again, and frames
       running them reached. */
    return li_backend_update(true);
}

PyObject *
li_backend_call(PyThreadState *ts, PyObject *callback, PyObject **argv, size_t nargs)
{
    PyFrameObject *f;
    int made = li_callback_frame(ts, callback, argv, nargs, &f);
    if (made == 0) {
        return PyObject_Vectorcall(callback, argv, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    if (made < 0) {
        return NULL;
    }
    /* What li_eval() does with a frame that starts in a callback (the
       thread is tracing): it runs as it is. */
    PyObject *result = installed ? evaluate(ts, f, 0) : PyEval_EvalFrameEx(f, 0);
    li_callback_frame_done(ts, f);
    return result;
}

void
li_backend_forget_callback(int tool, int event)
{
    (void)tool;
    (void)event;
    li_callback_frames_forget();
}

PyObject *
li_backend_twin(int tool, int event, PyObject *callback, PyObject **self)
{
    (void)tool;
    (void)event;
    (void)callback;
    (void)self;
    return NULL;
}

void
li_backend_code_state_free(li_code_state *cs)
{
    li_b310 *b = cs->backend;
    if (b == NULL) {
        return;
    }
    li_unwatch(cs);
    if (b->shadow != NULL) {
        li_shadow *map = li_shadow_of(b->shadow);
        map->original = NULL;
        map->cs = NULL;
        map->resumes_plain_in = 0;
        Py_CLEAR(b->shadow);
    }
    PyMem_Free(b);
    cs->backend = NULL;
}

PyCodeObject *
li_backend_original(PyCodeObject *code)
{
    li_shadow *map = li_shadow_of(code);
    return map != NULL && map->original != NULL ? map->original : code;
}

PyObject *
li_backend_debug_shadow(PyCodeObject *code, li_event_set events)
{
    li_code_state *cs = li_code_state_ensure(code);
    if (cs == NULL) {
        return NULL;
    }
    PyCodeObject *shadow = li_build_shadow(code, cs, events & LI_PROBED_EVENTS, false);
    if (shadow == NULL) {
        return NULL;
    }
    li_shadow *map = li_shadow_of(shadow);
    PyObject *orig_of = PyList_New(map->n_units);
    PyObject *shadow_of = PyList_New(map->n_orig_units);
    if (orig_of == NULL || shadow_of == NULL) {
        goto error;
    }
    for (int u = 0; u < map->n_units; u++) {
        PyObject *unit = PyLong_FromLong(map->orig_op[u]);
        if (unit == NULL) {
            goto error;
        }
        PyList_SET_ITEM(orig_of, u, unit);
    }
    for (int u = 0; u < map->n_orig_units; u++) {
        PyObject *unit = PyLong_FromLong(map->shadow_start[u]);
        if (unit == NULL) {
            goto error;
        }
        PyList_SET_ITEM(shadow_of, u, unit);
    }
    return Py_BuildValue("(NNN)", shadow, orig_of, shadow_of);
error:
    Py_XDECREF(orig_of);
    Py_XDECREF(shadow_of);
    Py_DECREF(shadow);
    return NULL;
}

/* The shadows that frames of threads other than this one run: what those
 * threads hold and let go of as their frames move on, whatever this thread
 * does.  -1 with an exception. */
static Py_ssize_t
count_elsewhere(void)
{
    PyThreadState *self = PyThreadState_Get();
    PyObject *seen = PySet_New(NULL);   /* owned: the shadows counted */
    if (seen == NULL) {
        return -1;
    }
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(self->interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        for (PyFrameObject *f = ts != self ? ts->frame : NULL; f != NULL; f = f->f_back) {
            if (li_shadow_of(f->f_code) != NULL && PySet_Add(seen, (PyObject *)f->f_code) < 0) {
                Py_DECREF(seen);
                return -1;
            }
        }
    }
    Py_ssize_t n = PySet_GET_SIZE(seen);
    Py_DECREF(seen);
    return n;
}

int
li_backend_stats(PyObject *stats)
{
    Py_ssize_t shadows = 0;
    for (li_shadow *map = li_live_shadows(); map != NULL; map = map->next) {
        shadows++;
    }
    Py_ssize_t elsewhere = count_elsewhere();
    if (elsewhere < 0 ||
        li_stats_set(stats, "shadows", shadows) < 0 ||
        li_stats_set(stats, "shadows_elsewhere", elsewhere) < 0 ||
        li_stats_set(stats, "shadows_built", li_shadows_built()) < 0 ||
        li_stats_set(stats, "reached_threads", li_running_threads) < 0 ||
        li_stats_set(stats, "thread_trace_hook",
                     PyThreadState_Get()->c_tracefunc != NULL) < 0)
    {
        return -1;
    }
    return 0;
}

int
li_backend_init(PyObject *module)
{
    (void)module;
    if (PyType_Ready(&li_site_type) < 0 || PyType_Ready(&li_shadow_type) < 0) {
        return -1;
    }
    li_restart = PyErr_NewException("lowimpact._engine.Restart", NULL, NULL);
    if (li_restart == NULL) {
        return -1;
    }
    if (li_call_init() < 0 || li_exc_init() < 0) {
        return -1;
    }
    if (li_code_state_index() >= 0) {
        extra_index = li_code_state_index();
    }
    return li_transparency_init();
}
