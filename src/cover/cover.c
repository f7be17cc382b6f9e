/* lowimpact._cover: the measurement core of `lowimpact cover`.
 *
 * A Collector owns one tool id and receives its events through C callbacks
 * (lowimpact.h, tool side), so no Python code runs per event:
 *
 *   PY_START (global)  decides once per code object whether its file is
 *                      measured (the Python `should_trace(filename, frame)` is asked
 *                      once per file name); for a measured code object it
 *                      turns on LINE (and BRANCH) for that code only.  Always
 *                      DISABLE: the decision is never asked again.
 *   LINE (local)       records the line, then DISABLE: a line costs nothing
 *                      after its first execution.
 *   PY_RETURN, PY_YIELD (local, with BRANCH)
 *                      record the offset the frame left from, then DISABLE:
 *                      coverage.py counts leaving a code object as an arc.
 *   BRANCH (local)     records (source offset, destination offset); DISABLE
 *                      once both directions of the branch were seen.  On
 *                      3.12/3.13 DISABLE turns off both directions of a
 *                      branch instruction, so it must wait for the second.
 *
 * What is recorded is raw: code objects, line numbers and offset pairs.
 * Turning offset pairs into coverage.py's line arcs needs the bytecode and
 * the source, so the Python side does it once, when the data is saved.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "lowimpact.h"
#include "li_shared.h"

#define EVENT_BIT(e) (1u << (e))

typedef struct {
    PyObject_HEAD
    int tool_id;
    int branch;         /* BRANCH wanted as well as LINE */
    int running;        /* tool id held, callbacks registered */
    /* All owned. */
    PyObject *should_trace;  /* callable(filename, frame) -> str (the file's name in the data) or None */
    PyObject *file_cache;    /* dict: co_filename -> result of should_trace */
    /* Code objects are keyed by identity (id(code)): equal code objects,
     * such as a module's code compiled again to re-run it, are distinct
     * code to monitor.  `codes` holds each one, so its id stays its own. */
    PyObject *codes;         /* dict: id(code) -> (code, file name in the data or None) */
    PyObject *lines;         /* dict: id(measured code) -> set of line numbers */
    PyObject *branches;      /* dict: id(measured code) -> dict: source offset -> set of destinations */
    PyObject *exits;         /* dict: id(measured code) -> set of PY_RETURN/PY_YIELD offsets */
    /* The code object of the last BRANCH event and its dict in `branches`
     * (both borrowed: `codes` keeps the code alive, so the address cannot
     * be reused, and `branches` keeps the dict until reset()).  A loop whose
     * branch always goes the same way reports it on every pass; this skips
     * making the id and looking it up each time. */
    PyObject *last_code;
    PyObject *last_per_source;
} Collector;

/* The collector whose callbacks are registered (borrowed: it holds the tool
 * id only while running, and stop() or dealloc unregisters before it dies). */
static Collector *active_collector = NULL;

/* Whether a collector ran in this process before: its DISABLEs outlive it
 * (PY_START of every code object it saw, lines that ran), and the next
 * collector must have them undone to see that code run. */
static int collected_before = 0;

