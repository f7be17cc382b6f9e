/* Behaviours that differ between the CPython versions lowimpact supports.
 * Logic files test these names, never PY_VERSION_HEX. */
#ifndef LI_COMPAT_H
#define LI_COMPAT_H

#include <Python.h>

#if PY_VERSION_HEX >= 0x030C0000
/* 3.12+: the interpreter implements sys.monitoring itself (PEP 669). */
#  define LI_HAVE_NATIVE_MONITORING 1
#else
#  define LI_HAVE_NATIVE_MONITORING 0
#endif

#if PY_VERSION_HEX >= 0x030B0000
/* 3.11+: bytecode is stored inline in the code object (co_code_adaptive),
   Py_SIZE(code) counts its 16-bit units; co_code is a deoptimised copy. */
#  define LI_CODE_UNIT_COUNT(co) Py_SIZE(co)
#else
/* 3.9/3.10: the interpreter executes the co_code bytes object. */
#  define LI_CODE_UNIT_COUNT(co) (PyBytes_GET_SIZE((co)->co_code) / 2)
#endif

/* Holding the cyclic collector off for a while: PyGC_Disable/Enable are
   3.10's; on 3.9 the back end flips the interpreter's flag itself. */
#if PY_VERSION_HEX >= 0x030A0000
#  define li_gc_disable PyGC_Disable
#  define li_gc_enable PyGC_Enable
#else
int li_gc_disable(void);
int li_gc_enable(void);
#endif

#if PY_VERSION_HEX >= 0x030D0000
#  define li_as_int PyLong_AsInt
#elif PY_VERSION_HEX >= 0x030A0000
#  define li_as_int _PyLong_AsInt
#else
/* 3.9's _PyLong_AsInt still converts objects that only have __int__ (a
   float, with a DeprecationWarning); 3.12 takes integers (__index__) only. */
int li_as_int(PyObject *obj);
#endif

/* Entering and leaving a monitoring callback: the thread's tracing counter
   keeps sys.settrace/sys.setprofile functions quiet meanwhile, and our probes
   test it to deliver nothing while a callback runs. */
#if PY_VERSION_HEX >= 0x030B0000
/* 3.11: what PyThreadState_EnterTracing/LeaveTracing do (CPython relies on
   use_tracing being 0 while tracing), inline because it is on the path of
   every event. */
typedef struct {
    char unused;    /* (3.11 recomputes use_tracing from the functions) */
} li_tracing_state;

static inline li_tracing_state
li_enter_tracing(PyThreadState *ts)
{
    ts->tracing++;
    if (ts->cframe->use_tracing) {
        ts->cframe->use_tracing = 0;
    }
    return (li_tracing_state){0};
}

/* Which event's callbacks run, for frame.f_lineno's setter (jump.c): in
   3.11's field for the legacy trace event, above the PyTrace_* values. */
#define LI_WHAT_EVENT_BASE 64
static inline void
li_note_event(PyThreadState *ts, int event)
{
    ts->tracing_what = LI_WHAT_EVENT_BASE + event;
}

/* use_tracing is 0 from li_enter_tracing() on (while tracing, setting a
   trace or profile function leaves it alone or sets it where CPython
   ignores it); it goes back to what a function set needs. */
static inline void
li_leave_tracing(PyThreadState *ts, li_tracing_state before)
{
    (void)before;
    /* (`|`: one branch on the path of every event, not two.) */
    if (--ts->tracing == 0 && ((ts->c_tracefunc != NULL) | (ts->c_profilefunc != NULL))) {
        ts->cframe->use_tracing = 255;
    }
}

/* See the 3.9/3.10 versions below: nothing to lend here. */
static inline int
li_lend_recursion(PyThreadState *ts)
{
    (void)ts;
    return 0;
}

static inline void
li_take_back_recursion(PyThreadState *ts, int lent)
{
    (void)ts;
    (void)lent;
}
#else
/* 3.9/3.10: the same through the thread's CFrame (3.10) or its own
   use_tracing (3.9); CPython's tracing ignores the frames meanwhile. */
