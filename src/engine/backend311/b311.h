/* The CPython 3.11 back end: private interface between its files.
 *
 * How events are delivered on 3.11 (see docs/ENGINE.md for the long form):
 * a code object that some tool wants events from gets an instrumented copy
 * (a "shadow") with probes inserted before the instructions that need them.
 * A probe is
 *
 *     LOAD_CONST probes     the shadow's li_probes object (a constant after
 *                           the original's; EXTENDED_ARG before it when its
 *                           index needs one); JUMP_FORWARD over the probe
 *                           when the probe is disarmed
 *     POP_JUMP_IF_TRUE d    nb_bool of li_probes runs the probe, which is
 *                           true when the frame must divert (probe.c)
 *
 * New frames run the shadow because function objects point at it; the
 * original stays what users see (function.__code__, frame.f_code and friends
 * are mapped back).  Disarming a probe rewrites its first unit in place, so
 * running frames see the change at once.
 */
#ifndef LI_B311_H
#define LI_B311_H

#define Py_BUILD_CORE_MODULE 1
#include "li.h"
#include "internal/pycore_code.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_opcode.h"
#include "internal/pycore_pystate.h"

/* ---- analysis of an original code object (analysis.c) ---- */

typedef struct {
    int line, end_line, col, end_col;    /* -1 where absent */
} li_loc;

enum {
    LI_I_JUMP_TARGET = 1 << 0,
    LI_I_HANDLER_TARGET = 1 << 1,
    LI_I_LINE_START = 1 << 2,      /* a LINE event can happen here */
    LI_I_FALLS_THROUGH = 1 << 3,   /* execution can continue with the next one */
    LI_I_TRACEABLE = 1 << 4,       /* after the prologue: probes may go before it */
    LI_I_IN_CALL_GROUP = 1 << 5,   /* PRECALL after KW_NAMES, CALL after PRECALL */
};

typedef struct {
    int start;        /* first unit, EXTENDED_ARG prefixes included */
    int op;           /* unit of the opcode itself */
    int end;          /* one past the last unit, inline caches included */
    int oparg;
    int line;         /* line of the opcode unit, -1 if none */
    int event_line;   /* the line LINE events give it: 3.12's (-1 if none) */
    int depth;        /* value stack depth before it runs; -1 if unreachable */
    int target;       /* instruction jumped to, or -1 */
    uint8_t opcode;   /* deoptimised */
    uint8_t flags;
} li_instr;

typedef struct {
    int start, end;   /* units covered, end exclusive */
    int target;       /* handler unit */
    int depth;        /* stack depth the handler restores */
    bool lasti;       /* the handler also gets the raising offset */
} li_handler;

typedef struct {
    PyCodeObject *code;    /* borrowed */
    int n_units;
    _Py_CODEUNIT *units;   /* deoptimised bytecode */
    int n_instrs;
    li_instr *instrs;
    int n_for_iters;       /* FOR_ITER instructions */
    bool reraise_jumped_to;  /* a jump goes to a RERAISE (see mark_line_starts) */
    int32_t *instr_at;     /* unit -> index of the instruction containing it */
    li_loc *locs;          /* per unit */
    int max_line;          /* no line of the code is above it */
    int n_handlers;
    li_handler *handlers;
} li_analysis;

/* 0, or -1 with an exception set (the analysis is then cleared). */
int li_analyse(PyCodeObject *code, li_analysis *an);
void li_analysis_clear(li_analysis *an);

static inline bool
li_is_jump_backward(int opcode)
{
    return opcode == JUMP_BACKWARD || opcode == JUMP_BACKWARD_NO_INTERRUPT ||
           opcode == POP_JUMP_BACKWARD_IF_FALSE || opcode == POP_JUMP_BACKWARD_IF_TRUE ||
           opcode == POP_JUMP_BACKWARD_IF_NONE || opcode == POP_JUMP_BACKWARD_IF_NOT_NONE;
}

static inline bool
li_is_jump(int opcode)
{
    switch (opcode) {
    case JUMP_FORWARD:
    case JUMP_IF_FALSE_OR_POP:
    case JUMP_IF_TRUE_OR_POP:
    case POP_JUMP_FORWARD_IF_FALSE:
    case POP_JUMP_FORWARD_IF_TRUE:
    case POP_JUMP_FORWARD_IF_NONE:
    case POP_JUMP_FORWARD_IF_NOT_NONE:
    case FOR_ITER:
    case SEND:
        return true;
    default:
        return li_is_jump_backward(opcode);
    }
}

/* The per-unit entries of one instruction (one to a dozen units, mostly
 * one or two): out[k] = first + step * k for k < n.  Written one by one up
 * to six, since the compiler vectorises a plain loop with a set-up that
 * costs several times these few stores (the shadow builder runs such loops
 * for every instruction of every shadow). */
static inline void
li_fill_units(int32_t *out, int n, int32_t first, int32_t step)
{
    for (int k = 6; k < n; k++) {
        out[k] = first + step * k;
    }
    switch (n < 6 ? n : 6) {
    case 6: out[5] = first + step * 5; /* fall through */
    case 5: out[4] = first + step * 4; /* fall through */
    case 4: out[3] = first + step * 3; /* fall through */
    case 3: out[2] = first + step * 2; /* fall through */
    case 2: out[1] = first + step; /* fall through */
    case 1: out[0] = first; /* fall through */
    default: break;
    }
}

static inline _Py_CODEUNIT
li_make_unit(int opcode, int oparg)
{
    _Py_CODEUNIT unit;
    uint8_t *bytes = (uint8_t *)&unit;
    bytes[0] = (uint8_t)opcode;
    bytes[1] = (uint8_t)oparg;
    return unit;
}

/* Writes `ext` EXTENDED_ARG prefixes for the high bytes of oparg, then the
 * opcode; past them. */
static inline _Py_CODEUNIT *
li_emit_with_prefixes(_Py_CODEUNIT *out, int ext, int opcode, int oparg)
{
    for (int k = ext; k > 0; k--) {
        *out++ = li_make_unit(EXTENDED_ARG, (oparg >> (8 * k)) & 0xFF);
    }
    *out++ = li_make_unit(opcode, oparg & 0xFF);
    return out;
}

/* The opcode of a jump that now goes to `landing`: a conditional jump to a
 * stub after the code goes forward even if it went backward. */
