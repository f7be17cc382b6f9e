/* The `lowimpact._engine` module: the sys.monitoring functions, with the
 * argument checks, exception types and messages of CPython 3.12/3.13. */

#include "li.h"

#define TOOL_RANGE_ERROR "invalid tool %d (must be between 0 and 5)"

/* Converts a tool id argument and checks its range.  -1 with an exception. */
static int
tool_arg(PyObject *arg, int *tool)
{
    int value = li_as_int(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0 || value >= LI_TOOL_COUNT) {
        PyErr_Format(PyExc_ValueError, TOOL_RANGE_ERROR, value);
        return -1;
    }
    *tool = value;
    return 0;
}

static int
check_in_use(int tool)
{
    if (li_reg.tool_names[tool] == NULL) {
        PyErr_Format(PyExc_ValueError, "tool %d is not in use", tool);
        return -1;
    }
    return 0;
}

/* An update changes shadows and moves the frames of every thread, working
 * from what it saw (the functions and generators on the heap, the threads'
 * frames): no other thread may run until it ends.  On 3.11 an allocation
 * may collect garbage, and the finalisers and gc.callbacks that runs are
 * Python code, which can switch threads (the other threads' frames and
 * generators then change under the update: segfaults,
 * tests/conformance/test_threads.py).  So collection waits
 * until the update ends, as natively, where 3.12 collects only at the
 * eval breaker, never inside sys.monitoring's functions.  Returns what to
 * pass to resume_collection(). */
static int
hold_collection(void)
{
    return li_gc_disable();
}

static void
resume_collection(int held)
{
    if (held) {
        li_gc_enable();
    }
}

/* Applies the C_RETURN/C_RAISE rule: those two may only be selected together
 * with CALL, and are then implied by it rather than stored. */
static int
fold_c_events(int *event_set)
{
    if ((*event_set & LI_C_RETURN_EVENTS) &&
        (*event_set & LI_C_CALL_EVENTS) != LI_C_CALL_EVENTS)
    {
        PyErr_SetString(PyExc_ValueError,
                        "cannot set C_RETURN or C_RAISE events independently");
        return -1;
    }
    *event_set &= ~(int)LI_C_RETURN_EVENTS;
    return 0;
}

static bool
check_code(PyObject *code)
{
    if (!PyCode_Check(code)) {
        PyErr_SetString(PyExc_TypeError, "code must be a code object");
        return false;
    }
    return true;
}

PyDoc_STRVAR(use_tool_id_doc,
"use_tool_id($module, tool_id, name, /)\n--\n\n"
"Reserve tool_id (0-5) for the tool called name.");

static PyObject *
use_tool_id(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int tool;
    if (!_PyArg_CheckPositional("use_tool_id", nargs, 2, 2) ||
        tool_arg(args[0], &tool) < 0)
    {
        return NULL;
    }
    if (!PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_ValueError, "tool name must be a str");
        return NULL;
    }
    if (li_reg.tool_names[tool] != NULL) {
        PyErr_Format(PyExc_ValueError, "tool %d is already in use", tool);
        return NULL;
    }
    li_reg.tool_names[tool] = Py_NewRef(args[1]);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(free_tool_id_doc,
"free_tool_id($module, tool_id, /)\n--\n\n"
"Release tool_id.  As in CPython 3.12 and 3.13, its events and callbacks\n"
"stay in place; call clear_tool_id() first to remove them.");

static PyObject *
free_tool_id(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int tool;
    if (tool_arg(arg, &tool) < 0) {
        return NULL;
    }
    Py_CLEAR(li_reg.tool_names[tool]);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_tool_doc,
"get_tool($module, tool_id, /)\n--\n\n"
"Return the name of the tool using tool_id, or None.");

static PyObject *
get_tool(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int tool;
    if (tool_arg(arg, &tool) < 0) {
        return NULL;
    }
    PyObject *name = li_reg.tool_names[tool];
    return Py_NewRef(name != NULL ? name : Py_None);
}

/* Replaces the global events of `tool`; sets *grew when an event was
 * added.  True if anything changed. */
static bool
replace_global_events(int tool, li_event_set events, bool *grew)
{
    bool changed = false;
    *grew = false;
    for (int e = 0; e < LI_UNGROUPED_EVENT_COUNT; e++) {
        uint8_t before = li_reg.global_tools[e];
        li_reg.global_tools[e] &= (uint8_t)~(1 << tool);
        if (events & LI_EVENT_BIT(e)) {
            li_reg.global_tools[e] |= (uint8_t)(1 << tool);
        }
        changed |= (before != li_reg.global_tools[e]);
        *grew |= (li_reg.global_tools[e] & ~before) != 0;
        if (li_reg.global_tools[e]) {
            li_reg.global_events |= LI_EVENT_BIT(e);
        }
        else {
            li_reg.global_events &= ~LI_EVENT_BIT(e);
        }
    }
    return changed;
}

