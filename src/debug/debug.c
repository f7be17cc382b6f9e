/* lowimpact._debug: the C callbacks of `lowimpact debug`'s core.
 *
 * The debugger (src/lowimpact/tools/debug.py) keeps every decision in
 * Python: which files have breakpoints, canonical file names, conditions,
 * bdb's stop rules.  What this module does is answer, without a Python
 * call, the events whose answer those decisions already fix:
 *
 *   breakpoint tool  PY_START, PY_RESUME   record the code object under its
 *                                          file (the file's canonical name is
 *                                          asked of Python once per file
 *                                          name), ask Python to arm it if its
 *                                          file has breakpoints; DISABLE
 *                    LINE, JUMP, BRANCH    DISABLE unless the line may hold a
 *                                          breakpoint (its line, or any line
 *                                          of a function with a breakpoint
 *                                          set by its name)
 *   both tools       JUMP, BRANCH          DISABLE unless the jump loops on
 *                                          one line (a new pass of it for
 *                                          pdb) or is the exit of a loop that
 *                                          may (3.11, pdb_line())
 *   step tool        LINE, JUMP, BRANCH,   go on, unless the event is in the
 *                    PY_RETURN, PY_YIELD,  thread stepped in and in a frame
 *                    PY_UNWIND, RAISE,     the command may stop in (or at a
 *                    STOP_ITERATION        line that may hold a breakpoint)
 *
 * Every other event, and every event these let through, goes to the
 * Python callback registered with the C one (its "fallback"), with the
 * same arguments: the program's frame is still the caller's, so Python
 * sees exactly what it saw as the registered callback.
 *
 * Python pushes its state here when it changes: set_breaks() the lines
 * per canonical file, set_step() the thread and frames of the current
 * command.  The frames are compared by address only, never dereferenced:
 * a stale address that a new frame happens to reuse sends that frame's
 * events to Python, which decides as before.
 *
 * There is one debugger core per process (the Python side's _Core), so
 * the state is static; it is only touched with the GIL held.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "backward.h"
#include "li_shared.h"
#include "lowimpact.h"

#define NEVENTS 17

/* ---- a file: its canonical name, code objects and breakpoint lines ------- */

typedef struct {
    PyObject_HEAD
    PyObject *name;    /* owned: the canonical file name */
    PyObject *codes;   /* owned: dict id(code) -> weak reference to the code seen
                          running (the program may drop it, as it can under pdb) */
    int *lines;        /* owned: sorted lines with a breakpoint */
    Py_ssize_t nlines;
    int *funclines;    /* owned: those of a breakpoint set by function name */
    Py_ssize_t nfunclines;
} FileInfo;

static void
file_dealloc(FileInfo *self)
{
    Py_XDECREF(self->name);
    Py_XDECREF(self->codes);
    PyMem_Free(self->lines);
    PyMem_Free(self->funclines);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FileInfoType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._debug.FileInfo",
    .tp_basicsize = sizeof(FileInfo),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A file of the debugged program: its code objects and breakpoint lines.",
    .tp_dealloc = (destructor)file_dealloc,
};

static FileInfo *
file_new(PyObject *name)
{
    FileInfo *file = PyObject_New(FileInfo, &FileInfoType);
    if (file == NULL) {
        return NULL;
    }
    file->name = Py_NewRef(name);
    file->lines = file->funclines = NULL;
    file->nlines = file->nfunclines = 0;
    file->codes = PyDict_New();
    if (file->codes == NULL) {
        Py_DECREF(file);
        return NULL;
    }
    return file;
}

/* PyLong_AsInt (3.13) on every version: -1 with an exception set on error. */
static int
as_int(PyObject *object)
{
    long value = PyLong_AsLong(object);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < INT_MIN || value > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "line or offset out of range");
        return -1;
    }
    return (int)value;
}

static int
compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int
contains(const int *sorted, Py_ssize_t n, int value)
{
    return n > 0 && bsearch(&value, sorted, (size_t)n, sizeof(int), compare_ints) != NULL;
}