static inline int
li_jump_opcode(int opcode, bool forward)
{
    if (!forward) {
        return opcode;
    }
    switch (opcode) {
    case POP_JUMP_BACKWARD_IF_FALSE: return POP_JUMP_FORWARD_IF_FALSE;
    case POP_JUMP_BACKWARD_IF_TRUE: return POP_JUMP_FORWARD_IF_TRUE;
    case POP_JUMP_BACKWARD_IF_NONE: return POP_JUMP_FORWARD_IF_NONE;
    case POP_JUMP_BACKWARD_IF_NOT_NONE: return POP_JUMP_FORWARD_IF_NOT_NONE;
    default: return opcode;
    }
}

/* The EXTENDED_ARG prefixes an oparg needs. */
static inline int
li_ext_needed(int oparg)
{
    return oparg > 0xFFFFFF ? 3 : oparg > 0xFFFF ? 2 : oparg > 0xFF ? 1 : 0;
}

/* ---- tables (tables.c) ---- */

/* Decodes the location table into one li_loc per unit and, unless NULL, a
 * line no line of the table exceeds (max_line).  0 or -1. */
int li_decode_locations(PyCodeObject *code, li_loc *locs, int n_units, int *max_line);
/* Encodes a location table whose unit u has the location locs[loc_of[u]]
 * (loc_of[u] -1: none); a new bytes object or NULL. */
PyObject *li_encode_locations(const li_loc *locs, const int32_t *loc_of, int n_units,
                              int firstlineno);
/* Gives `code`, which has none yet, the per-unit line array CPython's
 * tracing reads (_co_linearray, which it would make from the location table
 * as it first traces the code): `lines`, one per unit (-1: none), in 16-bit
 * entries if they fit, as CPython makes it.  0 or -1 with MemoryError. */
int li_set_line_array(PyCodeObject *code, const int32_t *lines, int n_units);

/* The same for a shadow, whose unit u has the line of original unit map[u]
 * (`locs` per original unit), in 32-bit entries if `wide`.  0 or -1. */
int li_set_line_array_mapped(PyCodeObject *code, const li_loc *locs, const int32_t *map,
                             bool wide);

static inline int
li_line_array_get(PyCodeObject *code, int unit)
{
    return code->_co_linearray_entry_size == sizeof(int16_t)
           ? ((int16_t *)code->_co_linearray)[unit]
           : ((int32_t *)code->_co_linearray)[unit];
}

static inline void
li_line_array_set(PyCodeObject *code, int unit, int line)
{
    if (code->_co_linearray_entry_size == sizeof(int16_t)) {
        ((int16_t *)code->_co_linearray)[unit] = (int16_t)line;
    }
    else {
        ((int32_t *)code->_co_linearray)[unit] = line;
    }
}
/* The exception table of `code` as compiled (trampoline.c may route
 * exceptions elsewhere meanwhile).  Borrowed. */
PyObject *li_own_exceptiontable(PyCodeObject *code);
/* Decodes the exception table; *handlers is PyMem-allocated (NULL when the
 * table is empty).  Count or -1. */
int li_decode_handlers(PyCodeObject *code, li_handler **handlers);
/* Encodes the handler of each unit (target -1: none; start and end
 * unused); bytes or NULL. */
PyObject *li_encode_handlers(const li_handler *per_unit, int n_units);

/* ---- shadows and probes (shadow.c, probe.c) ---- */

enum {
    LI_PROBE_AFTER,        /* events of the previous instruction, on fall-through */
    LI_PROBE_HANDLER,      /* an exception reaches a handler of the code */
    LI_PROBE_LINE,         /* LINE of the next instruction */
    LI_PROBE_LINE_HANDLER, /* LINE of an exception handler's first instruction */
    LI_PROBE_INSTR,        /* INSTRUCTION and the next instruction's own events */
    LI_PROBE_TAKEN,        /* stub: a branch or SEND jumped */
    LI_PROBE_C_RAISE,      /* stub: a call to a non-Python callable raised */
    LI_PROBE_UNWIND,       /* stub: an exception leaves the frame */
};

/* The RAISE site of the probe before a FOR_ITER a loop starts with: it
 * watches the loop's iterator (events.c). */
#define LI_AUX_WATCH_LOOP 1

/* One event a probe delivers. */
typedef struct {
    PyObject *arg;        /* owned, made at first use: the callbacks' second
                             argument (the line for LINE, else the offset) */
    int32_t orig;         /* original unit the event belongs to */
    int32_t aux;          /* LINE: the line; JUMP, BRANCH: destination unit;
                             RAISE before a FOR_ITER: LI_AUX_WATCH_LOOP;
                             CALL: number of arguments; for CALL_FUNCTION_EX
                             -1, -2 with a keyword mapping */
    uint8_t event;
    uint8_t way;          /* BRANCH: LI_MARK_BRANCH_JUMPED or _ON, else 0 */
    PyObject *dest;       /* owned, made at first use: JUMP's and BRANCH's
                             third argument (the destination offset) */
} li_site;

typedef struct {
    int32_t unit;         /* shadow unit where the probe starts */
    int32_t first_site;   /* its sites, in delivery order */
    /* Where its frame goes on once its events are delivered, as a landing
       (unit -1: the probe cannot divert its frame, see shadow.c). */
    int32_t resume_unit;
    int16_t depth;        /* value stack depth where the probe starts */
    uint8_t resume_phase;
    uint8_t n_sites;
    uint8_t kind;
    uint8_t size;         /* in units */
    bool simple;          /* one event whose arguments are at hand: li_fire_simple */
    /* Its first site is such an event (the others may be companions, see
       shadow.c): while no tool wants the others, the fast path serves it. */
    bool lead_simple;
    /* A LOAD_FAST comes right before it: quickening may fuse the two into
       LOAD_FAST__LOAD_CONST, which disarming must undo (probe.c). */
    bool after_load_fast;
    /* The fast path (probe.c): while li_reg.dispatch_epoch is fast_epoch
       (0: never), the probe's one event goes to one callback, `fast`
       (borrowed: the registry holds it meanwhile), of tool fast_tool, with
       the site's argument and a third one when fast_nargs is 3: the value
       in the frame's slot fast_slot (the top of the stack) when that is not
       -1, else fast_dest (borrowed from the site). */
    uint8_t fast_kind;    /* LI_FAST_* (probe.c) */
    bool fast_c;          /* a C callback (li_ccallback) */
    uint8_t fast_tool;
    uint8_t fast_event;   /* its event */
    uint8_t fast_nargs;
    int32_t fast_slot;
    uint32_t fast_epoch;
    PyObject *fast;
    PyObject *fast_arg;
    PyObject *fast_dest;
    /* A Python callback's twin (probe.c), or NULL. */
    const struct li_twin *fast_twin;
} li_probe;

/* Where a frame that moves onto a shadow while it runs goes on: at original
 * instruction `unit` (its first unit), at the point `phase` of the probes
 * and stubs the shadow has there (shadow.c). */
