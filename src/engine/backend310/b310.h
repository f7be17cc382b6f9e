/* The CPython 3.10 back end: private interface between its files.
 *
 * How events are delivered on 3.10: a code object that some tool wants
 * events from gets an instrumented copy (a "shadow") with probes inserted
 * before the instructions that need them.  A probe is
 *
 *     [DUP_TOP]             events with a value (PY_RETURN, PY_YIELD)
 *                           where the stack's depth is not known
 *     LOAD_CONST site       the probe's li_site, a constant after the
 *                           original's (EXTENDED_ARG before it when its
 *                           index needs one)
 *     UNARY_INVERT          nb_invert of the site delivers the event (an
 *                           event with a value reads it from the frame's
 *                           stack, at the depth known), or
 *     CONTAINS_OP 0         sq_contains(site, value) with the value
 *     POP_TOP
 *
 * and disarming it writes JUMP_FORWARD over its first unit, in place, so
 * frames running the shadow see the change at once.  A CALL probe reads the
 * call it precedes from the frame's value stack (call.c).
 *
 * 3.10 executes co_code and every frame has a frame object whose f_code is
 * a field: while any tool wants events, a PEP 523 frame evaluation function
 * (hook.c) runs each frame of an instrumented code object on its shadow,
 * swapping f_code (and f_lasti and the block stack, mapped) for the time
 * the frame executes, and back when it returns (a generator stays on its
 * shadow while suspended).  Function objects, generators and code objects
 * stay untouched; frames on shadows show the original through
 * frame.f_code and frame.f_lasti (transparency.c).  Without events, no hook
 * is installed.
 */
#ifndef LI_B310_H
#define LI_B310_H

#include "li.h"
#include "frameobject.h"
#include "opcode.h"
/* v39/version.h or v310/version.h, by the include path setup.py gives:
   what differs between the two versions this back end serves. */
#include "version.h"

/* Events the shadows have probes for. */
/* Events frames run shadows for: those probes deliver, and PY_YIELD of a
 * YIELD_FROM, which the frame evaluation function delivers from them
 * (hook.c). */
#define LI_EXC_PROBED_EVENTS (LI_EVENT_BIT(LI_RAISE) | LI_EVENT_BIT(LI_RERAISE) | \
                              LI_EVENT_BIT(LI_EXCEPTION_HANDLED) | \
                              LI_EVENT_BIT(LI_STOP_ITERATION))
#define LI_PROBED_EVENTS (LI_EVENT_BIT(LI_PY_START) | LI_EVENT_BIT(LI_PY_RETURN) | \
                          LI_EVENT_BIT(LI_PY_YIELD) | LI_EVENT_BIT(LI_LINE) | \
                          LI_EVENT_BIT(LI_CALL) | LI_EVENT_BIT(LI_INSTRUCTION) | \
                          LI_EVENT_BIT(LI_JUMP) | LI_EVENT_BIT(LI_BRANCH) | \
                          LI_EXC_PROBED_EVENTS)

typedef struct li_shadow li_shadow;

/* A conditional jump whose taken way goes through a BRANCH probe in a stub
 * after it: it jumps there while the probe is armed, and straight to its
 * target once it is disarmed (branch.c). */
typedef struct {
    int32_t unit;           /* shadow unit of the jump (prefixes included); -1: none */
    uint8_t size;           /* in units */
    uint32_t via_stub, direct;  /* its argument either way */
} li_branch_jump;

