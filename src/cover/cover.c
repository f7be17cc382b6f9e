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
 *                      after its first execution.  (Native 3.12/3.13
 *                      DISABLE the unit that reported; the collector
 *                      quiets the line's other units itself: quiet.h.)
 *   PY_RETURN, PY_YIELD (local, with BRANCH)
 *                      record the offset the frame left from, then DISABLE:
 *                      coverage.py counts leaving a code object as an arc.
 *   BRANCH (local)     records (source offset, destination offset); DISABLE
 *                      once both directions of the branch were seen.  On
 *                      3.12/3.13 DISABLE turns off both directions of a
 *                      branch instruction, so it must wait for the second,
 *                      unless the lines tell it: a branch that repeats one
 *                      way HOT_REPEATS times is DISABLEd when implied_of
 *                      says that some statement runs only after its other
 *                      way (a loop's exit, an `if`'s body).  Each way seen
 *                      answers LOWIMPACT_DISABLE_WAY, which the 3.11 engine
 *                      honours: there a one-way branch reports once.
 *
 * What is recorded is raw: code objects, line numbers and offset pairs.
 * Turning offset pairs into coverage.py's line arcs needs the bytecode and
 * the source, so the Python side does it once, when the data is saved.
 *
 * Contexts (coverage.py's "who ran this line").  What is recorded belongs
 * to a *period*, labelled with the dynamic context it ran under (None: no
 * dynamic context).  switch_context() ends the current period and starts
 * one with another label; because LINE (and the other events) DISABLE after
 * their first report, ending a period re-arms the code objects that
 * recorded something in it (their local events off and on again: CPython
 * and the engine forget what was DISABLEd when a code object's events
 * change), and only those.  A collector whose contexts never change never
 * does any of this: its callbacks are the ones above.
 *
 *   test_context       coverage.py's dynamic_context = test_function, as its
 *                      C tracer does it: when a code object named test* or
 *                      runTest starts (PY_START, or PY_RESUME or global
 *                      PY_THROW of a generator)
 *                      while no test context is active in its thread,
 *                      test_context(frame) gives the label (None: not a
 *                      test); the context ends when that frame returns,
 *                      yields or unwinds (local PY_RETURN/PY_YIELD on such
 *                      code objects, global PY_UNWIND).  Their PY_START is
 *                      never DISABLEd.  The C tracer has a tracer per
 *                      thread, each starting and ending its own test
 *                      context, all switching the one current label: so a
 *                      test that starts in a thread while another thread's
 *                      runs switches to its own label, and its end to none.
 *   pause(), resume()  what runs in between is not recorded (pytest-cov's
 *                      no_cover); no test context starts meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "codewalk.h"
#include "locations.h"
#include "lowimpact.h"
#include "quiet.h"
#include "li_shared.h"

#define EVENT_BIT(e) (1u << (e))

/* The local events of a test code object that start and end its context. */
#define CONTEXT_EVENTS                                                                          \
    (EVENT_BIT(PY_MONITORING_EVENT_PY_RESUME) | EVENT_BIT(PY_MONITORING_EVENT_PY_RETURN) |    \
     EVENT_BIT(PY_MONITORING_EVENT_PY_YIELD))

/* Interned "test" and "runTest" (owned by the module, for ever). */
static PyObject *str_test = NULL;
static PyObject *str_run_test = NULL;

/* A branch seen to go one way only, as recorded in the current period. */
typedef struct {
    PyObject *code;          /* borrowed: `codes` keeps it (NULL: an empty slot) */
    long source;             /* offsets */
    long destination;
    uint32_t repeats;        /* reports of that way since it was recorded */
} OneWay;

/* How many times a branch repeats the one way it went before the collector
   asks whether the lines tell the other way (implied_of): enough that code
   that runs a few times is not analysed, few next to a hot loop's passes. */
#define HOT_REPEATS 64

/* How many more repeats a hot one-way branch goes before implied_of is asked
   again, when it answered NotImplemented (it cannot tell yet). */
#define ASK_AGAIN_REPEATS 4096

/* Slots of the cache of one-way branches, a power of two: more than the
   branch instructions a hot loop usually runs. */
#define ONE_WAY_SLOTS 64

/* A thread's active test context. */
typedef struct {
    /* PyThreadState_GetID(): a dead thread's state address goes to a new
       thread (in a forked child too, where the others' entries stay), ids
       are never reused. */
    uint64_t thread;
    PyObject *frame;         /* the frame that started it */
    PyObject *code;          /* its code object */
} TestContext;

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
    /* The one-way branches recorded last, by code and source offset.  On
     * 3.12/3.13 DISABLE would silence both directions of a branch
     * instruction, so one that always goes the same way reports on every
     * pass; this answers such a report with two compares instead of a dict
     * and a set look-up.  An entry is valid while `branches` is the dict it
     * was recorded in and its code is in `codes`: forget_branches() empties
     * it with them. */
    OneWay one_way[ONE_WAY_SLOTS];
    uint64_t branches_version;  /* bumped as they are forgotten */
    /* callable(code, file name) -> {source offset: next offset << 2 | ways}
     * or None, where ways has 1 when running some statement tells that the
     * branch jumped, 2 when one tells that it went on (the arc is then
     * taken from the lines when the data is saved); NULL: not asked.
     * Owned; `implied` (owned) keeps its answers by id(code). */
    PyObject *implied_of;
    PyObject *implied;
    /* Contexts.  All owned. */
    PyObject *label;         /* the current period's dynamic context (None: none) */
    PyObject *periods;       /* list of (label, lines, branches, exits) of ended periods */
    PyObject *test_context;  /* callable(frame) -> str or None, or NULL: no test contexts */
    PyObject *test_codes;    /* dict: id(code) -> code, test code objects given CONTEXT_EVENTS */
    /* The threads whose test context is active, in no order (PyMem; each
     * entry's frame and code owned).  Rarely more than one, so it is
     * searched; an entry lives from its test's start to its frame's
     * return, yield or unwind, which happen in that thread before it can
     * exit, so no entry outlives its thread. */
    TestContext *tests;
    Py_ssize_t n_tests;
    Py_ssize_t tests_size;
    int paused;              /* between pause() and resume() */
    int switching;           /* contexts may change: a test_context, or a period ended */
    /* dict: id(code) -> {line: bytes of the int32 units where LINE checks
     * it}, for the measured code's lines that LINE checks at more than one
     * unit (owned): once the line is recorded, the collector's LINE is
     * quieted at all of them (quiet.h). */
    PyObject *line_units;
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

/* The local events of a measured code object.  With BRANCH and contexts
 * that may change, PY_RESUME too (on_resume()): a generator resumed in
 * another period than the one it yielded in records its resumption line
 * in the new one. */
static inline uint32_t
measured_events(const Collector *self)
{
    uint32_t events = EVENT_BIT(PY_MONITORING_EVENT_LINE);
    if (self->branch) {
        events |= EVENT_BIT(PY_MONITORING_EVENT_BRANCH) | EVENT_BIT(PY_MONITORING_EVENT_PY_RETURN) |
                  EVENT_BIT(PY_MONITORING_EVENT_PY_YIELD);
        if (self->switching) {
            events |= EVENT_BIT(PY_MONITORING_EVENT_PY_RESUME);
        }
    }
    return events;
}

/* Note the lines of `code` (keyed `key`), just given LINE, that LINE checks
 * at more than one unit.  Where they cannot be read, their checks stay. */
static int
note_line_units(Collector *self, PyObject *key, PyObject *code)
{
    Py_ssize_t count;
    int32_t *units = cover_line_units((PyCodeObject *)code, &count);   /* PyMem */
    if (units == NULL) {
        return count < 0 ? -1 : 0;
    }
    PyObject *table = count < 2 ? NULL : PyObject_GetAttrString(code, "co_linetable");
    PyObject *by_line = table == NULL || !PyBytes_Check(table) ? NULL
        : cover_units_by_line(table, ((PyCodeObject *)code)->co_firstlineno, units, count);
    PyMem_Free(units);
    Py_XDECREF(table);
    if (by_line == NULL) {
        PyErr_Clear();
        return 0;
    }
    int rc = PyDict_GET_SIZE(by_line) == 0 ? 0 : PyDict_SetItem(self->line_units, key, by_line);
    Py_DECREF(by_line);
    return rc;
}

/* LINE reported `line` of `code` (keyed `key`): quiet its other checks. */
static int
quiet_line(Collector *self, PyObject *key, PyObject *code, PyObject *line)
{
    PyObject *by_line = PyDict_GetItemWithError(self->line_units, key);   /* borrowed */
    PyObject *units = by_line == NULL ? NULL : PyDict_GetItemWithError(by_line, line);
    if (units == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    int32_t unit_array[64];
    Py_ssize_t n = PyBytes_GET_SIZE(units) / (Py_ssize_t)sizeof(int32_t);
    /* (Copied: a bytes object's data has no alignment promised.) */
    for (Py_ssize_t done = 0; done < n; done += 64) {
        Py_ssize_t now = n - done < 64 ? n - done : 64;
        memcpy(unit_array, PyBytes_AS_STRING(units) + done * (Py_ssize_t)sizeof(int32_t),
               (size_t)now * sizeof(int32_t));
        cover_quiet_units((PyCodeObject *)code, self->tool_id, unit_array, now);
    }
    return 0;
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
    /* A test code object given its context events before it started
       (give_context_events) keeps them. */
    int test = PyDict_Contains(self->test_codes, key);
    if (test < 0 ||
        LowImpact_SetLocalEvents(self->tool_id, code,
                                 measured_events(self) | (test ? CONTEXT_EVENTS : 0)) < 0) {
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
    int noted = note_line_units(self, key, code);
    Py_DECREF(key);
    Py_DECREF(self);
    return noted < 0 ? -1 : LOWIMPACT_DISABLE;
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
    int line = event == PY_MONITORING_EVENT_LINE;
    PyObject *outer = line ? self->lines : self->exits;
    PyObject *key = PyLong_FromVoidPtr(args[0]);   /* owned */
    if (key == NULL) {
        return -1;
    }
    PyObject *values = get_or_make(outer, key, PySet_New);   /* borrowed */
    int rc = values == NULL || PySet_Add(values, args[1]) < 0 ? -1 : LOWIMPACT_DISABLE;
    if (rc != -1 && line && quiet_line(self, key, args[0], args[1]) < 0) {
        rc = -1;
    }
    Py_DECREF(key);
    return rc;
}

/* Forget the look-ups on_branch() saved: `branches` is about to be cleared
 * or replaced. */
static void
forget_branches(Collector *self)
{
    self->last_code = self->last_per_source = NULL;
    memset(self->one_way, 0, sizeof(self->one_way));
    self->branches_version++;
}

static inline OneWay *
one_way_slot(Collector *self, PyObject *code, long source)
{
    uintptr_t hash = ((uintptr_t)code >> 4) ^ (uintptr_t)source;
    return &self->one_way[hash & (ONE_WAY_SLOTS - 1)];
}

/* The answer of implied_of for `code` (borrowed; None: no branch of it is
 * told by its lines; NotImplemented: not known yet, ask again later),
 * asked once per code object until it knows; NULL with an exception set.
 * Runs Python code: the caller holds `self`. */
static PyObject *
implied_ways(Collector *self, PyObject *code)
{
    PyObject *key = PyLong_FromVoidPtr(code);   /* owned */
    if (key == NULL) {
        return NULL;
    }
    PyObject *ways = PyDict_GetItemWithError(self->implied, key);   /* borrowed */
    if (ways != NULL || PyErr_Occurred()) {
        Py_DECREF(key);
        return ways;
    }
    PyObject *entry = PyDict_GetItemWithError(self->codes, key);   /* borrowed */
    if (entry == NULL) {
        Py_DECREF(key);
        return PyErr_Occurred() ? NULL : Py_None;
    }
    /* (Held across the call, which runs Python code.) */
    Py_INCREF(entry);
    ways = PyObject_CallFunctionObjArgs(self->implied_of, PyTuple_GET_ITEM(entry, 0),
                                        PyTuple_GET_ITEM(entry, 1), NULL);   /* owned */
    Py_DECREF(entry);
    if (ways == Py_NotImplemented) {
        Py_DECREF(key);
        Py_DECREF(ways);   /* (the interpreter holds the singleton) */
        return Py_NotImplemented;
    }
    if (ways != NULL && ways != Py_None && !PyDict_Check(ways)) {
        PyErr_Format(PyExc_TypeError,
                     "implied_of() must return dict, None or NotImplemented, not %.100s",
                     Py_TYPE(ways)->tp_name);
        Py_CLEAR(ways);
    }
    /* (Another thread may have asked for the same code meanwhile: the
       first answer stays, so that one it holds borrowed is not freed.) */
    PyObject *kept = ways == NULL ? NULL : PyDict_SetDefault(self->implied, key, ways);
    Py_DECREF(key);
    Py_XDECREF(ways);   /* `implied` holds it now */
    return kept;
}

/* A branch that went one way HOT_REPEATS times in a row: DISABLE it when
 * the other way is told by the lines (`source`: the offset object of the
 * event), else let it go on reporting. */
static int
on_hot_one_way(Collector *self, PyObject *code, PyObject *source, long source_offset,
               long destination)
{
    uint64_t version = self->branches_version;
    Py_INCREF(self);
    int result = -1;
    PyObject *ways = implied_ways(self, code);   /* borrowed */
    if (ways == NULL) {
        goto done;
    }
    result = LOWIMPACT_CONTINUE;
    if (ways == Py_NotImplemented) {
        OneWay *seen = one_way_slot(self, code, source_offset);
        if (seen->code == code && seen->source == source_offset) {
            /* (Unsigned: it counts up through 0 to HOT_REPEATS again.) */
            seen->repeats = HOT_REPEATS - ASK_AGAIN_REPEATS;
        }
        goto done;
    }
    /* A period that ended meanwhile re-armed this branch: the way it went
       is not recorded in the new one yet. */
    if (ways == Py_None || !self->running || self->branches_version != version) {
        goto done;
    }
    PyObject *packed = PyDict_GetItemWithError(ways, source);   /* borrowed */
    if (packed == NULL) {
        result = PyErr_Occurred() ? -1 : LOWIMPACT_CONTINUE;
        goto done;
    }
    long value = PyLong_AsLong(packed);
    if (value == -1 && PyErr_Occurred()) {
        result = -1;
        goto done;
    }
    long other_told = destination == value >> 2 ? value & 1 : value & 2;
    if (other_told) {
        OneWay *seen = one_way_slot(self, code, source_offset);
        if (seen->code == code && seen->source == source_offset) {
            seen->code = NULL;
        }
        result = LOWIMPACT_DISABLE;
    }
done:
    Py_DECREF(self);
    return result;
}

static int
on_branch(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    Collector *self = (Collector *)data;
    if (nargs < 3) {
        return LOWIMPACT_DISABLE;
    }
    long source, destination;
    if (!li_long_one_digit(args[1], &source) || !li_long_one_digit(args[2], &destination)) {
        source = PyLong_AsLong(args[1]);
        destination = PyLong_AsLong(args[2]);
        if ((source == -1 || destination == -1) && PyErr_Occurred()) {
            return -1;
        }
    }
    OneWay *seen = one_way_slot(self, args[0], source);
    if (seen->code == args[0] && seen->source == source && seen->destination == destination) {
        if (self->implied_of == NULL || ++seen->repeats != HOT_REPEATS) {
            return LOWIMPACT_DISABLE_WAY;
        }
        return on_hot_one_way(self, args[0], args[1], source, destination);
    }
    /* Making a dict or a set below may collect garbage, whose finalizers
     * may let another thread clear or replace the branches recorded (a
     * reset, the end of a period): the dicts used are held meanwhile, and
     * what was found then is not remembered for what comes after. */
    uint64_t version = self->branches_version;
    PyObject *branches = Py_NewRef(self->branches);
    PyObject *per_source = self->last_per_source;
    bool found_last = args[0] == self->last_code && per_source != NULL;
    if (found_last) {
        Py_INCREF(per_source);
    }
    else {
        PyObject *key = PyLong_FromVoidPtr(args[0]);   /* owned */
        if (key == NULL) {
            Py_DECREF(branches);
            return -1;
        }
        per_source = Py_XNewRef(get_or_make(branches, key, new_dict));
        Py_DECREF(key);
    }
    Py_DECREF(branches);
    if (per_source == NULL) {
        return -1;
    }
    PyObject *dests = get_or_make(per_source, args[1], PySet_New);   /* borrowed */
    if (dests == NULL || PySet_Add(dests, args[2]) < 0) {
        Py_DECREF(per_source);
        return -1;
    }
    /* A branch instruction has two destinations; once both ran there is
     * nothing more to learn here. */
    int result = LOWIMPACT_CONTINUE;
    if (PySet_GET_SIZE(dests) >= 2) {
        if (seen->code == args[0] && seen->source == source) {
            seen->code = NULL;
        }
        result = LOWIMPACT_DISABLE;
    }
    else if (self->branches_version == version) {
        if (!found_last) {
            self->last_code = args[0];
            self->last_per_source = per_source;   /* borrowed: `branches` holds it */
        }
        *seen = (OneWay){.code = args[0], .source = source, .destination = destination,
                         .repeats = 0};
        /* Recorded: this way need not come again (the engine stops it; where
           it cannot, the cache above answers the repeats). */
        result = LOWIMPACT_DISABLE_WAY;
    }
    Py_DECREF(per_source);
    return result;
}

/* -- Contexts --------------------------------------------------------- */

/* Gives the code object recorded under `key` (if measured) its local
 * events again: turning them off and on makes CPython (and the engine)
 * forget the locations DISABLEd in it.  A test code object's context
 * events stay on in between (they are never DISABLEd): another thread may
 * run it meanwhile, as any Python code that runs between the two calls
 * can switch threads (on 3.11 an allocation may collect garbage, which
 * runs finalisers and gc.callbacks), and a test frame that returned,
 * yielded or unwound then would leave its thread's context active for
 * good. */
static int
rearm_code(Collector *self, PyObject *key)
{
    PyObject *entry = PyDict_GetItemWithError(self->codes, key);   /* borrowed */
    if (entry == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *code = PyTuple_GET_ITEM(entry, 0);   /* borrowed */
    int is_test = PyDict_Contains(self->test_codes, key);
    if (is_test < 0) {
        return -1;
    }
    uint32_t kept = is_test ? CONTEXT_EVENTS : 0;
    uint32_t events = measured_events(self) | kept;
    /* (When the second call fails, the code is left with the kept events
       alone: its PY_START is DISABLEd, so it is not measured again until
       the next restart_events().  The error reaches whoever switched.) */
    if (LowImpact_SetLocalEvents(self->tool_id, code, kept) < 0 ||
        LowImpact_SetLocalEvents(self->tool_id, code, events) < 0) {
        return -1;
    }
    return 0;
}

/* Re-arms each code object that recorded something in the period whose
 * dicts are `lines`, `branches` and `exits` (all borrowed; no longer the
 * collector's, so no callback changes them meanwhile), once each: only
 * they had locations DISABLEd in it.  Each is tried whatever happened to
 * the others (one that failed would miss the next period's lines, the
 * others need not); the first error is reported. */
static int
rearm(Collector *self, PyObject *lines, PyObject *branches, PyObject *exits)
{
    PyObject *first = NULL;   /* owned: the first failure */
    PyObject *const dicts[] = {lines, branches, exits};
    for (int d = 0; d < 3; d++) {
        PyObject *key, *value;   /* borrowed */
        Py_ssize_t pos = 0;
        while (PyDict_Next(dicts[d], &pos, &key, &value)) {
            int done = 0;
            for (int e = 0; e < d && done == 0; e++) {
                done = PyDict_Contains(dicts[e], key);
            }
            if (done < 0 || (done == 0 && rearm_code(self, key) < 0)) {
                li_keep_first_error(&first);
            }
        }
    }
    return li_raise_kept_error(first);
}

/* Ends the current period and starts an empty one labelled `label`
 * (borrowed).  The ended period goes to `periods` when `keep` is set and
 * it recorded something (coverage.py records a context only when it has
 * data for some file); what was DISABLEd in it is re-armed. */
static int
end_period(Collector *self, PyObject *label, int keep)
{
    int rc = -1;
    PyObject *lines = PyDict_New(), *branches = PyDict_New(),
             *exits = PyDict_New();   /* owned: the new period's until stored, then the old one's */
    if (lines == NULL || branches == NULL || exits == NULL) {
        goto done;
    }
    if (keep && (PyDict_GET_SIZE(self->lines) > 0 || PyDict_GET_SIZE(self->branches) > 0 ||
                 PyDict_GET_SIZE(self->exits) > 0)) {
        PyObject *period = PyTuple_Pack(4, self->label, self->lines, self->branches,
                                        self->exits);   /* owned */
        if (period == NULL) {
            goto done;
        }
        int appended = PyList_Append(self->periods, period);
        Py_DECREF(period);
        if (appended < 0) {
            goto done;
        }
    }
    /* From the first switch on, measured code gets PY_RESUME with BRANCH:
       rearm() gives it to what ran until now, on_py_start() to the rest. */
    self->switching = 1;
    PyObject *swap;   /* (each swap moves one owned reference) */
    swap = self->lines, self->lines = lines, lines = swap;
    swap = self->branches, self->branches = branches, branches = swap;
    swap = self->exits, self->exits = exits, exits = swap;
    forget_branches(self);
    Py_SETREF(self->label, Py_NewRef(label));
    rc = rearm(self, lines, branches, exits);
done:
    Py_XDECREF(lines);
    Py_XDECREF(branches);
    Py_XDECREF(exits);
    return rc;
}

/* 1 if `code` may start a test context: what coverage.py's
 * should_start_context_test_function looks at first (its name starts with
 * "test" or is "runTest"), 0 if not, -1 on error. */
static int
is_test_code(PyObject *code)
{
    PyObject *name = ((PyCodeObject *)code)->co_name;   /* borrowed */
    Py_ssize_t match = PyUnicode_Tailmatch(name, str_test, 0, PY_SSIZE_T_MAX, -1);
    if (match != 0) {
        return match < 0 ? -1 : 1;
    }
    return PyObject_RichCompareBool(name, str_run_test, Py_EQ);
}

static int give_nested_context_events(Collector *self, PyObject *code);

/* Sets *events to the local events of the test code object `code` (under
 * `key` in `codes` when it started): its context events, with LINE (and
 * BRANCH) when it is measured or its file is known to be. */
static int
test_code_events(Collector *self, PyObject *key, PyObject *code, uint32_t *events)
{
    int measured = PyDict_Contains(self->codes, key);
    if (measured < 0) {
        return -1;
    }
    if (measured == 0) {
        PyObject *name = PyDict_GetItemWithError(
            self->file_cache, ((PyCodeObject *)code)->co_filename);   /* borrowed */
        if (name == NULL && PyErr_Occurred()) {
            return -1;
        }
        measured = name != NULL && name != Py_None;
    }
    *events = CONTEXT_EVENTS | (measured ? measured_events(self) : 0);
    return 0;
}

/* Gives a test code object the events that start and end its context,
 * once, and the test code objects it defines theirs.  One not started yet
 * whose file is known to be measured gets LINE (and BRANCH) too, as
 * on_py_start() decides at its start (should_trace() is asked once per
 * file name): its events then need no change when it starts, and it is
 * recorded as measured then, when it ran. */
static int
give_context_events(Collector *self, PyObject *code)
{
    int rc = -1;
    PyObject *key = PyLong_FromVoidPtr(code);   /* owned */
    if (key == NULL) {
        return -1;
    }
    int known = PyDict_Contains(self->test_codes, key);
    if (known != 0) {
        rc = known < 0 ? -1 : 0;
        goto done;
    }
    uint32_t events;
    if (test_code_events(self, key, code, &events) < 0) {
        goto done;
    }
    /* In test_codes before the events change, so that a re-arm meanwhile
       would keep them; out of it again when they could not be given, so
       that the next start of `code` (or of a code object defining it)
       tries again: in test_codes means "has its context events". */
    if (PyDict_SetItem(self->test_codes, key, code) < 0) {
        goto done;
    }
    if (LowImpact_SetLocalEvents(self->tool_id, code, events) < 0) {
        PyObject *type, *value, *traceback;   /* owned while held */
        PyErr_Fetch(&type, &value, &traceback);
        if (PyDict_DelItem(self->test_codes, key) < 0) {
            PyErr_Clear();   /* (only a MemoryError could; the first error is reported) */
        }
        PyErr_Restore(type, value, traceback);
        goto done;
    }
    /* A failure below leaves `code` complete; the nested code objects not
       reached are given theirs when they or their definers start. */
    rc = give_nested_context_events(self, code);
done:
    Py_DECREF(key);
    return rc;
}

/* Gives the test code objects that `code` defines (functions, methods and
 * classes are code objects among its constants) their context events
 * before they first run.  A code object given them at its own PY_START
 * would have its frame moved onto a new shadow by the engine on 3.11 when
 * the callback returns, and that frame has a frame object the collector
 * holds (the context's): moving it costs a walk of the whole heap for
 * tracebacks that may hold it (li_fix_moved_tracebacks), a few ms per
 * test in a pytest process. */
static int
give_nested_context_events(Collector *self, PyObject *code)
{
    PyObject *consts = ((PyCodeObject *)code)->co_consts;   /* borrowed */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); i++) {
        PyObject *nested = PyTuple_GET_ITEM(consts, i);   /* borrowed */
        if (!PyCode_Check(nested)) {
            continue;
        }
        int test = is_test_code(nested);
        if (test < 0 || (test && give_context_events(self, nested) < 0)) {
            return -1;
        }
    }
    return 0;
}

/* The index in `tests` of `thread`'s test context, or -1: none active. */
static Py_ssize_t
find_test(const Collector *self, uint64_t thread)
{
    for (Py_ssize_t i = 0; i < self->n_tests; i++) {
        if (self->tests[i].thread == thread) {
            return i;
        }
    }
    return -1;
}

/* Adds `thread`'s test context, started by `frame` running `code` (both
 * borrowed; the entry takes references). */
static int
add_test(Collector *self, uint64_t thread, PyObject *frame, PyObject *code)
{
    if (self->n_tests == self->tests_size) {
        Py_ssize_t size = self->tests_size ? 2 * self->tests_size : 4;
        TestContext *tests = PyMem_Realloc(self->tests, (size_t)size * sizeof(TestContext));
        if (tests == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->tests = tests;
        self->tests_size = size;
    }
    self->tests[self->n_tests++] = (TestContext){thread, Py_NewRef(frame), Py_NewRef(code)};
    return 0;
}

/* Removes the test context at `index`.  The references go after the
 * entry is out of the array: releasing them may run code that changes
 * it. */
static void
remove_test(Collector *self, Py_ssize_t index)
{
    TestContext gone = self->tests[index];
    self->tests[index] = self->tests[--self->n_tests];
    Py_DECREF(gone.frame);
    Py_DECREF(gone.code);
}

/* Forgets every thread's test context (the measuring stops).  The array
 * is detached first, for the same reason. */
static void
clear_tests(Collector *self)
{
    TestContext *tests = self->tests;
    Py_ssize_t n = self->n_tests;
    self->tests = NULL;
    self->n_tests = self->tests_size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(tests[i].frame);
        Py_DECREF(tests[i].code);
    }
    PyMem_Free(tests);
}

/* A test code object starts or resumes: with no test context active in
 * this thread (and not paused), test_context(frame) says whether this
 * frame starts one. */
static int
maybe_start_test_context(Collector *self, PyObject *code)
{
    uint64_t thread = PyThreadState_GetID(PyThreadState_Get());
    if (self->paused || self->test_context == NULL || find_test(self, thread) >= 0) {
        return 0;
    }
    PyObject *frame = (PyObject *)PyEval_GetFrame();   /* borrowed, then owned */
    if (frame == NULL) {
        return 0;
    }
    Py_INCREF(frame);
    /* test_context() runs Python code: keep what it could drop. */
    Py_INCREF(self);
    PyObject *function = Py_NewRef(self->test_context);   /* owned */
    PyObject *label = PyObject_CallOneArg(function, frame);   /* owned */
    int rc = 0;
    if (label == NULL) {
        rc = -1;
    }
    else if (label != Py_None && self->running && !self->paused && find_test(self, thread) < 0) {
        if (!PyUnicode_Check(label)) {
            PyErr_Format(PyExc_TypeError, "test_context() must return str or None, not %.100s",
                         Py_TYPE(label)->tp_name);
            rc = -1;
        }
        /* The entry first: if the switch fails (after the label changed,
           in the re-arming), the frame's end still switches back. */
        else if (add_test(self, thread, frame, code) < 0 || end_period(self, label, 1) < 0) {
            rc = -1;
        }
    }
    Py_XDECREF(label);
    Py_DECREF(function);
    Py_DECREF(frame);
    Py_DECREF(self);
    return rc;
}

/* The index in `tests` of the test context that the frame running `code`
 * now started, or -1.  The frame alone tells the thread: a test frame
 * runs in the thread that started its context until it ends it. */
static Py_ssize_t
context_started_here(const Collector *self, PyObject *code)
{
    /* Before the search: making the frame object allocates, which may
       collect garbage and let another thread change `tests`. */
    PyObject *frame = (PyObject *)PyEval_GetFrame();
    for (Py_ssize_t i = 0; i < self->n_tests; i++) {
        if (self->tests[i].code == code && self->tests[i].frame == frame) {
            return i;
        }
    }
    return -1;
}

/* The test context at `index` ended with its frame: back to no dynamic
 * context, whatever other threads' tests do, as coverage.py's C tracer
 * switches (after resume(), when paused: the paused period is not kept
 * anyway). */
static int
end_test_context(Collector *self, Py_ssize_t index)
{
    remove_test(self, index);
    if (self->paused) {
        Py_SETREF(self->label, Py_NewRef(Py_None));
        return 0;
    }
    return end_period(self, Py_None, 1);
}

/* PY_START with test contexts: a test code object may start a context, and
 * its PY_START stays on for its next run; any other code object is
 * on_py_start()'s. */
static int
on_py_start_contexts(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    Collector *self = (Collector *)data;
    if (nargs < 1 || !PyCode_Check(args[0])) {
        return LOWIMPACT_DISABLE;
    }
    int test = is_test_code(args[0]);
    if (test < 0) {
        return -1;
    }
    if (test == 0) {
        /* After on_py_start(), which decides whether its file (that of the
           code objects it defines, as a rule) is measured.  Once per code
           object: on_py_start() DISABLEs its PY_START. */
        Py_INCREF(self);
        int rc = on_py_start(data, event, args, nargs);
        if (rc >= 0 && self->running && give_nested_context_events(self, args[0]) < 0) {
            rc = -1;
        }
        Py_DECREF(self);
        return rc;
    }
    Py_INCREF(self);
    int rc = maybe_start_test_context(self, args[0]) < 0 ||
                     on_py_start(data, event, args, nargs) < 0 ||
                     (self->running && give_context_events(self, args[0]) < 0)
                 ? -1
                 : LOWIMPACT_CONTINUE;
    Py_DECREF(self);
    return rc;
}

/* PY_RESUME: a resumed test generator starts its context again, as a call
 * event does for coverage.py's C tracer; then, with BRANCH, a measured
 * generator records the line it resumes at, once per period (DISABLE;
 * re-armed with what it recorded).  The C tracer takes a resumption as
 * coming from that line (the yield's), so the step from it to the next
 * line is recorded in the period the generator resumes in: a pytest
 * fixture's yield, set up in one test phase and resumed in the next. */
static int
on_resume(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    Collector *self = (Collector *)data;
    if (nargs < 2 || !PyCode_Check(args[0])) {
        return LOWIMPACT_DISABLE;
    }
    int test = self->test_context != NULL ? is_test_code(args[0]) : 0;
    if (test < 0 || (test && maybe_start_test_context(self, args[0]) < 0)) {
        return -1;
    }
    if (!self->branch) {
        return LOWIMPACT_CONTINUE;   /* (a test: its context events) */
    }
    PyObject *key = PyLong_FromVoidPtr(args[0]);   /* owned */
    if (key == NULL) {
        return -1;
    }
    int measured = PyDict_Contains(self->codes, key);
    Py_DECREF(key);
    if (measured <= 0) {
        return measured < 0 ? -1 : test ? LOWIMPACT_CONTINUE : LOWIMPACT_DISABLE;
    }
    long offset = PyLong_AsLong(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        return -1;
    }
    int line = offset < 0 || offset > INT_MAX
                   ? -1
                   : PyCode_Addr2Line((PyCodeObject *)args[0], (int)offset);
    if (line > 0) {
        PyObject *number = PyLong_FromLong(line);   /* owned */
        if (number == NULL) {
            return -1;
        }
        PyObject *const record[2] = {args[0], number};
        int rc = on_once(data, PY_MONITORING_EVENT_LINE, record, 2);
        Py_DECREF(number);
        if (rc < 0) {
            return -1;
        }
    }
    return test ? LOWIMPACT_CONTINUE : LOWIMPACT_DISABLE;
}

/* PY_RETURN, PY_YIELD with test contexts: on_once()'s for measured code
 * (with BRANCH), except that a test code object keeps reporting; the frame
 * that started the test context ends it (after its exit is recorded, as
 * coverage.py's C tracer records the return arc first). */
static int
on_exit_contexts(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    Collector *self = (Collector *)data;
    if (nargs < 2) {
        return LOWIMPACT_DISABLE;
    }
    PyObject *key = PyLong_FromVoidPtr(args[0]);   /* owned */
    if (key == NULL) {
        return -1;
    }
    int rc = LOWIMPACT_CONTINUE;
    int measured = self->branch ? PyDict_Contains(self->codes, key) : 0;
    int test = measured < 0 ? -1 : PyDict_Contains(self->test_codes, key);
    Py_DECREF(key);
    if (test < 0 || (measured > 0 && (rc = on_once(data, event, args, nargs)) < 0)) {
        return -1;
    }
    if (test) {
        rc = LOWIMPACT_CONTINUE;
    }
    Py_ssize_t index = context_started_here(self, args[0]);
    if (index >= 0 && end_test_context(self, index) < 0) {
        return -1;
    }
    return rc;
}

/* PY_UNWIND (global, with test contexts): a test that raises ends its
 * context too.  It cannot be DISABLEd. */
static int
on_unwind(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    Collector *self = (Collector *)data;
    if (nargs < 1) {
        return LOWIMPACT_CONTINUE;
    }
    Py_ssize_t index = context_started_here(self, args[0]);
    if (index >= 0 && end_test_context(self, index) < 0) {
        return -1;
    }
    return LOWIMPACT_CONTINUE;
}

/* PY_THROW (global, with test contexts): a test generator thrown into
 * (throw(), close(), its finalisation) starts its context again, as
 * coverage.py's C tracer gets a call event for it; only one in
 * test_codes, whose local events end the context.  It cannot be
 * DISABLEd. */
static int
on_throw(void *data, int event, PyObject *const *args, Py_ssize_t nargs)
{
    (void)event;
    Collector *self = (Collector *)data;
    if (nargs < 1 || !PyCode_Check(args[0]) || self->test_context == NULL) {
        return LOWIMPACT_CONTINUE;
    }
    int test = is_test_code(args[0]);   /* (the name first: no allocation) */
    if (test <= 0) {
        return test < 0 ? -1 : LOWIMPACT_CONTINUE;
    }
    PyObject *key = PyLong_FromVoidPtr(args[0]);   /* owned */
    if (key == NULL) {
        return -1;
    }
    test = PyDict_Contains(self->test_codes, key);
    Py_DECREF(key);
    if (test < 0 || (test && maybe_start_test_context(self, args[0]) < 0)) {
        return -1;
    }
    return LOWIMPACT_CONTINUE;
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
                                 PY_MONITORING_EVENT_PY_YIELD, PY_MONITORING_EVENT_PY_RESUME,
                                 PY_MONITORING_EVENT_PY_UNWIND, PY_MONITORING_EVENT_PY_THROW};
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        if (LowImpact_RegisterCallback(self->tool_id, events[i], NULL, NULL) < 0) {
            li_keep_first_error(&first);
        }
    }
    /* Local events of measured code stay in place (free_tool_id() leaves
       them, on 3.12/3.13 and the engine alike), without callbacks: they
       cost an event check each until someone changes them. */
    if (LowImpact_FreeToolId(self->tool_id) < 0) {
        li_keep_first_error(&first);
    }
    self->running = 0;
    /* (Test contexts' frames are not kept past the measuring.) */
    clear_tests(self);
    if (active_collector == self) {
        active_collector = NULL;
    }
    return li_raise_kept_error(first);
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

/* The callbacks and global events of a collector: with test contexts,
 * PY_START and the exits have their own, which end in the plain ones. */
static int
register_callbacks(Collector *self)
{
    int contexts = self->test_context != NULL;
    LowImpact_Callback on_exit = contexts ? on_exit_contexts : on_once;
    uint32_t global = EVENT_BIT(PY_MONITORING_EVENT_PY_START);
    if (LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_PY_START,
                                   contexts ? on_py_start_contexts : on_py_start, self) < 0 ||
        LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_LINE, on_once, self) < 0) {
        return -1;
    }
    if ((self->branch || contexts) &&
        (LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_PY_RETURN, on_exit,
                                    self) < 0 ||
         LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_PY_YIELD, on_exit,
                                    self) < 0)) {
        return -1;
    }
    if (self->branch &&
        LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_BRANCH, on_branch, self) < 0) {
        return -1;
    }
    if ((self->branch || contexts) &&
        LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_PY_RESUME, on_resume,
                                   self) < 0) {
        return -1;
    }
    if (contexts) {
        if (LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_PY_UNWIND, on_unwind,
                                       self) < 0) {
            return -1;
        }
        if (LowImpact_RegisterCallback(self->tool_id, PY_MONITORING_EVENT_PY_THROW, on_throw,
                                       self) < 0) {
            return -1;
        }
        global |= EVENT_BIT(PY_MONITORING_EVENT_PY_UNWIND) | EVENT_BIT(PY_MONITORING_EVENT_PY_THROW);
    }
    return LowImpact_SetEvents(self->tool_id, global);
}