/* lowimpact.monitoring.restart_events(): the C API has no entry for it. */
static int
restart_events(void)
{
    PyObject *monitoring = PyImport_ImportModule("lowimpact.monitoring");   /* owned */
    if (monitoring == NULL) {
        return -1;
    }
    PyObject *result = PyObject_CallMethod(monitoring, "restart_events", NULL);   /* owned */
    Py_DECREF(monitoring);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* The set stored under `key` in dict `outer`, created empty when missing
 * (borrowed reference), or NULL with an exception set. */
static PyObject *
get_or_make(PyObject *outer, PyObject *key, PyObject *(*make)(PyObject *))
{
    PyObject *inner = PyDict_GetItemWithError(outer, key);   /* borrowed */
    if (inner != NULL || PyErr_Occurred()) {
        return inner;
    }
    inner = make(NULL);
    if (inner == NULL) {
        return NULL;
    }
    int rc = PyDict_SetItem(outer, key, inner);
    Py_DECREF(inner);   /* the dict holds it now */
    return rc < 0 ? NULL : inner;
}

static PyObject *
new_dict(PyObject *unused)
{
    (void)unused;
    return PyDict_New();
}

/* The file name under which code from `filename` is recorded (borrowed; None
 * when it is not measured), or NULL with an exception set.  Asked once per
 * file name, as coverage.py's tracers do. */
static PyObject *
trace_name(Collector *self, PyObject *filename)
{
    PyObject *name = PyDict_GetItemWithError(self->file_cache, filename);   /* borrowed */
    if (name != NULL || PyErr_Occurred()) {
        return name;
    }
    /* The frame that is starting: coverage.py matches --source packages by
     * the module name in its globals. */
    PyObject *frame = (PyObject *)PyEval_GetFrame();   /* borrowed, may be NULL */
    PyObject *result = PyObject_CallFunctionObjArgs(self->should_trace, filename,
                                                    frame ? frame : Py_None, NULL);   /* owned */
    if (result == NULL) {
        return NULL;
    }
    if (result != Py_None && !PyUnicode_Check(result)) {
        PyErr_Format(PyExc_TypeError, "should_trace() must return str or None, not %.100s",
                     Py_TYPE(result)->tp_name);
        Py_DECREF(result);
        return NULL;
    }
    int rc = PyDict_SetItem(self->file_cache, filename, result);
    Py_DECREF(result);
    return rc < 0 ? NULL : PyDict_GetItemWithError(self->file_cache, filename);
}

static int
on_py_start(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    Collector *self = (Collector *)data;
    if (nargs < 1 || !PyCode_Check(args[0])) {
        return LOWIMPACT_DISABLE;
    }
    PyObject *code = args[0];
    PyObject *key = PyLong_FromVoidPtr(code);   /* owned */
    if (key == NULL) {
        return -1;
    }
    int known = PyDict_Contains(self->codes, key);
    if (known != 0) {
        Py_DECREF(key);
        return known < 0 ? -1 : LOWIMPACT_DISABLE;
    }
    /* should_trace() runs Python code: another thread may stop this
       collector, or drop it, meanwhile. */
    Py_INCREF(self);
    PyObject *name = trace_name(self, ((PyCodeObject *)code)->co_filename);   /* borrowed */
    if (name == NULL || !self->running) {
        Py_DECREF(key);
        Py_DECREF(self);
        return name == NULL ? -1 : LOWIMPACT_DISABLE;
    }
    if (name == Py_None) {
        /* Nothing to keep: its PY_START is disabled. */
        Py_DECREF(key);
        Py_DECREF(self);
        return LOWIMPACT_DISABLE;
    }
    PyObject *entry = PyTuple_Pack(2, code, name);   /* owned */
    int rc = entry == NULL ? -1 : PyDict_SetItem(self->codes, key, entry);
    Py_XDECREF(entry);
    if (rc < 0) {
        Py_DECREF(key);
        Py_DECREF(self);
        return -1;
    }
    uint32_t events = EVENT_BIT(PY_MONITORING_EVENT_LINE);
    if (self->branch) {
        events |= EVENT_BIT(PY_MONITORING_EVENT_BRANCH) | EVENT_BIT(PY_MONITORING_EVENT_PY_RETURN) |
                  EVENT_BIT(PY_MONITORING_EVENT_PY_YIELD);
    }
    if (LowImpact_SetLocalEvents(self->tool_id, code, events) < 0) {
        /* Not measured, then: the next start tries again. */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        if (PyDict_DelItem(self->codes, key) < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(type, value, traceback);
        Py_DECREF(key);
        Py_DECREF(self);
        return -1;
    }
    Py_DECREF(key);
    Py_DECREF(self);
    return LOWIMPACT_DISABLE;
}

/* LINE and PY_RETURN/PY_YIELD: add args[1] (a line, an offset) to the set
 * of args[0] (the code) in the dict the event records into.  Once is enough. */
static int
on_once(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    Collector *self = (Collector *)data;
    if (nargs < 2) {
        return LOWIMPACT_DISABLE;
    }
    PyObject *outer = event == PY_MONITORING_EVENT_LINE ? self->lines : self->exits;
    PyObject *key = PyLong_FromVoidPtr(args[0]);   /* owned */
    if (key == NULL) {
        return -1;
    }
    PyObject *values = get_or_make(outer, key, PySet_New);   /* borrowed */
    Py_DECREF(key);
    if (values == NULL || PySet_Add(values, args[1]) < 0) {
        return -1;
    }
    return LOWIMPACT_DISABLE;
}

static int
on_branch(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    Collector *self = (Collector *)data;
    if (nargs < 3) {
        return LOWIMPACT_DISABLE;
    }
    PyObject *per_source = self->last_per_source;   /* borrowed */
    if (args[0] != self->last_code || per_source == NULL) {
        PyObject *key = PyLong_FromVoidPtr(args[0]);   /* owned */
        if (key == NULL) {
            return -1;
        }
        per_source = get_or_make(self->branches, key, new_dict);
        Py_DECREF(key);
        if (per_source == NULL) {
            return -1;
        }
        self->last_code = args[0];
        self->last_per_source = per_source;
    }
    PyObject *dests = get_or_make(per_source, args[1], PySet_New);   /* borrowed */
    if (dests == NULL || PySet_Add(dests, args[2]) < 0) {
        return -1;
    }
    /* A branch instruction has two destinations; once both ran there is
     * nothing more to learn here. */
    return PySet_GET_SIZE(dests) >= 2 ? LOWIMPACT_DISABLE : LOWIMPACT_CONTINUE;
}

/* Every step is tried whatever the others do: the callbacks must not
 * outlive their data.  Someone who freed the tool id meanwhile left the
 * callbacks registered, and registering needs the id in use: it is taken
 * back for that. */
static int
unregister(Collector *self)
{
    PyObject *first = NULL;   /* owned: the first failure */
    if (LowImpact_SetEvents(self->tool_id, 0) < 0) {
        li_keep_first_error(&first);
        if (LowImpact_UseToolId(self->tool_id, "lowimpact cover") < 0) {
            PyErr_Clear();   /* someone else holds it: its callbacks are its own */
        }
    }
    static const int events[] = {PY_MONITORING_EVENT_PY_START, PY_MONITORING_EVENT_LINE,
                                 PY_MONITORING_EVENT_BRANCH, PY_MONITORING_EVENT_PY_RETURN,
                                 PY_MONITORING_EVENT_PY_YIELD};
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        if (LowImpact_RegisterCallback(self->tool_id, events[i], NULL, NULL) < 0) {
            li_keep_first_error(&first);
        }
    }
    /* Local events of measured code go with the tool id. */
    if (LowImpact_FreeToolId(self->tool_id) < 0) {
        li_keep_first_error(&first);
    }
    self->running = 0;
    if (active_collector == self) {
        active_collector = NULL;
    }
    if (first != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(first), first);
        Py_DECREF(first);
        return -1;
    }
    return 0;
}