/* One probe: it delivers `event` of original unit `orig`. */
typedef struct li_site {
    PyObject_HEAD
    li_shadow *shadow;      /* borrowed: the shadow's map, which outlives it */
    PyObject *arg;          /* owned: the line (LINE) or byte offset */
    int32_t orig;           /* original unit */
    int32_t unit;           /* shadow unit where the probe starts */
    uint16_t first;         /* its first unit as built (to re-arm) */
    uint8_t size;           /* units its JUMP_FORWARD skips once disarmed */
    uint8_t event;
    bool armed;
    /* The last probe before a bare `raise` that begins its line: never
       disarmed, it holds the handler's line event where 3.9 makes none
       (li_hold_handler_line()). */
    bool holds_handler_line;
    /* An event with a value whose probe leaves it on the frame's stack, at
       `depth` (the plain shape): the site reads it there. */
    bool value_on_stack;
    /* The one C callback the event goes to, kept while li_reg's dispatch
       epoch stays `fast_epoch` (0: none kept), for probe.c's fast path;
       whether there is one was last looked at in `checked_epoch`. */
    uint8_t fast_tool, fast_event;      /* its tool, the event it says it is for */
    uint32_t fast_epoch, checked_epoch;
    LowImpact_Callback fast_func;
    void *fast_data;
    /* CALL: the call instruction (opcode, argument); the depth of the
       value stack before the instruction (a CALL's, or the one a value on
       the stack comes with), from the original's stack effects. */
    uint8_t call_op;
    int call_arg;
    int depth;
    /* JUMP and BRANCH: the destination's byte offset (owned); BRANCH: the
       site of the other direction (borrowed) and, on the taken one's, the
       jump that leads to it (branch.c). */
    PyObject *dest;
    struct li_site *twin;
    li_branch_jump jump;
} li_site;

/* The map of a shadow: its last constant. */
struct li_shadow {
    PyObject_HEAD
    /* Borrowed: the original's code state holds the shadow, and the original
       outlives it, except where C code kept the shadow (NULL then). */
    PyCodeObject *original;
    li_code_state *cs;      /* borrowed, the original's; NULL with it */
    PyCodeObject *code;     /* borrowed: the shadow itself */
    int n_units, n_orig_units;
    li_event_set events;    /* the events it has probes for */
    /* Where a frame that delivered PY_START (or would have) goes on: the
       unit after its PY_START probe. */
    int after_start;
    /* Shadow unit -> original unit of the instruction it belongs to (probe
       units belong to the instruction they precede); n_units + 1 entries. */
    int32_t *orig_start;
    /* Shadow unit -> original unit of that instruction's opcode. */
    int32_t *orig_op;
    /* Original unit of an instruction start -> shadow unit where it starts,
       its probes first; n_orig_units + 1 entries (-1 inside instructions). */
    int32_t *shadow_start;
    int n_sites;
    li_site **sites;        /* borrowed: the shadow's constants hold them */
    /* Probes left out because every tool that wants them had disabled
       them when it was built (event, original unit), which it cannot
       deliver once a tool wants one again (choose_shadow()); and how many
       of its own sites were disarmed since, which make it worth building
       again without them. */
    int n_omitted;
    struct li_omitted { int32_t orig; uint8_t event; } *omitted;   /* owned (PyMem) */
    li_event_set omitted_events;    /* theirs */
    /* Whether it delivers PY_YIELD at a YIELD_FROM (hook.c's finish(),
       there is no probe for it), which the original does not. */
    bool yields_from;
    /* The li_epoch in which a generator suspended on it resumes there and
       suspends again with nothing to do around it (li_eval): its code runs
       it, no tool wants PY_RESUME or PY_YIELD of that code.  0: not known;
       cleared where its code's choice is voided within an epoch. */
    uint64_t resumes_plain_in;
    /* Original unit -> how many cleanup handlers an exception raised there
       passes (li_cleanups_of()); owned (PyMem), NULL until exc.c needs it. */
    uint8_t *cleanups;
    int n_disarmed;
    li_shadow *next, *prev; /* every live shadow, for re-arming */
};

extern PyTypeObject li_site_type;
extern PyTypeObject li_shadow_type;

/* Per code state (cs->backend). */
typedef struct {
    /* Owned: the shadow built for `events`, NULL if none is wanted (or,
       with `starts`, none was needed yet: see start_here()). */
    PyCodeObject *shadow;
    /* Borrowed: what new frames run, `shadow`, or NULL when that has no
       probes left (the original does the same, faster). */
    PyCodeObject *run;
    li_shadow *run_map;     /* run's map, while run is set (start_on()) */
    /* Frames made for the original have room for the values `run` keeps
       on its stack (run_on() lends them a bigger stack otherwise). */
    bool run_fits;
    /* PY_START is its only event with a probe, and some tool wants it
       where it fires: new frames run the original, the frame evaluation
       function delivers it (hook.c's start_here()). */
    bool starts;
    li_event_set events;    /* the events it has probes for */
    uint64_t epoch;         /* li_epoch when it was chosen; 0: choose again */
    int watch_slot;         /* 1 + its index among the watched (rearm.c); 0: not */
} li_b310;

