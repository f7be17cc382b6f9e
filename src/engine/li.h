/* Internal interface of the lowimpact engine.
 *
 * Layers (one job per file):
 *   registry.c  tools, event sets, callbacks, per-code monitoring state
 *   dispatch.c  delivering one event to the tools that want it (DISABLE, errors)
 *   module.c    the Python-visible `lowimpact._engine` module (argument checks)
 *   backendNNN/ one instrumentation back end per bytecode format; it owns
 *               everything that depends on the interpreter's internals and
 *               talks to the rest only through the functions declared at the
 *               end of this header.
 *
 * Everything here runs with the GIL held; no function releases it.
 */
#ifndef LI_H
#define LI_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdbool.h>

#include "compat.h"
#include "li_shared.h"

/* Under valgrind, what debug builds fill with garbage is still unwritten
 * (li_alloc_filled_later()): memcheck reports reads of it.  Outside valgrind
 * the request does nothing. */
#if defined(LI_DEBUG) && defined(__has_include)
#  if __has_include(<valgrind/memcheck.h>)
#    include <valgrind/memcheck.h>
#    define LI_MARK_UNWRITTEN(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#  endif
#endif
#ifndef LI_MARK_UNWRITTEN
#  define LI_MARK_UNWRITTEN(p, n) ((void)0)
#endif

/* Makes room for one more item in the PyMem array *items of *cap items of
 * `size` bytes, `count` of them used (doubling, from `first`).  0, or -1
 * with MemoryError set. */
