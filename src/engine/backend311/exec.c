/* Code that starts running without a function: module bodies (imported, or
 * the main script), exec() and eval() of code or source, `python -c`.
 *
 * Functions reach their code through func_code, which update.c points at
 * the right code; these reach it through PyEval_EvalCode(), which runs the
 * code object it is given.  CPython raises the audit event "exec" with that
 * code object just before it runs it, whoever asks: builtins.exec and eval
 * (however they were fetched: an alias saved before monitoring started,
 * functools.partial(exec)), the interpreter running the main script or a
 * -c command, runpy, importlib.  A C audit hook costs a string comparison
 * per audited operation and replaces nothing a program can see.
 *
 * The code gets an entry trampoline (trampoline.c), so that its frame starts
 * on a shadow, as functions' frames do.  Code too short for one waits for
 * its frame instead: a PEP 523 frame evaluation function is installed until
 * that frame starts, moves it onto a shadow, and uninstalls itself.  Until
 * then (Python audit hooks run in between) no call is inlined, so a frame on
 * its way to a landing (landing.c) has it paused for the call that lands.
 */

#include "b311.h"
#include "internal/pycore_interp.h"

/* The code object whose frame the evaluation function waits for: strong,
 * NULL when none. */
static PyCodeObject *awaited;
/* Frames of other code evaluated meanwhile: past a bound, the code is taken
 * for one that never ran (exec() failed after its audit event). */
static int others_evaluated;
#define MAX_OTHERS 1000

static PyObject *await_frame(PyThreadState *tstate, _PyInterpreterFrame *frame, int throwflag);

static void
stop_waiting(void)
{
    PyInterpreterState *interp = _PyInterpreterState_GET();
    if (interp->eval_frame == await_frame) {
        _PyInterpreterState_SetEvalFrameFunc(interp, NULL);
    }
    li_code_state *cs = awaited != NULL ? li_code_state_get(awaited) : NULL;
    if (cs != NULL && cs->backend != NULL) {
        li_release_shadow_stack((li_code_backend *)cs->backend);
    }
    Py_CLEAR(awaited);
    others_evaluated = 0;
}

/* Moves `frame`, which has not started, onto the code it should run.
 * 0 or -1. */
static int
start_on_desired(PyThreadState *tstate, _PyInterpreterFrame *frame)
{
    PyObject *desired = li_desired_code(li_backend_original(frame->f_code),
                                        frame->f_builtins);
    if (desired == NULL) {
        return -1;
    }
    PyCodeObject *to = (PyCodeObject *)desired;
    int err = 0;
    if (to != frame->f_code && to->co_stacksize <= li_frame_capacity(tstate, frame, NULL)) {
        err = li_frame_set_code(frame, to, -1);
    }
    Py_DECREF(desired);
    return err;
}

static PyObject *
await_frame(PyThreadState *tstate, _PyInterpreterFrame *frame, int throwflag)
{
    if (frame->f_code == awaited) {
        /* Allocated with room for the shadow (code_starting). */
        int err = start_on_desired(tstate, frame);
        stop_waiting();
        if (err < 0) {
            return NULL;
        }
    }
    else if (++others_evaluated > MAX_OTHERS) {
        stop_waiting();
    }
    return _PyEval_EvalFrameDefault(tstate, frame, throwflag);
}

/* `code` is about to run as the body of a frame of its own.  0 or -1. */
static int
code_starting(PyCodeObject *code)
{
    if (li_shadow_probes(code) != NULL || !li_needs_instrumenting(code)) {
        return 0;
    }
    li_code_state *cs = li_code_state_ensure(code);
    if (cs == NULL) {
        return -1;
    }
    int armed = li_trampoline_arm(cs);
    if (armed != 0) {
        return armed < 0 ? -1 : 0;
    }
    PyInterpreterState *interp = _PyInterpreterState_GET();
    bool generator = code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR);
    if (generator || li_foreign_eval_frame()) {
        return 0;
    }
    li_code_backend *cb = li_code_backend_ensure(cs);
    if (cb == NULL) {
        return -1;
    }
    stop_waiting();
    li_reserve_shadow_stack(cb);
    awaited = (PyCodeObject *)Py_NewRef(code);
    _PyInterpreterState_SetEvalFrameFunc(interp, await_frame);
    return 0;
}

bool
li_foreign_eval_frame(void)
{
    _PyFrameEvalFunction eval = _PyInterpreterState_GET()->eval_frame;
    return eval != NULL && eval != await_frame;
}

void
li_exec_pause(void)
{
    PyInterpreterState *interp = _PyInterpreterState_GET();
    if (interp->eval_frame == await_frame) {
        _PyInterpreterState_SetEvalFrameFunc(interp, NULL);
    }
}

void
li_exec_unpause(void)
{
    PyInterpreterState *interp = _PyInterpreterState_GET();
    if (awaited != NULL && interp->eval_frame == NULL) {
        _PyInterpreterState_SetEvalFrameFunc(interp, await_frame);
    }
}

static int
audit_hook(const char *event, PyObject *args, void *Py_UNUSED(data))
{
    /* Audit hooks are the runtime's, called in every interpreter; the
       engine runs in the main one only (module.c), and looks for frames
       among the current interpreter's threads: from a subinterpreter it
       would find none, and put back a trampoline a frame stands in. */
    if (_PyInterpreterState_GET() != PyInterpreterState_Main()) {
        return 0;
    }
    if (strcmp(event, "sys.settrace") == 0) {
        /* A trace function would see the units of a trampoline kept for a
           frame that has left them since (trampoline.c, disarm()), or
           is about to: a trace function that raised is removed here. */
        li_trampolines_settle_soon();
        return li_backend_trace_coming(_PyThreadState_GET());
    }
    if (strcmp(event, "exec") != 0 || !li_anything_wanted() ||
        !PyTuple_Check(args) || PyTuple_GET_SIZE(args) < 1 ||
        !PyCode_Check(PyTuple_GET_ITEM(args, 0)))
    {
        return 0;
    }
    return code_starting((PyCodeObject *)PyTuple_GET_ITEM(args, 0));
}

int
li_exec_init(void)
{
    return PySys_AddAuditHook(audit_hook, NULL);
}
