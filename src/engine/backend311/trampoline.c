/* Entry trampolines: moving frames onto a shadow when they start.
 *
 * Functions normally run shadows because update.c points them there.  A
 * frame that is executing while events are enabled cannot be moved (its
 * position lives in C locals of the evaluation loop), and the functions it
 * creates afterwards get the original code of their nested code objects.  For
 * those, the original itself gets a trampoline over its RESUME 0:
 *
 *     PUSH_NULL; LOAD_BUILD_CLASS; CALL 0
 *
 * LOAD_BUILD_CLASS fetches builtins.__build_class__, which lowimpact replaces
 * by a Python function: called with no arguments it calls
 * _trampoline_landed(), which finds the frame that called it (suspended in a
 * Python-to-Python call, so it can be moved) and moves it onto the landing
 * pad of a shadow, which drops the call's result and jumps to the shadow's
 * RESUME 0; the function is pointed at the shadow too.  With arguments it is
 * the builtin __build_class__.  Three units fit in every code object, the
 * smallest being RESUME, a load and RETURN_VALUE.  The plain CALL reads no
 * inline cache, so the units after it, which the interpreter counts as its
 * cache, are never read: the caller never resumes in the original.
 *
 * The replaced units are saved and put back when the code no longer needs
 * events.  co_code keeps showing the original: CPython caches it before the
 * first change.
 */

#include "b311.h"
#include "internal/pycore_interp.h"

static li_code_backend *armed;        /* list of codes with a trampoline armed */
static PyObject *landing_function;    /* the __build_class__ replacement */

static int
install_landing_function(void)
{
    if (landing_function == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lowimpact: no trampoline target registered");
        return -1;
    }
    PyObject *builtins = _PyInterpreterState_GET()->builtins;
    PyObject *current = PyDict_GetItemString(builtins, "__build_class__");
    if (current == landing_function) {
        return 0;
    }
    if (current == NULL || !PyCFunction_Check(current)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "lowimpact: builtins.__build_class__ is not the builtin");
        return -1;
    }
    return PyDict_SetItemString(builtins, "__build_class__", landing_function);
}

/* The deoptimised opcode and full oparg of the instruction at *unit, which
 * moves past it (prefixes and inline caches included). */
static int
read_instruction(const _Py_CODEUNIT *code, int n_units, int *unit, int *oparg)
{
    int arg = 0, opcode;
    while ((opcode = _PyOpcode_Deopt[_Py_OPCODE(code[*unit])]) == EXTENDED_ARG &&
           *unit + 1 < n_units)
    {
        arg = (arg << 8) | _Py_OPARG(code[*unit]);
        (*unit)++;
    }
    *oparg = (arg << 8) | _Py_OPARG(code[*unit]);
    *unit += 1 + _PyOpcode_Caches[opcode];
    return opcode;
}

/* Where a trampoline can go in `code`: the unit of its RESUME 0, or -1.
 * It must not change what the original does for a frame that does not take
 * it:
 * - no jump may land on the units after RESUME that it replaces (RESUME
 *   itself is never jumped to);
 * - an error while it runs (RecursionError as its call starts a frame)
 *   unwinds from a unit up to six past its start, where a handler must not
 *   expect values on the stack: the trampoline has none;
 * - it pushes two values: a generator whose code needs one slot may have
 *   been created before lowimpact's import, without spare slots. */
