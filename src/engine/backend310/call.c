/* CALL, C_RETURN and C_RAISE on 3.10 (b310.h).
 *
 * The CALL probe sits before the call instruction and reads what the call
 * will see from the frame's value stack, at the depth the stack effects of
 * the original bytecode give there (shadow.c): 3.10 keeps the stack pointer
 * in a local of the evaluation loop, but the values below it are in place.
 *
 * 3.12 delivers C_RETURN or C_RAISE after a call that ran no Python frame.
 * A 3.10 probe after the call would no longer see the callable or its first
 * argument, nor an exception that leaves the instruction, so the CALL probe
 * puts an "ender" in the callable's stack slot: it calls the callable with
 * the arguments it gets and delivers the outcome.  It is only made for
 * calls of non-Python callables when some tool has a C_RETURN or C_RAISE
 * callback, and lives for the one call.  The interpreter then calls the
 * ender, not a builtin function, so it makes none of the c_call and
 * c_return (or c_exception) events a sys.setprofile function gets around
 * the call of a builtin function from a frame that traces (ceval.c's
 * C_TRACE): the ender makes them.
 */

#include "b310.h"

#include <stddef.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *callable;     /* owned: what the interpreter would have called */
    PyObject *reported;     /* owned: the callable C_RETURN and C_RAISE report */
    PyObject *arg0;         /* owned */
    PyCodeObject *shadow;   /* owned: keeps the map and the site alive */
    li_site *site;          /* borrowed: a constant of the shadow */
} li_ender;

static PyTypeObject li_ender_type;

/* Delivers C_RETURN (res set) or C_RAISE (an exception pending) of the
 * call `e` made.  0, or -1 with an exception set. */
static int
deliver_end(li_ender *e, PyObject *res)
{
    PyThreadState *ts = PyThreadState_Get();
    li_shadow *map = li_shadow_of(e->shadow);
    if (ts->tracing || map == NULL || map->original == NULL) {
        return 0;
    }
    /* The tools of 3.12's C_RETURN: those selecting CALL now, whatever was
       disabled since the call started. */
    uint8_t tools = li_tools_selecting(map->cs, LI_CALL);
    if (tools == 0) {
        return 0;
    }
    li_site *s = e->site;
    PyObject *args[5] = {NULL, (PyObject *)map->original, s->arg, e->reported, e->arg0};
    if (res != NULL) {
        return li_call_tools(ts, LI_C_RETURN, tools, map->cs, s->orig, args, 4);
    }
    /* The callback's exception replaces the call's, as natively. */
    return li_call_tools_around_error(ts, LI_C_RAISE, tools, map->cs, s->orig, args, 4, 0);
}

/* Profile event `what` of the C call of `callable` from the current frame,
 * as call_trace() makes it.  0, or -1 with an exception set. */
static int
profile_c_event(PyThreadState *ts, int what, PyObject *callable)
{
    ts->tracing++;
    LI_USE_TRACING(ts) = 0;
    int err = ts->c_profilefunc(ts->c_profileobj, ts->frame, what, callable);
    LI_USE_TRACING(ts) = ts->c_tracefunc != NULL || ts->c_profilefunc != NULL;
    ts->tracing--;
    return err;
}