/* Whether `line` of `code` can be a breakpoint's: break_here's first test. */
static int
may_break(const FileInfo *file, PyObject *code, int line)
{
    return contains(file->lines, file->nlines, line) ||
           contains(file->funclines, file->nfunclines, ((PyCodeObject *)code)->co_firstlineno);
}

/* The sorted ints of iterable `items` into *out (owned by the caller, NULL
 * when empty) and *n.  0 or -1. */
static int
read_lines(PyObject *items, int **out, Py_ssize_t *n)
{
    int *lines = NULL;
    PyObject *seq = PySequence_Fast(items, "lines must be iterable");   /* owned */
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t size = PySequence_Fast_GET_SIZE(seq);
    if (size > 0) {
        lines = PyMem_New(int, size);
        if (lines == NULL) {
            PyErr_NoMemory();
            goto error;
        }
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        int line = as_int(PySequence_Fast_GET_ITEM(seq, i));
        if (line == -1 && PyErr_Occurred()) {
            goto error;
        }
        lines[i] = line;
    }
    if (size > 1) {
        qsort(lines, (size_t)size, sizeof(int), compare_ints);
    }
    Py_DECREF(seq);
    *out = lines;
    *n = size;
    return 0;
error:
    PyMem_Free(lines);
    Py_DECREF(seq);
    return -1;
}

/* ---- the core's state ------------------------------------------------------ */

static struct {
    PyObject *disable;            /* owned: monitoring.DISABLE */
    PyObject *canonic;            /* owned: file name -> canonical file name */
    PyObject *arm;                /* owned: code -> None, arms its breakpoints */
    PyObject *bp_fallback[NEVENTS];     /* owned: the Python callbacks */
    PyObject *step_fallback[NEVENTS];
    PyObject *by_filename;        /* owned: dict co_filename -> FileInfo */
    PyObject *by_canonic;         /* owned: dict canonical name -> FileInfo */
    /* The last file_of(): held, so that the name's address is not reused. */
    PyObject *last_filename;      /* owned */
    FileInfo *last_file;          /* owned */
    /* The step command: its thread (0: none), and unless `any_frame`, the
     * only frames whose events may stop the program outside breakpoints. */
    unsigned long thread;
    int any_frame;
    uintptr_t stopframe, returnframe;
} core;