/* Methods of a collector whose __init__ never ran (its dicts are NULL)
 * raise instead. */
static int
initialised(Collector *self)
{
    if (self->codes == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the collector was not initialised");
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(start_doc,
"start()\n\n"
"Take the tool id and start measuring: every code object that starts from\n"
"now on in a file should_trace() names gets LINE (and BRANCH) events.\n"
"After an earlier collector, restart_events() undoes its DISABLEs first.");

static PyObject *
collector_start(Collector *self, PyObject *unused)
{
    (void)unused;
    if (!initialised(self)) {
        return NULL;
    }
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "the collector is already running");
        return NULL;
    }
    if (active_collector != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "another collector is running");
        return NULL;
    }
    if (LowImpact_UseToolId(self->tool_id, "lowimpact.cover") < 0) {
        return NULL;
    }
    self->running = 1;
    active_collector = self;
    if (LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_PY_START, on_py_start,
                                   self) < 0 ||
        LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_LINE, on_once, self) < 0 ||
        (self->branch && (LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_BRANCH,
                                                     on_branch, self) < 0 ||
                          LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_PY_RETURN,
                                                     on_once, self) < 0 ||
                          LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_PY_YIELD,
                                                     on_once, self) < 0)) ||
        LowImpact_SetEvents(self->tool_id, EVENT_BIT(PY_MONITORING_EVENT_PY_START)) < 0 ||
        (collected_before && restart_events() < 0))
    {
        PyObject *type, *value, *traceback;   /* owned while held */
        PyErr_Fetch(&type, &value, &traceback);
        if (unregister(self) < 0) {
            PyErr_Clear();   /* the first error is the one to report */
        }
        PyErr_Restore(type, value, traceback);
        return NULL;
    }
    collected_before = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stop_doc,
