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

/* An error while the trampoline runs (RecursionError when its call starts
 * a frame) unwinds from a unit up to six past its start, where an exception
 * handler must not expect values on the stack: the trampoline has none. */
static bool
region_is_safe(const li_analysis *an, int at)
{
    if (at + LI_TRAMPOLINE_UNITS > an->n_units) {
        return false;
    }
    for (int h = 0; h < an->n_handlers; h++) {
        const li_handler *hd = &an->handlers[h];
        if (hd->start < at + LI_TRAMPOLINE_UNITS + 4 && hd->end > at && hd->depth > 0) {
            return false;
        }
    }
    return true;
}

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

int
li_trampoline_arm(li_code_state *cs, PyObject *frames)
{
    PyCodeObject *code = cs->code;
    li_code_backend *cb = li_code_backend_ensure(cs);
    if (cb == NULL) {
        return -1;
    }
    if (cb->trampoline_armed || cs->excluded) {
        return 0;
    }
    li_analysis an;
    if (li_analyse(code, &an) < 0) {
        return -1;
    }
    int at = -1;
    for (int i = 0; i < an.n_instrs; i++) {
        if (an.instrs[i].opcode == RESUME && an.instrs[i].oparg == 0) {
            at = an.instrs[i].start;
            break;
        }
    }
    bool safe = at >= 0 && region_is_safe(&an, at);
    /* A frame already past RESUME could jump back into the trampoline; one
       that has not got there yet will land, and needs room for the two
       values the trampoline pushes.  Frames that start later have it: a
       thread's top frame always has one slot more than its code needs
       (frames.c), and so have generators created since lowimpact's import. */
    safe = safe && code->co_stacksize + 1 >= 2;
    for (Py_ssize_t i = 0; safe && i < PyList_GET_SIZE(frames); i++) {
        _PyInterpreterFrame *f =
            (_PyInterpreterFrame *)PyLong_AsVoidPtr(PyList_GET_ITEM(frames, i));
        if (f->f_code == code) {
            safe = f->prev_instr - _PyCode_CODE(code) < at &&
                   (f->owner != FRAME_OWNED_BY_GENERATOR || li_frame_capacity(NULL, f) >= 2);
        }
    }
    li_analysis_clear(&an);
    if (!safe) {
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
    cb->trampoline_at = at;
    cb->trampoline_armed = true;
    cb->next_armed = armed;
    cb->prev_armed = NULL;
    if (armed != NULL) {
        armed->prev_armed = cb;
    }
    armed = cb;
    return 0;
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
        PyObject *desired = li_desired_code(cb->cs->code);
        if (desired == NULL) {
            return -1;
        }
        if (desired == (PyObject *)cb->cs->code) {
            disarm(cb);
        }
        Py_DECREF(desired);
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
    PyObject *landing = li_landing_code(code, li_frame_capacity(tstate, frame));
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
