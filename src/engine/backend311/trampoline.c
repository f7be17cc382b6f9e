/* Trampolines: moving frames onto a shadow from the original code they run.
 *
 * A frame moves between code objects only where its position is not held in
 * C locals of an evaluation loop.  Trampolines make such places in an
 * original code object: four units
 *
 *     PUSH_NULL; LOAD_ASSERTION_ERROR; UNARY_POSITIVE; CALL 0
 *
 * LOAD_ASSERTION_ERROR pushes the AssertionError class itself (no lookup a
 * program could redirect), and lowimpact gives `type` a unary `+` slot
 * (`+cls` is a TypeError otherwise): at an armed trampoline it yields the
 * landing function, a private Python function, and raises the usual
 * TypeError anywhere else.  The call of that function is a Python-to-Python
 * call, whose return reloads the caller's position from its frame: the
 * landing function calls _trampoline_landed(), which finds the frame that
 * called it and moves it onto the landing pad of a shadow for the
 * trampoline's unit (shadow.c), which drops the call's result and goes on
 * where the frame would have.  The plain CALL reads no inline cache, so the
 * units after it, which the interpreter counts as its cache, are never read:
 * the caller never resumes there.  No builtin is replaced.
 *
 * Two kinds:
 * - the entry trampoline over RESUME 0 starts new frames on a shadow, built
 *   then: functions of code that needs events keep their original code until
 *   it first runs, as CPython 3.12 instruments code when it first runs;
 * - resume trampolines reach a frame that was running when events were
 *   enabled: one where it goes on after the instruction it is in, and one at
 *   each loop header of its code, so that it moves within an iteration.
 *
 * A frame executing in C may also leave its instruction by an exception,
 * which CPython then reports (RAISE; EXCEPTION_HANDLED at a handler, or
 * PY_UNWIND).  The interpreter finds where it goes in the code's exception
 * table as it unwinds: while an exception trampoline is armed, the table of
 * the original sends exceptions raised at the frame's unit to it, at the
 * depth of the unit's handler (0 without one).  It lies in the inline cache
 * of some instruction, and lands on a pad that re-raises the exception in
 * the shadow (LI_LAND_RAISED), where the shadow's handler probe or UNWIND
 * stub reports it.
 *
 * Replaced units and tables are saved and put back when the code no longer
 * needs events.  While any is armed the code is kept from being quickened (which
 * would make the trampoline's CALL adaptive, with the original's next units
 * as its cache).  co_code keeps showing the original: CPython caches it
 * before the first change.
 */

#include "b311.h"
#include "internal/pycore_interp.h"


static bool
landing_function_installed(void)
{
    return li_landing_function() != NULL;
}

/* ---- where a trampoline can go ------------------------------------------- */

/* The deoptimised opcode and full oparg of the instruction at *unit, which
 * moves past it (prefixes and inline caches included). */
static int
read_instruction(const _Py_CODEUNIT *code, int n_units, int *unit, int *oparg)
{
    int arg = 0, opcode;
    while ((opcode = _PyOpcode_Deopt[_Py_OPCODE(code[*unit])]) == EXTENDED_ARG &&
           *unit + 1 < n_units)
    {
        arg = (arg << 8) | _Py_OPARG(code[*unit]);
        (*unit)++;
    }
    *oparg = (arg << 8) | _Py_OPARG(code[*unit]);
    *unit += 1 + _PyOpcode_Caches[opcode];
    return opcode;
}

/* ---- the code that frames run, noted once for an update ----------------
 * An update arms the entry trampolines of thousands of code objects, each
 * only where no frame of any thread stands in the way: one walk of the
 * stacks sets a bit per code object that a frame runs, and the code whose
 * bit is clear is known to run on none without a walk of its own (where
 * the bit is set, the frames are looked at as without it).  The bits hold
 * while the thread that noted them keeps the same top frame: no Python
 * code ran since, which could have pushed frames or let other threads run. */

#define NOTED_BITS 1024
static uint64_t noted_codes[NOTED_BITS / 64];
static bool noted;
static PyThreadState *noted_by;
static _PyInterpreterFrame *noted_top;

static inline unsigned
noted_bit(const PyCodeObject *code)
{
    /* (Fibonacci hashing of the address: its low bits are alignment.) */
    return (unsigned)(((uintptr_t)code * (uintptr_t)0x9E3779B97F4A7C15ull) >>
                      (sizeof(uintptr_t) * 8 - 10));
}

void
li_trampolines_note_stacks(void)
{
    memset(noted_codes, 0, sizeof(noted_codes));
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            unsigned bit = noted_bit(f->f_code);
            noted_codes[bit / 64] |= (uint64_t)1 << (bit % 64);
        }
    }
    noted_by = _PyThreadState_GET();
    noted_top = noted_by->cframe->current_frame;
    noted = true;
}

void
li_trampolines_forget_stacks(void)
{
    noted = false;
}

/* False if no frame of any thread runs `code`; true if one may. */
static inline bool
maybe_on_a_stack(const PyCodeObject *code)
{
    if (!noted) {
        return true;
    }
    PyThreadState *ts = _PyThreadState_GET();
    if (ts != noted_by || ts->cframe->current_frame != noted_top) {
        return true;
    }
    unsigned bit = noted_bit(code);
    return (noted_codes[bit / 64] >> (bit % 64)) & 1;
}

/* Whether a frame of some thread executing `code` is at a unit in
 * [low, high). */
static bool
frame_between(PyCodeObject *code, int low, int high)
{
    if (!maybe_on_a_stack(code)) {
        return false;
    }
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            int unit = (int)(f->prev_instr - _PyCode_CODE(code));
            if (f->f_code == code && f->owner != FRAME_OWNED_BY_FRAME_OBJECT &&
                unit >= low && unit < high)
            {
                return true;
            }
        }
    }
    return false;
}

/* Whether a frame of some thread executing `code` is in one of the units a
 * trampoline at `at` replaces, or goes on into one after `at`. */
static bool
frame_in_the_way(PyCodeObject *code, int at)
{
    if (!maybe_on_a_stack(code)) {
        return false;
    }
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            if (f->f_code != code || f->owner == FRAME_OWNED_BY_FRAME_OBJECT) {
                continue;
            }
            int unit = (int)(f->prev_instr - _PyCode_CODE(code));
            int next = unit < 0 ? 0 : unit + 1 + _PyOpcode_Caches[
                _PyOpcode_Deopt[_Py_OPCODE(_PyCode_CODE(code)[unit])]];
            if ((unit >= at && unit < at + LI_TRAMPOLINE_UNITS) ||
                (next > at && next < at + LI_TRAMPOLINE_UNITS))
            {
                return true;
            }
        }
    }
    /* Suspended generators stop at a YIELD_VALUE and go on at the RESUME
       after it, which no resume trampoline replaces, nor an inline cache
       holds.  The entry trampoline may: see li_trampoline_arm(). */
    return false;
}

/* Units from a trampoline's start to just after its CALL's inline cache. */
#define LI_TRAMPOLINE_REACH (LI_TRAMPOLINE_UNITS + 4)

static const li_handler *
handler_at(const li_handler *handlers, int n_handlers, int unit)
{
    for (int h = 0; h < n_handlers; h++) {
        if (handlers[h].start <= unit && unit < handlers[h].end) {
            return &handlers[h];
        }
    }
    return NULL;
}

static bool
same_handler(const li_handler *a, const li_handler *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return a->target == b->target && a->depth == b->depth && a->lasti == b->lasti;
}

/* Whether an error raised anywhere a trampoline at `at` runs is handled as
 * one raised at unit `origin`: the instruction it replaced (`at` itself), or
 * the RESUME 0 that jumps to an entry trampoline in an inline cache. */
static bool
handled_as_at(const li_handler *handlers, int n_handlers, int at, int origin)
{
    if (n_handlers == 0) {
        return true;
    }
    const li_handler *first = handler_at(handlers, n_handlers, origin);
    /* Up to the unit after its CALL: the CALL's cache is reached only by a
       RecursionError as the landing function's frame starts, which
       type_positive() rules out, or by the landing failing (no memory). */
    for (int unit = at; unit <= at + LI_TRAMPOLINE_UNITS; unit++) {
        if (!same_handler(first, handler_at(handlers, n_handlers, unit))) {
            return false;
        }
    }
    return true;
}

/* Where the entry trampoline can go in `code` (cb->entry_site, entry_tramp,
 * entry_owner): over its RESUME 0 and the units after it, or, when a jump
 * lands on those units (a loop or a `try` right after the start), in the
 * last units of the inline cache of a later instruction, reached by a
 * JUMP_FORWARD that replaces RESUME 0 (the instruction runs in its base
 * form meanwhile, which reads no cache).  It must not change what the
 * original does for a frame that does not take it:
 * - no jump may land on the units after RESUME that it replaces (RESUME
 *   itself is never jumped to);
 * - an error while it runs must be handled as one at RESUME (only the
 *   generator wrappers' handlers cover it), not by a try block that begins
 *   after it;
 * - it pushes two values: a generator whose code needs one slot may have
 *   been created before lowimpact's import, without spare slots.
 * Generators, coroutines and async generators take only the first kind. */