/* Pops the value on top of the stack of `f`, a frame that is not executing
 * (or is in a trace event); the frame's reference passes to the caller. */
static inline PyObject *
li_stack_pop(PyFrameObject *f)
{
    int depth = li_stack_depth(f) - 1;
    li_set_stack_depth(f, depth);
    return f->f_valuestack[depth];
}

/* Bumped whenever which shadow a code object needs may have changed. */
extern uint64_t li_epoch;

/* Raised by a PY_START probe whose callbacks changed what its code needs:
 * the frame evaluation function starts the frame again, past PY_START, on
 * the code it needs now (hook.c).  A borrowed exception type. */
extern PyObject *li_restart;

/* ---- shadow.c ---- */

/* A shadow of `code` with probes for `events`; NULL with an exception.
 * With `compact`, without the probes every tool that wants them disabled
 * (recorded in its map's omitted). */
PyCodeObject *li_build_shadow(PyCodeObject *code, li_code_state *cs, li_event_set events,
                              bool compact);
/* Whether the instruction after one with `opcode` may run next. */
static inline bool
li_falls_through(int opcode)
{
    return opcode != JUMP_ABSOLUTE && opcode != JUMP_FORWARD && opcode != RETURN_VALUE &&
           opcode != RAISE_VARARGS && opcode != RERAISE;
}
/* Appends the pair (bytes, delta) to the line table being made in *buf
 * (*len bytes of *cap), which both versions' tables are made of.  0, or -1
 * with an exception set. */
int li_append_pair(unsigned char **buf, Py_ssize_t *len, Py_ssize_t *cap, int bytes, int delta);
/* Whether a tool wants again a probe that `map` left out. */
bool li_shadow_misses(const li_shadow *map);
/* Whether enough of `map`'s probes were disarmed that new frames should
 * get a shadow without them: a quarter, so that code whose locations are
 * disabled a few at a time is built again a logarithmic number of times. */
static inline bool
li_worth_compacting(const li_shadow *map)
{
    return map->n_disarmed > 0 && 4 * map->n_disarmed >= map->n_sites;
}
/* The map of `code` if it is a shadow, else NULL. */
static inline li_shadow *
li_shadow_of(PyCodeObject *code)
{
    PyObject *consts = code->co_consts;
    Py_ssize_t n = PyTuple_GET_SIZE(consts);
    if (n == 0) {
        return NULL;
    }
    PyObject *last = PyTuple_GET_ITEM(consts, n - 1);
    return Py_IS_TYPE(last, &li_shadow_type) ? (li_shadow *)last : NULL;
}
/* The shadows alive. */
li_shadow *li_live_shadows(void);
/* How many shadows were built so far (for tests). */
Py_ssize_t li_shadows_built(void);

/* ---- uncounted.c ---- */

/* A new tuple of `size` (its items NULL) that the collector neither tracks
 * nor counts towards its next collection: for a shadow's constants, which
 * only code objects hold.  NULL with an exception. */
PyObject *li_uncounted_tuple(Py_ssize_t size);

/* ---- probe.c ---- */

void li_site_arm(li_site *s);
/* Delivers the event of `s` (with `value` for PY_RETURN and PY_YIELD) from
 * the thread's current frame.  0, or -1 with an exception set. */
int li_site_fire(li_site *s, PyObject *value);
/* Writes the probe of `s` armed or disarmed, whatever its event. */
void li_site_write(li_site *s, bool armed);
void li_site_disarm(li_site *s);
/* li_call_tools() at a point where an exception is pending (PY_THROW,
 * C_RAISE): it is put aside while callbacks run (normalized, and its value
 * passed as args[value_slot] when value_slot > 0), and restored after them;
 * an exception a callback raises replaces it, as natively.  0, or -1 with
 * the callback's exception set. */