"stop()\n\nStop measuring and give the tool id back; what was recorded stays.");

static PyObject *
collector_stop(Collector *self, PyObject *unused)
{
    (void)unused;
    if (!self->running) {
        Py_RETURN_NONE;
    }
    if (unregister(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(data_doc,
"data() -> (codes, lines, branches, exits)\n\n"
"Copies of what was recorded, by id(code): {id: (code, file name or None)},\n"
"{id: {line, ...}}, {id: {source offset: {destination offset, ...}}} and\n"
"{id: {offset, ...}} (where frames returned or yielded).");

static PyObject *
copy_nested(PyObject *outer, int depth)
{
    /* depth 1: dict of sets; depth 2: dict of dicts of sets. */
    PyObject *result = PyDict_New();   /* owned */
    if (result == NULL) {
        return NULL;
    }
    PyObject *key, *value;   /* borrowed */
    Py_ssize_t pos = 0;
    while (PyDict_Next(outer, &pos, &key, &value)) {
        PyObject *copy = depth == 1 ? PySet_New(value) : copy_nested(value, depth - 1);
        if (copy == NULL || PyDict_SetItem(result, key, copy) < 0) {
            Py_XDECREF(copy);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(copy);
    }
    return result;
}

static PyObject *
collector_data(Collector *self, PyObject *unused)
{
    (void)unused;
    if (!initialised(self)) {
        return NULL;
    }
    PyObject *codes = NULL, *lines = NULL, *branches = NULL, *exits = NULL;   /* owned */
    codes = PyDict_Copy(self->codes);
    if (codes == NULL) {
        goto error;
    }
    lines = copy_nested(self->lines, 1);
    if (lines == NULL) {
        goto error;
    }
    branches = copy_nested(self->branches, 2);
    if (branches == NULL) {
        goto error;
    }
    exits = copy_nested(self->exits, 1);
    if (exits == NULL) {
        goto error;
    }
    return Py_BuildValue("(NNNN)", codes, lines, branches, exits);
error:
    Py_XDECREF(exits);
    Py_XDECREF(codes);
    Py_XDECREF(lines);
    Py_XDECREF(branches);
    return NULL;
}

PyDoc_STRVAR(reset_doc,
"reset()\n\nForget what was recorded (a forked child starts afresh).  Code\n"
"already measured keeps its DISABLEd locations until restart_events().");

static PyObject *
collector_reset(Collector *self, PyObject *unused)
{
    (void)unused;
    if (!initialised(self)) {
        return NULL;
    }
    PyDict_Clear(self->lines);
    self->last_code = self->last_per_source = NULL;
    PyDict_Clear(self->branches);
    PyDict_Clear(self->exits);
    Py_RETURN_NONE;
}

static int
collector_init(Collector *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"tool_id", "should_trace", "branch", NULL};
    int tool_id, branch = 0;
    PyObject *should_trace;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iO|p:Collector", keywords, &tool_id,
                                     &should_trace, &branch)) {
        return -1;
    }
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "cannot re-initialise a running collector");
        return -1;
    }
    if (tool_id < 0 || tool_id > 5) {
        PyErr_Format(PyExc_ValueError, "invalid tool id %d (0-5)", tool_id);
        return -1;
    }
    if (!PyCallable_Check(should_trace)) {
        PyErr_SetString(PyExc_TypeError, "should_trace must be callable");
        return -1;
    }
    PyObject *file_cache = PyDict_New(), *codes = PyDict_New(), *lines = PyDict_New(),
             *branches = PyDict_New(), *exits = PyDict_New();   /* owned until stored */
    if (file_cache == NULL || codes == NULL || lines == NULL || branches == NULL ||
        exits == NULL) {
        Py_XDECREF(exits);
        Py_XDECREF(file_cache);
        Py_XDECREF(codes);
        Py_XDECREF(lines);
        Py_XDECREF(branches);
        return -1;
    }
    self->tool_id = tool_id;
    self->branch = branch;
    Py_XSETREF(self->should_trace, Py_NewRef(should_trace));
    Py_XSETREF(self->file_cache, file_cache);
    Py_XSETREF(self->codes, codes);
    Py_XSETREF(self->lines, lines);
    self->last_code = self->last_per_source = NULL;
    Py_XSETREF(self->branches, branches);
    Py_XSETREF(self->exits, exits);
    return 0;
}