PyDoc_STRVAR(clear_tool_id_doc,
"clear_tool_id($module, tool_id, /)\n--\n\n"
"Unregister all events and callback functions of tool_id (as CPython 3.14).");

static PyObject *
clear_tool_id(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int tool;
    if (tool_arg(arg, &tool) < 0) {
        return NULL;
    }
    for (li_code_state *cs = li_local_codes(), *next; cs != NULL; cs = next) {
        next = cs->local.next;   /* clearing may unlink cs */
        li_code_state_set_local(cs, tool, 0);
    }
    for (int e = 0; e < LI_EVENT_COUNT; e++) {
        li_dispatch_changed();
        li_backend_forget_callback(tool, e);
        Py_CLEAR(li_reg.callbacks[tool][e]);
    }
    bool grew;
    replace_global_events(tool, 0, &grew);
    li_reg.version++;
    int held = hold_collection();
    int err = li_backend_update(false);
    resume_collection(held);
    if (err < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(register_callback_doc,
"register_callback($module, tool_id, event, func, /)\n--\n\n"
"Register func for one event of tool_id (None unregisters).\n"
"Return the callback registered before, or None.");

static PyObject *
register_callback(PyObject *Py_UNUSED(module), PyObject *const *args,
                  Py_ssize_t nargs)
{
    int tool;
    if (!_PyArg_CheckPositional("register_callback", nargs, 3, 3) ||
        tool_arg(args[0], &tool) < 0)
    {
        return NULL;
    }
    int event = li_as_int(args[1]);
    if (event == -1 && PyErr_Occurred()) {
        return NULL;
    }
    uint32_t bits = (uint32_t)event;
    if (bits == 0 || (bits & (bits - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError,
                        "The callback can only be set for one event at a time");
        return NULL;
    }
    int event_id = 0;
    while (!(bits & 1)) {
        bits >>= 1;
        event_id++;
    }
    if (event < 0 || event_id >= LI_EVENT_COUNT) {
        PyErr_Format(PyExc_ValueError, "invalid event %d", event);
        return NULL;
    }
    PyObject *func = args[2];
    if (PySys_Audit("sys.monitoring.register_callback", "O", func) < 0) {
        return NULL;
    }
    PyObject *previous = li_reg.callbacks[tool][event_id];
    li_reg.callbacks[tool][event_id] = (func == Py_None) ? NULL : Py_NewRef(func);
    li_dispatch_changed();
    li_backend_forget_callback(tool, event_id);
    /* The reference held by the registry passes to the caller. */
    return previous != NULL ? previous : Py_NewRef(Py_None);
}

PyDoc_STRVAR(get_events_doc,
"get_events($module, tool_id, /)\n--\n\n"
"Return the set of events tool_id selected for all code.");

static PyObject *
get_events(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int tool;
    if (tool_arg(arg, &tool) < 0) {
        return NULL;
    }
    li_event_set events = 0;
    for (int e = 0; e < LI_UNGROUPED_EVENT_COUNT; e++) {
        if (li_reg.global_tools[e] & (1 << tool)) {
            events |= LI_EVENT_BIT(e);
        }
    }
    return PyLong_FromUnsignedLong(events);
}

PyDoc_STRVAR(set_events_doc,
"set_events($module, tool_id, event_set, /)\n--\n\n"
"Select event_set for all code on behalf of tool_id.");

static PyObject *
set_events(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int tool;
    if (!_PyArg_CheckPositional("set_events", nargs, 2, 2) ||
        tool_arg(args[0], &tool) < 0)
    {
        return NULL;
    }
    int event_set = li_as_int(args[1]);
    if (event_set == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (event_set < 0 || event_set >= (1 << LI_EVENT_COUNT)) {
        PyErr_Format(PyExc_ValueError, "invalid event set 0x%x", event_set);
        return NULL;
    }
    if (fold_c_events(&event_set) < 0 || check_in_use(tool) < 0) {
        return NULL;
    }
    bool grew;
    if (replace_global_events(tool, (li_event_set)event_set, &grew)) {
        li_dispatch_changed();
        li_reg.version++;
        int held = hold_collection();
        int err = li_backend_update(grew);
        resume_collection(held);
        if (err < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_local_events_doc,
"get_local_events($module, tool_id, code, /)\n--\n\n"
"Return the set of events tool_id selected for the code object code.");

static PyObject *
get_local_events(PyObject *Py_UNUSED(module), PyObject *const *args,
                 Py_ssize_t nargs)
{
    int tool;
    if (!_PyArg_CheckPositional("get_local_events", nargs, 2, 2) ||
        !check_code(args[1]) || tool_arg(args[0], &tool) < 0)
    {
        return NULL;
    }
    PyCodeObject *code = li_backend_original((PyCodeObject *)args[1]);
    li_code_state *cs = li_code_state_get(code);
    return PyLong_FromUnsignedLong(cs != NULL ? li_code_state_local(cs, tool) : 0);
}

PyDoc_STRVAR(set_local_events_doc,
"set_local_events($module, tool_id, code, event_set, /)\n--\n\n"
"Select event_set for the code object code (not the code nested in it)\n"
"on behalf of tool_id.");

static PyObject *
set_local_events(PyObject *Py_UNUSED(module), PyObject *const *args,
                 Py_ssize_t nargs)
{
    int tool;
    if (!_PyArg_CheckPositional("set_local_events", nargs, 3, 3) ||
        !check_code(args[1]) || tool_arg(args[0], &tool) < 0)
    {
        return NULL;
    }
    int event_set = li_as_int(args[2]);
    if (event_set == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fold_c_events(&event_set) < 0) {
        return NULL;
    }
    if (event_set < 0 || event_set >= (1 << LI_LOCAL_EVENT_COUNT)) {
        PyErr_Format(PyExc_ValueError, "invalid local event set 0x%x", event_set);
        return NULL;
    }
    if (check_in_use(tool) < 0) {
        return NULL;
    }
    PyCodeObject *code = li_backend_original((PyCodeObject *)args[1]);
    li_code_state *cs = li_code_state_ensure(code);
    if (cs == NULL) {
        return NULL;
    }
    li_event_set before = li_code_state_local(cs, tool);
    if (before == (li_event_set)event_set) {
        Py_RETURN_NONE;
    }
    li_code_state_set_local(cs, tool, (li_event_set)event_set);
    li_reg.version++;
    int held = hold_collection();
    int err = li_backend_update_code(cs, ((li_event_set)event_set & ~before) != 0);
    resume_collection(held);
    if (err < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(restart_events_doc,
"restart_events($module, /)\n--\n\n"
"Re-enable every location that a callback disabled by returning DISABLE.");

static PyObject *
restart_events(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    li_reg.disable_epoch++;
    li_dispatch_changed();
    li_reg.version++;
    int held = hold_collection();
    int err = li_backend_restart();
    resume_collection(held);
    if (err < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(exclude_doc,
"_exclude($module, code, /)\n--\n\n"
"Never instrument the code object code (lowimpact's own API wrappers).");

static PyObject *
exclude(PyObject *Py_UNUSED(module), PyObject *code)
{
    if (!check_code(code)) {
        return NULL;
    }
    li_code_state *cs = li_code_state_ensure((PyCodeObject *)code);
    if (cs == NULL) {
        return NULL;
    }
    cs->excluded = true;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(debug_shadow_doc,
"_debug_shadow($module, code, event_set, /)\n--\n\n"
"For tests: (instrumented copy of code with probes for event_set, the\n"
"original code unit of each of its code units, the unit of the copy of\n"
"each original code unit).");

static PyObject *
debug_shadow(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (!_PyArg_CheckPositional("_debug_shadow", nargs, 2, 2) || !check_code(args[0])) {
        return NULL;
    }
    long events = PyLong_AsLong(args[1]);
    if (events == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return li_backend_debug_shadow((PyCodeObject *)args[0], (li_event_set)events);
}

PyDoc_STRVAR(set_c_callback_type_doc,
"_set_c_callback_type($module, type, /)\n--\n\n"
"Called by lowimpact._capi: the type of callbacks written in C, which the\n"
"engine calls directly.");

static PyObject *
set_c_callback_type(PyObject *Py_UNUSED(module), PyObject *type)
{
    if (!PyType_Check(type) || ((PyTypeObject *)type)->tp_basicsize != sizeof(li_ccallback)) {
        PyErr_SetString(PyExc_TypeError, "not the type of C callbacks");
        return NULL;
    }
    Py_XSETREF(li_reg.c_callback_type, (PyTypeObject *)Py_NewRef(type));
    Py_RETURN_NONE;
}

int
li_stats_set(PyObject *stats, const char *name, Py_ssize_t n)
{
    PyObject *count = PyLong_FromSsize_t(n);
    int err = count != NULL ? PyDict_SetItemString(stats, name, count) : -1;
    Py_XDECREF(count);
    return err;
}

PyDoc_STRVAR(stats_doc,
"_stats($module, /)\n--\n\n"
"For tests: counts of what the engine keeps alive (code states, shadows,\n"
"code objects with trampolines, calls waiting for C_RETURN), of the shadows\n"
"and trampolined code that frames of other threads run, and of the shadows\n"
"built so far.");

static PyObject *
stats(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *result = PyDict_New();
    if (result == NULL || li_stats_set(result, "code_states", li_code_state_count()) < 0 ||
        li_backend_stats(result) < 0) {
        Py_XDECREF(result);
        return NULL;
    }
    return result;
}

PyDoc_STRVAR(all_events_doc,
"_all_events($module, /)\n--\n\n"
"Return {event name: bit set of the tools that selected it for all code}.");

static PyObject *
all_events(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *result = PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    for (int e = 0; e < LI_UNGROUPED_EVENT_COUNT; e++) {
        if (li_reg.global_tools[e] == 0) {
            continue;
        }
        PyObject *tools = PyLong_FromLong(li_reg.global_tools[e]);
        if (tools == NULL ||
            PyDict_SetItemString(result, li_event_name(e), tools) < 0)
        {
            Py_XDECREF(tools);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(tools);
    }
    return result;
}

static PyMethodDef engine_methods[] = {
    {"use_tool_id", (PyCFunction)(void (*)(void))use_tool_id, METH_FASTCALL, use_tool_id_doc},
    {"clear_tool_id", clear_tool_id, METH_O, clear_tool_id_doc},
    {"free_tool_id", free_tool_id, METH_O, free_tool_id_doc},
    {"get_tool", get_tool, METH_O, get_tool_doc},
    {"register_callback", (PyCFunction)(void (*)(void))register_callback, METH_FASTCALL,
     register_callback_doc},
    {"get_events", get_events, METH_O, get_events_doc},
    {"set_events", (PyCFunction)(void (*)(void))set_events, METH_FASTCALL, set_events_doc},
    {"get_local_events", (PyCFunction)(void (*)(void))get_local_events, METH_FASTCALL,
     get_local_events_doc},
    {"set_local_events", (PyCFunction)(void (*)(void))set_local_events, METH_FASTCALL,
     set_local_events_doc},
    {"restart_events", restart_events, METH_NOARGS, restart_events_doc},
    {"_all_events", all_events, METH_NOARGS, all_events_doc},
    {"_exclude", exclude, METH_O, exclude_doc},
    {"_stats", stats, METH_NOARGS, stats_doc},
    {"_set_c_callback_type", set_c_callback_type, METH_O, set_c_callback_type_doc},
    {"_debug_shadow", (PyCFunction)(void (*)(void))debug_shadow, METH_FASTCALL,
     debug_shadow_doc},
    {NULL, NULL, 0, NULL},
};

static int
add_int(PyObject *obj, const char *name, long value)
{
    PyObject *v = PyLong_FromLong(value);
    if (v == NULL) {
        return -1;
    }
    int err = PyObject_SetAttrString(obj, name, v);
    Py_DECREF(v);
    return err;
}

static PyObject *
make_events_namespace(void)
{
    /* A mutable namespace of ints, as sys.monitoring.events is. */
    PyObject *types = PyImport_ImportModule("types");
    if (types == NULL) {
        return NULL;
    }
    PyObject *events = PyObject_CallMethod(types, "SimpleNamespace", NULL);
    Py_DECREF(types);
    if (events == NULL) {
        return NULL;
    }
    for (int e = 0; e < LI_EVENT_COUNT; e++) {
        if (add_int(events, li_event_name(e), 1L << e) < 0) {
            Py_DECREF(events);
            return NULL;
        }
    }
    if (add_int(events, "NO_EVENTS", 0) < 0) {
        Py_DECREF(events);
        return NULL;
    }
    return events;
}

static struct PyModuleDef engine_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lowimpact._engine",
    .m_doc = "lowimpact's sys.monitoring engine for interpreters that lack it.",
    .m_size = -1,
    .m_methods = engine_methods,
};

PyMODINIT_FUNC
PyInit__engine(void)
{
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "lowimpact._engine can only be used in the main interpreter");
        return NULL;
    }
    PyObject *module = PyModule_Create(&engine_module);
    if (module == NULL) {
        return NULL;
    }
    PyObject *events = NULL;
    if (li_reg.disable == NULL && li_registry_init() < 0) {
        goto error;
    }
    events = make_events_namespace();
    if (events == NULL ||
        PyModule_AddObjectRef(module, "events", events) < 0 ||
        PyModule_AddObjectRef(module, "DISABLE", li_reg.disable) < 0 ||
        PyModule_AddObjectRef(module, "MISSING", li_reg.missing) < 0 ||
        PyModule_AddIntConstant(module, "DEBUGGER_ID", 0) < 0 ||
        PyModule_AddIntConstant(module, "COVERAGE_ID", 1) < 0 ||
        PyModule_AddIntConstant(module, "PROFILER_ID", 2) < 0 ||
        PyModule_AddIntConstant(module, "OPTIMIZER_ID", 5) < 0 ||
        li_backend_init(module) < 0 || li_capi_init(module) < 0)
    {
        goto error;
    }
    Py_DECREF(events);
    return module;
error:
    Py_XDECREF(events);
    Py_DECREF(module);
    return NULL;
}