int li_call_tools_around_error(PyThreadState *ts, int event, uint8_t tools, li_code_state *cs,
                               Py_ssize_t unit, PyObject **args, size_t nargs, int value_slot);
/* Re-arms every probe of a live shadow that a tool wants again. */
void li_rearm_all(void);
/* The same for the probes of `map`. */
void li_rearm_shadow(li_shadow *map);

/* ---- branch.c ---- */

/* Most probes an instruction gets before it: PY_START, an exception
 * event's before LINE (exc.c), LINE, INSTRUCTION for each of its units
 * (EXTENDED_ARG prefixes are instructions of their own natively), JUMP,
 * PY_RETURN or PY_YIELD, an exception event's after them, its CALL and the
 * CALL of a call two instructions on (call_probe_place in shadow.c). */
#define LI_MAX_PROBES 12

/* Conditional jumps, which deliver BRANCH as 3.12's POP_JUMP_IF_* and
 * FOR_ITER do, and unconditional ones, which deliver JUMP. */
bool li_is_branch(int opcode);
bool li_is_jump(int opcode);
/* Writes into the shadow the state of the BRANCH location of `s`: both
 * directions' probes armed or not, and its jump through the stub or not. */
void li_branch_set(li_site *s, bool armed);

/* ---- call.c ---- */

/* Delivers CALL at `s`, reading the callable and its first argument from
 * the value stack of the running frame; for a callable that is not a Python
 * function, replaces it there with one that delivers C_RETURN or C_RAISE
 * after the call.  0, or -1 with an exception set. */
int li_fire_call(PyThreadState *ts, li_site *s, uint8_t tools);
int li_call_init(void);

/* ---- start.c ---- */

/* The original unit where a frame of `code` starts (after GEN_START). */
static inline int
li_start_unit(PyCodeObject *code)
{
    return li_is_gen_start((uint8_t)PyBytes_AS_STRING(code->co_code)[0]) ? 1 : 0;
}
/* Delivers PY_START at original unit `unit` to `tools` for frame `f` of
 * `code` (state `cs`), about to run its original: from the frame, as the
 * probe does.  0, or -1 with an exception set, which the frame is then to
 * raise (its f_lasti says where, as li_fire_start()'s). */
int li_start_before(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code, li_code_state *cs,
                    int unit, uint8_t tools);

/* Delivers PY_START at `s` (args: li_call_tools's) with the running frame
 * shown before its first instruction.  0, or -1 with an exception set. */
int li_fire_start(PyThreadState *ts, li_site *s, uint8_t tools, PyObject **args);

/* ---- exc.c ---- */

/* Whether `opcode` sets up a handler (its target). */
static inline bool
li_sets_up_handler(int opcode)
{
    return opcode == SETUP_FINALLY || opcode == SETUP_WITH || opcode == SETUP_ASYNC_WITH;
}

/* The exception event whose probe instruction (opcode, oparg), preceded by
 * `prev_opcode` (-1: none), gets before its LINE probe (a handler target,
 * FOR_ITER, the instruction after YIELD_FROM: jumps other than to a
 * handler land after it), or after it; -1: none.  (The event of the probe:
 * EXCEPTION_HANDLED for a handler's, STOP_ITERATION for FOR_ITER's and
 * YIELD_FROM's, RERAISE.) */
int li_exc_probe_before_line(li_event_set events, int opcode, int prev_opcode, bool handler);
int li_exc_probe_after_line(li_event_set events, int opcode, int oparg);
/* The exception a handler of `f` was just entered with: the slots of the
 * EXCEPT_HANDLER block on top (b_level: traceback, value, type handled
 * before; then the same of the exception in flight), and that block in
 * *block.  NULL if the block stack is not so (bytecode the compiler did not
 * make). */