enum {
    LI_LAND_START,         /* RESUME 0 of a frame that has not started */
    LI_LAND_BEFORE_AFTER,  /* the instruction before completed; its events
                              after completion (AFTER probe) still to come */
    LI_LAND_FALLTHROUGH,   /* the same, those events past */
    LI_LAND_LINE,          /* come by a jump from another line (or an
                              exception): the instruction's LINE to come */
    LI_LAND_AFTER_LINE,    /* its LINE past */
    LI_LAND_AT,            /* the instruction itself, its events past */
    LI_LAND_RAISED,        /* the instruction raised the exception on top
                              of the frame's stack, at the depth of its
                              handler (0 without one) */
};

typedef struct {
    int32_t unit;
    int32_t phase;
} li_landing;

static inline bool
li_same_landing(li_landing a, li_landing b)
{
    return a.unit == b.unit && a.phase == b.phase;
}

/* A landing pad of a shadow: where a frame landing at `to` resumes, with the
 * result of the call that moved it on its stack (see shadow.c). */
typedef struct {
    li_landing to;
    int32_t unit;
} li_pad;

#define LI_TRAMPOLINE_UNITS 4   /* PUSH_NULL, LOAD_ASSERTION_ERROR, UNARY_POSITIVE, CALL 0 */

/* A place in a code object where a trampoline goes (trampoline.c).  Kept
 * once armed: a frame may still be on its way through it. */
typedef struct {
    int at;                      /* first of the units it occupies */
    int jump;                    /* unit of a jump to it, or -1 */
    int owner;                   /* unit of the instruction whose inline
                                    cache it occupies, or -1 */
    li_landing landing;          /* where frames that take it go on */
    bool armed;
    _Py_CODEUNIT saved[LI_TRAMPOLINE_UNITS];
    _Py_CODEUNIT saved_jump, saved_owner;
    int saved_lines[LI_TRAMPOLINE_UNITS];  /* the line array's entries
                                              for its units (not the entry
                                              trampoline's) */
    int saved_jump_line;                    /* and for the jump's unit */
} li_trampoline;

/* Where the exceptions raised at one unit go while a frame waits there
 * (trampoline.c). */
typedef struct {
    _PyInterpreterFrame *frame;  /* the frame waiting there (compared only) */
    int raising;                 /* the unit */
    int depth;                   /* the stack depth they arrive with */
    int trampoline;              /* the unit of the trampoline they go to */
    int routed_end;              /* units from `trampoline` up to this one
                                    are handled as `raising` is */
    li_landing landing;          /* {its instruction, LI_LAND_RAISED} */
} li_exception_route;

/* The trampolines of one code object, an original or a shadow. */
typedef struct li_patches {
    PyCodeObject *code;          /* borrowed: the code they patch */
    li_trampoline *trampolines;  /* PyMem-allocated, or `first` */
    li_trampoline *first;        /* room for one kept by the owner, or NULL */
    int n_trampolines, cap_trampolines, n_armed;
    li_exception_route *routes;  /* while n_armed */
    int n_routes, cap_routes;
    short saved_warmup;          /* co_warmup before the first was armed */
    /* Strong: the code's own exception table while one that sends
       exceptions to trampolines is in its place, else NULL; swapped back
       in (li_trampoline_swap) while `swapped_out`. */
    PyObject *own_exceptiontable;
    bool swapped_out;
    /* Some trampoline stays armed only because a frame stood in its units
       when the code stopped needing it (trampoline.c, disarm_all()). */
    bool lingering;
    bool of_shadow;              /* the code is a shadow (else an original) */
    struct li_patches *next_armed, *prev_armed;
    struct li_patches *next_lingering, *prev_lingering;   /* while `lingering` */
} li_patches;

/* The li_probes object: the runtime data of one shadow, stored as its last
 * constant so that it lives exactly as long as the shadow. */
typedef struct li_probes {
    PyObject_HEAD
    PyCodeObject *shadow;       /* borrowed: the shadow owns us via co_consts */
    PyCodeObject *original;     /* strong */
    li_code_state *cs;          /* the original's state: alive while it is */
    li_event_set kinds;         /* events it has probes for */
    int probes_const;           /* index of this object in co_consts */
    int n_units;                /* shadow length */
    int n_orig_units;
    /* The unit maps (li_orig_of(), li_shadow_of(), li_probe_at()) in one
       block with the probes, sites, pads and for_iters (shadow.c): 16-bit
       entries where every value fits, as for nearly all code (half the
       memory, most of a shadow's), else 32-bit ones (`wide_maps`). */
    void *orig_of;              /* shadow unit -> original unit it stands for */
    void *shadow_of;            /* original unit -> shadow unit of the same unit */
    int n_probes;
    uint8_t probe_size;         /* units of each probe */
    bool wide_maps;
    _Py_CODEUNIT armed_unit;    /* the first unit of an armed probe */
    /* By shadow position; the start of the block. */
    li_probe *probes;
    void *probe_at;             /* shadow unit of a probe's last unit -> the
                                   probe */
    int n_sites;
    li_site *sites;
    int n_armed;                /* probes currently armed */
    int entry_probe;            /* first probe after RESUME 0, or -1 */
    /* Only frames that start reach the entry probe (no jump goes there):
       at that probe of an obsolete shadow a frame moves to the current one
       before its PY_START (probe.c), and a trace function sees no 'line'
       there (li_make_obsolete()). */
    bool entry_only_at_start;
    int n_pads;
    li_pad *pads;               /* by original unit */
    int n_resume_points;        /* of the code's when built: all have pads */
    /* Probes whose tools had all returned DISABLE were left out ("partial");
       the shadow must be rebuilt once a tool may want them again, that is
       when tools were added to the events or restart_events() ran. */
    bool partial;
    uint8_t built_tools[LI_LOCAL_EVENT_COUNT];
    uint32_t built_epoch;
    /* Another shadow replaced this one for new frames; functions that still
       point here are redirected when they next start (at entry_probe). */
    bool obsolete;
    /* It lacks probes some tool wants now: every probe is armed, and moves
       the frame that runs it onto a shadow that has them (probe.c). */
    bool outdated;
    /* Trampolines that reach frames running it in C (trampoline.c); NULL
       until one is needed (PyMem-allocated). */
    li_patches *patches;
    /* Its FOR_ITERs: shadow unit and the stack depth before them, by unit
       (events.c finds the iterator of a loop with it). */
    int n_for_iters;
    struct li_for_iter { int32_t unit; int32_t depth; } *for_iters;
    struct li_probes *next, *prev;   /* all live shadows */
    struct li_probes *next_of_code, *prev_of_code;   /* those of `cs` */
    /* restart_events() has work here: it is partial, or a DISABLE disarmed
       probes, since restart number restart_epoch.  Once another restart
       ran, the work is left to the next frame that comes in, at a start
       probe the restart armed, when frames come in only there (probe.c,
       restarts_lazily()). */
    bool restart_due;
    uint64_t restart_epoch;
    /* Where its start units are in the list of those the next restart
       arms, while due in this epoch (lazily restarted shadows). */
    int restart_slot;
    /* The other shadows restart_events() re-arms at once (probe.c). */
    struct li_probes *next_restart, *prev_restart;
    /* Frames come in only at its entry probe (not a generator's code). */
    bool entered_at_start;
    /* First units of the probes where frames start or resume. */
    int n_starts;
    int32_t *starts;
} li_probes;