static PyObject *
ender_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    li_ender *e = (li_ender *)self;
    PyThreadState *ts = PyThreadState_Get();
    bool profiled = LI_USE_TRACING(ts) && ts->c_profilefunc != NULL && !ts->tracing &&
                    ts->frame != NULL &&
                    (PyCFunction_CheckExact(e->callable) || PyCMethod_CheckExact(e->callable));
    if (profiled && profile_c_event(ts, PyTrace_C_CALL, e->callable) < 0) {
        return NULL;
    }
    PyObject *res = PyObject_Vectorcall(e->callable, args, nargsf, kwnames);
    if (profiled && res != NULL && ts->c_profilefunc != NULL &&
        profile_c_event(ts, PyTrace_C_RETURN, e->callable) < 0) {
        Py_CLEAR(res);
    }
    else if (profiled && res == NULL && ts->c_profilefunc != NULL) {
        /* The function's error goes on, unless the profile function
           raises one of its own. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (profile_c_event(ts, PyTrace_C_EXCEPTION, e->callable) < 0) {
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        }
        else {
            PyErr_Restore(type, value, tb);
        }
    }
    if (deliver_end(e, res) < 0) {
        Py_CLEAR(res);
    }
    return res;
}

static void
ender_dealloc(PyObject *self)
{
    li_ender *e = (li_ender *)self;
    Py_XDECREF(e->callable);
    Py_XDECREF(e->reported);
    Py_XDECREF(e->arg0);
    Py_XDECREF(e->shadow);
    PyObject_Free(self);
}

static PyTypeObject li_ender_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine.call_ender",
    .tp_basicsize = sizeof(li_ender),
    .tp_dealloc = ender_dealloc,
    .tp_vectorcall_offset = offsetof(li_ender, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Delivers C_RETURN or C_RAISE of the one call it stands in for.",
};

static bool
is_python_function(PyObject *callable)
{
    return PyFunction_Check(callable) &&
           ((PyFunctionObject *)callable)->vectorcall == _PyFunction_Vectorcall;
}

/* Whether a tool of `tools` has a C_RETURN or C_RAISE callback. */
static bool
wants_end(uint8_t tools)
{
    for (int t = 0; t < LI_TOOL_COUNT; t++) {
        if ((tools & (1 << t)) &&
            (li_reg.callbacks[t][LI_C_RETURN] != NULL || li_reg.callbacks[t][LI_C_RAISE] != NULL))
        {
            return true;
        }
    }
    return false;
}

/* Puts an ender for the callable in *slot.  0, or -1 with an exception. */
static int
put_ender(PyObject **slot, PyObject *reported, PyObject *arg0, li_site *s)
{
    li_ender *e = PyObject_New(li_ender, &li_ender_type);
    if (e == NULL) {
        return -1;
    }
    e->vectorcall = ender_vectorcall;
    e->callable = *slot;        /* the stack's reference passes to it */
    e->reported = Py_NewRef(reported);
    e->arg0 = Py_NewRef(arg0);
    e->shadow = (PyCodeObject *)Py_NewRef(s->shadow->code);
    e->site = s;
    *slot = (PyObject *)e;
    return 0;
}

int
li_fire_call(PyThreadState *ts, li_site *s, uint8_t tools)
{
    li_shadow *map = s->shadow;
    PyFrameObject *f = ts->frame;
    /* The frame runs the shadow or, reached (running.c), the original or
       an older shadow: the same values at that depth. */
    if (f == NULL || map->original == NULL || li_backend_original(f->f_code) != map->original) {
        return 0;
    }
    PyObject **top = f->f_valuestack + s->depth;     /* one past the last value */
    PyObject *missing = li_reg.missing;
    PyObject **slot;        /* the callable's */
    PyObject *arg0;
    int n = s->call_arg;
    bool star = false;      /* CALL_FUNCTION_EX */
    bool may_end = true;    /* an ender may stand in for the callable */
    /* Values the instruction takes: fewer than that at the depth found
       would mean the analysis went wrong (assert it in debug builds). */
    int taken = s->call_op == CALL_FUNCTION ? n + 1
                : s->call_op == CALL_FUNCTION_EX ? 2 + (n & 1) : n + 2;
    assert(s->depth >= taken);
    if (s->depth < taken) {
        return 0;
    }
    switch (s->call_op) {
    case CALL_FUNCTION:
        slot = top - n - 1;
        arg0 = n > 0 ? top[-n] : missing;
        break;
    case CALL_FUNCTION_KW:
        slot = top - n - 2;
        arg0 = n > 0 ? top[-n - 1] : missing;
        break;
    case CALL_METHOD:
        if (top[-n - 2] != NULL) {
            slot = top - n - 2;     /* an unbound method, then self */
            arg0 = top[-n - 1];
        }
        else {
            slot = top - n - 1;
            arg0 = n > 0 ? top[-n] : missing;
        }
        break;
    case CALL_FUNCTION_EX: {
        star = true;
        PyObject **kwargs = (n & 1) ? top - 1 : NULL;
        PyObject **callargs = (n & 1) ? top - 2 : top - 1;
        slot = callargs - 1;
        /* 3.12 makes the tuple before CALL, 3.10 the same one after it;
           what cannot be iterated is left for the instruction to report,
           with the name of the callable. */
        if (!PyTuple_CheckExact(*callargs)) {
            if (Py_TYPE(*callargs)->tp_iter == NULL && !PySequence_Check(*callargs)) {
                arg0 = missing;
                may_end = false;
                break;
            }
            PyObject *tuple = PySequence_Tuple(*callargs);
            if (tuple == NULL) {
                return -1;
            }
            Py_SETREF(*callargs, tuple);
        }
        arg0 = PyTuple_GET_SIZE(*callargs) > 0 ? PyTuple_GET_ITEM(*callargs, 0) : missing;
        /* So are errors of merging a mapping that is not a dict (the
           compiler always makes a dict, but bytecode may be hand-made). */
        may_end = kwargs == NULL || PyDict_CheckExact(*kwargs);
        break;
    }
    default:
        return 0;
    }
    PyObject *callable = Py_NewRef(*slot);
    Py_INCREF(arg0);
    PyObject *args[5] = {NULL, (PyObject *)map->original, s->arg, callable, arg0};
    int err = li_call_tools(ts, LI_CALL, tools, map->cs, s->orig, args, 4);
    if (err < 0 || !may_end || map->original == NULL || *slot != callable) {
        goto done;
    }
    /* What 3.12 reports at the end: a bound method called directly is
       called as its function with self first; a star call reports it. */
    PyObject *reported = callable, *end_arg0 = arg0;
    if (!star && PyMethod_Check(callable)) {
        reported = PyMethod_GET_FUNCTION(callable);
        end_arg0 = PyMethod_GET_SELF(callable);
    }
    if (is_python_function(reported) || (star && PyMethod_Check(callable))) {
        goto done;
    }
    if (wants_end(li_tools_selecting(map->cs, LI_CALL))) {
        err = put_ender(slot, reported, end_arg0, s);
    }
done:
    Py_DECREF(callable);
    Py_DECREF(arg0);
    return err;
}

int
li_call_init(void)
{
    return PyType_Ready(&li_ender_type);
}