PyObject **li_exc_handler_slots(PyFrameObject *f, PyTryBlock **block);
/* `want` without the exception events `code` has no probes for. */
li_event_set li_exc_needed(PyCodeObject *code, li_event_set want);
/* The probes of a handler and of a re-raise.  0, or -1 with an exception. */
int li_fire_exc(li_site *s);
/* STOP_ITERATION after a YIELD_FROM whose delegate returned `value`. */
int li_fire_stop(PyThreadState *ts, li_site *s, uint8_t tools, PyObject *value);
/* The iterator a for loop at site `s` runs on: `it`, or one that reports
 * how it ends.  A new reference, or NULL with an exception. */
PyObject *li_exc_wrap(li_site *s, PyObject *it);
/* The frame `f` of `code` exits with the exception set: RAISE (unless a
 * re-raise), PY_UNWIND.  The exception set is what leaves it. */
void li_exc_frame_exit(PyThreadState *ts, PyFrameObject *f, PyCodeObject *code);
/* running.c reported the exit of reached frame `f` with exception `value`
 * (hook.c may not evaluate it): the li_exc_frame_exit() of that exit, if
 * any comes, reports nothing. */
void li_exc_exit_reported(PyFrameObject *f, PyObject *value);
/* How many cleanup handlers (li_cleanups_of()) an exception raised at
 * original unit `unit` of `code` passes, from the counts kept by `map`, a
 * shadow of it (NULL: none at hand).  -1 with an exception set. */
int li_cleanups_passed(PyCodeObject *code, li_shadow *map, int unit);
static inline bool
li_exc_exit_wanted(void)
{
    return (li_reg.global_tools[LI_RAISE] | li_reg.global_tools[LI_PY_UNWIND] |
            li_reg.global_tools[LI_EXCEPTION_HANDLED] | li_reg.global_tools[LI_RERAISE]) != 0;
}
int li_exc_init(void);

/* ---- hook.c ---- */

/* The hook is installed while any tool wants events. */
void li_hook_sync(void);
/* The shadow that frames of original `code` should run now, or NULL (the
 * original).  Borrowed. */
PyCodeObject *li_shadow_for(PyCodeObject *code);

/* ---- running.c ---- */

typedef PyObject *(*li_evaluator)(PyThreadState *, PyFrameObject *, int);
/* How many threads have frames that were running when their code came to
 * need events. */
extern int li_running_threads;
/* Threads whose trace functions running.c put aside for a frame that an
 * exception would have had traced: the next frame evaluated gives them
 * back (li_running_restore()). */
extern int li_running_aside;
void li_running_restore(PyThreadState *ts);
/* Finds those frames in every thread, after a change of events.  0, or -1
 * with an exception set. */
int li_running_sync(void);
/* Whether the user set a trace or profile function for `ts` (running.c's
 * own are not). */
bool li_running_user_hooks(PyThreadState *ts);
/* Evaluates a frame of a thread that has such frames. */
PyObject *li_running_eval(PyThreadState *ts, PyFrameObject *f, int throwflag,
                          li_evaluator evaluate);

/* ---- running_exc.c ---- */

/* Delivers exception event `event` of `value` at original unit `unit` of
 * `original` to the tools that want it, from a trace event of the thread.
 * 0, or -1 with the callback's exception set. */
int li_reached_deliver(PyThreadState *ts, int event, PyCodeObject *original, int unit,
                       PyObject *value);
/* EXCEPTION_HANDLED at original unit `unit`, where unwinding just brought
 * `f` into a handler (nothing if it is not one), after the EXCEPTION_HANDLED
 * and RERAISE of the `passed` cleanup handlers (li_cleanups_passed()) the
 * exception went through from original unit `raised`.  0, or -1. */
int li_reached_handled(PyThreadState *ts, PyFrameObject *f, PyCodeObject *original, int unit,
                       int raised, int passed);
/* EXCEPTION_HANDLED and RERAISE of `value` for each of `passed` cleanup
 * handlers, at original unit `unit`, from a trace event.  0, or -1. */
int li_reached_cleanups(PyThreadState *ts, PyCodeObject *original, int unit, int passed,
                        PyObject *value);