#  if PY_VERSION_HEX >= 0x030A0000
#    define LI_USE_TRACING(ts) ((ts)->cframe->use_tracing)
#  else
#    define LI_USE_TRACING(ts) ((ts)->use_tracing)
#  endif
/* What li_leave_tracing() gives back. */
typedef struct {
    int use_tracing;
    Py_tracefunc trace, profile;
} li_tracing_state;

static inline li_tracing_state
li_enter_tracing(PyThreadState *ts)
{
    li_tracing_state before = {LI_USE_TRACING(ts), ts->c_tracefunc, ts->c_profilefunc};
    ts->tracing++;
    LI_USE_TRACING(ts) = 0;
    return before;
}

/* Which event's callbacks run, for frame.f_lineno's setter (jump.c): no
   field of the thread state records it, so a thread-local does, from the
   callback's start to its end (1 + the event; 0: none).  In the static TLS
   block, where an access is one instruction (the general model of a shared
   library calls __tls_get_addr for each: about 4% of an empty Python
   callback's cost on this path, callgrind). */
#  if defined(__GNUC__) || defined(__clang__)
#    define LI_TLS_FAST __attribute__((tls_model("initial-exec")))
#  else
#    define LI_TLS_FAST
#  endif
extern _Thread_local int li_noted_event LI_TLS_FAST;
static inline void
li_note_event(PyThreadState *ts, int event)
{
    (void)ts;
    li_noted_event = 1 + event;
}

/* Set by running.c when a callback reached frames of its thread whose
   trace hook was already the engine's: what leaving the callback cannot
   tell from the thread's functions. */
extern _Thread_local int li_trace_on_leave LI_TLS_FAST;

/* The frame goes on traced if it was, or if the callback had it traced
   (running.c reaches the frames that need it that way), or set a trace or
   profile function: a thread whose trace hook is the engine's own
   (running.c), for some frames only, must not have every frame that calls
   a callback traced from then on. */
static inline void
li_leave_tracing(PyThreadState *ts, li_tracing_state before)
{
    li_noted_event = 0;
    if (--ts->tracing != 0) {
        return;
    }
    if (ts->c_tracefunc == before.trace && ts->c_profilefunc == before.profile) {
        LI_USE_TRACING(ts) |= before.use_tracing | li_trace_on_leave;
    }
    else {
        LI_USE_TRACING(ts) = ts->c_tracefunc != NULL || ts->c_profilefunc != NULL;
    }
    li_trace_on_leave = 0;
}

/* 3.9/3.10 count C calls against the recursion limit too, 3.12 only
   Python frames: a Python callback whose frame fits under the limit gets
   room for the C calls it makes (recursion levels lent for the call), so
   that a runaway recursion stops in the program's code, not in a dict.get
   of the callback of its deepest frame.  A callback whose frame does not
   fit fails at its entry, as natively.  Returns the levels lent.
   The limit is read again only near the one last read (a call into the
   interpreter would cost more than the rest); a limit lowered since is seen
   once the depth nears the old one. */
#  define LI_CALLBACK_RECURSION_ROOM 50
static int li_recursion_limit_read;
static inline int
li_lend_recursion(PyThreadState *ts)
{
    int room = li_recursion_limit_read - ts->recursion_depth;
    if (room >= LI_CALLBACK_RECURSION_ROOM) {
        return 0;
    }
    li_recursion_limit_read = Py_GetRecursionLimit();
    room = li_recursion_limit_read - ts->recursion_depth;
    if (room < 1 || room >= LI_CALLBACK_RECURSION_ROOM) {
        return 0;
    }
    int lent = LI_CALLBACK_RECURSION_ROOM - room;
    ts->recursion_depth -= lent;
    return lent;
}

static inline void
li_take_back_recursion(PyThreadState *ts, int lent)
{
    ts->recursion_depth += lent;
}
#endif

/* Off the path of events: kept out of line, so that the path stays short;
   and on it: inline whatever the compiler thinks of its size.  A path taken
   often, but not the shortest one: out of line, not cold. */
#if defined(__GNUC__) || defined(__clang__)
#define LI_COLD __attribute__((cold, noinline))
#define LI_HOT_INLINE inline __attribute__((always_inline))
#define LI_NOINLINE __attribute__((noinline))
#else
#define LI_COLD
#define LI_HOT_INLINE inline
#define LI_NOINLINE
#endif

#endif /* LI_COMPAT_H */