static void
entry_place(PyCodeObject *code, li_code_backend *cb)
{
    const _Py_CODEUNIT *units = _PyCode_CODE(code);
    int n = (int)Py_SIZE(code), at = -1;
    bool generator = code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR);
    bool jumped_into = false;
    cb->entry_site = cb->entry_tramp = cb->entry_owner = -2;
    if (generator && code->co_stacksize < 2) {
        return;
    }
    if (!li_entry_scan(code, LI_TRAMPOLINE_UNITS, &at, &jumped_into) || at < 0) {
        return;
    }
    li_handler *handlers = NULL;
    int n_handlers = 0;
    /* (Most functions have no exception table, and none is routed yet.) */
    if (cb->patches.own_exceptiontable != NULL || PyBytes_GET_SIZE(code->co_exceptiontable) > 0) {
        n_handlers = li_decode_handlers(code, &handlers);
        if (n_handlers < 0) {
            PyErr_Clear();
            return;
        }
    }
    const li_handler *own = handler_at(handlers, n_handlers, at);
    if (own == NULL || own->depth == 0) {
        if (!jumped_into && at + LI_TRAMPOLINE_UNITS <= n &&
            handled_as_at(handlers, n_handlers, at, at))
        {
            cb->entry_site = cb->entry_tramp = at;
        }
        /* Else the first instruction with room in its cache, within a
           jump's reach of RESUME 0, where an error is handled as at RESUME
           (past a try block that starts the code, say). */
        bool away = cb->entry_site < 0 && !generator;
        for (int unit = at + 1; away && unit < n && unit - at - 1 <= 255;) {
            int oparg;
            int opcode = read_instruction(units, n, &unit, &oparg);
            int op = unit - 1 - _PyOpcode_Caches[opcode];   /* past EXTENDED_ARGs */
            int tramp = unit - LI_TRAMPOLINE_UNITS;
            if (_PyOpcode_Caches[opcode] >= LI_TRAMPOLINE_UNITS && tramp - at - 1 <= 255 &&
                handled_as_at(handlers, n_handlers, tramp, at))
            {
                cb->entry_site = at;
                cb->entry_tramp = tramp;
                cb->entry_owner = op;
                break;
            }
        }
    }
    PyMem_Free(handlers);
}

static bool
is_conditional_jump(int opcode)
{
    switch (opcode) {
    case POP_JUMP_FORWARD_IF_FALSE:
    case POP_JUMP_FORWARD_IF_TRUE:
    case POP_JUMP_BACKWARD_IF_FALSE:
    case POP_JUMP_BACKWARD_IF_TRUE:
        return true;
    default:
        return false;
    }
}

static bool
is_fast_or_const(int opcode)
{
    return opcode == LOAD_FAST || opcode == STORE_FAST || opcode == LOAD_CONST;
}

/* Whether the instruction before instruction `i` may, specialised, run
 * instruction `i` itself and go on after it, or depends on what it is:
 * call groups (KW_NAMES, PRECALL), a PRECALL for list.append that skips
 * CALL and POP_TOP, COMPARE_OP before its jump, in-place string addition
 * before its STORE_FAST, and the pairs that become superinstructions. */
static bool
runs_into(const li_analysis *an, int i)
{
    if (i == 0) {
        return false;
    }
    int op = an->instrs[i].opcode, prev = an->instrs[i - 1].opcode;
    return prev == KW_NAMES || prev == PRECALL ||
           (prev == CALL && op == POP_TOP) ||
           (prev == COMPARE_OP && is_conditional_jump(op)) ||
           (prev == BINARY_OP && op == STORE_FAST) ||
           (is_fast_or_const(prev) && is_fast_or_const(op));
}

/* Whether a resume trampoline can replace instruction `i` and what follows
 * it, for frames with room for `capacity` values:
 * - it pushes two values;
 * - nothing may go on into the replaced units after the first: no jump or
 *   handler lands there, and no instruction before runs into them;
 * - generators find out whether they are in a `yield from` by reading the
 *   units around their YIELD_VALUE: those stay;
 * - an error while it runs must be handled as one raised by the instruction
 *   it replaces. */
static bool
resume_site_ok(const li_analysis *an, int i, int capacity)
{
    const li_instr *in = &an->instrs[i];
    int at = in->start, end = at + LI_TRAMPOLINE_UNITS;
    if (in->depth < 0 || in->depth + 2 > capacity || end > an->n_units ||
        !(in->flags & LI_I_TRACEABLE) || runs_into(an, i))
    {
        return false;
    }
    for (int k = i; k < an->n_instrs && an->instrs[k].start < end; k++) {
        const li_instr *replaced = &an->instrs[k];
        if (k > i && (replaced->flags & (LI_I_JUMP_TARGET | LI_I_HANDLER_TARGET))) {
            return false;
        }
        switch (replaced->opcode) {
        case RESUME:
        case SEND:
        case YIELD_VALUE:
        case RETURN_GENERATOR:
        case JUMP_BACKWARD_NO_INTERRUPT:
            return false;
        }
    }
    return handled_as_at(an->handlers, an->n_handlers, at, at);
}

/* ---- arming --------------------------------------------------------------- */

static li_patches *armed;        /* code objects with a trampoline armed */
/* Those of them that are `lingering`, on a list of their own: landings and
   `sys.settrace` look at these alone, not at every code object armed. */
static li_patches *lingering_list;

static void
set_lingering(li_patches *p, bool on)
{
    if (p->lingering == on) {
        return;
    }
    p->lingering = on;
    if (on) {
        p->prev_lingering = NULL;
        p->next_lingering = lingering_list;
        if (lingering_list != NULL) {
            lingering_list->prev_lingering = p;
        }
        lingering_list = p;
        return;
    }
    if (p->prev_lingering != NULL) {
        p->prev_lingering->next_lingering = p->next_lingering;
    }
    else {
        lingering_list = p->next_lingering;
    }
    if (p->next_lingering != NULL) {
        p->next_lingering->prev_lingering = p->prev_lingering;
    }
    p->next_lingering = p->prev_lingering = NULL;
}

static void bare_touched(li_code_backend *cb);

/* The trampolines of `code`, an original or a shadow; created if `create`.
 * NULL if none (with an exception if it failed). */