/* A collector started again after stop() gives the code objects it knows
 * their local events again: while its tool id was free, whoever took it
 * may have set others on them (another collector, without contexts or
 * branches), and what `codes` and `test_codes` say of them must hold:
 * PY_START of a code object in `codes` changes nothing, and one in
 * `test_codes` is not given its context events again.  (Where they are
 * still the collector's, a call changes nothing.)  Copies of the dicts are
 * walked: giving events may run Python code, and while the collector runs
 * its callbacks may add to them. */
static int
give_known_events(Collector *self)
{
    PyObject *key, *value;   /* borrowed */
    Py_ssize_t pos = 0;
    int rc = 0;
    PyObject *codes = PyDict_Copy(self->codes);   /* owned */
    PyObject *test_codes = codes == NULL ? NULL : PyDict_Copy(self->test_codes);   /* owned */
    if (test_codes == NULL) {
        rc = -1;
    }
    while (rc == 0 && PyDict_Next(codes, &pos, &key, &value)) {
        int test = PyDict_Contains(self->test_codes, key);
        if (test < 0 ||
            LowImpact_SetLocalEvents(self->tool_id, PyTuple_GET_ITEM(value, 0),
                                     measured_events(self) | (test ? CONTEXT_EVENTS : 0)) < 0) {
            rc = -1;
        }
    }
    pos = 0;
    while (rc == 0 && PyDict_Next(test_codes, &pos, &key, &value)) {
        uint32_t events;
        if (test_code_events(self, key, value, &events) < 0 ||
            LowImpact_SetLocalEvents(self->tool_id, value, events) < 0) {
            rc = -1;
        }
    }
    Py_XDECREF(codes);
    Py_XDECREF(test_codes);
    return rc;
}

