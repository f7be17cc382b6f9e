/* lowimpact.h: PEP 669 monitoring from C, on every supported CPython.
 *
 * Extension side: CPython 3.13's API for firing monitoring events from code
 * that is not Python bytecode (a Cython-like runtime, an interpreter written
 * in C): PyMonitoringState, PyMonitoring_EnterScope/ExitScope, the
 * PyMonitoring_Fire*Event functions and the PY_MONITORING_EVENT_* ids.  On
 * 3.13+ they are the interpreter's own; on 3.11 and 3.12 this header defines
 * them, delivering the events to the tools registered with
 * lowimpact.monitoring (3.11: lowimpact's engine; 3.12: the interpreter's
 * sys.monitoring).
 *
 * Tool side: callbacks written in C, registered for a tool and an event like
 * Python callbacks, on every version; they cost no Python call per event.
 *
 * Call LowImpact_IMPORT once in the module init of an extension that uses
 * this header (it evaluates to 0, or -1 with an exception set); every entry
 * point also loads lowimpact on first use.  See docs/CAPI.md.
 */
#ifndef LOWIMPACT_H
#define LOWIMPACT_H

#include <Python.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Layout version of LowImpact_CAPI; lowimpact refuses a header newer than
 * itself. */
#define LOWIMPACT_CAPI_VERSION 1

/* ---- the 3.13 API, where the interpreter lacks it ------------------------ */

#if PY_VERSION_HEX < 0x030D0000

/* (3.12's internal headers have the same ids.) */
#ifndef PY_MONITORING_EVENT_PY_START
#define PY_MONITORING_EVENT_PY_START 0
#define PY_MONITORING_EVENT_PY_RESUME 1
#define PY_MONITORING_EVENT_PY_RETURN 2
#define PY_MONITORING_EVENT_PY_YIELD 3
#define PY_MONITORING_EVENT_CALL 4
#define PY_MONITORING_EVENT_LINE 5
#define PY_MONITORING_EVENT_INSTRUCTION 6
#define PY_MONITORING_EVENT_JUMP 7
#define PY_MONITORING_EVENT_BRANCH 8
#define PY_MONITORING_EVENT_STOP_ITERATION 9
#define PY_MONITORING_IS_INSTRUMENTED_EVENT(ev) ((ev) < 10)
#define PY_MONITORING_EVENT_RAISE 10
#define PY_MONITORING_EVENT_EXCEPTION_HANDLED 11
#define PY_MONITORING_EVENT_PY_UNWIND 12
#define PY_MONITORING_EVENT_PY_THROW 13
#define PY_MONITORING_EVENT_RERAISE 14
#define PY_MONITORING_EVENT_C_RETURN 15
#define PY_MONITORING_EVENT_C_RAISE 16
#endif

/* `active`: the tools (bit t: tool t) the event of this state goes to. */
typedef struct {
    uint8_t active;
    uint8_t opaque;
} PyMonitoringState;

#endif

/* ---- the tool side -------------------------------------------------------- */

/* What a C callback returns: go on, or no more of this event at this
 * location for this tool (local events only, as DISABLE); -1 with an
 * exception set on error. */
#define LOWIMPACT_CONTINUE 0
#define LOWIMPACT_DISABLE 1
/* From a BRANCH callback: this way of the branch (the jump, or going on) need
 * not be reported to this tool again, the other still is -- until
 * restart_events() or the tool's events there change, as DISABLE.  A hint:
 * where the interpreter cannot tell the ways apart (natively, the 3.9/3.10
 * back ends, more than one tool at the branch) it is LOWIMPACT_CONTINUE. */
#define LOWIMPACT_DISABLE_WAY 2

/* A C callback: `data` as registered, the event id, and the arguments a
 * Python callback of that event gets (the code object, or code-like object,
 * first). */
typedef int (*LowImpact_Callback)(void *data, int event, PyObject *const *args,
                                  Py_ssize_t nargs);

/* ---- the table lowimpact exports (do not use directly) ------------------- */