static int
collector_traverse(Collector *self, visitproc visit, void *arg)
{
    Py_VISIT(self->should_trace);
    Py_VISIT(self->file_cache);
    Py_VISIT(self->codes);
    Py_VISIT(self->lines);
    Py_VISIT(self->branches);
    Py_VISIT(self->exits);
    return 0;
}

/* Stops a collector that is about to lose its data (dealloc, or the cycle
 * collector clearing it while it runs): callbacks must not outlive it. */
static void
stop_before_freeing(Collector *self)
{
    if (!self->running) {
        return;
    }
    PyObject *type, *value, *traceback;   /* owned while held */
    PyErr_Fetch(&type, &value, &traceback);
    if (unregister(self) < 0) {
        /* (Not self: it is being freed.) */
        PyErr_WriteUnraisable(NULL);
    }
    PyErr_Restore(type, value, traceback);
}

static int
collector_clear(Collector *self)
{
    stop_before_freeing(self);
    Py_CLEAR(self->should_trace);
    Py_CLEAR(self->file_cache);
    Py_CLEAR(self->codes);
    Py_CLEAR(self->lines);
    self->last_code = self->last_per_source = NULL;
    Py_CLEAR(self->branches);
    Py_CLEAR(self->exits);
    return 0;
}

static void
collector_dealloc(Collector *self)
{
    PyObject_GC_UnTrack(self);
    collector_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
collector_get_running(Collector *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->running);
}

static PyObject *
collector_get_branch(Collector *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->branch);
}

static PyMethodDef collector_methods[] = {
    {"start", (PyCFunction)collector_start, METH_NOARGS, start_doc},
    {"stop", (PyCFunction)collector_stop, METH_NOARGS, stop_doc},
    {"data", (PyCFunction)collector_data, METH_NOARGS, data_doc},
    {"reset", (PyCFunction)collector_reset, METH_NOARGS, reset_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef collector_getset[] = {
    {"running", (getter)collector_get_running, NULL, "whether it is measuring", NULL},
    {"branch", (getter)collector_get_branch, NULL, "whether BRANCH events are recorded", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(collector_doc,
"Collector(tool_id, should_trace, branch=False)\n\n"
"Records executed lines (and branch directions) of the code whose file\n"
"should_trace(filename, frame) names, through C callbacks of lowimpact.monitoring.");

static PyTypeObject CollectorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._cover.Collector",
    .tp_basicsize = sizeof(Collector),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = collector_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)collector_init,
    .tp_dealloc = (destructor)collector_dealloc,
    .tp_traverse = (traverseproc)collector_traverse,
    .tp_clear = (inquiry)collector_clear,
    .tp_methods = collector_methods,
    .tp_getset = collector_getset,
};

static struct PyModuleDef cover_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lowimpact._cover",
    .m_doc = "The C measurement core of lowimpact cover.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__cover(void)
{
    if (LowImpact_IMPORT < 0) {
        return NULL;
    }
    if (PyType_Ready(&CollectorType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&cover_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Collector", (PyObject *)&CollectorType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