static int
trampoline_site(PyCodeObject *code)
{
    const _Py_CODEUNIT *units = _PyCode_CODE(code);
    int n = (int)Py_SIZE(code), at = -1;
    if ((code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) &&
        code->co_stacksize < 2)
    {
        return -1;
    }
    for (int unit = 0; unit < n;) {
        int here = unit, oparg;
        int opcode = read_instruction(units, n, &unit, &oparg);
        if (opcode == RESUME && oparg == 0 && at < 0) {
            at = here;
        }
        if (li_is_jump(opcode)) {
            int target = li_is_jump_backward(opcode) ? unit - oparg : unit + oparg;
            if (at >= 0 && target > at && target < at + LI_TRAMPOLINE_UNITS) {
                return -1;
            }
            if (at < 0 && target > here) {
                /* A jump before RESUME (none in 3.11): keep away. */
                return -1;
            }
        }
    }
    if (at < 0 || at + LI_TRAMPOLINE_UNITS > n) {
        return -1;
    }
    li_handler *handlers = NULL;
    int n_handlers = li_decode_handlers(code, &handlers);
    if (n_handlers < 0) {
        PyErr_Clear();
        return -1;
    }
    for (int h = 0; h < n_handlers; h++) {
        if (handlers[h].start < at + LI_TRAMPOLINE_UNITS + 4 && handlers[h].end > at &&
            handlers[h].depth > 0)
        {
            at = -1;
            break;
        }
    }
    PyMem_Free(handlers);
    return at;
}

/* Whether a frame of some thread is executing `code` right after its
 * RESUME, where the trampoline would replace what it runs next.  (Suspended
 * generators stop at a YIELD_VALUE, which comes later.) */
static bool
frame_in_site(PyCodeObject *code, int at)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            if (f->f_code == code) {
                int unit = (int)(f->prev_instr - _PyCode_CODE(code));
                if (unit == at || unit == at + 1) {
                    return true;
                }
            }
        }
    }
    return false;
}

int
li_trampoline_arm(li_code_state *cs)
{
    PyCodeObject *code = cs->code;
    if (cs->excluded) {
        return 0;
    }
    li_code_backend *cb = li_code_backend_ensure(cs);
    if (cb == NULL) {
        return -1;
    }
    if (cb->trampoline_armed) {
        return 1;
    }
    int at = cb->trampoline_at >= 0 ? cb->trampoline_at : trampoline_site(code);
    if (at < 0 || frame_in_site(code, at)) {
        return 0;
    }
    /* co_code must go on showing the original: make CPython cache it now. */
    PyObject *co_code = PyCode_GetCode(code);
    if (co_code == NULL || install_landing_function() < 0) {
        Py_XDECREF(co_code);
        return -1;
    }
    Py_DECREF(co_code);
    _Py_CODEUNIT *units = _PyCode_CODE(code) + at;
    memcpy(cb->saved, units, sizeof(cb->saved));
    static const uint8_t trampoline[LI_TRAMPOLINE_UNITS][2] = {
        {PUSH_NULL, 0}, {LOAD_BUILD_CLASS, 0}, {CALL, 0},
    };
    memcpy(units, trampoline, sizeof(trampoline));
    /* Quickening would make the trampoline's CALL adaptive, and its inline
       cache is the original's next instructions: code not yet quickened
       stays so while armed (only frames that ran before arming run it). */
    cb->saved_warmup = code->co_warmup;
    code->co_warmup = 0;
    /* Frames that start from now on are allocated with room for any shadow
       they may land on (generators have theirs, see frames.c). */
    if (!(code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR))) {
        cb->true_stacksize = code->co_stacksize;
        code->co_stacksize = li_shadow_stack_bound(code->co_stacksize);
    }
    cb->trampoline_at = at;
    cb->trampoline_armed = true;
    cb->next_armed = armed;
    cb->prev_armed = NULL;
    if (armed != NULL) {
        armed->prev_armed = cb;
    }
    armed = cb;
    return 1;
}

static void
unlink_armed(li_code_backend *cb)
{
    if (cb->prev_armed != NULL) {
        cb->prev_armed->next_armed = cb->next_armed;
    }
    else if (armed == cb) {
        armed = cb->next_armed;
    }
    if (cb->next_armed != NULL) {
        cb->next_armed->prev_armed = cb->prev_armed;
    }
    cb->next_armed = cb->prev_armed = NULL;
}

static void
disarm(li_code_backend *cb)
{
    memcpy(_PyCode_CODE(cb->cs->code) + cb->trampoline_at, cb->saved, sizeof(cb->saved));
    cb->cs->code->co_warmup = cb->saved_warmup;
    if (cb->true_stacksize >= 0) {
        cb->cs->code->co_stacksize = cb->true_stacksize;
        cb->true_stacksize = -1;
    }
    cb->trampoline_armed = false;
    unlink_armed(cb);
}