static li_patches *
patches_of(PyCodeObject *code, bool create)
{
    li_probes *lp = li_shadow_probes(code);
    if (lp != NULL) {
        if (lp->patches == NULL && create) {
            lp->patches = PyMem_Calloc(1, sizeof(li_patches));
            if (lp->patches == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            lp->patches->code = code;
            lp->patches->of_shadow = true;
        }
        return lp->patches;
    }
    li_code_state *cs = create ? li_code_state_ensure(code) : li_code_state_get(code);
    if (cs == NULL) {
        return NULL;
    }
    li_code_backend *cb = create ? li_code_backend_ensure(cs) : (li_code_backend *)cs->backend;
    if (cb == NULL) {
        return NULL;
    }
    bare_touched(cb);
    cb->patches.code = code;
    return &cb->patches;
}

static li_trampoline *
find_trampoline(li_patches *p, int at)
{
    for (int k = 0; k < p->n_trampolines; k++) {
        if (p->trampolines[k].at == at) {
            return &p->trampolines[k];
        }
    }
    return NULL;
}

/* Whether a trampoline at `at` uses a unit of [lo, hi): its own units, from
 * the instruction whose inline cache holds it (`owner`, or -1), and the unit
 * of the jump to it (`jump`, or -1), which may lie elsewhere. */
static bool
uses_units(int at, int jump, int owner, int lo, int hi)
{
    int body_lo = owner >= 0 && owner < at ? owner : at;
    int body_hi = at + LI_TRAMPOLINE_UNITS;
    return (body_lo < hi && lo < body_hi) || (jump >= 0 && lo <= jump && jump < hi);
}

static bool
overlaps(const li_trampoline *t, int lo, int hi)
{
    return uses_units(t->at, t->jump, t->owner, lo, hi);
}

/* Whether an armed trampoline other than one at `at` uses a unit of
 * [lo, hi). */
static bool
overlaps_armed(li_patches *p, int at, int lo, int hi)
{
    for (int k = 0; k < p->n_trampolines; k++) {
        const li_trampoline *t = &p->trampolines[k];
        if (t->armed && t->at != at && overlaps(t, lo, hi)) {
            return true;
        }
    }
    return false;
}

/* ---- lines that tracing sees ---------------------------------------------- */

/* The per-unit line array CPython's tracing reads, which it makes from the
 * location table as it first traces the code: made now if the code has
 * none, so that the entries of a trampoline's units stay as set while it
 * is armed.  0 or -1. */
static int
ensure_line_array(PyCodeObject *code)
{
    if (code->_co_linearray != NULL) {
        return 0;
    }
    int n_units = (int)Py_SIZE(code);
    li_loc *locs = PyMem_Malloc(sizeof(li_loc) * (size_t)n_units);
    int32_t *lines = PyMem_Malloc(sizeof(int32_t) * (size_t)n_units);
    int err = -1;
    if (locs == NULL || lines == NULL) {
        PyErr_NoMemory();
    }
    else if (li_decode_locations(code, locs, n_units, NULL) == 0) {
        for (int u = 0; u < n_units; u++) {
            lines[u] = locs[u].line;
        }
        err = li_set_line_array(code, lines, n_units);
    }
    PyMem_Free(locs);
    PyMem_Free(lines);
    return err;
}

/* Whether tracing must not see the units of `t` as lines.  The entry
 * trampoline's count as not started while it is armed (li_trampoline_arm()),
 * which no trace reaches. */
static bool
hides_lines(const li_trampoline *t)
{
    return t->landing.phase != LI_LAND_START;
}

static const uint8_t trampoline_units[LI_TRAMPOLINE_UNITS][2] = {
    {PUSH_NULL, 0}, {LOAD_ASSERTION_ERROR, 0}, {UNARY_POSITIVE, 0}, {CALL, 0},
};

/* The code of `p` gets its first trampoline (co_code cached already). */
static inline void
link_armed(li_patches *p)
{
    /* Quickening would take the trampoline's CALL for an adaptive one,
       with the units after it for its cache. */
    PyCodeObject *code = p->code;
    p->saved_warmup = code->co_warmup;
    code->co_warmup = 0;
    p->next_armed = armed;
    p->prev_armed = NULL;
    if (armed != NULL) {
        armed->prev_armed = p;
    }
    armed = p;
}

/* Arms `t` (from a record, whose place the caller checked).  0 or -1. */
static int
arm(li_patches *p, li_trampoline *t)
{
    PyCodeObject *code = p->code;
    if (t->armed) {
        return 0;
    }
    /* A trace function would see a 'line' event where a jump reaches the
       trampoline (a jump back into an inline cache, say), at a unit the
       original never reports: its units have no line while it is armed.
       (f_trace_opcodes still sees each unit.) */
    if (hides_lines(t) && ensure_line_array(code) < 0) {
        return -1;
    }
    if (p->n_armed == 0) {
        /* co_code must go on showing the code as it was: make CPython
           cache it. */
        if (li_cache_co_code(code) < 0) {
            return -1;
        }
        link_armed(p);
    }
    _Py_CODEUNIT *units = _PyCode_CODE(code);
    memcpy(t->saved, units + t->at, sizeof(t->saved));
    li_probes *lp = p->of_shadow ? li_shadow_probes(code) : NULL;
    if (lp != NULL) {
        /* What goes back must hold even if the probe after it is disarmed
           meanwhile. */
        li_unfuse_before(lp, t->at + LI_TRAMPOLINE_UNITS, &t->saved[LI_TRAMPOLINE_UNITS - 1]);
    }
    if (t->owner >= 0) {
        /* The instruction's base form reads no inline cache, and stays. */
        t->saved_owner = units[t->owner];
        units[t->owner] = li_make_unit(_PyOpcode_Deopt[_Py_OPCODE(units[t->owner])],
                                       _Py_OPARG(units[t->owner]));
    }
    memcpy(units + t->at, trampoline_units, sizeof(trampoline_units));
    if (hides_lines(t)) {
        for (int k = 0; k < LI_TRAMPOLINE_UNITS; k++) {
            t->saved_lines[k] = li_line_array_get(code, t->at + k);
            li_line_array_set(code, t->at + k, -1);
        }
        if (t->jump >= 0) {
            t->saved_jump_line = li_line_array_get(code, t->jump);
            li_line_array_set(code, t->jump, -1);
        }
    }
    if (t->jump >= 0) {
        /* Nothing may drop the GIL between the jump and the trampoline: a
           thread that disarms it meanwhile would leave this frame in an
           inline cache.  Neither jump checks the eval breaker. */
        t->saved_jump = units[t->jump];
        units[t->jump] = t->jump > t->at
                         ? li_make_unit(JUMP_BACKWARD_NO_INTERRUPT, t->jump + 1 - t->at)
                         : li_make_unit(JUMP_FORWARD, t->at - t->jump - 1);
    }
    t->armed = true;
    p->n_armed++;
    return 0;
}

/* A record for a trampoline at `at`, unarmed.  NULL with MemoryError. */
static li_trampoline *
new_trampoline(li_patches *p, int at, int jump, int owner, li_landing landing)
{
    li_trampoline *t = find_trampoline(p, at);
    if (t != NULL) {
        if (t->armed || (t->jump == jump && t->owner == owner &&
                         li_same_landing(t->landing, landing)))
        {
            return t;
        }
        /* A record left from an earlier arming, of another kind: reuse it. */
    }
    else {
        if (p->first != NULL && p->trampolines == p->first &&
            p->n_trampolines == p->cap_trampolines)
        {
            /* Out of the owner's room: into memory of their own. */
            li_trampoline *moved = PyMem_Malloc(sizeof(li_trampoline) * 2);
            if (moved == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            memcpy(moved, p->first, sizeof(li_trampoline) * (size_t)p->n_trampolines);
            p->trampolines = moved;
            p->cap_trampolines = 2;
        }
        if (li_reserve((void **)&p->trampolines, &p->cap_trampolines, p->n_trampolines,
                       sizeof(li_trampoline), 2) < 0)
        {
            return NULL;
        }
        t = &p->trampolines[p->n_trampolines++];
    }
    *t = (li_trampoline){.at = at, .jump = jump, .owner = owner, .landing = landing};
    return t;
}

static void
unlink_armed(li_patches *p)
{
    if (p->prev_armed != NULL) {
        p->prev_armed->next_armed = p->next_armed;
    }
    else if (armed == p) {
        armed = p->next_armed;
    }
    if (p->next_armed != NULL) {
        p->next_armed->prev_armed = p->prev_armed;
    }
    p->next_armed = p->prev_armed = NULL;
}

static void
restore(PyCodeObject *code, li_trampoline *t)
{
    _Py_CODEUNIT *units = _PyCode_CODE(code);
    if (t->jump >= 0) {
        units[t->jump] = t->saved_jump;
    }
    memcpy(units + t->at, t->saved, sizeof(t->saved));
    if (hides_lines(t)) {
        for (int k = 0; k < LI_TRAMPOLINE_UNITS; k++) {
            li_line_array_set(code, t->at + k, t->saved_lines[k]);
        }
        if (t->jump >= 0) {
            li_line_array_set(code, t->jump, t->saved_jump_line);
        }
    }
    if (t->owner >= 0) {
        units[t->owner] = t->saved_owner;
    }
}

/* The code of `p` gets its own exception table back. */
static void
restore_exceptiontable(li_patches *p)
{
    if (p->own_exceptiontable != NULL) {
        Py_SETREF(p->code->co_exceptiontable, p->own_exceptiontable);
        p->own_exceptiontable = NULL;
    }
}

/* Whether a frame of some thread executing `code` is at any unit of it. */
static bool
frame_of(PyCodeObject *code)
{
    return frame_between(code, INT_MIN, INT_MAX);
}

/* Puts back what the trampolines of `p` replaced, except under a frame of
 * any thread that stands in a trampoline's own units: a frame whose trace
 * function runs at one of them (`f_trace_opcodes` makes an `opcode` event
 * at each) goes on by
 * reading the unit it stands at again, and would run what was put back
 * there, an inline cache or the middle of an instruction, as code.  (A
 * frame that called a Python function from the CALL whose inline cache
 * holds the trampoline also stands at its last unit, but goes on after it:
 * the frame does not tell the two apart.)  Such a trampoline stays armed,
 * and the code of `p` stays `lingering`: a frame that takes it lands on a
 * shadow, the bare one if the code needs no events (li_landing_code()),
 * where the original would have gone.  The frame may also leave its units
 * by an exception instead (the trace function raised: a debugger's quit),
 * or jump away: then no landing of its own comes.  So such trampolines go
 * as soon as no frame stands in them at the next landing of any frame,
 * update, or setting of a trace function (li_trampolines_settle()): before
 * a trace function can see a later frame of the code run them.
 * Exception routes all go: the frames they were for go on where the
 * original's own table sends them (a kept trampoline whose first unit a
 * handler leads to lands them as the instruction it replaced would go on). */
static void
disarm(li_patches *p, bool keep_entry)
{
    PyCodeObject *code = p->code;
    /* Frames of the code are seldom on a stack as it is disarmed: one walk
       of the stacks saves a walk per trampoline. */
    bool frames = frame_of(code);
    li_code_state *cs = li_shadow_probes(code) == NULL ? li_code_state_get(code) : NULL;
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    for (int k = 0; k < p->n_trampolines; k++) {
        li_trampoline *t = &p->trampolines[k];
        if (!t->armed || (keep_entry && t->landing.phase == LI_LAND_START)) {
            continue;
        }
        if (frames && frame_between(code, t->at, t->at + LI_TRAMPOLINE_UNITS)) {
            continue;
        }
        restore(code, t);
        t->armed = false;
        p->n_armed--;
        if (cb != NULL && t->at == cb->entry_tramp && cb->saved_firsttraceable >= 0) {
            /* Its units were kept from tracing (li_trampoline_arm()). */
            code->_co_firsttraceable = cb->saved_firsttraceable;
            cb->saved_firsttraceable = -1;
        }
    }
    p->n_routes = 0;
    restore_exceptiontable(p);
    /* (The entry trampoline kept armed is no lingering one.) */
    set_lingering(p, keep_entry ? p->lingering && p->n_armed > 0 : p->n_armed > 0);
    if (p->n_armed > 0) {
        return;
    }
    code->co_warmup = p->saved_warmup;
    unlink_armed(p);
    if (cb != NULL) {
        li_release_shadow_stack(cb);
    }
}

bool
li_trampolines_armed_in(PyCodeObject *code)
{
    li_patches *p = patches_of(code, false);
    if (p == NULL) {
        PyErr_Clear();
        return false;
    }
    return p->n_armed > 0;
}

void
li_trampolines_let_go(PyCodeObject *code)
{
    li_patches *p = patches_of(code, false);
    if (p == NULL) {
        PyErr_Clear();
        return;
    }
    /* The entry trampoline's units are never traced (li_trampoline_arm()).
       The frames of the others go on where the code's own table sends
       them, unless reached again (an exception trampoline needs three
       values). */
    if (p->n_armed > 0) {
        disarm(p, true);
    }
}

/* What the entry trampoline at `at` of `cb`'s code needs besides its units.
 * Tracing starts at RESUME (the call event), which the trampoline replaces:
 * it is not traced, and the shadow's RESUME is.  Until it returns, the frame
 * counts as not started (CPython leaves such frames out of tracebacks and
 * f_back), as it would be natively if its call failed (a RecursionError as
 * the trampoline's own call starts a frame); unless a frame that ran before
 * is at those units (`started_there`). */
static inline void
entry_armed(li_code_backend *cb, int at, bool started_there)
{
    PyCodeObject *code = cb->cs->code;
    cb->saved_firsttraceable = code->_co_firsttraceable;
    code->_co_firsttraceable = at + (started_there ? LI_TRAMPOLINE_UNITS : LI_TRAMPOLINE_REACH);
    li_reserve_shadow_stack(cb);
}

int
li_trampoline_arm(li_code_state *cs)
{
    PyCodeObject *code = cs->code;
    if (cs->excluded) {
        return 0;
    }
    li_code_backend *cb = li_code_backend_ensure(cs);
    if (cb == NULL) {
        return -1;
    }
    bare_touched(cb);
    if (cb->entry_site == -1) {
        entry_place(code, cb);
    }
    int resume = cb->entry_site, at = cb->entry_tramp;
    if (resume < 0) {
        return 0;
    }
    bool in_place = at == resume;
    li_patches *p = &cb->patches;
    p->code = code;
    li_trampoline *t = find_trampoline(p, at);
    if (t != NULL && t->armed) {
        /* Away from RESUME, the units may hold the resume trampoline of a
           frame waiting in their instruction instead: no entry, and none
           can go in while that frame stands. */
        return li_same_landing(t->landing, (li_landing){resume, LI_LAND_START});
    }
    /* A yield in the first units after RESUME 0 puts the point where its
       suspended generators go on under the entry trampoline: those created
       before lowimpact's import may still be there, without the room to
       move onto a shadow (the others moved as events changed).  Away from
       RESUME, the units before the trampoline's CALL count as not started
       while it is armed (below): no frame of the code may run there. */
    int lo = in_place ? at : cb->entry_owner;
    bool on_stacks = maybe_on_a_stack(code);
    if ((on_stacks && (in_place ? frame_in_the_way(code, at) : frame_of(code))) ||
        li_older_generator_in(code, at, at + LI_TRAMPOLINE_UNITS) ||
        overlaps_armed(p, at, lo, at + LI_TRAMPOLINE_UNITS) ||
        (!in_place && overlaps_armed(p, at, resume, resume + 1)) ||
        li_foreign_eval_frame() || !landing_function_installed())
    {
        return 0;
    }
    t = new_trampoline(p, at, in_place ? -1 : resume, cb->entry_owner,
                       (li_landing){resume, LI_LAND_START});
    if (t == NULL || arm(p, t) < 0) {
        return -1;
    }
    bool started_there = !in_place ||
                         (on_stacks && frame_between(code, at + LI_TRAMPOLINE_UNITS,
                                                     at + LI_TRAMPOLINE_REACH));
    entry_armed(cb, at, started_there);
    return 1;
}

void
li_reserve_shadow_stack(li_code_backend *cb)
{
    /* Frames that start from now on are allocated with room for any shadow
       they may land on (generators have theirs, see frames.c). */
    PyCodeObject *code = cb->cs->code;
    if (cb->true_stacksize < 0 &&
        !(code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)))
    {
        cb->true_stacksize = code->co_stacksize;
        code->co_stacksize = li_shadow_stack_bound(code, code->co_stacksize);
    }
}

void
li_release_shadow_stack(li_code_backend *cb)
{
    /* (Code that started bare keeps it for its next frames.) */
    if (cb->true_stacksize >= 0 && cb->patches.n_armed == 0 && !cb->started_bare) {
        cb->cs->code->co_stacksize = cb->true_stacksize;
        cb->true_stacksize = -1;
    }
}

/* The smallest room of the frames of `code` on any thread's stack, or of
 * frames that may start or resume on it unseen. */
static int
least_capacity(PyCodeObject *code)
{
    int least = li_unseen_frames_capacity(code);
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        _PyInterpreterFrame *above = NULL;
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            if (f->f_code == code && f->owner != FRAME_OWNED_BY_FRAME_OBJECT) {
                int capacity = li_frame_capacity(ts, f, above);
                least = capacity < least ? capacity : least;
            }
            if (f->owner == FRAME_OWNED_BY_THREAD) {
                above = f;
            }
        }
    }
    return least;
}