/* Its type: nb_bool reads the narrow or the wide unit maps. */
extern PyTypeObject li_probes_type, li_wide_probes_type;

/* Reserves the shadow marker slot and readies the type.  0 or -1. */
int li_probes_init(void);
/* Marks `shadow` as the code of `lp` and arms its probes.  0 or -1. */
int li_probes_attach(li_probes *lp, PyCodeObject *shadow);

/* The probes of a shadow, or NULL when `code` is not a shadow. */
li_probes *li_shadow_probes(PyCodeObject *code);

/* The unit maps' entries: all ones for none (-1 in 32-bit entries,
 * LI_NARROW_NONE in 16-bit ones).  A probe is found by its offset in
 * `probes`: in bytes in 32-bit entries, in eighths in 16-bit ones. */
#define LI_NARROW_NONE 0xFFFF
_Static_assert(sizeof(li_probe) % 8 == 0, "probes at offsets in eighths");

static inline int
li_narrow_entry(const void *map, int index)
{
    int value = ((const uint16_t *)map)[index];
    return value == LI_NARROW_NONE ? -1 : value;
}

static inline int
li_orig_of(const li_probes *lp, int unit)
{
    return lp->wide_maps ? ((const int32_t *)lp->orig_of)[unit] : li_narrow_entry(lp->orig_of, unit);
}

static inline int
li_shadow_of(const li_probes *lp, int orig)
{
    return lp->wide_maps ? ((const int32_t *)lp->shadow_of)[orig]
                         : li_narrow_entry(lp->shadow_of, orig);
}

/* The probe whose last unit is `unit`, or NULL. */
static inline li_probe *
li_probe_at(const li_probes *lp, int unit)
{
    int at = lp->wide_maps ? ((const int32_t *)lp->probe_at)[unit]
                           : li_narrow_entry(lp->probe_at, unit) * 8;
    return at >= 0 ? (li_probe *)((char *)lp->probes + at) : NULL;
}

/* What a shadow builder hands over for its shadow to be made
 * (li_assemble_shadow); all borrowed. */
typedef struct {
    PyCodeObject *original;
    li_code_state *cs;
    li_event_set kinds;
    bool partial;
    int n_units, n_orig_units;
    const _Py_CODEUNIT *code;
    const int32_t *orig_of;
    const int32_t *shadow_of;
    const li_probe *probes;
    int n_probes;
    const li_site *sites;
    int n_sites;
    const li_pad *pads;
    int n_pads, n_resume_points;
    const struct li_for_iter *for_iters;
    int n_for_iters;
    int probe_size, probes_const, entry_probe;
    bool entry_only_at_start;
    PyObject *linetable, *exctable;
    /* The line array: unit u has the line of locs[orig_of[u]], but those
       of the ranges [lineless[k][0], lineless[k][1]), which have none. */
    const li_loc *locs;
    bool wide_lines;
    const int (*lineless)[2];
    int n_lineless;
} li_shadow_parts;

/* A probe's two units but its prefixes: LOAD_CONST, POP_JUMP_IF_TRUE. */
#define LI_PROBE_BASE_SIZE 2
/* The units of a DIVERT stub whose LOAD_CONST has no prefix (shadow.c). */
#define LI_DIVERT_BASE_SIZE (4 + 1 + 4 + 1)
/* How far a probe's one-unit jump reaches. */
#define LI_JUMP_REACH 255
/* Writes a DIVERT stub (shadow.c) calling constant `lander_const`; past it. */
_Py_CODEUNIT *li_emit_divert(_Py_CODEUNIT *out, int lander_const);

/* The shadow made of `parts`, with the constants `consts` (as for
 * li_build_shadow).  New reference, or NULL with an exception. */
PyCodeObject *li_assemble_shadow(const li_shadow_parts *parts, PyObject *consts);

/* A shadow with probes for `kinds`, LINE or PY_START or both (checked by
 * the caller), and with `placeholders` where frames start and resume, as
 * li_build_shadow() builds it, made in one walk of the original; NULL
 * without an exception where that walk does not apply (lineshadow.c). */
PyCodeObject *li_build_line_shadow(PyCodeObject *original, li_code_state *cs,
                                   li_event_set kinds, PyObject *consts, bool every_site,
                                   bool placeholders);

/* Debug builds make each LINE shadow both ways and compare. */
#if defined(LI_DEBUG) && !defined(LI_CROSSCHECK_LINE_SHADOWS)
#define LI_CROSSCHECK_LINE_SHADOWS
#endif
#ifdef LI_CROSSCHECK_LINE_SHADOWS
/* Whether the shadows li_build_line_shadow() and the general builder made of
 * the same code differ (then with SystemError saying where). */
bool li_line_shadow_differs(PyCodeObject *fast, PyCodeObject *general);
#endif

/* Whether `op` is a generator, a coroutine or an async generator.  Most
 * objects are none of them: one look at their type's finalizer, which those
 * share, tells them apart (a walk of a big heap is mostly this test). */
static inline bool
li_is_generator_like(PyObject *op)
{
    return Py_TYPE(op)->tp_finalize == _PyGen_Finalize &&
           (PyGen_CheckExact(op) || PyCoro_CheckExact(op) || Py_IS_TYPE(op, &PyAsyncGen_Type));
}

/* The stack effect of an instruction that goes on with the next one
 * (analysis.c). */
int li_fall_through_effect(int opcode, int oparg);

/* Builds a shadow of `original` with probes for `kinds` where tools want
 * them (everywhere with `every_site`, for checking the builder); its nested
 * code constants are replaced by `consts` (a tuple of the same length as
 * the original's co_consts).  New reference, or NULL with an exception. */
PyCodeObject *li_build_shadow(PyCodeObject *original, li_code_state *cs,
                              li_event_set kinds, PyObject *consts, bool every_site);