bool
li_trampoline_swap(PyCodeObject *code)
{
    li_code_state *cs = li_code_state_get(code);
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    if (cb == NULL || !cb->trampoline_armed) {
        return false;
    }
    _Py_CODEUNIT current[LI_TRAMPOLINE_UNITS];
    _Py_CODEUNIT *units = _PyCode_CODE(code) + cb->trampoline_at;
    memcpy(current, units, sizeof(current));
    memcpy(units, cb->saved, sizeof(current));
    memcpy(cb->saved, current, sizeof(current));
    return true;
}

void
li_trampoline_forget(li_code_backend *cb)
{
    if (cb->trampoline_armed) {
        unlink_armed(cb);   /* the code is being freed: its bytes do not matter */
        cb->trampoline_armed = false;
    }
}

int
li_trampolines_disarm_unneeded(void)
{
    for (li_code_backend *cb = armed, *next; cb != NULL; cb = next) {
        next = cb->next_armed;
        if (!li_needs_instrumenting(cb->cs->code)) {
            disarm(cb);
        }
    }
    return 0;
}

/* Called by the __build_class__ replacement with no arguments.  Returns True
 * when its caller was a frame coming out of a trampoline, now moved onto a
 * shadow; False otherwise (the builtin then reports the missing arguments). */
static PyObject *
trampoline_landed(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyThreadState *tstate = _PyThreadState_GET();
    _PyInterpreterFrame *here = tstate->cframe->current_frame;
    _PyInterpreterFrame *frame = here != NULL ? here->previous : NULL;
    if (frame == NULL) {
        Py_RETURN_FALSE;
    }
    PyCodeObject *code = frame->f_code;
    li_code_state *cs = li_code_state_get(code);
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    /* The interpreter left the caller's position after CALL's inline cache. */
    int call = cb != NULL ? cb->trampoline_at + LI_TRAMPOLINE_UNITS - 1 : -1;
    if (cb == NULL || cb->trampoline_at < 0 ||
        frame->prev_instr != _PyCode_CODE(code) + call + _PyOpcode_Caches[CALL])
    {
        Py_RETURN_FALSE;
    }
    PyObject *landing = li_landing_code(code, li_frame_capacity(tstate, frame, here),
                                        frame->f_builtins);
    if (landing == NULL) {
        return NULL;
    }
    li_probes *lp = li_shadow_probes((PyCodeObject *)landing);
    assert(lp != NULL && lp->landing_unit >= 0);
    li_frame_set_code(frame, lp->shadow, lp->landing_unit - 1);
    PyFunctionObject *func = frame->f_func;
    if (func != NULL && func->func_code == (PyObject *)code &&
        lp == li_current_shadow(cs))
    {
        Py_SETREF(func->func_code, Py_NewRef(landing));
        func->func_version = 0;
    }
    Py_DECREF(landing);
    Py_RETURN_TRUE;
}

static PyObject *
set_trampoline_target(PyObject *Py_UNUSED(module), PyObject *function)
{
    if (!PyFunction_Check(function)) {
        PyErr_SetString(PyExc_TypeError, "the trampoline target must be a function");
        return NULL;
    }
    Py_XSETREF(landing_function, Py_NewRef(function));
    Py_RETURN_NONE;
}

static PyMethodDef trampoline_methods[] = {
    {"_trampoline_landed", trampoline_landed, METH_NOARGS,
     "_trampoline_landed($module, /)\n--\n\n"
     "Move the frame coming out of an entry trampoline onto a shadow."},
    {"_set_trampoline_target", set_trampoline_target, METH_O,
     "_set_trampoline_target($module, function, /)\n--\n\n"
     "Register the function that replaces builtins.__build_class__."},
    {NULL, NULL, 0, NULL},
};

int
li_trampoline_init(PyObject *module)
{
    return PyModule_AddFunctions(module, trampoline_methods);
}