/* Where a frame that comes to instruction `i` from instruction `source`
 * goes on: as `source`'s jump lands there, or (source -1) as if the
 * instruction before had just completed. */
static li_landing
landing_at(const li_analysis *an, int i, int source)
{
    int phase = LI_LAND_FALLTHROUGH;
    if (source >= 0) {
        phase = an->instrs[source].event_line != an->instrs[i].event_line ? LI_LAND_LINE
                                                                          : LI_LAND_AFTER_LINE;
    }
    return (li_landing){an->instrs[i].start, phase};
}

/* The instruction a frame at instruction `current` (at unit `stands`) is in
 * the middle of, if the last units of its inline cache can hold a
 * trampoline for the frame's way out of it, reached by a jump over the
 * first unit after it: a call (a specialised PRECALL makes it and goes on
 * after the CALL), or attribute and item access, which run Python code from
 * C.  While the trampoline is there, the instruction is in its base form,
 * which reads no cache.  -1 if none (or no room for it in frames with room
 * for `capacity` values). */
static int
cache_site(const li_analysis *an, int current, int stands, int capacity)
{
    int k = current;
    if (an->instrs[k].opcode == PRECALL && k + 1 < an->n_instrs &&
        an->instrs[k + 1].opcode == CALL)
    {
        k++;
    }
    const li_instr *in = &an->instrs[k];
    if (in->end - in->op - 1 < LI_TRAMPOLINE_UNITS || k + 1 >= an->n_instrs) {
        return -1;
    }
    /* A frame waiting in a call of a Python function stands at the last
       unit of the CALL's cache, where an exception from the callee surfaces
       and a trace function's 'exception' event reads the frame's line from
       the line array, which has none for a trampoline's units. */
    if (stands >= in->end - LI_TRAMPOLINE_UNITS && stands < in->end) {
        return -1;
    }
    /* It pushes two values where the frame goes on.  (A call leaves at
       least two fewer than the deepest stack, a room that frames of a
       thread that traces lack without the slot after their allocation.) */
    const li_instr *next = &an->instrs[k + 1];
    if (next->depth < 0 || next->depth + 2 > capacity || !(next->flags & LI_I_TRACEABLE)) {
        return -1;
    }
    switch (next->opcode) {
    case RESUME:
    case SEND:
    case YIELD_VALUE:
    case JUMP_BACKWARD_NO_INTERRUPT:
        return -1;
    }
    /* An error in the trampoline, or as the landing function's call starts
       a frame, unwinds from one of the units up to the end of the
       trampoline's CALL's cache. */
    if (!handled_as_at(an->handlers, an->n_handlers, in->end - LI_TRAMPOLINE_UNITS,
                       in->end - LI_TRAMPOLINE_UNITS)) {
        return -1;
    }
    return k;
}

typedef struct {
    int at, jump, owner;
    int source;              /* the instruction that jumps there, or -1 */
    li_landing landing;
    bool loop_header;
} site;

/* Places for the resume trampolines of a frame at unit `stands`:
 * the inline cache of the instruction it is in, else the first fit along
 * the instructions it goes on to without a jump and where its instruction
 * may jump; and every loop header. */
static int
choose_sites(const li_analysis *an, int stands, int capacity, site *sites, int max)
{
    int n = 0;
    int current = an->instr_at[stands];
    int k = cache_site(an, current, stands, capacity);
    if (k >= 0) {
        const li_instr *in = &an->instrs[k];
        sites[n++] = (site){in->end - LI_TRAMPOLINE_UNITS, in->end, in->op, -1,
                            landing_at(an, k + 1, -1), false};
    }
    for (int i = current + 1, steps = 0; k < 0 && i < an->n_instrs && steps < 6; i++, steps++) {
        if (resume_site_ok(an, i, capacity)) {
            sites[n++] = (site){an->instrs[i].start, -1, -1, -1, landing_at(an, i, -1), false};
            break;
        }
        if (!(an->instrs[i].flags & LI_I_FALLS_THROUGH) || an->instrs[i].target >= 0) {
            break;
        }
    }
    int target = an->instrs[current].target;
    if (k < 0 && target >= 0 && resume_site_ok(an, target, capacity)) {
        sites[n++] = (site){an->instrs[target].start, -1, -1, current,
                            landing_at(an, target, current), false};
    }
    for (int j = 0; j < an->n_instrs && n < max; j++) {
        const li_instr *in = &an->instrs[j];
        if (in->opcode == JUMP_BACKWARD && in->depth >= 0 &&
            resume_site_ok(an, in->target, capacity))
        {
            sites[n++] = (site){an->instrs[in->target].start, -1, -1, j,
                                landing_at(an, in->target, j), true};
        }
    }
    return n;
}