/* How many shadows li_build_shadow() built so far. */
Py_ssize_t li_shadows_built(void);

/* Delivers the events of probe `p` of `lp`, run by `frame` (events.c).
 * 0, or -1 with an exception set. */
int li_fire_probe(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp,
                  li_probe *p);

/* Creates the second argument of a site's events (events.c).  0 or -1. */
int li_cache_site_arg(li_site *s);
/* Creates the destination offset of a JUMP or BRANCH site (events.c).  0 or -1. */
int li_cache_site_dest(li_site *s);

/* The callable and first argument CALL reports for a call whose `nargs`
 * (a CALL site's aux) arguments are on `stack` of `depth` values, borrowed.
 * 0; 1 when the call is to raise before it starts (no event); -1 on error
 * (only for CALL_FUNCTION_EX, nargs < 0). */
int li_call_arguments(PyObject **stack, int depth, int nargs, PyObject **callable,
                      PyObject **arg0);

/* li_call_arguments() of a CALL instruction (nargs >= 0), which cannot
 * fail: inline, as the fast path of every call needs it. */
static inline void
li_call_arguments_of_call(PyObject **stack, int depth, int nargs, PyObject **callable,
                          PyObject **arg0)
{
    PyObject *method = stack[depth - nargs - 2];
    if (method != NULL) {
        *callable = method;
        *arg0 = stack[depth - nargs - 1];
    }
    else {
        *callable = stack[depth - nargs - 1];
        *arg0 = nargs > 0 ? stack[depth - nargs] : li_reg.missing;
    }
}
/* The unit where `exc` was raised in `frame`, from the newest entry of its
 * traceback (units of the code the frame ran then), or -1 if that entry is
 * not the frame's or `exc` is no exception. */
int li_raised_at(_PyInterpreterFrame *frame, PyObject *exc);
/* Whether calling `callable` runs a Python function (no C_RETURN or C_RAISE
 * follows). */
bool li_calls_python(PyObject *callable);
/* CALL was delivered to `tools` for a call of C code that `frame` makes at
 * original unit `unit`: its C_RETURN or C_RAISE goes to them.  0 or -1. */
int li_push_pending_call(PyThreadState *tstate, _PyInterpreterFrame *frame, int32_t unit,
                         uint8_t tools, PyObject *callable, PyObject *arg0);
/* That call ended: its tools, callable and first argument (new references);
 * false if none is pending. */
bool li_take_pending_call(PyThreadState *tstate, _PyInterpreterFrame *frame, int32_t unit,
                          uint8_t *tools, PyObject **callable, PyObject **arg0);

/* Fires a `simple` probe: PY_START, PY_RESUME, PY_RETURN, PY_YIELD, LINE or
 * INSTRUCTION, alone at its place.  These are most of the events, so this
 * is inline in the probe's entry point.  0, 1 or -1 as li_call_tools. */
static inline int
li_fire_simple(PyThreadState *tstate, _PyInterpreterFrame *frame, li_probes *lp,
               const li_probe *p)
{
    li_site *s = &lp->sites[p->first_site];
    uint8_t tools = li_tools_at_local(lp->cs, s->event, s->orig);
    if (tools == 0) {
        return 0;
    }
    if (s->arg == NULL && li_cache_site_arg(s) < 0) {
        return -1;
    }
    PyObject *args[4];      /* args[0]: the callee's scratch space */
    args[1] = (PyObject *)lp->original;
    args[2] = s->arg;
    size_t nargs = 2;
    if (s->event == LI_PY_RETURN || s->event == LI_PY_YIELD) {
        /* The value returned or yielded, on top of the stack. */
        args[3] = frame->localsplus[lp->shadow->co_nlocalsplus + p->depth - 1];
        nargs = 3;
    }
    return li_call_tools(tstate, s->event, tools, lp->cs, s->orig, args, nargs);
}
/* Drops what CALL kept for C_RETURN and C_RAISE: every thread's with
 * `all` (no tool wants calls any more), else that of threads gone. */
void li_forget_pending_calls(bool all);
/* Whether a thread of `interp` has the thread state id `id`. */
bool li_thread_alive(PyInterpreterState *interp, uint64_t id);
/* How many calls of all threads wait for their C_RETURN or C_RAISE. */
Py_ssize_t li_pending_call_count(void);
/* Lets STOP_ITERATION see the return value of generators exhausted by
 * FOR_ITER (events.c); on only while some tool wants the event. */
void li_watch_exhausted_generators(bool on);

/* The shadow unit of the landing pad for `to`, or -1. */
static inline int
li_pad_unit(const li_probes *lp, li_landing to)
{
    for (int k = 0; k < lp->n_pads; k++) {
        if (li_same_landing(lp->pads[k].to, to)) {
            return lp->pads[k].unit;
        }
    }
    return -1;
}

/* When a probe of `lp` starts at shadow unit `unit`: `before`, the unit
 * before it or a copy of it to be put back, is no longer fused with it. */
void li_unfuse_before(const li_probes *lp, int unit, _Py_CODEUNIT *before);
/* Arms or disarms every probe of `lp` according to the current state. */
void li_probes_sync(li_probes *lp);

/* frame.f_lineno set from a monitoring callback (jump.c): 0 if the frame
 * of the event will jump, -1 with an error, 1 if no monitoring callback
 * runs (3.11's `native` setter answers). */
int li_jump_set_lineno(PyFrameObject *f, PyObject *value, setter native, void *closure);
/* The original unit a frame whose callbacks run will jump to, or -1. */
int li_jump_pending_unit(_PyInterpreterFrame *frame);
/* What a jump pops from its frame's stack as the frame lands: `pops`
 * values, of which the one at index `handled` (from the bottom, or -1)
 * becomes the exception being handled. */
typedef struct {
    int pops;
    int handled;
} li_unwind;
/* Takes the jump decided for the frame of the event (false if none): where
 * it lands, and what the landing pops. */
bool li_jump_take_landing(PyThreadState *tstate, _PyInterpreterFrame *frame, li_landing *to,
                          li_unwind *unwind);
/* As the frame lands: pops what its jump leaves. */
void li_jump_unwind(PyThreadState *tstate, _PyInterpreterFrame *frame, li_unwind unwind);
/* Events of probe `p` of `frame` are delivered with the frame standing
 * elsewhere (NULL, NULL: no more). */
void li_jump_delivering(_PyInterpreterFrame *frame, const li_probe *p);
/* A jump whose frame will not land (its callback raised). */
void li_jump_forget(PyThreadState *tstate, _PyInterpreterFrame *frame);
/* Does what restart_events() left to the next frame that runs `lp`: a frame
 * runs it now (at a start probe, or elsewhere: moved onto it, on a stack as
 * events change). */