static inline int
li_reserve(void **items, int *cap, int count, size_t size, int first)
{
    if (count < *cap) {
        return 0;
    }
    int grown = *cap ? *cap * 2 : first;
    void *bigger = PyMem_Realloc(*items, size * (size_t)grown);
    if (bigger == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *items = bigger;
    *cap = grown;
    return 0;
}

/* An array of `count` items of `size` bytes that the caller fills
 * completely (so not zeroed; filled with garbage in debug builds, to catch
 * reads of what was not written).  NULL with MemoryError. */
static inline void *
li_alloc_filled_later(size_t count, size_t size)
{
    if (size != 0 && count > PY_SSIZE_T_MAX / size) {
        PyErr_NoMemory();
        return NULL;
    }
    void *items = PyMem_Malloc(count * size + 1);
    if (items == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
#ifdef LI_DEBUG
    memset(items, 0xAB, count * size + 1);
    LI_MARK_UNWRITTEN(items, count * size + 1);
#endif
    return items;
}

/* ---- events ------------------------------------------------------------ */

/* Event ids, numbered as in CPython 3.12 and 3.13 (the bit is 1 << id). */
enum {
    LI_PY_START = 0,
    LI_PY_RESUME = 1,
    LI_PY_RETURN = 2,
    LI_PY_YIELD = 3,
    LI_CALL = 4,
    LI_LINE = 5,
    LI_INSTRUCTION = 6,
    LI_JUMP = 7,
    LI_BRANCH = 8,
    LI_STOP_ITERATION = 9,
    LI_RAISE = 10,
    LI_EXCEPTION_HANDLED = 11,
    LI_PY_UNWIND = 12,
    LI_PY_THROW = 13,
    LI_RERAISE = 14,
    LI_C_RETURN = 15,
    LI_C_RAISE = 16,
};

#define LI_EVENT_COUNT 17
/* Events below this id can be set per code object and disabled per location. */
#define LI_LOCAL_EVENT_COUNT 10
/* DISABLE marks: one per local event, and one per way of a branch
 * (LOWIMPACT_DISABLE_WAY; li_site.way). */
#define LI_MARK_BRANCH_JUMPED LI_LOCAL_EVENT_COUNT
#define LI_MARK_BRANCH_ON (LI_LOCAL_EVENT_COUNT + 1)
#define LI_MARK_COUNT (LI_LOCAL_EVENT_COUNT + 2)
/* C_RETURN and C_RAISE are not selected on their own: they follow CALL. */
#define LI_UNGROUPED_EVENT_COUNT 15

#define LI_EVENT_BIT(e) ((uint32_t)1 << (e))
#define LI_C_RETURN_EVENTS (LI_EVENT_BIT(LI_C_RETURN) | LI_EVENT_BIT(LI_C_RAISE))
#define LI_C_CALL_EVENTS (LI_C_RETURN_EVENTS | LI_EVENT_BIT(LI_CALL))

typedef uint32_t li_event_set;


static inline bool
li_event_is_local(int event)
{
    return event < LI_LOCAL_EVENT_COUNT;
}

/* ---- tools and callbacks ---------------------------------------------- */

#define LI_TOOL_COUNT 6

/* Interpreter-wide monitoring state (lowimpact serves the main interpreter). */
typedef struct {
    PyObject *tool_names[LI_TOOL_COUNT];                   /* owned; NULL = free */
    PyObject *callbacks[LI_TOOL_COUNT][LI_EVENT_COUNT];    /* owned; NULL = none */
    /* Bit t of global_tools[e] is set when tool t selected event e for all code. */
    uint8_t global_tools[LI_UNGROUPED_EVENT_COUNT];
    /* Bit e set while global_tools[e] is not 0 (every update asks, per
       code object). */
    li_event_set global_events;
    /* Bumped by restart_events(): DISABLE marks older than this are void. */
    uint32_t disable_epoch;
    /* The disable_epoch of the last DISABLE mark made, if `marked`. */
    uint32_t marked_epoch;
    bool marked;
    /* Bumped whenever the set of (code, event) pairs that need probes may have
       grown, so that back ends know their probes must be re-evaluated. */
    uint64_t version;
    /* Counts DISABLE marks made: a probe whose firing made none stays armed
       without checking its tools again. */
    uint64_t disables;
    /* Tools whose C callback of BRANCH answered LOWIMPACT_DISABLE_WAY since
       the back end cleared it (it marks the way of the site it fired). */
    uint8_t ways_done;
    /* Changes whenever who gets which event may have changed (callbacks,
       event sets, DISABLE marks, shadows replaced): back ends may keep
       what they looked up for an event while it stays the same.  Never 0. */
    uint32_t dispatch_epoch;
    PyObject *disable;      /* owned: the DISABLE sentinel */
    PyTypeObject *c_callback_type;   /* owned: C callbacks, called directly */
    PyObject *missing;      /* owned: the MISSING sentinel */
} li_registry;

extern li_registry li_reg;

static inline void
li_dispatch_changed(void)
{
    if (++li_reg.dispatch_epoch == 0) {
        li_reg.dispatch_epoch = 1;
    }
}

/* Whether some code may hold DISABLE marks that restart_events() did not
 * void. */
static inline bool
li_marks_may_exist(void)
{
    return li_reg.marked && li_reg.marked_epoch == li_reg.disable_epoch;
}

/* ---- per-code monitoring state ------------------------------------------- */

typedef struct li_code_links {
    struct li_code_state *next, *prev;
} li_code_links;

/* State attached to an original code object (the one users see).  It lives in
 * a co_extra slot of that code object and is freed with it.  Disabled marks
 * are indexed by code unit of the original bytecode. */
typedef struct li_code_state {
    PyCodeObject *code;                          /* borrowed: the owner */
    uint8_t local_tools[LI_LOCAL_EVENT_COUNT];   /* bit t: tool t selected e here */
    /* The tools CPython would have instrumented the code for, per event:
       what was selected when it was last instrumented, which it does when
       local events change, for the code objects running when global events
       change, and for the others when they next start.  DISABLE marks of a
       tool outlive its event being turned off and on only where this did
       not change in between (li_code_state_refresh). */
    uint8_t active_tools[LI_LOCAL_EVENT_COUNT];
    uint32_t disable_epoch;                      /* li_reg.disable_epoch of the marks */
    uint8_t *disabled[LI_MARK_COUNT];            /* NULL until first DISABLE of e */
    Py_ssize_t n_units;
    bool excluded;      /* lowimpact's own API code: never instrumented */
    /* Code built ahead of its next start (too short for an entry trampoline)
       whose refresh would forget DISABLE marks: it refreshes when a frame
       next starts it, as natively. */
    bool refresh_pending;
    /* Codes with local events form a list, so that back ends can find them;
       so do codes with DISABLE marks (see li_marked_codes()). */
    li_code_links local, marked;
    void *backend;                               /* back end data, see below */
} li_code_state;

/* Reserves the co_extra slot and creates the sentinels.  0 or -1. */
int li_registry_init(void);

/* The code state of `code`, or NULL if it has none (no error set). */
li_code_state *li_code_state_get(PyCodeObject *code);
/* The code object extra slot (_PyCode_GetExtra) that holds code states. */
Py_ssize_t li_code_state_index(void);
/* The code state of `code`, created if needed.  NULL with an exception set. */
li_code_state *li_code_state_ensure(PyCodeObject *code);
/* How many code states are alive. */
Py_ssize_t li_code_state_count(void);
/* First code state with local events (iterate with ->local.next). */
li_code_state *li_local_codes(void);
/* First code state that got DISABLE marks since it was last unlisted
 * (iterate with ->marked.next; the marks may be void since). */
li_code_state *li_marked_codes(void);
void li_code_state_unlist_marked(li_code_state *cs);

/* Replaces the local events of `tool` in `cs` (and refreshes it). */
void li_code_state_set_local(li_code_state *cs, int tool, li_event_set events);
/* The code of `cs` is instrumented (as CPython does at the moments listed
 * at active_tools): the DISABLE marks of tools whose selection of an event
 * changed since the last time are forgotten. */
void li_code_state_refresh(li_code_state *cs);
/* li_code_state_refresh() as it was due at a moment when no tool wanted
 * any event, global or local (it did not happen then). */
void li_code_state_refresh_unwanted(li_code_state *cs);
/* Whether li_code_state_refresh() would change anything now. */
bool li_code_state_stale(const li_code_state *cs);
/* Whether li_code_state_refresh() would forget DISABLE marks now. */
bool li_code_state_refresh_forgets(const li_code_state *cs);
/* The local events of `tool` in `cs`. */
li_event_set li_code_state_local(const li_code_state *cs, int tool);

static inline bool
li_has_local_events(const li_code_state *cs)
{
    for (int e = 0; e < LI_LOCAL_EVENT_COUNT; e++) {
        if (cs->local_tools[e]) {
            return true;
        }
    }
    return false;
}

/* Tools whose event sets select `event` for `cs` (NULL: globally), whatever
 * they disabled. */
static inline uint8_t
li_tools_selecting(const li_code_state *cs, int event)
{
    uint8_t tools = li_reg.global_tools[event];
    if (cs != NULL && li_event_is_local(event)) {
        tools |= cs->local_tools[event];
    }
    return tools;
}

/* Tools that should receive `event` at code unit `unit` of the original code
 * described by `cs` (which may be NULL: no local events, nothing disabled). */
static inline uint8_t
li_tools_at(const li_code_state *cs, int event, Py_ssize_t unit)
{
    int selector = event;
    if (event == LI_C_RETURN || event == LI_C_RAISE) {
        selector = LI_CALL;     /* ancillary events follow CALL's selection */
    }
    uint8_t tools = li_reg.global_tools[selector];
    if (cs != NULL && li_event_is_local(selector)) {
        tools |= cs->local_tools[selector];
        const uint8_t *disabled = cs->disabled[selector];
        if (disabled != NULL && cs->disable_epoch == li_reg.disable_epoch) {
            tools &= (uint8_t)~disabled[unit];
        }
    }
    return tools;
}

/* The event whose selection a DISABLE mark of cs->disabled[mark] follows. */
static inline int
li_mark_event(int mark)
{
    return mark < LI_LOCAL_EVENT_COUNT ? mark : LI_BRANCH;
}

/* li_tools_at() for a site of `event` at `unit`, less the tools that no
 * longer want its way `mark` of a branch (LI_MARK_BRANCH_*; 0: a site of
 * either way, or of another event). */
static inline uint8_t
li_tools_at_site(const li_code_state *cs, int event, Py_ssize_t unit, int mark)
{
    uint8_t tools = li_tools_at(cs, event, unit);
    const uint8_t *disabled = mark != 0 && cs != NULL ? cs->disabled[mark] : NULL;
    if (disabled != NULL && cs->disable_epoch == li_reg.disable_epoch) {
        tools &= (uint8_t)~disabled[unit];
    }
    return tools;
}

/* li_tools_at() for a local event other than C_RETURN and C_RAISE, in code
 * with a state: the case of most events, which is worth its own path. */
static inline uint8_t
li_tools_at_local(const li_code_state *cs, int event, Py_ssize_t unit)
{
    uint8_t tools = li_reg.global_tools[event] | cs->local_tools[event];
    const uint8_t *disabled = cs->disabled[event];
    if (disabled != NULL && cs->disable_epoch == li_reg.disable_epoch) {
        tools &= (uint8_t)~disabled[unit];
    }
    return tools;
}

/* The events (as a bit set) that any tool wants in `cs`'s code, global or
 * local, with C_RETURN/C_RAISE folded into CALL. */
li_event_set li_wanted_events(const li_code_state *cs);
/* The events any tool wants globally. */
li_event_set li_global_events(void);

/* Records that `tool` returned DISABLE for `event` at `unit` (`event` a
 * local event, or LI_MARK_BRANCH_* for LOWIMPACT_DISABLE_WAY).  -1 on error. */
int li_code_state_disable(li_code_state *cs, int event, Py_ssize_t unit, int tool);

/* ---- delivering events ---------------------------------------------------- */

/* The cold ends of li_call_tools (dispatch.c): a C callback returned -1
 * (sets SystemError if it set nothing); DISABLE from a non-local event
 * (ValueError, the callback is removed; returns -1). */
void li_c_callback_failed(void);
int li_bad_disable(int tool, int event);

static inline int
li_highest_tool(uint8_t tools)
{
    return 31 - __builtin_clz((unsigned int)tools);
}

/* What to call in place of `callback`, a Python callback of `tool` for
 * `event`, with *self (if set) first: a function that does what it does
 * without running code that would only meet the thread tracing.  NULL to
 * call `callback` itself.  Borrowed. */
PyObject *li_backend_twin(int tool, int event, PyObject *callback, PyObject **self);

/* Calls `callback`, a Python callback without a twin (held by the caller),
 * with the `nargs` arguments at `argv`, whose slot argv[-1] the call may
 * overwrite: the way the back end's interpreter calls it fastest. */
PyObject *li_backend_call(PyThreadState *tstate, PyObject *callback, PyObject **argv,
                          size_t nargs);

/* Calls `callable` with `self` (if not NULL) before the `nargs` arguments
 * at `argv`, whose slot argv[-1] is the caller's to overwrite; both are held
 * for the call (a callback may unregister itself, and with it its twin). */
static LI_HOT_INLINE PyObject *
li_call_bound(PyObject *callable, PyObject *self, PyObject **argv, size_t nargs)
{
    Py_INCREF(callable);
    PyObject *res;
    if (self == NULL) {
        res = PyObject_Vectorcall(callable, argv, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                  NULL);
    }
    else {
        argv[-1] = Py_NewRef(self);
        res = PyObject_Vectorcall(callable, argv - 1, nargs + 1, NULL);
        Py_DECREF(self);
    }
    Py_DECREF(callable);
    return res;
}

/* Calls tool `tool`'s callback for `event`, if it has one.  1 if it
 * returned DISABLE, 0 if anything else or none is registered, -1 on error.
 * Inline: it is on the path of every event. */
static LI_HOT_INLINE int
li_call_one(PyThreadState *tstate, int tool, int event, PyObject **args, size_t nargs)
{
    /* Re-read for every tool: an earlier callback may have changed it. */
    PyObject *callback = li_reg.callbacks[tool][event];
    if (callback == NULL) {
        return 0;
    }
    /* The callback may unregister itself while it runs. */
    Py_INCREF(callback);
    /* No events reach code run by a callback, and sys.settrace and
       sys.setprofile functions stay quiet meanwhile, as natively. */
    li_note_event(tstate, event);
    li_tracing_state before = li_enter_tracing(tstate);
    bool disable;
    if (Py_IS_TYPE(callback, li_reg.c_callback_type)) {
        li_ccallback *c = (li_ccallback *)callback;
        int result = c->func(c->data, c->event, args + 1, (Py_ssize_t)nargs);
        li_leave_tracing(tstate, before);
        Py_DECREF(callback);
        if (result < 0) {
            li_c_callback_failed();
            return -1;
        }
        disable = result == LOWIMPACT_DISABLE;
        if (result == LOWIMPACT_DISABLE_WAY && event == LI_BRANCH) {
            li_reg.ways_done |= (uint8_t)(1 << tool);
        }
    }
    else {
        PyObject *self = NULL;
        PyObject *twin = li_backend_twin(tool, event, callback, &self);
        int lent = li_lend_recursion(tstate);
        PyObject *res = twin != NULL ? li_call_bound(twin, self, args + 1, nargs)
                                     : li_backend_call(tstate, callback, args + 1, nargs);
        li_take_back_recursion(tstate, lent);
        li_leave_tracing(tstate, before);
        Py_DECREF(callback);
        if (res == NULL) {
            return -1;
        }
        disable = res == li_reg.disable;
        Py_DECREF(res);
    }
    if (disable && !li_event_is_local(event)) {
        return li_bad_disable(tool, event);
    }
    return disable;
}

/* Calls the callbacks of `tools` for `event`, highest tool id first, with the
 * vectorcall arguments args[1..nargs] (args[0] is scratch space that the call
 * may overwrite).  args[1] is the code object.  A callback returning DISABLE
 * for a local event marks (event, unit) disabled for its tool in `cs`; for
 * other events it is an error, as natively.
 * Returns 0, or -1 with an exception set (remaining tools are not called).
 * The caller must have checked that the thread is not already inside a
 * callback. */
static LI_HOT_INLINE int
li_call_tools(PyThreadState *tstate, int event, uint8_t tools,
              li_code_state *cs, Py_ssize_t unit,
              PyObject **args, size_t nargs)
{
    if (tools != 0 && (tools & (tools - 1)) == 0) {
        /* One tool, the usual case. */
        int tool = __builtin_ctz(tools);
        int disabled = li_call_one(tstate, tool, event, args, nargs);
        if (disabled <= 0 || cs == NULL) {
            return disabled < 0 ? -1 : 0;
        }
        return li_code_state_disable(cs, event, unit, tool) < 0 ? -1 : 0;
    }
    while (tools) {
        int tool = li_highest_tool(tools);
        tools &= (uint8_t)~(1 << tool);
        int disabled = li_call_one(tstate, tool, event, args, nargs);
        if (disabled < 0) {
            return -1;
        }
        if (disabled && cs != NULL && li_code_state_disable(cs, event, unit, tool) < 0) {
            return -1;
        }
    }
    return 0;
}
/* The same for an event fired through the C API: the tools are those of
 * *active (a PyMonitoringState's); DISABLE clears the tool's bit there. */
int li_call_tools_of_state(PyThreadState *tstate, int event, uint8_t *active,
                           PyObject **args, size_t nargs);

/* Adds the capsule of the C API's extension side (capi.c).  0 or -1. */
int li_capi_init(PyObject *module);

/* ---- the back end interface ------------------------------------------------ */

/* Called once from module initialisation. 0 or -1 with an exception set. */
int li_backend_init(PyObject *module);

/* The state changed so that some code may now need more, fewer or other
 * probes (event sets, local events); `grew`: a tool may want events where
 * it did not (events added, restart_events).  The back end brings every
 * code object that can run into line with li_reg and the code states.
 * 0 or -1. */
int li_backend_update(bool grew);
/* The same after a change of the local events of `cs` alone: only what
 * can run that code needs bringing into line.  0 or -1. */
int li_backend_update_code(li_code_state *cs, bool grew);

/* Probes whose tools were re-enabled (events added where probes already
 * exist) must be re-armed.  0 or -1. */
int li_backend_rearm(void);

/* restart_events() ran (li_reg.disable_epoch moved on): what callbacks
 * disabled must fire again.  Costs what was disabled since the last
 * restart, whatever the size of the heap.  0 or -1. */
int li_backend_restart(void);

/* The callback of `tool` for `event` changed: the back end lets go of what
 * it kept for the previous one. */
void li_backend_forget_callback(int tool, int event);


/* Frees the back end data of a code state whose code object is dying. */
void li_backend_code_state_free(li_code_state *cs);

/* The code object users see for `code` (an instrumented copy maps back to its
 * original).  Borrowed. */
PyCodeObject *li_backend_original(PyCodeObject *code);

/* For tests: the instrumented copy new frames of `code` would run if `events`
 * were selected for it, and the original unit of each of its units. */
PyObject *li_backend_debug_shadow(PyCodeObject *code, li_event_set events);
/* 3.12's message refusing frame.f_lineno assignments from callbacks of
 * `event`, or NULL where it allows them (jumps.c). */
const char *li_jump_refusal(int event);

/* For tests: adds counts of what the back end keeps alive to `stats`.
 * 0 or -1. */
int li_backend_stats(PyObject *stats);
/* stats[name] = n, for li_backend_stats(); 0, or -1 with an exception. */
int li_stats_set(PyObject *stats, const char *name, Py_ssize_t n);

#endif /* LI_H */