/* What a shadow adds to its original, for placing trampolines in it: which
 * units its probes occupy (a trampoline must leave them alone: probes are
 * armed and disarmed in place, and an outdated shadow's probes move their
 * frames themselves), and its original's instructions. */
typedef struct {
    li_probes *lp;
    li_analysis original;
    uint8_t *in_probe;      /* per shadow unit: 1 inside a probe, 2 at its start */
} shadow_view;

static int
view_shadow(li_probes *lp, shadow_view *view)
{
    view->lp = lp;
    view->in_probe = PyMem_Calloc((size_t)lp->n_units + 1, 1);
    if (view->in_probe == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int k = 0; k < lp->n_probes; k++) {
        const li_probe *probe = &lp->probes[k];
        for (int u = 0; u < probe->size && probe->unit + u < lp->n_units; u++) {
            view->in_probe[probe->unit + u] = 1;
        }
        view->in_probe[probe->unit] = 2;
    }
    if (li_analyse(lp->original, &view->original) < 0) {
        PyMem_Free(view->in_probe);
        return -1;
    }
    return 0;
}

static void
clear_view(shadow_view *view)
{
    PyMem_Free(view->in_probe);
    li_analysis_clear(&view->original);
}

/* The index of the original instruction whose copy starts at shadow unit
 * `unit`, or -1 (a probe, a stub, or inside an instruction). */
static int
original_instruction(const shadow_view *view, int unit)
{
    const li_probes *lp = view->lp;
    if (unit < 0 || unit >= lp->n_units || view->in_probe[unit]) {
        return -1;
    }
    int orig = li_orig_of(lp, unit);
    if (orig < 0 || orig >= lp->n_orig_units || li_shadow_of(lp, orig) != unit) {
        return -1;
    }
    int i = view->original.instr_at[orig];
    return view->original.instrs[i].start == orig ? i : -1;
}

/* Translates the sites chosen in a shadow's own analysis: landings in terms
 * of the original, and no site where a probe of the shadow is, or where
 * the frame meets a probe first (which moves it itself).  The number kept. */
static int
translate_sites(const shadow_view *view, const li_analysis *an, site *sites, int n)
{
    int kept = 0;
    for (int k = 0; k < n; k++) {
        site s = sites[k];
        int lo = s.owner >= 0 ? s.owner : s.at;
        int hi = s.jump >= 0 ? s.jump + 1 : s.at + LI_TRAMPOLINE_UNITS;
        bool clear = true;
        for (int u = lo; u < hi && clear; u++) {
            clear = !view->in_probe[u];
        }
        int i = original_instruction(view, s.jump >= 0 ? s.jump : s.at);
        if (!clear || i < 0) {
            continue;
        }
        const li_analysis *orig = &view->original;
        if (s.source >= 0) {
            /* Arriving by a jump: as the original's jump lands there. */
            int source = original_instruction(view, an->instrs[s.source].start);
            if (source < 0) {
                continue;
            }
            s.landing = landing_at(orig, i, source);
        }
        else {
            /* Events of the instruction before that the shadow reports
               when it completes (C_RETURN, BRANCH) are still to come. */
            s.landing = (li_landing){orig->instrs[i].start, LI_LAND_BEFORE_AFTER};
        }
        /* Pads exist for the original's loop headers only. */
        s.loop_header = s.loop_header && orig->instrs[s.source >= 0 ? original_instruction(
                            view, an->instrs[s.source].start) : 0].opcode == JUMP_BACKWARD;
        sites[kept++] = s;
    }
    return kept;
}

/* ---- a frame waiting in a `yield from` or `await` loop -------------------- */

/* Whether the units a trampoline at `at` runs, up to the unit after its
 * CALL, are all handled by `handler` (NULL: none). */
static bool
handled_by(const li_analysis *an, int at, const li_handler *handler)
{
    for (int u = at; u <= at + LI_TRAMPOLINE_UNITS && u < an->n_units; u++) {
        if (!same_handler(handler_at(an->handlers, an->n_handlers, u), handler)) {
            return false;
        }
    }
    return true;
}

/* A frame waiting in the SEND of a `yield from` or `await` loop (its
 * subiterator runs in C) goes on at the loop's YIELD_VALUE when the
 * subiterator yields: the place where its PY_YIELD comes natively.  No
 * trampoline fits there: after the YIELD_VALUE come the RESUME where
 * suspended generators of the code go on, which CPython also reads to tell
 * that they delegate, and the loop's jump back.  So the YIELD_VALUE's one
 * unit becomes a jump to a trampoline in the inline cache of another
 * instruction, whose base form reads none meanwhile: every frame that comes
 * to the YIELD_VALUE takes it (all of them lack the events), and lands
 * before the YIELD_VALUE's probes with the value to yield on its stack.
 * The instruction must be within a one-unit jump's reach, and errors in the
 * trampoline must be handled as at the YIELD_VALUE (which raises none); the
 * nearest on the YIELD_VALUE's line is preferred, as line tracing sees the
 * trampoline's units as that instruction's.  `chosen`: the other sites for
 * the frame, which it must leave alone.  In a shadow (`view`) the
 * YIELD_VALUE must follow the SEND directly (a probe between reports
 * PY_YIELD if the shadow has it, and cannot move its frame), and the
 * instruction must be a copy of one of the original.  False if nothing
 * fits. */
static bool
yield_site(const li_analysis *an, const shadow_view *view, li_patches *p, int current,
           int capacity, const site *chosen, int n_chosen, site *out)
{
    if (an->instrs[current].opcode != SEND || current + 1 >= an->n_instrs) {
        return false;
    }
    const li_instr *yield = &an->instrs[current + 1];
    if (yield->opcode != YIELD_VALUE || yield->depth < 0 || yield->depth + 2 > capacity) {
        return false;
    }
    li_landing landing = landing_at(an, current + 1, -1);
    if (view != NULL) {
        int i = original_instruction(view, yield->start);
        if (i < 0) {
            return false;
        }
        landing = landing_at(&view->original, i, -1);
    }
    for (int k = 0; k < p->n_trampolines; k++) {
        const li_trampoline *t = &p->trampolines[k];
        if (t->armed && t->jump == yield->op) {
            /* Armed for another frame waiting there. */
            *out = (site){t->at, t->jump, t->owner, -1, t->landing, false};
            return true;
        }
    }
    const li_handler *handler = handler_at(an->handlers, an->n_handlers, yield->op);
    int line = an->locs[yield->op].line;
    int best = -1, best_score = INT_MAX;
    for (int j = 0; j < an->n_instrs; j++) {
        const li_instr *in = &an->instrs[j];
        int at = in->op + 1;
        int distance = at < yield->op ? yield->op + 1 - at : at - yield->op - 1;
        int score = distance + (an->locs[in->op].line == line ? 0 : 256);
        if (in->depth < 0 || in->end - at < LI_TRAMPOLINE_UNITS || distance > 255 ||
            score >= best_score || (view != NULL && original_instruction(view, in->start) < 0) ||
            overlaps_armed(p, -1, in->op, in->end) || frame_in_the_way(an->code, at) ||
            !handled_by(an, at, handler))
        {
            continue;
        }
        bool taken = false;
        for (int k = 0; k < n_chosen && !taken; k++) {
            taken = uses_units(chosen[k].at, chosen[k].jump, chosen[k].owner, in->op, in->end);
        }
        if (!taken) {
            best = j;
            best_score = score;
        }
    }
    if (best < 0) {
        return false;
    }
    const li_instr *in = &an->instrs[best];
    *out = (site){in->op + 1, yield->op, in->op, -1, landing, false};
    return true;
}

/* ---- exception trampolines ------------------------------------------------ */

static li_handler
route_at(const li_handler *handlers, int n_handlers, int unit)
{
    const li_handler *h = handler_at(handlers, n_handlers, unit);
    return h != NULL ? (li_handler){0, 0, h->target, h->depth, h->lasti}
                     : (li_handler){0, 0, -1, 0, false};
}

/* Whether units [lo, hi) are handled by `handler` (NULL: none), or not at
 * all. */
static bool
routed_as(const li_analysis *an, int lo, int hi, const li_handler *handler)
{
    for (int u = lo; u < hi; u++) {
        const li_handler *here = handler_at(an->handlers, an->n_handlers, u);
        if (here != NULL && !same_handler(here, handler)) {
            return false;
        }
    }
    return true;
}

/* Where exceptions raised at `unit` of the original analysed as `an` can
 * go: a new trampoline *t (t->at >= 0) in the inline cache of an
 * instruction no armed trampoline or frame uses, else the armed entry
 * trampoline, which the landing tells apart by the frame's stack (a frame
 * starting there has an empty one); with room on the stack the exception
 * arrives with (capacity `capacity`) for the trampoline's two values.  An
 * error its call makes as it starts goes where one raised at `unit` goes,
 * or out of the frame.  False if there is no place. */