void li_probes_ready(li_probes *lp);
/* Whether `lp` lacks probes that some tool may want now. */
bool li_probes_stale(const li_probes *lp);
/* Replaces `lp`, whose probes are mostly disarmed, by a shadow without
 * them, for the frames that start from now on.  0 or -1. */
int li_compact(li_probes *lp);
/* The first live shadow (iterate with ->next). */
li_probes *li_all_shadows(void);
/* Whether `frame`, executing in C, is firing a probe that can divert it
 * (after_events in probe.c). */
bool li_frame_in_probe(_PyInterpreterFrame *frame);
/* The live shadows of `cs`, linked by next_of_code. */
li_probes *li_shadows_of(li_code_state *cs);
/* For restart_events(), once li_reg.disable_epoch moved on: arms the start
 * probes of the shadows that were partial or where a DISABLE disarmed
 * probes in the epoch before, whose next frame does the rest (makes a
 * partial one obsolete and outdated, re-arms a full one), and re-arms at
 * once those that frames may enter elsewhere. */
void li_probes_restart(void);
/* Stops new frames from starting on `lp` (update.c); the quiet form leaves
 * the caller to call li_dispatch_changed(). */
void li_retire(li_probes *lp);
void li_retire_quietly(li_probes *lp);
/* Marks `lp` obsolete: another shadow serves new frames (probe.c). */
void li_make_obsolete(li_probes *lp);

/* What the back end keeps per original code object (li_code_state.backend). */

/* A shadow's constant that holds a nested code object (update.c). */
typedef struct {
    li_probes *parent;
    int index;
} li_const_link;


typedef struct li_code_backend {
    li_probes *current;          /* the shadow new frames run, or NULL */
    li_const_link *links;        /* shadows whose constants hold this code */
    int n_links, cap_links;
    /* Trampolines: the entry one over RESUME 0, those that reach running
       frames; the original units where the latter let frames out, for the
       landing pads of shadows. */
    int entry_site;              /* unit of RESUME 0 if a trampoline fits, -2 if
                                    none does, -1 if not known yet */
    /* Where the entry trampoline goes: over RESUME 0 (entry_site), or in the
       inline cache of instruction entry_owner, reached by a jump that
       replaces RESUME 0 when a jump lands right after it (a loop first). */
    int entry_tramp, entry_owner;
    li_patches patches;
    li_landing *resume_points;
    int n_resume_points, cap_resume_points;
    /* The room patches.trampolines starts with: an original's first is its
       entry trampoline, and thousands are armed at once. */
    li_trampoline first_trampoline;
    int saved_firsttraceable;    /* _co_firsttraceable before the entry one; -1 */
    int true_stacksize;          /* co_stacksize before that; -1 if unchanged */
    li_code_state *cs;           /* the owner */
    struct li_probes *shadows;   /* its live shadows, by next_of_code */
    /* Code whose functions went back to running the original after their
       PY_START callbacks disabled it (landing.c): restart_events() gives it
       its entry trampoline again.  LI_BARE_NOTED or LI_BARE_RETRY (0:
       neither) while trampoline.c holds it in a flat array, at bare_slot. */
    uint8_t started_bare;
    int bare_slot;
} li_code_backend;

enum {
    LI_BARE_NOTED = 1,  /* noted, then armed by a restart (trampoline.c) */
    LI_BARE_RETRY,      /* a restart failed to arm it, the next one tries again */
};

static inline li_probes *
li_current_shadow(const li_code_state *cs)
{
    return cs->backend != NULL ? ((li_code_backend *)cs->backend)->current : NULL;
}

/* The back end data of `cs`, created if needed.  NULL with an exception. */
li_code_backend *li_code_backend_ensure(li_code_state *cs);

/* The stack the code needs, whatever an armed trampoline made its frames
 * allocate. */
static inline int
li_true_stacksize(PyCodeObject *code)
{
    li_code_state *cs = li_code_state_get(code);
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    return cb != NULL && cb->true_stacksize >= 0 ? cb->true_stacksize : code->co_stacksize;
}

/* The largest stack a shadow of `code` needs, over its own `stacksize`: a
 * probe pushes one value over the deepest stack, and the UNWIND stub runs
 * with the raising offset, the exception and a probe (shadow.c).  Only
 * probes above the deepest stack can divert their frame, which takes two,
 * except in generator-like code, whose frames have two spare slots
 * (frames.c): a `yield` is at the deepest stack of many generators, and
 * its callbacks may want new events. */
static inline int
li_shadow_stack_bound(const PyCodeObject *code, int stacksize)
{
    int spare = code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR) ? 2 : 1;
    return stacksize + spare > 3 ? stacksize + spare : 3;
}

/* The events `cs`'s code needs probes for now. */
static inline li_event_set
li_probed_events(const li_code_state *cs)
{
    return li_wanted_events(cs) & ((LI_EVENT_BIT(LI_UNGROUPED_EVENT_COUNT) - 1));
}

/* Events that need probes: all of them (C_RETURN and C_RAISE follow CALL). */
#define LI_PROBED_EVENTS ((LI_EVENT_BIT(LI_UNGROUPED_EVENT_COUNT) - 1))

/* ---- keeping code and frames up to date (update.c) ---- */

/* Calls visit(op, arg) for every object the garbage collector tracks; stops
 * at the first -1 and returns it.  `visit` must not allocate objects the
 * collector tracks (a collection would reorder the lists walked). */
int li_walk_heap(int (*visit)(PyObject *op, void *arg), void *arg);

/* The code new frames of `original` should run now: itself or a shadow,
 * built if needed.  `builtins`: what functions of it use (NULL if not
 * known).  New reference, or NULL with an exception set. */
PyObject *li_desired_code(PyCodeObject *original, PyObject *builtins);
/* What a function of `original` should point at: as li_desired_code, but
 * the shadow may be left to be built when the code first runs (the
 * original then holds an entry trampoline).  New reference or NULL. */
PyObject *li_prepared_code(PyCodeObject *original, PyObject *builtins);
/* Whether frames of `original` should run a shadow. */
bool li_needs_instrumenting(PyCodeObject *original);
/* Whether the refresh CPython does as code starts would forget DISABLE
 * marks in `original`, which then keeps its entry trampoline even where no
 * tool wants events, to refresh as it next starts (not generator-like
 * code). */
bool li_refresh_awaited(PyCodeObject *original);
/* Frames that run `code` (an original) with `builtins` make their functions
 * from its nested code objects: those that need events, or a refresh as
 * they next start, get an entry trampoline.  0 or -1. */
