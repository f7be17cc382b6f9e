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
 * The same function serves an update that leaves functions and generators
 * for later (update.c): it brings each frame into line as it starts or
 * resumes, until that update is done.
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

static PyObject *engine_frame(PyThreadState *tstate, _PyInterpreterFrame *frame,
                              int throwflag);
static void forget_depths(void);

/* Whether engine_frame() has work: a frame to wait for, or an update. */
static bool
hook_wanted(void)
{
    return awaited != NULL || li_update_pending();
}

void
li_frame_hook_refresh(void)
{
    PyInterpreterState *interp = _PyInterpreterState_GET();
    if (hook_wanted()) {
        if (interp->eval_frame == NULL) {
            _PyInterpreterState_SetEvalFrameFunc(interp, engine_frame);
        }
    }
    else if (interp->eval_frame == engine_frame) {
        _PyInterpreterState_SetEvalFrameFunc(interp, NULL);
        forget_depths();
    }
}

static void
stop_waiting(void)
{
    li_code_state *cs = awaited != NULL ? li_code_state_get(awaited) : NULL;
    if (cs != NULL && cs->backend != NULL) {
        li_release_shadow_stack((li_code_backend *)cs->backend);
    }
    Py_CLEAR(awaited);
    others_evaluated = 0;
    li_frame_hook_refresh();
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

/* ---- the calls CPython inlines ---------------------------------------------
 *
 * While any frame evaluation function is installed, CPython 3.11 inlines no
 * Python call: CALL (of a plain function) and BINARY_SUBSCR_GETITEM start
 * the callee's frame through a C call instead, and the caller stands at the
 * instruction's own unit rather than at the last unit of its inline cache,
 * where an inlined call leaves it.  f_lasti, tb_lasti and a handler's lasti
 * would show the difference.  So the caller is put where the inlined call
 * would have left it: its evaluation loop goes on from its own copy of the
 * position, and writes prev_instr again at its next instruction.  (Left
 * over: a BINARY_SUBSCR site does not stay specialised while the function is
 * installed, so one that would have become BINARY_SUBSCR_GETITEM and
 * inlined __getitem__ shows its own unit.) */

/* The stack depth before each instruction of one original code object (by
 * its opcode unit; -1 elsewhere), kept while its frames keep calling. */
static struct {
    PyCodeObject *code;   /* strong; NULL when none */
    int n_units;
    int *depth;
} depths;

static void
forget_depths(void)
{
    Py_CLEAR(depths.code);
    PyMem_Free(depths.depth);
    depths.depth = NULL;
    depths.n_units = 0;
}

/* The stack depth before the instruction whose opcode is unit `unit` of
 * `original`, or -1 if unknown.  Sets no exception. */
static int
depth_at(PyCodeObject *original, int unit)
{
    if (depths.code != original) {
        forget_depths();
        /* Analysed as it was: armed trampolines swapped out meanwhile.
           (Nothing in the analysis allocates what the collector tracks.) */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        bool swapped = li_trampoline_swap(original);
        li_analysis an;
        int err = li_analyse(original, &an);
        if (swapped) {
            li_trampoline_swap(original);
        }
        if (err < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(type, value, traceback);
        if (err < 0) {
            return -1;
        }
        depths.depth = PyMem_Malloc(sizeof(int) * (size_t)an.n_units);
        if (depths.depth == NULL) {
            li_analysis_clear(&an);
            return -1;
        }
        for (int u = 0; u < an.n_units; u++) {
            const li_instr *in = &an.instrs[an.instr_at[u]];
            depths.depth[u] = in->op == u ? in->depth : -1;
        }
        depths.n_units = an.n_units;
        depths.code = (PyCodeObject *)Py_NewRef(original);
        li_analysis_clear(&an);
    }
    return unit < depths.n_units ? depths.depth[unit] : -1;
}

/* The value stack of `caller` below the instruction at `unit` of the code
 * it runs (a shadow's unit stands for its original's), and its depth, or
 * NULL if unknown. */
static PyObject **
stack_at(_PyInterpreterFrame *caller, int unit, int *depth)
{
    PyCodeObject *code = caller->f_code;
    PyCodeObject *original = li_backend_original(code);
    int orig = unit;
    li_probes *lp = li_shadow_probes(code);
    if (lp != NULL) {
        orig = lp->orig_of[unit];
        if (orig < 0 || lp->shadow_of[orig] != unit) {
            return NULL;
        }
    }
    *depth = depth_at(original, orig);
    return *depth >= 0 ? caller->localsplus + code->co_nlocalsplus : NULL;
}

/* Whether the CALL at `unit` of `caller` calls `func` itself. */
static bool
calls_directly(_PyInterpreterFrame *caller, int unit, PyFunctionObject *func)
{
    int depth = -1;
    int nargs = _Py_OPARG(_PyCode_CODE(caller->f_code)[unit]);
    if (unit > 0 && _Py_OPCODE(_PyCode_CODE(caller->f_code)[unit - 1]) == EXTENDED_ARG) {
        return false;   /* (more arguments than a call site inlines in practice) */
    }
    PyObject **stack = stack_at(caller, unit, &depth);
    if (stack == NULL) {
        return false;
    }
    /* The compiler counts the arguments off at PRECALL: they are still on
       the stack as CALL runs. */
    depth += nargs;
    if (depth < nargs + 2 || depth > caller->f_code->co_stacksize) {
        return false;
    }
    PyObject *callable, *arg0;
    li_call_arguments_of_call(stack, depth, nargs, &callable, &arg0);
    return callable == (PyObject *)func;
}

/* Whether the BINARY_SUBSCR_GETITEM at `unit` of `caller` would have
 * inlined the call of `func`, which starts with `self`. */
static bool
subscript_inlines(_PyInterpreterFrame *caller, int unit, PyFunctionObject *func,
                  PyObject *self)
{
    _PyBinarySubscrCache *cache = (_PyBinarySubscrCache *)(_PyCode_CODE(caller->f_code) +
                                                          unit + 1);
    PyTypeObject *tp = Py_TYPE(self);
    return tp->tp_version_tag == read_u32(cache->type_version) &&
           (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) &&
           ((PyHeapTypeObject *)tp)->_spec_cache.getitem == (PyObject *)func &&
           func->func_version == cache->func_version;
}

/* `frame`, about to start, was called by the current frame: the caller is
 * made to stand where an inlined call would leave it. */
static void
show_inlined_call(PyThreadState *tstate, _PyInterpreterFrame *frame)
{
    _PyInterpreterFrame *caller = tstate->cframe->current_frame;
    if (frame->owner != FRAME_OWNED_BY_THREAD || _PyInterpreterFrame_LASTI(frame) >= 0 ||
        caller == NULL || _PyFrame_IsIncomplete(caller) ||
        !Py_IS_TYPE(frame->f_func, &PyFunction_Type))
    {
        return;
    }
    PyCodeObject *code = caller->f_code;
    int unit = _PyInterpreterFrame_LASTI(caller);
    if (unit < 0 || unit >= Py_SIZE(code)) {
        return;
    }
    int opcode = _Py_OPCODE(_PyCode_CODE(code)[unit]);
    int caches = _PyOpcode_Caches[_PyOpcode_Deopt[opcode]];
    if (unit + caches >= Py_SIZE(code)) {
        return;
    }
    bool inlined = false;
    if (opcode == BINARY_SUBSCR_GETITEM) {
        inlined = frame->f_code->co_argcount == 2 &&
                  subscript_inlines(caller, unit, frame->f_func, frame->localsplus[0]);
    }
    else if (_PyOpcode_Deopt[opcode] == CALL) {
        inlined = calls_directly(caller, unit, frame->f_func);
    }
    if (inlined) {
        caller->prev_instr = _PyCode_CODE(code) + unit + caches;
    }
}

static PyObject *
engine_frame(PyThreadState *tstate, _PyInterpreterFrame *frame, int throwflag)
{
    show_inlined_call(tstate, frame);
    if (awaited != NULL && frame->f_code == awaited) {
        /* Allocated with room for the shadow (code_starting). */
        int err = start_on_desired(tstate, frame);
        stop_waiting();
        if (err < 0) {
            return NULL;
        }
    }
    else if (awaited != NULL && ++others_evaluated > MAX_OTHERS) {
        stop_waiting();
    }
    if (li_update_pending()) {
        /* A generator may be resumed to raise what is thrown into it: the
           update must not see (or clear) that exception. */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        if (li_update_frame(tstate, frame) < 0) {
            /* (No memory.)  The frame raises it where it starts or resumes,
               unless it already has an exception to raise. */
            if (throwflag) {
                PyErr_WriteUnraisable(NULL);
            }
            else {
                throwflag = 1;
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(traceback);
                return _PyEval_EvalFrameDefault(tstate, frame, throwflag);
            }
        }
        PyErr_Restore(type, value, traceback);
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
    li_frame_hook_refresh();
    return 0;
}

bool
li_foreign_eval_frame(void)
{
    _PyFrameEvalFunction eval = _PyInterpreterState_GET()->eval_frame;
    return eval != NULL && eval != engine_frame;
}

void
li_exec_pause(void)
{
    PyInterpreterState *interp = _PyInterpreterState_GET();
    if (interp->eval_frame == engine_frame) {
        _PyInterpreterState_SetEvalFrameFunc(interp, NULL);
    }
}

void
li_exec_unpause(void)
{
    li_frame_hook_refresh();
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