static bool
exception_site(const li_analysis *an, li_patches *p, int entry, _PyInterpreterFrame *frame,
               int unit, int capacity, li_exception_route *route, li_trampoline *t)
{
    const li_instr *raising = &an->instrs[an->instr_at[unit]];
    if (raising->depth < 0) {
        return false;
    }
    t->at = -1;
    for (int k = 0; k < p->n_routes; k++) {
        if (p->routes[k].frame == frame) {
            return false;   /* it has one */
        }
        if (p->routes[k].raising == unit) {
            /* Another frame waits there: the same way out. */
            *route = p->routes[k];
            route->frame = frame;
            return true;
        }
    }
    const li_handler *handler = handler_at(an->handlers, an->n_handlers, unit);
    int depth = handler != NULL ? handler->depth : 0;
    if (depth + 3 > capacity) {
        return false;
    }
    *route = (li_exception_route){frame, unit, depth, -1, -1, {raising->start, LI_LAND_RAISED}};
    for (int j = 0; j < an->n_instrs; j++) {
        const li_instr *in = &an->instrs[j];
        int at = in->op + 1;
        if (in->depth < 0 || in->end - at < LI_TRAMPOLINE_UNITS ||
            overlaps_armed(p, -1, in->op, in->end) || frame_in_the_way(an->code, at) ||
            !routed_as(an, in->end, at + LI_TRAMPOLINE_UNITS + 1, handler))
        {
            continue;
        }
        route->trampoline = at;
        route->routed_end = in->end < at + LI_TRAMPOLINE_REACH ? in->end : at + LI_TRAMPOLINE_REACH;
        *t = (li_trampoline){.at = at, .jump = -1, .owner = in->op, .landing = route->landing};
        return true;
    }
    li_trampoline *shared = entry >= 0 ? find_trampoline(p, entry) : NULL;
    if (shared != NULL && shared->armed &&
        routed_as(an, entry, entry + LI_TRAMPOLINE_REACH, handler))
    {
        route->trampoline = route->routed_end = entry;
        return true;
    }
    return false;
}

/* Puts an exception table in the code of `p` that sends exceptions along
 * its routes (its own when there is none).  0 or -1. */
static int
route_exceptions(li_patches *p)
{
    PyCodeObject *code = p->code;
    if (p->n_routes == 0) {
        restore_exceptiontable(p);
        return 0;
    }
    li_handler *handlers = NULL;
    int n_handlers = li_decode_handlers(code, &handlers);
    if (n_handlers < 0) {
        return -1;
    }
    int n_units = (int)Py_SIZE(code);
    li_handler *per_unit = li_alloc_filled_later((size_t)n_units, sizeof(li_handler));
    if (per_unit == NULL) {
        PyMem_Free(handlers);
        return -1;
    }
    for (int u = 0; u < n_units; u++) {
        per_unit[u] = route_at(handlers, n_handlers, u);
    }
    for (int k = 0; k < p->n_routes; k++) {
        const li_exception_route *r = &p->routes[k];
        li_handler handler = route_at(handlers, n_handlers, r->raising);
        for (int u = r->trampoline; u < r->routed_end; u++) {
            per_unit[u] = handler;
        }
        per_unit[r->raising] = (li_handler){0, 0, r->trampoline, r->depth, false};
    }
    PyObject *table = li_encode_handlers(per_unit, n_units);
    PyMem_Free(per_unit);
    PyMem_Free(handlers);
    if (table == NULL) {
        return -1;
    }
    if (p->own_exceptiontable == NULL) {
        p->own_exceptiontable = code->co_exceptiontable;
    }
    else {
        Py_DECREF(code->co_exceptiontable);
    }
    code->co_exceptiontable = table;
    return 0;
}

/* Arms `t` if it is a new trampoline, and sends exceptions along `route`.
 * 0 or -1. */
static int
arm_route(li_patches *p, li_exception_route route, const li_trampoline *t)
{
    if (t->at >= 0) {
        li_trampoline *armed_one = new_trampoline(p, t->at, -1, t->owner, t->landing);
        if (armed_one == NULL || arm(p, armed_one) < 0) {
            return -1;
        }
    }
    if (li_reserve((void **)&p->routes, &p->cap_routes, p->n_routes,
                   sizeof(li_exception_route), 2) < 0)
    {
        return -1;
    }
    p->routes[p->n_routes++] = route;
    return route_exceptions(p);
}

int
li_trampoline_routes_done(PyCodeObject *code, _PyInterpreterFrame *frame)
{
    li_patches *p = patches_of(code, false);
    if (p == NULL) {
        PyErr_Clear();
        return 0;
    }
    int kept = 0;
    for (int k = 0; k < p->n_routes; k++) {
        if (p->routes[k].frame != frame) {
            p->routes[kept++] = p->routes[k];
        }
    }
    if (kept == p->n_routes) {
        return 0;
    }
    /* The code object's own table is back as soon as no frame needs one. */
    p->n_routes = kept;
    return route_exceptions(p);
}

bool
li_trampoline_raised_landing(PyCodeObject *code, int unit, li_landing *to)
{
    li_patches *p = patches_of(code, false);
    if (p == NULL) {
        PyErr_Clear();
        return false;
    }
    for (int k = 0; k < p->n_routes; k++) {
        if (p->routes[k].raising == unit) {
            *to = p->routes[k].landing;
            return true;
        }
    }
    return false;
}

int
li_trampolines_reach(PyThreadState *ts, _PyInterpreterFrame *frame,
                     _PyInterpreterFrame *above)
{
    PyCodeObject *code = frame->f_code;
    li_probes *lp = li_shadow_probes(code);
    li_code_state *cs = li_code_state_get(lp != NULL ? lp->original : code);
    if (cs == NULL || cs->excluded || li_foreign_eval_frame() || !landing_function_installed()) {
        return 0;
    }
    li_code_backend *cb = li_code_backend_ensure(cs);
    li_patches *p = cb != NULL ? patches_of(code, true) : NULL;
    if (p == NULL) {
        return -1;
    }
    int unit = (int)(frame->prev_instr - _PyCode_CODE(code));
    if (unit < 0) {
        return 0;
    }
    shadow_view view = {0};
    if (lp != NULL && view_shadow(lp, &view) < 0) {
        return -1;
    }
    /* Analysed as it was: armed trampolines swapped out meanwhile. */
    bool swapped = li_trampoline_swap(code);
    li_analysis an;
    int err = li_analyse(code, &an);
    if (swapped) {
        li_trampoline_swap(code);
    }
    if (err < 0) {
        if (lp != NULL) {
            clear_view(&view);
        }
        return -1;
    }
    int capacity = least_capacity(code);
    int max = an.n_instrs + 3;
    /* One more for the YIELD_VALUE of a `yield from` loop. */
    site *sites = PyMem_Malloc(sizeof(site) * (size_t)(max + 1));
    if (sites == NULL) {
        li_analysis_clear(&an);
        if (lp != NULL) {
            clear_view(&view);
        }
        PyErr_NoMemory();
        return -1;
    }
    int n = choose_sites(&an, unit, capacity, sites, max);
    if (lp != NULL) {
        n = translate_sites(&view, &an, sites, n);
    }
    if (yield_site(&an, lp != NULL ? &view : NULL, p, an.instr_at[unit], capacity, sites, n,
                   &sites[n]))
    {
        n++;
    }
    /* Loop headers have landing pads in every shadow; the other places get
       theirs in shadows built from now on. */
    for (int k = 0; k < n && err == 0; k++) {
        if (!sites[k].loop_header) {
            err = li_add_resume_point(cb, sites[k].landing);
        }
    }
    /* The frame must have room for the shadow it will land on. */
    PyObject *landing = NULL;
    if (err == 0 && n > 0) {
        landing = li_landing_code(cs->code, sites[0].landing,
                                  li_frame_landing_capacity(ts, frame, above),
                                  frame->f_builtins);
        err = landing == NULL ? -1 : 0;
    }
    li_probes *to = landing != NULL ? li_shadow_probes((PyCodeObject *)landing) : NULL;
    /* Not onto the code the trampolines are in: its pad would go on where
       the frame takes them, and land it again, for ever. */
    bool fits = to != NULL && to->kinds != 0 && landing != (PyObject *)code;
    for (int k = 0; k < n && err == 0 && fits; k++) {
        const site *s = &sites[k];
        int lo = s->owner >= 0 && s->owner < s->at ? s->owner : s->at;
        if ((s->jump < 0 && frame_in_the_way(code, s->at)) ||
            overlaps_armed(p, s->at, lo, s->at + LI_TRAMPOLINE_UNITS) ||
            (s->jump >= 0 && overlaps_armed(p, s->at, s->jump, s->jump + 1)))
        {
            continue;
        }
        li_trampoline *t = new_trampoline(p, s->at, s->jump, s->owner, s->landing);
        err = t == NULL ? -1 : arm(p, t);
    }
    /* Exceptions go to a trampoline of their own, whose pad shadows built
       from now on have.  (Frames on shadows have probes for them.) */
    li_exception_route route;
    li_trampoline raised;
    if (err == 0 && (fits || n == 0) && lp == NULL &&
        exception_site(&an, p, cb->entry_tramp == cb->entry_site ? cb->entry_site : -1, frame,
                       unit, capacity, &route, &raised))
    {
        err = li_add_resume_point(cb, route.landing);
        err = err < 0 ? -1 : arm_route(p, route, &raised);
    }
    Py_XDECREF(landing);
    PyMem_Free(sites);
    li_analysis_clear(&an);
    if (lp != NULL) {
        clear_view(&view);
    }
    return err;
}