int li_arm_nested(PyCodeObject *code, PyObject *builtins);
/* Whether PY_START is the one event tools want in `cs`'s code (global or
 * local, DISABLE marks aside), and the code defines no functions or classes
 * (code objects among its constants, which would need it too). */
bool li_only_start_wanted(li_code_state *cs);
/* Whether no tool's PY_START fires at the start of `cs`'s code, which needs
 * nothing else; the same once its functions went back to running the
 * original as it is (landing.c). */
bool li_start_wanted_nowhere(li_code_state *cs);
bool li_start_disabled_everywhere(li_code_state *cs);
/* A shadow dies: the codes it held forget it. */
void li_unlink_nested(li_probes *lp);

/* A shadow of `original` without probes (frames on it get no events), for
 * functions of `builtins`.  New reference, or NULL with an exception. */
PyObject *li_bare_code(PyCodeObject *original, PyObject *builtins);
/* The shadow a frame of `original` lands on at `to`: the one new frames
 * run, or one without probes when the wanted one needs a larger stack than
 * `capacity`; either has a pad for `to`.  New reference or NULL. */
PyObject *li_landing_code(PyCodeObject *original, li_landing to, int capacity,
                          PyObject *builtins);
/* Registers `to` as a place where frames land: shadows built from now on
 * have a landing pad there.  0 or -1. */
int li_add_resume_point(li_code_backend *cb, li_landing to);

/* Whether some tool wants events anywhere. */
bool li_anything_wanted(void);

/* ---- code run by exec(), eval() and the interpreter (exec.c) ---- */

/* Watches code that starts running without a function: module bodies,
 * exec() and eval(), the main script, `python -c`.  0 or -1. */
int li_exec_init(void);
/* Whether a frame evaluation function other than lowimpact's own is
 * installed: then calls are not inlined, and no frame can land. */
bool li_foreign_eval_frame(void);
/* Lets the next Python-to-Python call be inlined (a frame is about to call
 * the landing function) while a frame evaluation function waits for a
 * frame; li_exec_unpause() puts it back. */
void li_exec_pause(void);
void li_exec_unpause(void);

/* Thread `ts` is about to get a trace function: its frames stop using the
 * slot beyond their allocation (update.c).  0 or -1. */
int li_backend_trace_coming(PyThreadState *ts);

/* ---- the per-code work of turning events on (entryscan.c) ---- */

/* The unit of the first `RESUME 0` of `code` (*resume, -1 if none) and
 * whether a jump lands within `reach` units after it (*jumped_into).  False
 * where a jump before that RESUME goes forward.  Caches co_code on the way
 * if it can. */
bool li_entry_scan(PyCodeObject *code, int reach, int *resume, bool *jumped_into);
/* Caches co_code as `code` reads now, deoptimised.  0 or -1. */
int li_cache_co_code(PyCodeObject *code);

/* ---- trampolines (trampoline.c) ---- */

/* Frames of an original code object that needs events start on a shadow
 * through a trampoline over its RESUME 0, which builds the shadow then.
 * Arms one in the code of `cs` where that is safe.  1 if armed, 0 if it
 * cannot be, -1 on error. */
int li_trampoline_arm(li_code_state *cs);
/* Reaches `frame` of thread `ts`, which executes code that lacks events
 * tools want (an original, or an outdated shadow) in C locals of an
 * evaluation loop, so that it cannot be moved now: arms trampolines where
 * it goes next and at the loop headers of its code (in a shadow, where no
 * probe of its already moves it).  `above`: see li_frame_capacity.
 * 0 or -1. */
int li_trampolines_reach(PyThreadState *ts, _PyInterpreterFrame *frame,
                         _PyInterpreterFrame *above);
/* For the walk of an update over the heap's functions: notes which code
 * objects the frames of the threads run, so that arming each entry
 * trampoline need not walk the stacks (no frame may move meanwhile); the
 * forget call ends it. */
void li_trampolines_note_stacks(void);
void li_trampolines_forget_stacks(void);
/* Whether `code` (an original or a shadow) has a trampoline armed. */
bool li_trampolines_armed_in(PyCodeObject *code);
/* Disarms the resume and exception trampolines of `code` (an original or a
 * shadow) that no frame of any thread stands in, and its exception routes:
 * for frames to be reached again with less room (li_backend_trace_coming()).
 * The entry trampoline stays. */
void li_trampolines_let_go(PyCodeObject *code);
/* Frames of the code of `cb` that start from now on get room for any shadow
 * (its co_stacksize reads as before, see transparency.c); released when no
 * trampoline needs it any more. */
void li_reserve_shadow_stack(li_code_backend *cb);
void li_release_shadow_stack(li_code_backend *cb);
/* How many code objects have a trampoline armed. */
Py_ssize_t li_trampolines_armed_count(void);
/* How many code objects have a trampoline kept for a frame standing in it
 * after their code stopped needing it. */
Py_ssize_t li_trampolines_kept_count(void);
/* Disarms the trampolines of code that no longer needs them.  0 or -1. */
int li_trampolines_disarm_unneeded(void);
/* The same for the trampolines in the code of `cs` and its shadows alone. */
int li_trampolines_disarm_unneeded_of(li_code_state *cs);
/* Trampolines left armed for frames in their units when their code stopped
 * needing them are disarmed, unless the code needs them again or such a
 * frame is still there (it may have left by an exception, or landed).
 * Costs nothing while there is none. */
void li_trampolines_settle(void);
/* li_trampolines_settle(), and again soon after, from the main thread, if
 * any is still kept then: for a trace function being set or removed as its
 * frame stands in a trampoline that it is about to leave by an exception. */
void li_trampolines_settle_soon(void);
/* Disarms every trampoline of `cs`'s original, which its frames are to run
 * as it is.  Whether its entry trampoline is gone (it stays while a frame of
 * any thread stands in its units). */
bool li_trampolines_disarm_original(li_code_state *cs);
/* Makes room to note one more code as started bare.  0 or -1. */
int li_started_bare_reserve(void);
/* The functions of `cb`'s code run its original after their PY_START was
 * disabled, its entry trampoline gone: restart_events() arms it again.
 * The room was reserved. */
void li_note_started_bare(li_code_backend *cb);
/* `cb`'s code is no longer (or not yet) to be re-armed by restart_events(). */
void li_forget_started_bare(li_code_backend *cb);
/* Whether `cb`'s code runs bare, its entry trampoline to be armed by the
 * next restart_events(). */