/* The FileInfo of `name` (canonical), made if new.  New reference or NULL. */
static FileInfo *
file_named(PyObject *name)
{
    PyObject *found = PyDict_GetItemWithError(core.by_canonic, name);   /* borrowed */
    if (found != NULL) {
        return (FileInfo *)Py_NewRef(found);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    FileInfo *file = file_new(name);
    if (file != NULL && PyDict_SetItem(core.by_canonic, name, (PyObject *)file) < 0) {
        Py_CLEAR(file);
    }
    return file;
}

/* The FileInfo of code object `code`: the last one's again (the events of
 * one code object come in runs), else one dict look-up by its co_filename
 * (a str, whose hash is kept), Python's canonic() on a file name not seen
 * yet.  New reference or NULL. */
static FileInfo *
file_of(PyObject *code)
{
    PyObject *filename = ((PyCodeObject *)code)->co_filename;   /* borrowed */
    if (filename == core.last_filename) {
        return (FileInfo *)Py_NewRef(core.last_file);
    }
    FileInfo *file = (FileInfo *)PyDict_GetItemWithError(core.by_filename, filename);
    if (file != NULL) {
        Py_INCREF(file);
    }
    else {
        if (PyErr_Occurred()) {
            return NULL;
        }
        PyObject *name = PyObject_CallOneArg(core.canonic, filename);   /* owned */
        if (name == NULL) {
            return NULL;
        }
        file = file_named(name);
        Py_DECREF(name);
        if (file == NULL ||
            PyDict_SetItem(core.by_filename, filename, (PyObject *)file) < 0) {
            Py_XDECREF(file);
            return NULL;
        }
    }
    Py_XSETREF(core.last_filename, Py_NewRef(filename));
    Py_XSETREF(core.last_file, (FileInfo *)Py_NewRef(file));
    return file;
}

/* The callback of a recorded code object's weak reference: `where` is
 * (codes, key); removes the entry if it is still `ref`'s. */
static PyObject *
forget_code(PyObject *where, PyObject *ref)
{
    PyObject *codes = PyTuple_GET_ITEM(where, 0), *key = PyTuple_GET_ITEM(where, 1);   /* borrowed */
    PyObject *current = PyDict_GetItemWithError(codes, key);   /* borrowed */
    if (current == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    if (current == ref && PyDict_DelItem(codes, key) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef forget_code_def = {"forget_code", forget_code, METH_O, NULL};

/* Records `code` under `file`, by a weak reference whose callback removes
 * it when the code dies (before another object can take its address, the
 * key).  0 or -1. */
static int
record(FileInfo *file, PyObject *code)
{
    PyObject *where = NULL, *callback = NULL, *ref = NULL;
    PyObject *key = PyLong_FromVoidPtr(code);   /* owned: id(code) */
    if (key == NULL) {
        return -1;
    }
    int found = PyDict_Contains(file->codes, key);
    if (found != 0) {
        Py_DECREF(key);
        return found < 0 ? -1 : 0;
    }
    int result = -1;
    where = PyTuple_Pack(2, file->codes, key);
    if (where == NULL) {
        goto done;
    }
    callback = PyCFunction_New(&forget_code_def, where);
    if (callback == NULL) {
        goto done;
    }
    ref = PyWeakref_NewRef(code, callback);
    if (ref == NULL) {
        goto done;
    }
    result = PyDict_SetItem(file->codes, key, ref);
done:
    Py_XDECREF(ref);
    Py_XDECREF(callback);
    Py_XDECREF(where);
    Py_DECREF(key);
    return result;
}

/* Records `code` under its file: the file, a new reference, or NULL. */
static FileInfo *
learn(PyObject *code)
{
    FileInfo *file = file_of(code);   /* owned */
    if (file != NULL && record(file, code) < 0) {
        Py_CLEAR(file);
    }
    return file;
}

/* Whether the events of the running frame (of the thread stepped in) may
 * stop the program outside breakpoints.  1, 0, or -1 with an exception set. */
static int
step_stops_here(void)
{
    if (core.any_frame) {
        return 1;
    }
    PyFrameObject *frame = PyEval_GetFrame();   /* borrowed */
    if (frame == NULL) {
        return PyErr_Occurred() ? -1 : 1;
    }
    uintptr_t address = (uintptr_t)frame;
    return address == core.stopframe || address == core.returnframe;
}

static int
call_fallback(PyObject *fallback, PyObject *const *args, Py_ssize_t nargs)
{
    if (fallback == NULL) {
        return LOWIMPACT_CONTINUE;
    }
    /* Held: install() may replace it while it runs. */
    Py_INCREF(fallback);
    PyObject *result = PyObject_Vectorcall(fallback, args, (size_t)nargs, NULL);   /* owned */
    Py_DECREF(fallback);
    if (result == NULL) {
        return -1;
    }
    int answer = result == core.disable ? LOWIMPACT_DISABLE : LOWIMPACT_CONTINUE;
    Py_DECREF(result);
    return answer;
}

/* 1 if `line` of `code` may hold a breakpoint, 0 if not (a negative line
 * is an instruction with none), -1 on error. */
static int
line_may_break(PyObject *code, int line)
{
    if (line < 0) {
        return 0;
    }
    FileInfo *file = file_of(code);   /* owned */
    if (file == NULL) {
        return -1;
    }
    int result = may_break(file, code, line);
    Py_DECREF(file);
    return result;
}

/* ---- the callbacks ----------------------------------------------------------- */

static int
bp_discover(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)data;
    (void)event;
    (void)nargs;
    PyObject *code = args[0];
    if (!PyCode_Check(code)) {
        return LOWIMPACT_DISABLE;
    }
    FileInfo *file = learn(code);   /* owned */
    if (file == NULL) {
        return -1;
    }
    int result = 0;
    if (file->nlines > 0) {
        PyObject *armed = PyObject_CallOneArg(core.arm, code);   /* owned */
        if (armed == NULL) {
            result = -1;
        }
        Py_XDECREF(armed);
    }
    Py_DECREF(file);
    return result < 0 ? -1 : LOWIMPACT_DISABLE;
}

/* What the LINE (code, line), JUMP or BRANCH (code, source, destination)
 * event in `args`, of a code object, is for pdb:
 *   LINE_EVENT    a line event at *line: a LINE, or a jump back within its
 *                 own line (a loop on one line, which pdb sees pass by pass);
 *   NO_LINE       a jump elsewhere: the Python callbacks answer DISABLE to
 *                 those, whatever the frame or thread;
 *   LOOP_EXIT     a forward BRANCH of a conditional jump backward (3.11):
 *                 no line event either, but the side not taken of a loop
 *                 on one line, whose taken side is one, so not DISABLEd;
 *   -1            an exception is set. */
enum { NO_LINE = 0, LINE_EVENT = 1, LOOP_EXIT = 2 };

static int
pdb_line(int event, PyObject *const *args, int *line)
{
    PyCodeObject *code = (PyCodeObject *)args[0];   /* borrowed */
    int value = as_int(args[1]);   /* the line, or the jump's source offset */
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (event == PY_MONITORING_EVENT_LINE) {
        *line = value;
        return LINE_EVENT;
    }
    int destination = as_int(args[2]);
    if (destination == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (destination > value) {
        if (event != PY_MONITORING_EVENT_BRANCH) {
            return NO_LINE;
        }
        int backward = li_debug_branches_backward(code, value);
        return backward <= 0 ? backward : LOOP_EXIT;
    }
    *line = PyCode_Addr2Line(code, value);
    return *line >= 0 && PyCode_Addr2Line(code, destination) == *line ? LINE_EVENT : NO_LINE;
}

/* The breakpoint tool's LINE, JUMP and BRANCH: DISABLE where no breakpoint
 * can be. */
static int
bp_line(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)data;
    if (PyCode_Check(args[0])) {
        int line;
        int kind = pdb_line(event, args, &line);
        if (kind == LOOP_EXIT) {
            return LOWIMPACT_CONTINUE;
        }
        int may = kind == LINE_EVENT ? line_may_break(args[0], line) : kind;
        if (may <= 0) {
            return may < 0 ? -1 : LOWIMPACT_DISABLE;
        }
    }
    return call_fallback(core.bp_fallback[event], args, nargs);
}

/* The step tool's events: bdb acts on them only in the thread stepped in,
 * in the frames it stops in or returns to (every frame in step mode, or
 * while it steps in a generator: set_step() says so), and at a line of
 * another frame only if a breakpoint may be there (the step tool has the
 * lines of the code it steps in, not the breakpoint tool). */
static int
step_event(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)data;
    int line = -1;
    int kind = -2;   /* pdb_line()'s answer; -2: not a line or jump of code */
    if ((event == PY_MONITORING_EVENT_LINE || event == PY_MONITORING_EVENT_JUMP ||
         event == PY_MONITORING_EVENT_BRANCH) && PyCode_Check(args[0])) {
        kind = pdb_line(event, args, &line);
        if (kind == -1 || kind == NO_LINE) {
            return kind < 0 ? -1 : LOWIMPACT_DISABLE;
        }
        if (kind == LOOP_EXIT) {
            return LOWIMPACT_CONTINUE;
        }
    }
    if (core.thread != PyThread_get_thread_ident()) {
        /* The step tool took the lines of this code from the breakpoint
           tool: another thread's breakpoints here are its to find.  Never
           DISABLE: the location is the stepping thread's too. */
        if (kind != LINE_EVENT) {
            return LOWIMPACT_CONTINUE;
        }
        int may = line_may_break(args[0], line);
        if (may > 0) {
            may = call_fallback(core.bp_fallback[event], args, nargs);
        }
        return may < 0 ? -1 : LOWIMPACT_CONTINUE;
    }
    int here = step_stops_here();
    if (here == 0 && kind == LINE_EVENT) {
        here = line_may_break(args[0], line);
    }
    if (here <= 0) {
        return here < 0 ? -1 : LOWIMPACT_CONTINUE;
    }
    return call_fallback(core.step_fallback[event], args, nargs);
}

static const LowImpact_Callback bp_callbacks[NEVENTS] = {
    [PY_MONITORING_EVENT_PY_START] = bp_discover,
    [PY_MONITORING_EVENT_PY_RESUME] = bp_discover,
    [PY_MONITORING_EVENT_LINE] = bp_line,
    [PY_MONITORING_EVENT_JUMP] = bp_line,
    [PY_MONITORING_EVENT_BRANCH] = bp_line,
};

static const LowImpact_Callback step_callbacks[NEVENTS] = {
    [PY_MONITORING_EVENT_LINE] = step_event,
    [PY_MONITORING_EVENT_JUMP] = step_event,
    [PY_MONITORING_EVENT_BRANCH] = step_event,
    [PY_MONITORING_EVENT_PY_RETURN] = step_event,
    [PY_MONITORING_EVENT_PY_YIELD] = step_event,
    [PY_MONITORING_EVENT_PY_UNWIND] = step_event,
    [PY_MONITORING_EVENT_RAISE] = step_event,
    [PY_MONITORING_EVENT_STOP_ITERATION] = step_event,
};

/* ---- the module's functions ------------------------------------------------- */

/* Registers tool `tool`'s C callbacks of `table`, remembering the Python
 * callback of each event in `fallbacks` (dict event id -> callable).
 * 0 or -1. */
static int
register_tool(int tool, const LowImpact_Callback *table, PyObject *fallbacks,
              PyObject **slots)
{
    for (int event = 0; event < NEVENTS; event++) {
        if (table[event] == NULL) {
            continue;
        }
        PyObject *key = PyLong_FromLong(event);   /* owned */
        if (key == NULL) {
            return -1;
        }
        PyObject *fallback = PyDict_GetItemWithError(fallbacks, key);   /* borrowed */
        Py_DECREF(key);
        if (fallback == NULL) {
            if (PyErr_Occurred()) {
                return -1;
            }
            PyErr_Format(PyExc_ValueError, "no Python callback for event %s",
                         li_event_name(event));
            return -1;
        }
        Py_XSETREF(slots[event], fallback == Py_None ? NULL : Py_NewRef(fallback));
        if (LowImpact_RegisterCallback(tool, event, table[event], NULL) < 0) {
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(install_doc,
"install(bp_tool, step_tool, disable, canonic, arm, bp_callbacks, step_callbacks)\n\n"
"Register the C callbacks of the breakpoint tool and the step tool (ids\n"
"already in use by the caller).  disable: monitoring.DISABLE; canonic(filename)\n"
"-> the canonical file name; arm(code) arms the breakpoints of a code object\n"
"of a file with breakpoints; bp_callbacks and step_callbacks: event id ->\n"
"the Python callback of that event, called for what C does not answer\n"
"(None: C answers every event, as for PY_START and PY_RESUME of the\n"
"breakpoint tool).");

static PyObject *
debug_install(PyObject *module, PyObject *args)
{
    (void)module;
    int bp_tool, step_tool;
    PyObject *disable, *canonic, *arm, *bp_fallbacks, *step_fallbacks;   /* borrowed */
    if (!PyArg_ParseTuple(args, "iiOOOO!O!:install", &bp_tool, &step_tool, &disable, &canonic,
                          &arm, &PyDict_Type, &bp_fallbacks, &PyDict_Type, &step_fallbacks)) {
        return NULL;
    }
    Py_XSETREF(core.disable, Py_NewRef(disable));
    Py_XSETREF(core.canonic, Py_NewRef(canonic));
    Py_XSETREF(core.arm, Py_NewRef(arm));
    if (register_tool(bp_tool, bp_callbacks, bp_fallbacks, core.bp_fallback) < 0 ||
        register_tool(step_tool, step_callbacks, step_fallbacks, core.step_fallback) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_breaks_doc,
"set_breaks(breaks)\n\n"
"The lines that may break, per canonical file name: breaks maps each file\n"
"with breakpoints to (lines, function_lines), function_lines being those of\n"
"breakpoints set by a function's name; every other file has none.");

typedef struct {
    FileInfo *file;    /* owned */
    int *lines, *funclines;
    Py_ssize_t nlines, nfunclines;
} NewBreaks;

static PyObject *
debug_set_breaks(PyObject *module, PyObject *breaks)
{
    (void)module;
    if (!PyDict_Check(breaks)) {
        PyErr_SetString(PyExc_TypeError, "set_breaks() takes a dict");
        return NULL;
    }
    /* Everything is read and made first: making a FileInfo may collect
       garbage, whose finalizers may run the program's code, whose events
       must find every file's lines, old or new, not none. */
    Py_ssize_t size = PyDict_GET_SIZE(breaks), made = 0;
    NewBreaks *new = PyMem_Calloc((size_t)size + 1, sizeof(NewBreaks));
    if (new == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *name, *value;   /* borrowed */
    Py_ssize_t pos = 0;
    while (made < size && PyDict_Next(breaks, &pos, &name, &value)) {
        PyObject *lines, *funclines;   /* borrowed */
        NewBreaks *entry = &new[made];
        if (!PyArg_ParseTuple(value, "OO:set_breaks", &lines, &funclines) ||
            read_lines(lines, &entry->lines, &entry->nlines) < 0) {
            goto error;
        }
        if (read_lines(funclines, &entry->funclines, &entry->nfunclines) < 0) {
            PyMem_Free(entry->lines);
            goto error;
        }
        made++;
        entry->file = file_named(name);
        if (entry->file == NULL) {
            goto error;
        }
    }
    pos = 0;
    while (PyDict_Next(core.by_canonic, &pos, &name, &value)) {
        FileInfo *file = (FileInfo *)value;
        PyMem_Free(file->lines);
        PyMem_Free(file->funclines);
        file->lines = file->funclines = NULL;
        file->nlines = file->nfunclines = 0;
    }
    /* (Each canonical name once, so each file's lines were just freed.) */
    for (Py_ssize_t i = 0; i < made; i++) {
        FileInfo *file = new[i].file;
        file->lines = new[i].lines;
        file->nlines = new[i].nlines;
        file->funclines = new[i].funclines;
        file->nfunclines = new[i].nfunclines;
        Py_DECREF(file);
    }
    PyMem_Free(new);
    Py_RETURN_NONE;
error:
    for (Py_ssize_t i = 0; i < made; i++) {
        PyMem_Free(new[i].lines);
        PyMem_Free(new[i].funclines);
        Py_XDECREF(new[i].file);
    }
    PyMem_Free(new);
    return NULL;
}

PyDoc_STRVAR(set_step_doc,
"set_step(thread, stopframe, returnframe, any_frame)\n\n"
"The step command's thread (0: none) and frames: unless any_frame, only the\n"
"events of stopframe and returnframe, and lines that may hold a breakpoint,\n"
"reach the step tool's Python callbacks.");

static PyObject *
debug_set_step(PyObject *module, PyObject *args)
{
    (void)module;
    unsigned long thread;
    PyObject *stopframe, *returnframe;   /* borrowed; only their addresses are kept */
    int any_frame;
    if (!PyArg_ParseTuple(args, "kOOp:set_step", &thread, &stopframe, &returnframe,
                          &any_frame)) {
        return NULL;
    }
    core.thread = thread;
    core.any_frame = any_frame;
    core.stopframe = stopframe == Py_None ? 0 : (uintptr_t)stopframe;
    core.returnframe = returnframe == Py_None ? 0 : (uintptr_t)returnframe;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(learn_doc,
"learn(code)\n\n"
"Record code object code under its file, as its first PY_START would.");

static PyObject *
debug_learn(PyObject *module, PyObject *code)
{
    (void)module;
    if (!PyCode_Check(code)) {
        PyErr_SetString(PyExc_TypeError, "learn() takes a code object");
        return NULL;
    }
    if (core.canonic == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "learn() before install()");
        return NULL;
    }
    FileInfo *file = learn(code);   /* owned */
    if (file == NULL) {
        return NULL;
    }
    Py_DECREF(file);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(files_doc, "files()\n\nThe canonical names of the files with code seen running.");

static PyObject *
debug_files(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    PyObject *result = PyList_New(0);   /* owned */
    if (result == NULL) {
        return NULL;
    }
    PyObject *name, *value;   /* borrowed */
    Py_ssize_t pos = 0;
    while (PyDict_Next(core.by_canonic, &pos, &name, &value)) {
        if (PyDict_GET_SIZE(((FileInfo *)value)->codes) > 0 && PyList_Append(result, name) < 0) {
            Py_DECREF(result);
            return NULL;
        }
    }
    return result;
}

PyDoc_STRVAR(codes_doc, "codes(name)\n\nThe code objects of canonical file name seen running (and alive).");

static PyObject *
debug_codes(PyObject *module, PyObject *name)
{
    (void)module;
    PyObject *found = PyDict_GetItemWithError(core.by_canonic, name);   /* borrowed */
    if (found == NULL) {
        return PyErr_Occurred() ? NULL : PyList_New(0);
    }
    PyObject *refs = PyDict_Values(((FileInfo *)found)->codes);   /* owned */
    if (refs == NULL) {
        return NULL;
    }
    PyObject *result = PyList_New(0);   /* owned */
    for (Py_ssize_t i = 0; result != NULL && i < PyList_GET_SIZE(refs); i++) {
        /* Calling the reference gives the code, or None once it died (its
           callback is on its way). */
        PyObject *code = PyObject_CallNoArgs(PyList_GET_ITEM(refs, i));   /* owned */
        if (code == NULL || (code != Py_None && PyList_Append(result, code) < 0)) {
            Py_CLEAR(result);
        }
        Py_XDECREF(code);
    }
    Py_DECREF(refs);
    return result;
}

static PyMethodDef debug_methods[] = {
    {"install", debug_install, METH_VARARGS, install_doc},
    {"set_breaks", debug_set_breaks, METH_O, set_breaks_doc},
    {"set_step", debug_set_step, METH_VARARGS, set_step_doc},
    {"learn", debug_learn, METH_O, learn_doc},
    {"files", debug_files, METH_NOARGS, files_doc},
    {"codes", debug_codes, METH_O, codes_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef debug_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lowimpact._debug",
    .m_doc = "The C callbacks of lowimpact debug's core (see src/debug/debug.c).",
    .m_size = -1,
    .m_methods = debug_methods,
};

PyMODINIT_FUNC
PyInit__debug(void)
{
    if (LowImpact_IMPORT < 0) {
        return NULL;
    }
    if (PyType_Ready(&FileInfoType) < 0) {
        return NULL;
    }
    if (core.by_filename == NULL) {
        core.by_filename = PyDict_New();
        if (core.by_filename == NULL) {
            return NULL;
        }
    }
    if (core.by_canonic == NULL) {
        core.by_canonic = PyDict_New();
        if (core.by_canonic == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&debug_module);
}