PyDoc_STRVAR(start_doc,
"start()\n\n"
"Take the tool id and start measuring: every code object that starts from\n"
"now on in a file should_trace() names gets LINE (and BRANCH) events.\n"
"After an earlier collector, restart_events() undoes its DISABLEs first.\n"
"Started again after stop(), it goes on recording into the same data, and\n"
"the code objects it knows get their events again.");

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
    if (give_known_events(self) < 0 || register_callbacks(self) < 0 ||
        (collected_before && restart_events() < 0)) {
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
    forget_branches(self);
    PyDict_Clear(self->branches);
    PyDict_Clear(self->exits);
    if (PyList_SetSlice(self->periods, 0, PyList_GET_SIZE(self->periods), NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(switch_context_doc,
"switch_context(label) -> the previous label\n\n"
"From now on, record under the dynamic context `label` (a str, or None for\n"
"none): what was recorded so far goes to periods() under the previous one,\n"
"which is returned (as coverage.py's Collector.switch_context returns the\n"
"previous context), and the code that recorded it is re-armed.  While\n"
"paused, `label` applies from resume() on.");

static PyObject *
collector_switch_context(Collector *self, PyObject *label)
{
    if (!initialised(self)) {
        return NULL;
    }
    if (label != Py_None && !PyUnicode_Check(label)) {
        PyErr_Format(PyExc_TypeError, "a context is a str or None, not %.100s",
                     Py_TYPE(label)->tp_name);
        return NULL;
    }
    PyObject *previous = Py_NewRef(self->label);   /* owned */
    if (self->paused) {
        Py_SETREF(self->label, Py_NewRef(label));
        return previous;
    }
    if (end_period(self, label, 1) < 0) {
        Py_DECREF(previous);
        return NULL;
    }
    return previous;
}

PyDoc_STRVAR(pause_doc,
"pause()\n\n"
"Record nothing until resume() (pytest-cov's no_cover): what runs meanwhile\n"
"is dropped, and no test context starts.");

static PyObject *
collector_pause(Collector *self, PyObject *unused)
{
    (void)unused;
    if (!initialised(self)) {
        return NULL;
    }
    if (!self->paused) {
        if (end_period(self, self->label, 1) < 0) {
            return NULL;
        }
        self->paused = 1;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(resume_doc, "resume()\n\nRecord again after pause().");

static PyObject *
collector_resume(Collector *self, PyObject *unused)
{
    (void)unused;
    if (!initialised(self)) {
        return NULL;
    }
    if (self->paused) {
        if (end_period(self, self->label, 0) < 0) {
            return NULL;
        }
        self->paused = 0;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(periods_doc,
"periods() -> [(label, lines, branches, exits), ...]\n\n"
"The periods ended by context switches, in order: the dynamic context\n"
"each ran under and its data, shaped as data()'s (not copied: an ended\n"
"period does not change).  The current one is data() under `context`.");

static PyObject *
collector_periods(Collector *self, PyObject *unused)
{
    (void)unused;
    if (!initialised(self)) {
        return NULL;
    }
    return PySequence_List(self->periods);
}

static int
collector_init(Collector *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"tool_id", "should_trace", "branch", "test_context",
                               "implied_of", NULL};
    int tool_id, branch = 0;
    PyObject *should_trace, *test_context = Py_None, *implied_of = Py_None;   /* borrowed */
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iO|p$OO:Collector", keywords, &tool_id,
                                     &should_trace, &branch, &test_context, &implied_of)) {
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
    if (test_context != Py_None && !PyCallable_Check(test_context)) {
        PyErr_SetString(PyExc_TypeError, "test_context must be callable or None");
        return -1;
    }
    if (implied_of != Py_None && !PyCallable_Check(implied_of)) {
        PyErr_SetString(PyExc_TypeError, "implied_of must be callable or None");
        return -1;
    }
    PyObject *file_cache = PyDict_New(), *codes = PyDict_New(), *lines = PyDict_New(),
             *branches = PyDict_New(), *exits = PyDict_New(), *periods = PyList_New(0),
             *test_codes = PyDict_New(), *implied = PyDict_New(),
             *line_units = PyDict_New();   /* owned until stored */
    if (file_cache == NULL || codes == NULL || lines == NULL || branches == NULL ||
        exits == NULL || periods == NULL || test_codes == NULL || implied == NULL ||
        line_units == NULL) {
        Py_XDECREF(line_units);
        Py_XDECREF(exits);
        Py_XDECREF(file_cache);
        Py_XDECREF(codes);
        Py_XDECREF(lines);
        Py_XDECREF(branches);
        Py_XDECREF(periods);
        Py_XDECREF(test_codes);
        Py_XDECREF(implied);
        return -1;
    }
    self->tool_id = tool_id;
    self->branch = branch;
    Py_XSETREF(self->should_trace, Py_NewRef(should_trace));
    Py_XSETREF(self->file_cache, file_cache);
    Py_XSETREF(self->codes, codes);
    Py_XSETREF(self->lines, lines);
    forget_branches(self);
    Py_XSETREF(self->branches, branches);
    Py_XSETREF(self->exits, exits);
    Py_XSETREF(self->label, Py_NewRef(Py_None));
    Py_XSETREF(self->periods, periods);
    Py_XSETREF(self->test_context, test_context == Py_None ? NULL : Py_NewRef(test_context));
    Py_XSETREF(self->test_codes, test_codes);
    Py_XSETREF(self->implied_of, implied_of == Py_None ? NULL : Py_NewRef(implied_of));
    Py_XSETREF(self->implied, implied);
    Py_XSETREF(self->line_units, line_units);
    clear_tests(self);
    self->paused = 0;
    self->switching = test_context != Py_None;
    return 0;
}

static int
collector_traverse(Collector *self, visitproc visit, void *arg)
{
    Py_VISIT(self->should_trace);
    Py_VISIT(self->file_cache);
    Py_VISIT(self->codes);
    Py_VISIT(self->lines);
    Py_VISIT(self->line_units);
    Py_VISIT(self->branches);
    Py_VISIT(self->exits);
    Py_VISIT(self->label);
    Py_VISIT(self->periods);
    Py_VISIT(self->test_context);
    Py_VISIT(self->test_codes);
    Py_VISIT(self->implied_of);
    Py_VISIT(self->implied);
    for (Py_ssize_t i = 0; i < self->n_tests; i++) {
        Py_VISIT(self->tests[i].frame);
        Py_VISIT(self->tests[i].code);
    }
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
    Py_CLEAR(self->line_units);
    forget_branches(self);
    Py_CLEAR(self->branches);
    Py_CLEAR(self->exits);
    Py_CLEAR(self->label);
    Py_CLEAR(self->periods);
    Py_CLEAR(self->test_context);
    Py_CLEAR(self->test_codes);
    Py_CLEAR(self->implied_of);
    Py_CLEAR(self->implied);
    clear_tests(self);
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
    {"switch_context", (PyCFunction)collector_switch_context, METH_O, switch_context_doc},
    {"pause", (PyCFunction)collector_pause, METH_NOARGS, pause_doc},
    {"resume", (PyCFunction)collector_resume, METH_NOARGS, resume_doc},
    {"periods", (PyCFunction)collector_periods, METH_NOARGS, periods_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *
collector_get_context(Collector *self, void *closure)
{
    (void)closure;
    if (!initialised(self)) {
        return NULL;
    }
    return Py_NewRef(self->label);
}

static PyObject *
collector_get_paused(Collector *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->paused);
}

static PyObject *
collector_get_test_threads(Collector *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->n_tests);
}

static PyGetSetDef collector_getset[] = {
    {"running", (getter)collector_get_running, NULL, "whether it is measuring", NULL},
    {"branch", (getter)collector_get_branch, NULL, "whether BRANCH events are recorded", NULL},
    {"context", (getter)collector_get_context, NULL,
     "the dynamic context being recorded (None: none)", NULL},
    {"paused", (getter)collector_get_paused, NULL, "between pause() and resume()", NULL},
    {"test_threads", (getter)collector_get_test_threads, NULL,
     "how many threads are in a test context (dynamic_context = test_function)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(collector_doc,
"Collector(tool_id, should_trace, branch=False, *, test_context=None,\n"
"          implied_of=None)\n\n"
"Records executed lines (and branch directions) of the code whose file\n"
"should_trace(filename, frame) names, through C callbacks of lowimpact.monitoring.\n"
"With test_context, a callable(frame) -> str or None, a code object named\n"
"test* or runTest that starts while no test context is active in its\n"
"thread asks it for a context, which lasts until that frame returns\n"
"(coverage.py's dynamic_context = test_function).\n"
"With implied_of, a callable(code, filename) -> {source offset: next offset\n"
"<< 2 | ways} or None, a branch that keeps going the same way is DISABLEd\n"
"when its other way (1: the jump, 2: going on) is told by the lines that\n"
"run: the caller then takes that way from the lines.  NotImplemented: it\n"
"cannot tell yet; it is asked again after more repeats.");

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

static PyMethodDef cover_functions[] = {
    {"walk_code", cover_walk_code, METH_VARARGS, cover_walk_code_doc},
    {"code_locations", cover_code_locations, METH_VARARGS, cover_code_locations_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cover_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lowimpact._cover",
    .m_doc = "The C measurement core of lowimpact cover.",
    .m_size = -1,
    .m_methods = cover_functions,
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
    if (str_test == NULL && (str_test = PyUnicode_InternFromString("test")) == NULL) {
        return NULL;
    }
    if (str_run_test == NULL && (str_run_test = PyUnicode_InternFromString("runTest")) == NULL) {
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