void
li_patches_forget(li_patches *p)
{
    if (p->n_armed > 0) {
        unlink_armed(p);   /* the code is being freed: its bytes do not matter */
        p->n_armed = 0;
    }
    set_lingering(p, false);
    Py_CLEAR(p->own_exceptiontable);
    PyMem_Free(p->routes);
    p->routes = NULL;
    p->n_routes = p->cap_routes = 0;
    if (p->trampolines != p->first) {
        PyMem_Free(p->trampolines);
    }
    p->trampolines = NULL;
    p->n_trampolines = p->cap_trampolines = 0;
}

PyObject *
li_own_exceptiontable(PyCodeObject *code)
{
    li_patches *p = patches_of(code, false);
    if (p == NULL) {
        PyErr_Clear();
        return code->co_exceptiontable;
    }
    return p->own_exceptiontable != NULL && !p->swapped_out ? p->own_exceptiontable
                                                             : code->co_exceptiontable;
}

static void
swap_unit(_Py_CODEUNIT *a, _Py_CODEUNIT *b)
{
    _Py_CODEUNIT tmp = *a;
    *a = *b;
    *b = tmp;
}

bool
li_trampoline_swap(PyCodeObject *code)
{
    li_patches *p = patches_of(code, false);
    if (p == NULL || p->n_armed == 0) {
        PyErr_Clear();
        return false;
    }
    _Py_CODEUNIT *units = _PyCode_CODE(code);
    for (int k = 0; k < p->n_trampolines; k++) {
        li_trampoline *t = &p->trampolines[k];
        if (t->armed) {
            for (int u = 0; u < LI_TRAMPOLINE_UNITS; u++) {
                swap_unit(&units[t->at + u], &t->saved[u]);
            }
            if (t->jump >= 0) {
                swap_unit(&units[t->jump], &t->saved_jump);
            }
            if (t->owner >= 0) {
                swap_unit(&units[t->owner], &t->saved_owner);
            }
        }
    }
    if (p->own_exceptiontable != NULL) {
        PyObject *in = code->co_exceptiontable;
        code->co_exceptiontable = p->own_exceptiontable;
        p->own_exceptiontable = in;
        p->swapped_out = !p->swapped_out;
    }
    return true;
}

/* Disarms the trampolines of `p` if its code no longer needs them.  Kept
 * for a frame in their units when it stopped needing them, they are plain
 * armed trampolines again once it does. */
static void
disarm_if_unneeded(li_patches *p)
{
    li_probes *lp = li_shadow_probes(p->code);
    if (lp != NULL ? !lp->outdated
                   : !li_needs_instrumenting(p->code) && !li_refresh_awaited(p->code)) {
        disarm(p, false);
    }
    else {
        set_lingering(p, false);
    }
}

void
li_trampolines_settle(void)
{
    for (li_patches *p = lingering_list, *next; p != NULL; p = next) {
        next = p->next_lingering;
        disarm_if_unneeded(p);
    }
}

/* Whether settle_pending() is queued, so that it is queued once. */
static bool settle_queued;

static int
settle_pending(void *Py_UNUSED(arg))
{
    settle_queued = false;
    li_trampolines_settle();
    return 0;
}

void
li_trampolines_settle_soon(void)
{
    li_trampolines_settle();
    if (lingering_list == NULL || settle_queued) {
        return;
    }
    /* A trace function that raised is removed before its frame unwinds out
       of the trampoline it stood in, and no landing of that frame follows:
       other threads may run the code before anything here would settle
       again.  The main thread runs pending calls at its next check of the
       eval breaker, when that frame is gone.  A full queue (-1, no
       exception) leaves it to the next landing, update or trace function. */
    if (Py_AddPendingCall(settle_pending, NULL) == 0) {
        settle_queued = true;
    }
}

static void disarm_pending_unneeded(void);

/* Whether the original code of `p` needs its trampolines, known without
 * asking its state: while some global event needs probes, all code but
 * lowimpact's own does (an update that turns events on arms thousands). */
static inline bool
original_surely_needed(const li_patches *p, bool global_probes)
{
    if (!global_probes || p->of_shadow || p->lingering) {
        return false;
    }
    const li_code_backend *cb = (const li_code_backend *)(
        (const char *)p - offsetof(li_code_backend, patches));
    return !cb->cs->excluded;
}

int
li_trampolines_disarm_unneeded(void)
{
    disarm_pending_unneeded();
    bool global_probes = (li_global_events() & LI_PROBED_EVENTS) != 0;
    for (li_patches *p = armed, *next; p != NULL; p = next) {
        next = p->next_armed;
        if (!original_surely_needed(p, global_probes)) {
            disarm_if_unneeded(p);
        }
    }
    return 0;
}

int
li_trampolines_disarm_unneeded_of(li_code_state *cs)
{
    li_code_backend *cb = (li_code_backend *)cs->backend;
    if (cb == NULL) {
        return 0;
    }
    bare_touched(cb);
    if (cb->patches.n_armed > 0) {
        disarm_if_unneeded(&cb->patches);
    }
    for (li_probes *lp = cb->shadows; lp != NULL; lp = lp->next_of_code) {
        if (lp->patches != NULL && lp->patches->n_armed > 0) {
            disarm_if_unneeded(lp->patches);
        }
    }
    return 0;
}

bool
li_trampolines_disarm_original(li_code_state *cs)
{
    li_code_backend *cb = (li_code_backend *)cs->backend;
    if (cb == NULL || cb->entry_site < 0) {
        return false;
    }
    bare_touched(cb);
    if (cb->patches.n_armed > 0) {
        disarm(&cb->patches, false);
    }
    li_trampoline *t = find_trampoline(&cb->patches, cb->entry_tramp);
    return t == NULL || !t->armed;
}

/* ---- code that started bare ---------------------------------------------- */

/* restart_events() gives the entry trampoline back to every code object
 * whose PY_START callbacks disabled it (3.14's bdb restarts at each call of
 * a function holding a breakpoint, after PY_START returned DISABLE in all
 * other code).  Where nothing but the trampoline's own record changed since
 * it was last armed, the restart only stores its units and the code's
 * _co_firsttraceable: the rest of the arming is left "pending" until
 * something looks at the code's trampolines (bare_touched()), at the latest
 * as its next frame meets the trampoline (nothing else runs the original:
 * no frame of it was on a stack at the restart, and it makes no
 * generators).  The code keeps the room its frames need for a shadow from
 * the time it went bare, which frames that start after the restart need. */

/* The code noted as started bare, in order (bare_slot); `cb` NULL where it
 * was dropped (n_bare_gone of them).  A restart arms the entries from
 * noted_from on: afterwards those it armed in place are pending, until
 * dropped.  Entries stay put while holding_bare (a walk over them runs). */
typedef struct {
    /* A restart may arm it with the stores below alone (cb NULL: false). */
    bool in_place;
    int armed_first;              /* _co_firsttraceable while armed */
    _Py_CODEUNIT *units;          /* the trampoline's place in the code */
    _Py_CODEUNIT *saved;          /* where its record saves what it replaces */
    PyCodeObject *code;           /* borrowed */
    li_code_backend *cb;          /* borrowed: a code state drops its entry as it goes */
    int own_first;                /* _co_firsttraceable otherwise */
} bare_entry;
static bare_entry *bare;
static int n_bare, cap_bare, n_bare_gone, noted_from, holding_bare;
/* Entries a restart failed to arm (LI_BARE_RETRY), before noted_from. */
static int n_retry;

static inline bool
bare_pending(const li_code_backend *cb)
{
    return cb->started_bare == LI_BARE_NOTED && cb->bare_slot < noted_from;
}

bool
li_entry_bare(const li_code_backend *cb)
{
    return cb->started_bare != 0 && !bare_pending(cb);
}

int
li_started_bare_reserve(void)
{
    return li_reserve((void **)&bare, &cap_bare, n_bare, sizeof(*bare), 64);
}

/* Whether only the entry trampoline over RESUME 0 of `cb`'s code was ever
 * armed, co_code is cached, and the code makes no generator. */
static bool
entry_alone(li_code_backend *cb)
{
    const li_patches *p = &cb->patches;
    const li_trampoline *t = p->trampolines;
    PyCodeObject *code = cb->cs->code;
    return !cb->cs->excluded && p->n_armed == 0 && p->n_trampolines == 1 &&
           t->at == cb->entry_site && t->at == cb->entry_tramp && t->jump < 0 && t->owner < 0 &&
           li_same_landing(t->landing, (li_landing){cb->entry_site, LI_LAND_START}) &&
           code->_co_code != NULL &&
           !(code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR));
}

void
li_note_started_bare(li_code_backend *cb)
{
    if (cb->started_bare) {
        return;
    }
    assert(n_bare < cap_bare);
    PyCodeObject *code = cb->cs->code;
    bool alone = entry_alone(cb);
    bare[n_bare] = (bare_entry){
        .in_place = alone,
        .armed_first = cb->entry_tramp + LI_TRAMPOLINE_REACH,
        .units = _PyCode_CODE(code) + cb->entry_tramp,
        .saved = alone ? cb->patches.trampolines->saved : NULL,
        .code = code,
        .cb = cb,
        .own_first = code->_co_firsttraceable,
    };
    cb->started_bare = LI_BARE_NOTED;
    cb->bare_slot = n_bare++;
    li_reserve_shadow_stack(cb);
}