bool li_entry_bare(const li_code_backend *cb);
/* For restart_events(): arms the entry trampolines of the code noted as
 * started bare, where the code needs events; *unreached is set where one
 * could not go in.  0 or -1 (the code not done yet stays noted). */
int li_trampolines_restart_bare(bool *unreached);
/* The code object of `p` is being freed: forgets its trampolines. */
void li_patches_forget(li_patches *p);
/* Exchanges the armed trampolines of `code` with the units they replaced
 * (calling it again undoes it).  True if there was one. */
bool li_trampoline_swap(PyCodeObject *code);
/* Where a frame of `code` that came to its entry trampoline with an
 * exception raised at `unit` goes (an exception route shares it).  False
 * if none. */
bool li_trampoline_raised_landing(PyCodeObject *code, int unit, li_landing *to);
/* `frame`, which ran `code`, landed: the exception routes for its wait go.
 * 0 or -1. */
int li_trampoline_routes_done(PyCodeObject *code, _PyInterpreterFrame *frame);
/* Gives `type` the unary `+` that trampolines use.  0 or -1. */
int li_trampoline_init(void);

/* ---- landing (landing.c) ---- */

/* The private Python function frames call to land, or NULL before it is
 * registered.  Borrowed. */
PyObject *li_landing_function(void);
/* `frame` of `tstate`, running `code`, is about to call the landing
 * function: it goes to `to` in a shadow of code's original.  0 or -1. */
int li_expect_landing(PyThreadState *tstate, _PyInterpreterFrame *frame, PyCodeObject *code,
                      li_landing to);
/* The same, popping `unwind` from the frame's stack as it lands (jump.c). */
int li_expect_landing_unwinding(PyThreadState *tstate, _PyInterpreterFrame *frame,
                                PyCodeObject *code, li_landing to, li_unwind unwind);
/* Lets the landing function that `tstate` is about to call start its frame
 * even at the recursion limit: a RecursionError there would unwind from
 * units past the instruction the frame was at, into whatever handler covers
 * them.  The landing takes the level back. */
void li_landing_lend_recursion(PyThreadState *tstate);
/* Whether `frame` of `tstate` is on its way to a landing (it must not be
 * moved meanwhile).  `tstate` NULL: a frame on no thread's stack (a
 * suspended generator's), which never is. */
bool li_landing_expected(PyThreadState *tstate, _PyInterpreterFrame *frame);
/* Whether `frame`'s PY_START callbacks are running at its landing. */
bool li_frame_starting(_PyInterpreterFrame *frame);
/* Forgets the landings that threads which are gone expected (their frames'
 * addresses may be reused). */
void li_forget_landings_of_dead_threads(void);
int li_landing_init(PyObject *module);

/* ---- frames (frames.c) ---- */

/* How many value stack slots a frame can use: what it was allocated for,
 * plus the slot CPython 3.11 always leaves free after the top frame of a
 * thread's data stack (usable only for a moment, see frames.c), plus the
 * slots lowimpact adds to generators created after its import.  `above`:
 * the nearest frame of thread `ts` that `frame` (directly or not) called,
 * or NULL; `ts` NULL for a suspended generator. */
int li_frame_capacity(PyThreadState *ts, _PyInterpreterFrame *frame,
                      _PyInterpreterFrame *above);
/* The capacity of `frame` of `ts` as it lands, with the landing function's
 * frame `here` above it: li_frame_capacity() counting the slot after its
 * allocation also while its thread traces, which the frame gets for good
 * when the landing's token drops (li_frame_claim_slot()). */
int li_frame_landing_capacity(PyThreadState *ts, _PyInterpreterFrame *frame,
                              _PyInterpreterFrame *here);
/* Whether `frame` of `ts` (not NULL) has the slot after its allocation while
 * its thread does not trace: what li_frame_capacity counts then. */
bool li_frame_borrows(PyThreadState *ts, _PyInterpreterFrame *frame,
                      _PyInterpreterFrame *above);
/* Frame `frame`, running on thread `ts`, which traces or is about to,
 * gets the slot after its allocation for good when its code needs it (it
 * borrowed it: a shadow bigger than its allocation), if the frame is the
 * top one of the thread's data stack: for the end of a probe whose
 * callbacks set a trace function, where the frame could not move. */
void li_frame_claim_slot(PyThreadState *ts, _PyInterpreterFrame *frame);
/* Thread `ts` (not NULL) is about to get a trace function: while the frame
 * that asked for it waits for sys.settrace (or PyEval_SetTrace) to return,
 * li_frame_capacity counts no borrowed slot for its frames.  0 or -1. */
int li_frames_trace_coming(PyThreadState *ts);
/* The least capacity (as li_frame_capacity) of the frames of `code` that
 * are on no thread's stack but may run it, into any trampoline armed there:
 * frames that start from now on, and the suspended or unstarted generators
 * created before lowimpact's import, which have no spare slots. */
int li_unseen_frames_capacity(PyCodeObject *code);
/* Whether a generator-like object created before lowimpact's import is
 * suspended on `code` at a unit of [low, high) or goes on at one: it cannot
 * move onto a shadow without spare slots, and resumes in `code`. */
bool li_older_generator_in(PyCodeObject *code, int low, int high);
/* Whether `frame` is on the stack of thread `tstate`. */
static inline bool
li_frame_on_thread(PyThreadState *tstate, _PyInterpreterFrame *frame)
{
    for (_PyInterpreterFrame *f = tstate->cframe->current_frame; f != NULL; f = f->previous) {
        if (f == frame) {
            return true;
        }
    }
    return false;
}
/* The generator, coroutine or async generator a frame belongs to. */
static inline PyGenObject *
li_frame_generator(_PyInterpreterFrame *frame)
{
    assert(frame->owner == FRAME_OWNED_BY_GENERATOR);
    return (PyGenObject *)((char *)frame - offsetof(PyGenObject, gi_iframe));
}
/* Points a frame that is not executing at `code`, at unit `unit`.  A
 * generator's gi_code stays the code it was created with, which is what its
 * memory was sized for.  0 or -1 (MemoryError; the frame did not move). */
int li_frame_set_code(_PyInterpreterFrame *frame, PyCodeObject *code, int unit);
/* Tracebacks of frames moved since the last call hold offsets in the code
 * the frame ran when they were made: translates them to its new code. */
void li_fix_moved_tracebacks(void);
int li_frames_init(void);

/* ---- transparency (transparency.c) ---- */

int li_install_transparency(void);
/* Original code unit of shadow unit `unit` of `code` (identity if `code` is
 * not a shadow). */
int li_original_unit(PyCodeObject *code, int unit);

#endif /* LI_B311_H */
