/* Extension side of lowimpact.h: a tiny interpreter that reports what it
 * runs to monitoring tools, the way a Cython-like runtime would.
 *
 *   stackvm.run(program) runs a program: a list of (line, op, arg) tuples
 *   where op is "push" (push arg), "add" (pop two, push the sum), "call"
 *   (pop one, push arg(value)) or "jump_if_zero" (pop one; if zero go to the
 *   instruction at index arg).  It returns what is left on the stack.
 *
 * Events: PY_START and PY_RETURN for the run, LINE when the line changes,
 * CALL before each call, JUMP for taken jumps.  The code-like object the
 * tools get is the program list; offsets are instruction indices.
 */
#include "lowimpact.h"

enum { START, RETURN, LINE, CALL, JUMP, N_EVENTS };

static const uint8_t event_ids[N_EVENTS] = {
    PY_MONITORING_EVENT_PY_START, PY_MONITORING_EVENT_PY_RETURN,
    PY_MONITORING_EVENT_LINE, PY_MONITORING_EVENT_CALL, PY_MONITORING_EVENT_JUMP,
};

static PyObject *
run(PyObject *module, PyObject *program)
{
    (void)module;
    if (!PyList_Check(program)) {
        PyErr_SetString(PyExc_TypeError, "a program is a list of (line, op, arg)");
        return NULL;
    }
    /* The states live as long as the scope: here, one run.  The version is
       per list of event ids; starting at 0 makes EnterScope fill them. */
    PyMonitoringState states[N_EVENTS] = {{0}};
    uint64_t version = 0;
    if (PyMonitoring_EnterScope(states, &version, event_ids, N_EVENTS) < 0) {
        return NULL;
    }
    PyObject *stack = PyList_New(0);
    if (stack == NULL || PyMonitoring_FirePyStartEvent(&states[START], program, 0) < 0) {
        goto error;
    }
    long previous_line = -1;
    for (Py_ssize_t pc = 0; pc < PyList_GET_SIZE(program);) {
        long line;
        const char *op;
        PyObject *arg;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(program, pc), "lsO", &line, &op, &arg)) {
            goto error;
        }
        if (line != previous_line &&
            PyMonitoring_FireLineEvent(&states[LINE], program, (int32_t)pc, (int)line) < 0)
        {
            goto error;
        }
        previous_line = line;
        Py_ssize_t next = pc + 1;
        if (strcmp(op, "push") == 0) {
            if (PyList_Append(stack, arg) < 0) {
                goto error;
            }
        }
        else if (strcmp(op, "add") == 0 || strcmp(op, "call") == 0 ||
                 strcmp(op, "jump_if_zero") == 0)
        {
            Py_ssize_t depth = PyList_GET_SIZE(stack);
            if (depth < (strcmp(op, "add") == 0 ? 2 : 1)) {
                PyErr_SetString(PyExc_IndexError, "stack underflow");
                goto error;
            }
            PyObject *top = PyList_GET_ITEM(stack, depth - 1);
            Py_INCREF(top);
            if (PyList_SetSlice(stack, depth - 1, depth, NULL) < 0) {
                Py_DECREF(top);
                goto error;
            }
            PyObject *result = NULL;
            if (strcmp(op, "add") == 0) {
                PyObject *under = PyList_GET_ITEM(stack, depth - 2);
                result = PyNumber_Add(under, top);
                if (result != NULL && PyList_SetItem(stack, depth - 2, result) < 0) {
                    result = NULL;
                }
            }
            else if (strcmp(op, "call") == 0) {
                if (PyMonitoring_FireCallEvent(&states[CALL], program, (int32_t)pc, arg,
                                               top) == 0)
                {
                    result = PyObject_CallOneArg(arg, top);
                    if (result != NULL && PyList_Append(stack, result) < 0) {
                        Py_CLEAR(result);
                    }
                    Py_XDECREF(result);
                }
            }
            else {
                int zero = PyObject_Not(top);
                result = zero < 0 ? NULL : Py_None;
                if (zero == 1) {
                    next = PyLong_AsSsize_t(arg);
                    if (next < 0 && PyErr_Occurred()) {
                        result = NULL;
                    }
                    else {
                        /* A callback may change the program, which owns arg. */
                        PyObject *target = arg;
                        Py_INCREF(target);
                        if (PyMonitoring_FireJumpEvent(&states[JUMP], program, (int32_t)pc,
                                                       target) < 0)
                        {
                            result = NULL;
                        }
                        Py_DECREF(target);
                    }
                }
            }
            Py_DECREF(top);
            if (result == NULL) {
                goto error;
            }
        }
        else {
            PyErr_Format(PyExc_ValueError, "unknown operation %s", op);
            goto error;
        }
        pc = next;
    }
    if (PyMonitoring_FirePyReturnEvent(&states[RETURN], program,
                                       (int32_t)PyList_GET_SIZE(program), stack) < 0)
    {
        goto error;
    }
    PyMonitoring_ExitScope();
    return stack;
error:
    PyMonitoring_ExitScope();
    Py_XDECREF(stack);
    return NULL;
}

static PyMethodDef methods[] = {
    {"run", run, METH_O, "Run a program of (line, op, arg) tuples; return the stack."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "stackvm", "A tiny monitored interpreter.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_stackvm(void)
{
    if (LowImpact_IMPORT < 0) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