typedef struct {
    int version;
    /* Extension side; NULL where the interpreter has its own (3.13+). */
    int (*enter_scope)(PyMonitoringState *state_array, uint64_t *version,
                       const uint8_t *event_types, Py_ssize_t length);
    int (*exit_scope)(void);
    /* One event: `lineno` for LINE, `arg1`/`arg2` as the event has them. */
    int (*fire)(PyMonitoringState *state, int event, PyObject *codelike, int32_t offset,
                int lineno, PyObject *arg1, PyObject *arg2);
    /* Tool side. */
    int (*register_callback)(int tool_id, int event, LowImpact_Callback func, void *data);
    int (*use_tool_id)(int tool_id, const char *name);
    int (*free_tool_id)(int tool_id);
    int (*set_events)(int tool_id, uint32_t event_set);
    int (*set_local_events)(int tool_id, PyObject *code, uint32_t event_set);
} LowImpact_CAPI;

/* One per translation unit: each file that uses the API loads it. */
static LowImpact_CAPI *LowImpact_API = NULL;

static inline int
LowImpact_Load(void)
{
    if (LowImpact_API != NULL) {
        return 0;
    }
    /* PyCapsule_Import imports only the package: import the module. */
    PyObject *module = PyImport_ImportModule("lowimpact._capi");
    if (module == NULL) {
        return -1;
    }
    Py_DECREF(module);
    LowImpact_CAPI *api = (LowImpact_CAPI *)PyCapsule_Import("lowimpact._capi._API", 0);
    if (api == NULL) {
        return -1;
    }
    if (api->version < LOWIMPACT_CAPI_VERSION) {
        PyErr_Format(PyExc_ImportError,
                     "lowimpact C API version %d is older than this extension's (%d)",
                     api->version, LOWIMPACT_CAPI_VERSION);
        return -1;
    }
    LowImpact_API = api;
    return 0;
}

#define LowImpact_IMPORT LowImpact_Load()

/* Registers `func` (NULL: removes the callback) as tool `tool_id`'s callback
 * for event `event` (an id, not a bit), replacing any callback.  0 or -1. */
static inline int
LowImpact_RegisterCallback(int tool_id, int event, LowImpact_Callback func, void *data)
{
    return LowImpact_Load() < 0 ? -1
                                : LowImpact_API->register_callback(tool_id, event, func, data);
}

/* lowimpact.monitoring.use_tool_id, free_tool_id, set_events and
 * set_local_events (event sets are bit sets, as there).  0 or -1. */
static inline int
LowImpact_UseToolId(int tool_id, const char *name)
{
    return LowImpact_Load() < 0 ? -1 : LowImpact_API->use_tool_id(tool_id, name);
}

static inline int
LowImpact_FreeToolId(int tool_id)
{
    return LowImpact_Load() < 0 ? -1 : LowImpact_API->free_tool_id(tool_id);
}

static inline int
LowImpact_SetEvents(int tool_id, uint32_t event_set)
{
    return LowImpact_Load() < 0 ? -1 : LowImpact_API->set_events(tool_id, event_set);
}

static inline int
LowImpact_SetLocalEvents(int tool_id, PyObject *code, uint32_t event_set)
{
    return LowImpact_Load() < 0 ? -1
                                : LowImpact_API->set_local_events(tool_id, code, event_set);
}

/* ---- the extension side, where the interpreter lacks it ------------------ */

#if PY_VERSION_HEX < 0x030D0000

static inline int
PyMonitoring_EnterScope(PyMonitoringState *state_array, uint64_t *version,
                        const uint8_t *event_types, Py_ssize_t length)
{
    return LowImpact_Load() < 0 ? -1 : LowImpact_API->enter_scope(state_array, version,
                                                                  event_types, length);
}

static inline int
PyMonitoring_ExitScope(void)
{
    return LowImpact_Load() < 0 ? -1 : LowImpact_API->exit_scope();
}

static inline int
_LowImpact_Fire(PyMonitoringState *state, int event, PyObject *codelike, int32_t offset,
                int lineno, PyObject *arg1, PyObject *arg2)
{
    if (state->active == 0) {
        return 0;
    }
    if (LowImpact_Load() < 0) {
        return -1;
    }
    return LowImpact_API->fire(state, event, codelike, offset, lineno, arg1, arg2);
}