/* Drops the entries of code that went or was armed since, in a program that
 * makes and drops much code between restarts. */
static void
squeeze_bare(void)
{
    int kept = 0, kept_before = 0;
    for (int i = 0; i < n_bare; i++) {
        if (i == noted_from) {
            kept_before = kept;
        }
        if (bare[i].cb != NULL) {
            bare[i].cb->bare_slot = kept;
            bare[kept++] = bare[i];
        }
    }
    noted_from = noted_from == n_bare ? kept : kept_before;
    n_bare = kept;
    n_bare_gone = 0;
}

static void
drop_bare(li_code_backend *cb)
{
    bare_entry *e = &bare[cb->bare_slot];
    n_retry -= cb->started_bare == LI_BARE_RETRY;
    cb->started_bare = 0;
    e->cb = NULL;
    e->in_place = false;
    if (++n_bare_gone > 64 && n_bare_gone * 2 > n_bare && holding_bare == 0) {
        squeeze_bare();
    }
}

void
li_forget_started_bare(li_code_backend *cb)
{
    if (cb->started_bare) {
        drop_bare(cb);
    }
}

/* Something is about to look at or change the trampolines of `cb`'s code:
 * the arming a restart left pending is completed, and an entry not armed
 * yet takes the careful way at the next restart. */
static void
bare_touched(li_code_backend *cb)
{
    if (cb->started_bare == 0) {
        return;
    }
    bare_entry *e = &bare[cb->bare_slot];
    if (!bare_pending(cb)) {
        e->in_place = false;
        return;
    }
    li_patches *p = &cb->patches;
    p->code = e->code;
    link_armed(p);
    p->trampolines->armed = true;
    p->n_armed = 1;
    cb->saved_firsttraceable = e->own_first;
    drop_bare(cb);
}

/* The careful way for an entry to be retried: as li_trampoline_arm(),
 * where the code needs it.  1 if armed or not needed, 0 if it could not go
 * in, -1 on error (the entry stays, to be retried). */
static int
rearm_carefully(li_code_backend *cb)
{
    li_code_state *cs = cb->cs;
    if (!li_needs_instrumenting(cs->code)) {
        drop_bare(cb);
        li_release_shadow_stack(cb);
        return 1;
    }
    int armed = li_trampoline_arm(cs);
    if (armed >= 0) {
        drop_bare(cb);
    }
    return armed;
}

/* Arms the entries of [from, to) to be retried, the careful way.  0 or -1
 * (those left stay to be retried). */
static int
rearm_retries(int from, int to, bool *unreached)
{
    holding_bare++;
    int err = 0;
    for (int i = from; i < to && err == 0; i++) {
        li_code_backend *cb = bare[i].cb;
        if (cb != NULL && cb->started_bare == LI_BARE_RETRY) {
            int armed = rearm_carefully(cb);
            err = armed < 0 ? -1 : 0;
            *unreached |= armed == 0;
        }
    }
    holding_bare--;
    return err;
}

/* The entry of `cb` takes the careful way. */
static inline void
retry_bare(li_code_backend *cb)
{
    n_retry += cb->started_bare != LI_BARE_RETRY;
    cb->started_bare = LI_BARE_RETRY;
}

/* The entry of `cb`, at `i`, takes the careful way: [*from, *to) covers it. */
LI_COLD static void
retry_range(li_code_backend *cb, int i, int *from, int *to)
{
    retry_bare(cb);
    *from = *from < 0 ? i : *from;
    *to = i + 1;
}

int
li_trampolines_restart_bare(bool *unreached)
{
    if (noted_from == n_bare && n_retry == 0) {
        return 0;
    }
    /* One walk of the stacks for all: code that frames run takes the
       careful way, which looks at where they stand. */
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts))
    {
        for (_PyInterpreterFrame *f = ts->cframe->current_frame; f != NULL; f = f->previous) {
            li_code_state *cs = li_code_state_get(f->f_code);
            li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
            if (cb != NULL && li_entry_bare(cb)) {
                bare[cb->bare_slot].in_place = false;
            }
        }
    }
    /* (Entries left to retry by an earlier restart that failed come first.) */
    int retry_from = n_retry > 0 ? 0 : -1, retry_to = n_retry > 0 ? noted_from : -1;
    int to = n_bare;
    /* In place only where the code needs its trampoline (PY_START wanted
       everywhere), and a trampoline can work. */
    if (li_reg.global_tools[LI_PY_START] == 0 || li_foreign_eval_frame() ||
        !landing_function_installed())
    {
        for (int i = noted_from; i < to; i++) {
            bare[i].in_place = false;
        }
    }
    for (bare_entry *e = bare + noted_from, *end = bare + to; e < end; e++) {
        if (!e->in_place) {
            if (e->cb != NULL) {
                retry_range(e->cb, (int)(e - bare), &retry_from, &retry_to);
            }
            continue;
        }
        /* (The code may have been quickened while it ran bare.) */
        memcpy(e->saved, e->units, sizeof(trampoline_units));
        memcpy(e->units, trampoline_units, sizeof(trampoline_units));
        e->code->_co_firsttraceable = e->armed_first;
    }
    noted_from = to;
    return retry_from >= 0 ? rearm_retries(retry_from, retry_to, unreached) : 0;
}

/* The trampolines that restarts left pending in code that no longer needs
 * them go (as li_trampolines_disarm_unneeded() does for the others); code
 * still to be re-armed that no longer needs it, and that no frame runs
 * (frames keep the room they were made with), gives its next frames their
 * own size back, and takes the careful way at the next restart (which
 * reserves the room again where the code needs it then). */
static void
disarm_pending_unneeded(void)
{
    holding_bare++;
    for (int i = 0; i < n_bare; i++) {
        li_code_backend *cb = bare[i].cb;
        if (cb == NULL || li_needs_instrumenting(cb->cs->code)) {
            continue;
        }
        if (bare_pending(cb)) {
            bare_touched(cb);
            disarm(&cb->patches, false);
        }
        else if (cb->true_stacksize >= 0 && cb->patches.n_armed == 0 &&
                 !frame_of(cb->cs->code))
        {
            bare[i].in_place = false;
            cb->cs->code->co_stacksize = cb->true_stacksize;
            cb->true_stacksize = -1;
        }
    }
    holding_bare--;
}

static Py_ssize_t
pending_count(void)
{
    Py_ssize_t n = 0;
    for (int i = 0; i < noted_from; i++) {
        n += bare[i].cb != NULL && bare_pending(bare[i].cb);
    }
    return n;
}

/* ---- the trigger ------------------------------------------------------------ */

/* The trampoline whose UNARY_POSITIVE `frame` is at, or NULL. */
static li_trampoline *
trampoline_at(_PyInterpreterFrame *frame)
{
    li_patches *p = patches_of(frame->f_code, false);
    if (p == NULL || p->n_armed == 0) {
        PyErr_Clear();
        return NULL;
    }
    int at = (int)(frame->prev_instr - _PyCode_CODE(frame->f_code)) - 2;
    li_trampoline *t = find_trampoline(p, at);
    return t != NULL && t->armed ? t : NULL;
}

/* nb_positive of `type`, which has none: `+cls` raises what it always did,
 * except for the AssertionError class at a trampoline, where it yields the
 * landing function for the trampoline's CALL, and tells it where the frame
 * goes. */
static PyObject *
type_positive(PyObject *self)
{
    PyObject *function = li_landing_function();
    if (self == PyExc_AssertionError && function != NULL) {
        PyThreadState *tstate = _PyThreadState_GET();
        _PyInterpreterFrame *frame = tstate->cframe->current_frame;
        li_trampoline *t = frame != NULL && frame->owner != FRAME_OWNED_BY_FRAME_OBJECT
                           ? trampoline_at(frame) : NULL;
        if (t != NULL) {
            if (li_expect_landing(tstate, frame, frame->f_code, t->landing) < 0) {
                return NULL;
            }
            li_exec_pause();
            li_landing_lend_recursion(tstate);
            return Py_NewRef(function);
        }
    }
    return PyErr_Format(PyExc_TypeError, "bad operand type for unary +: '%.200s'",
                        Py_TYPE(self)->tp_name);
}

int
li_trampoline_init(void)
{
    /* Types created from now on inherit the slot (it raises for them as the
       missing slot did); `type` has no `__pos__` in its dictionary either way. */
    if (PyType_Type.tp_as_number == NULL || PyType_Type.tp_as_number->nb_positive != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lowimpact: type already has a unary + slot");
        return -1;
    }
    PyType_Type.tp_as_number->nb_positive = type_positive;
    return 0;
}

Py_ssize_t
li_trampolines_kept_count(void)
{
    Py_ssize_t n = 0;
    for (li_patches *p = lingering_list; p != NULL; p = p->next_lingering) {
        n++;
    }
    return n;
}

Py_ssize_t
li_trampolines_armed_count(void)
{
    Py_ssize_t n = pending_count();
    for (li_patches *p = armed; p != NULL; p = p->next_armed) {
        n++;
    }
    return n;
}