/* The exception that instruction (opcode, oparg), which `f` is about to
 * run, raises again without passing the error label; NULL if it does not.
 * Borrowed. */
PyObject *li_reached_reraises(PyThreadState *ts, PyFrameObject *f, int opcode, int oparg);

/* ---- rearm.c ---- */

/* As the hook goes: watches for starts the code objects that would forget
 * DISABLE marks if they started.  0, or -1 with an exception set. */
int li_watch_begin(void);
/* As the hook comes back: the code objects watched that started meanwhile
 * forget those marks now.  Whether any did. */
bool li_watch_end(void);
/* `cs` (which has back end data) is going: it is watched no more. */
void li_unwatch(li_code_state *cs);

/* ---- transparency.c ---- */

int li_transparency_init(void);
/* Replaces the descriptors named in `defs` (static, NULL-terminated) in
 * `type`'s dict, keeping their docstrings.  0, or -1 with an exception. */
int li_replace_getsets(PyTypeObject *type, PyGetSetDef *defs);

/* ---- caught.c ---- */

/* The constant of the marker before each handler of a shadow (borrowed). */
PyObject *li_caught_marker(void);
/* Called by li_transparency_init.  0 or -1. */
int li_caught_init(void);

/* ---- blocks.c ---- */

/* The unit an instruction with `opcode` and `arg`, followed by unit
 * `next`, jumps to (a SETUP_*: its handler), or -1. */
int li_jump_target(int opcode, unsigned int arg, int next);
/* A block of a block stack: the body's block a SETUP_* pushes, or the
 * EXCEPT_HANDLER block that unwinding into its handler pushes. */
typedef struct {
    int start;          /* first unit of the SETUP_* (its prefixes included) */
    int opcode;         /* the SETUP_* */
    int handler_unit;   /* a handler block: where the handler starts */
    int parent;         /* the block under it; 0: none */
    bool handler;
} li_block;
/* The block stack of each unit: at[u] is its innermost block, an index
 * into blocks (0: the empty stack), or -1 where no path reaches. */
typedef struct {
    li_block *blocks;
    int n_blocks;
    int *at;
} li_block_stacks;
/* The block stacks of the `n` units of `code`.  0, or -1 with an
 * exception set; li_block_stacks_clear() frees them. */
int li_block_stacks_of(PyCodeObject *code, int n, li_block_stacks *stacks);
void li_block_stacks_clear(li_block_stacks *stacks);

/* ---- jump.c ---- */

/* frame.f_lineno's setter: a trace function's jumps decided on the
 * original, a monitoring callback's taken after its callbacks; its getter
 * (called by li_transparency_init). */
int li_jump_init(void);
/* For each original unit of `code`, how many of the cleanup handlers that
 * 3.11+ compiles around the body of each except clause, finally clause and
 * with statement's exit (COPY 3; POP_EXCEPT; RERAISE 1) an exception raised
 * there passes before it reaches a handler or leaves the frame: 3.10 pops
 * their EXCEPT_HANDLER blocks as it unwinds, without an instruction.
 * n_units + 1 counts (PyMem), or NULL with an exception set. */
uint8_t *li_cleanups_of(PyCodeObject *code);
/* The unit after the instruction at unit `u` of `n` (its EXTENDED_ARG
 * prefixes included), and its opcode (-1 past the end) and argument. */
int li_decode(const uint8_t *bytes, int n, int u, int *opcode, unsigned int *arg);
/* The handler that deletes the name of `except E as name:`, LOAD_CONST
 * constant; STORE name; DELETE name; RERAISE reraise (a finally body that
 * is exactly `name = None; del name` is the same code). */
typedef struct {
    unsigned int constant;
    int store;              /* the STORE_* opcode */
    unsigned int name;
    unsigned int reraise;   /* RERAISE's argument (3.10) */
} li_name_cleanup;
/* Whether such a handler starts at unit `u` of `n`; its parts in *found. */
bool li_name_cleanup_at(const uint8_t *bytes, int n, int u, li_name_cleanup *found);

#endif /* LI_B310_H */
