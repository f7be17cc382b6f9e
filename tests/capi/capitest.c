/* A test extension of lowimpact.h, built by the tests on every interpreter.
 *
 * Extension side: scope(*event_ids) enters a monitoring scope for those
 * events; fire(index, codelike, offset, *args) fires the event at that index
 * of the scope with the right PyMonitoring_Fire*Event and returns the state's
 * `active` afterwards.
 * Tool side: install(tool, event, disable_after) registers a C callback that
 * records its calls (see calls()) and returns DISABLE from its
 * disable_after-th call on (0: never); uninstall(tool, event).
 */
#include "lowimpact.h"

#define MAX_SCOPE 17

static PyMonitoringState states[MAX_SCOPE];
static uint8_t scope_events[MAX_SCOPE];
static Py_ssize_t scope_length;
static uint64_t scope_version;

static PyObject *
scope(PyObject *self, PyObject *args)
{
    (void)self;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n > MAX_SCOPE) {
        PyErr_SetString(PyExc_ValueError, "too many events");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long event = PyLong_AsLong(PyTuple_GET_ITEM(args, i));
        if (event == -1 && PyErr_Occurred()) {
            return NULL;
        }
        scope_events[i] = (uint8_t)event;
        states[i].active = 0;
    }
    scope_length = n;
    scope_version = 0;      /* a new list of events: a new version counter */
    if (PyMonitoring_EnterScope(states, &scope_version, scope_events, n) < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(scope_version);
}

static PyObject *
reenter(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (PyMonitoring_EnterScope(states, &scope_version, scope_events, scope_length) < 0) {
        return NULL;
    }
    PyObject *active = PyList_New(scope_length);
    for (Py_ssize_t i = 0; active != NULL && i < scope_length; i++) {
        PyList_SET_ITEM(active, i, PyLong_FromLong(states[i].active));
    }
    return active;
}

static PyObject *
exit_scope(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (PyMonitoring_ExitScope() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
fire(PyObject *self, PyObject *args)
{
    (void)self;
    Py_ssize_t index;
    PyObject *codelike, *a = NULL, *b = NULL;
    int offset;
    if (!PyArg_ParseTuple(args, "nOi|OO", &index, &codelike, &offset, &a, &b)) {
        return NULL;
    }
    if (index < 0 || index >= scope_length) {
        PyErr_SetString(PyExc_IndexError, "no such event in the scope");
        return NULL;
    }
    PyMonitoringState *state = &states[index];
    int err;
    switch (scope_events[index]) {
    case PY_MONITORING_EVENT_PY_START:
        err = PyMonitoring_FirePyStartEvent(state, codelike, offset);
        break;
    case PY_MONITORING_EVENT_PY_RESUME:
        err = PyMonitoring_FirePyResumeEvent(state, codelike, offset);
        break;
    case PY_MONITORING_EVENT_PY_RETURN:
        err = PyMonitoring_FirePyReturnEvent(state, codelike, offset, a);
        break;
    case PY_MONITORING_EVENT_PY_YIELD:
        err = PyMonitoring_FirePyYieldEvent(state, codelike, offset, a);
        break;
    case PY_MONITORING_EVENT_CALL:
        err = PyMonitoring_FireCallEvent(state, codelike, offset, a, b);
        break;
    case PY_MONITORING_EVENT_LINE:
        err = PyMonitoring_FireLineEvent(state, codelike, offset, (int)PyLong_AsLong(a));
        break;
    case PY_MONITORING_EVENT_JUMP:
        err = PyMonitoring_FireJumpEvent(state, codelike, offset, a);
        break;
    case PY_MONITORING_EVENT_BRANCH:
        err = PyMonitoring_FireBranchEvent(state, codelike, offset, a);
        break;
    case PY_MONITORING_EVENT_C_RETURN:
        err = PyMonitoring_FireCReturnEvent(state, codelike, offset, a);
        break;
    case PY_MONITORING_EVENT_STOP_ITERATION:
        err = PyMonitoring_FireStopIterationEvent(state, codelike, offset, a);
        break;
    default: {
        /* Exception events report the exception set now: `a`. */
        PyErr_SetObject((PyObject *)Py_TYPE(a), a);
        switch (scope_events[index]) {
        case PY_MONITORING_EVENT_RAISE:
            err = PyMonitoring_FireRaiseEvent(state, codelike, offset);
            break;
        case PY_MONITORING_EVENT_RERAISE:
            err = PyMonitoring_FireReraiseEvent(state, codelike, offset);
            break;
        case PY_MONITORING_EVENT_EXCEPTION_HANDLED:
            err = PyMonitoring_FireExceptionHandledEvent(state, codelike, offset);
            break;
        case PY_MONITORING_EVENT_PY_UNWIND:
            err = PyMonitoring_FirePyUnwindEvent(state, codelike, offset);
            break;
        case PY_MONITORING_EVENT_PY_THROW:
            err = PyMonitoring_FirePyThrowEvent(state, codelike, offset);
            break;
        case PY_MONITORING_EVENT_C_RAISE:
            err = PyMonitoring_FireCRaiseEvent(state, codelike, offset);
            break;
        default:
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "no such event");
            return NULL;
        }
        if (err == 0) {
            /* The exception is set again after the event; it was ours. */
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_AssertionError, "the exception was not restored");
                return NULL;
            }
            PyErr_Clear();
        }
    }
    }
    if (err < 0) {
        return NULL;
    }
    return PyLong_FromLong(state->active);
}