static inline int
PyMonitoring_FirePyStartEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_PY_START, codelike, offset, 0, NULL, NULL);
}

static inline int
PyMonitoring_FirePyResumeEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_PY_RESUME, codelike, offset, 0, NULL,
                           NULL);
}

static inline int
PyMonitoring_FirePyReturnEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset,
                               PyObject *retval)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_PY_RETURN, codelike, offset, 0, retval,
                           NULL);
}

static inline int
PyMonitoring_FirePyYieldEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset,
                              PyObject *retval)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_PY_YIELD, codelike, offset, 0, retval,
                           NULL);
}

static inline int
PyMonitoring_FireCallEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset,
                           PyObject *callable, PyObject *arg0)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_CALL, codelike, offset, 0, callable,
                           arg0);
}

static inline int
PyMonitoring_FireLineEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset,
                           int lineno)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_LINE, codelike, offset, lineno, NULL,
                           NULL);
}

static inline int
PyMonitoring_FireJumpEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset,
                           PyObject *target_offset)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_JUMP, codelike, offset, 0, target_offset,
                           NULL);
}

static inline int
PyMonitoring_FireBranchEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset,
                             PyObject *target_offset)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_BRANCH, codelike, offset, 0,
                           target_offset, NULL);
}

static inline int
PyMonitoring_FireCReturnEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset,
                              PyObject *retval)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_C_RETURN, codelike, offset, 0, retval,
                           NULL);
}

static inline int
PyMonitoring_FirePyThrowEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_PY_THROW, codelike, offset, 0, NULL,
                           NULL);
}

static inline int
PyMonitoring_FireRaiseEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_RAISE, codelike, offset, 0, NULL, NULL);
}

static inline int
PyMonitoring_FireReraiseEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_RERAISE, codelike, offset, 0, NULL,
                           NULL);
}

static inline int
PyMonitoring_FireExceptionHandledEvent(PyMonitoringState *state, PyObject *codelike,
                                       int32_t offset)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_EXCEPTION_HANDLED, codelike, offset, 0,
                           NULL, NULL);
}

static inline int
PyMonitoring_FireCRaiseEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_C_RAISE, codelike, offset, 0, NULL,
                           NULL);
}

static inline int
PyMonitoring_FirePyUnwindEvent(PyMonitoringState *state, PyObject *codelike, int32_t offset)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_PY_UNWIND, codelike, offset, 0, NULL,
                           NULL);
}

static inline int
PyMonitoring_FireStopIterationEvent(PyMonitoringState *state, PyObject *codelike,
                                    int32_t offset, PyObject *value)
{
    return _LowImpact_Fire(state, PY_MONITORING_EVENT_STOP_ITERATION, codelike, offset, 0,
                           value, NULL);
}

#elif PY_VERSION_HEX < 0x030E0000

/* CPython 3.13's scope has no entries for C_RETURN and C_RAISE (its table
 * stops at RERAISE and it reads the interpreter's fields that follow): their
 * states are made from CALL's, which is what decides where they go. */
static inline int
_LowImpact_EnterScope313(PyMonitoringState *state_array, uint64_t *version,
                         const uint8_t *event_types, Py_ssize_t length)
{
    uint64_t seen = *version, now = seen;
    for (Py_ssize_t i = 0; i < length; i += 16) {
        uint8_t types[16];
        Py_ssize_t n = length - i < 16 ? length - i : 16;
        for (Py_ssize_t k = 0; k < n; k++) {
            uint8_t event = event_types[i + k];
            types[k] = event == PY_MONITORING_EVENT_C_RETURN ||
                       event == PY_MONITORING_EVENT_C_RAISE ? PY_MONITORING_EVENT_CALL : event;
        }
        /* (Each part compares with the version the caller had.) */
        now = seen;
        if (PyMonitoring_EnterScope(state_array + i, &now, types, n) < 0) {
            return -1;
        }
    }
    *version = now;
    return 0;
}
#define PyMonitoring_EnterScope _LowImpact_EnterScope313

#endif /* PY_VERSION_HEX */

#ifdef __cplusplus
}
#endif

#endif /* LOWIMPACT_H */