/* ---- the tool side ---- */

#define TOOLS 6
#define EVENTS 17

static PyObject *calls_seen;            /* list of (tool, event, args tuple) */
static long disable_after[TOOLS][EVENTS];
static int answer_after[TOOLS][EVENTS]; /* what it returns from then on */
static long raise_at[TOOLS][EVENTS];    /* the call that raises RuntimeError (0: none) */
static long call_count[TOOLS][EVENTS];
static int tool_of[TOOLS] = {0, 1, 2, 3, 4, 5};

static int
record(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    int tool = *(int *)data;
    PyObject *tuple = PyTuple_New(nargs);
    if (tuple == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(tuple, i, args[i]);
    }
    PyObject *entry = Py_BuildValue("(iiN)", tool, event, tuple);
    if (entry == NULL || PyList_Append(calls_seen, entry) < 0) {
        Py_XDECREF(entry);
        return -1;
    }
    Py_DECREF(entry);
    long n = ++call_count[tool][event];
    if (n == raise_at[tool][event]) {
        PyErr_Format(PyExc_RuntimeError, "call %ld of the C callback", n);
        return -1;
    }
    return disable_after[tool][event] > 0 && n >= disable_after[tool][event]
           ? answer_after[tool][event] : LOWIMPACT_CONTINUE;
}

static PyObject *
install(PyObject *self, PyObject *args)
{
    (void)self;
    int tool, event;
    long after = 0, fail = 0;
    int answer = LOWIMPACT_DISABLE;
    if (!PyArg_ParseTuple(args, "ii|lli", &tool, &event, &after, &fail, &answer)) {
        return NULL;
    }
    if (tool < 0 || tool >= TOOLS || event < 0 || event >= EVENTS) {
        PyErr_SetString(PyExc_ValueError, "tool or event out of range");
        return NULL;
    }
    disable_after[tool][event] = after;
    answer_after[tool][event] = answer;
    raise_at[tool][event] = fail;
    call_count[tool][event] = 0;
    if (LowImpact_RegisterCallback(tool, event, record, &tool_of[tool]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
uninstall(PyObject *self, PyObject *args)
{
    (void)self;
    int tool, event;
    if (!PyArg_ParseTuple(args, "ii", &tool, &event)) {
        return NULL;
    }
    if (LowImpact_RegisterCallback(tool, event, NULL, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
calls(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyObject *result = calls_seen;
    calls_seen = PyList_New(0);
    return result;
}

/* The helpers of the tool side around the Python API. */
static PyObject *
tool_setup(PyObject *self, PyObject *args)
{
    (void)self;
    int tool;
    unsigned int events;
    const char *name;
    if (!PyArg_ParseTuple(args, "isI", &tool, &name, &events)) {
        return NULL;
    }
    if (LowImpact_UseToolId(tool, name) < 0 || LowImpact_SetEvents(tool, events) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tool_local(PyObject *self, PyObject *args)
{
    (void)self;
    int tool;
    unsigned int events;
    PyObject *code;
    if (!PyArg_ParseTuple(args, "iOI", &tool, &code, &events)) {
        return NULL;
    }
    if (LowImpact_SetLocalEvents(tool, code, events) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tool_teardown(PyObject *self, PyObject *args)
{
    (void)self;
    int tool;
    if (!PyArg_ParseTuple(args, "i", &tool)) {
        return NULL;
    }
    if (LowImpact_SetEvents(tool, 0) < 0 || LowImpact_FreeToolId(tool) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scope", scope, METH_VARARGS, NULL},
    {"reenter", reenter, METH_NOARGS, NULL},
    {"exit_scope", exit_scope, METH_NOARGS, NULL},
    {"fire", fire, METH_VARARGS, NULL},
    {"install", install, METH_VARARGS, NULL},
    {"uninstall", uninstall, METH_VARARGS, NULL},
    {"calls", calls, METH_NOARGS, NULL},
    {"tool_setup", tool_setup, METH_VARARGS, NULL},
    {"tool_local", tool_local, METH_VARARGS, NULL},
    {"tool_teardown", tool_teardown, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "capitest", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_capitest(void)
{
    if (LowImpact_IMPORT < 0) {
        return NULL;
    }
    calls_seen = PyList_New(0);
    if (calls_seen == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
