/* Shadows with probes for LINE, PY_START or both, made in one walk of the
 * original.
 *
 * Most shadows are built for LINE and nothing else (debuggers), for LINE
 * and PY_START (a coverage tool turns PY_START on everywhere to see each
 * code object start, and DISABLEs it there as it gives the code LINE: a
 * disarmed placeholder stays where frames start and resume) or for
 * PY_START alone (code such a tool does not measure, where no entry
 * trampoline fits), most of them for short functions, each as the function
 * first runs.  The general builder (shadow.c) analyses the original, plans
 * the probes, lays them out and then writes the shadow, a pass and an array
 * for each.  For these events in short code without exception handlers,
 * one walk of the instructions can decide where LINE fires (CPython 3.12's
 * rule, as analysis.c has it) and write each probe and instruction as it
 * goes, leaving the forward jumps and each probe's jump to the DIVERT stub
 * after the code to be filled in at the end.  The result is what the
 * general builder makes of the same code, unit for unit and table for
 * table (LI_CROSSCHECK_LINE_SHADOWS builds both and compares).
 *
 * It declines, for the general builder to do the work, where the walk would
 * not be exact: code with an exception table (handlers start lines and
 * route exceptions), a shadow beyond a probe's jump's reach (more DIVERT
 * stubs, EXTENDED_ARG on jumps), an instruction that only a later backward
 * jump reaches (its depth is not known when the walk gets there), jumps to
 * RERAISE and `except*` cleanup (lines as 3.12 gives them), and anything the
 * analysis would reject.
 */

#include "b311.h"

/* The longest shadow made here: every probe reaches the DIVERT stub after
 * the code, and no jump needs a prefix. */
#define MAX_UNITS LI_JUMP_REACH
/* Room past MAX_UNITS for the units of one more instruction and its probes,
 * written before the walk sees that the shadow is too long. */
#define SLACK 32

enum {
    FALLS_THROUGH = 1 << 0,
    JUMPED_TO = 1 << 1,
    HAS_LINE = 1 << 2,     /* a LINE probe comes right before it */
    HAS_SKIP = 1 << 3,     /* and a jump over that probe before it */
    HAS_AFTER = 1 << 4,    /* a PY_START probe or placeholder before those */
};

typedef struct {
    int16_t start, op, end;
    int16_t target;        /* instruction jumped to, or -1 */
    int16_t depth;         /* stack depth before it; -1: not reached (yet) */
    int16_t pos;           /* shadow unit where it starts */
    int oparg;
    uint8_t opcode, flags;
} instr;

typedef struct {
    PyCodeObject *original;
    li_code_state *cs;
    const _Py_CODEUNIT *units;
    int n_orig;
    int n_instrs;
    instr ins[MAX_UNITS];
    int16_t instr_starting[MAX_UNITS];   /* unit -> instruction, or -1 */
    li_loc locs[MAX_UNITS];
    int max_line;
    int probe_size, probes_const;
    int stacksize;           /* the original's (li_true_stacksize) */
    int probe_depth_bound;   /* deeper probes cannot divert their frame */
    int n_units;
    _Py_CODEUNIT code[MAX_UNITS + SLACK];
    int32_t orig_of[MAX_UNITS + SLACK];
    int32_t loc_of[MAX_UNITS + SLACK];
    /* (A probe takes two units or more, its instruction one or more.) */
    li_probe probes[MAX_UNITS / LI_PROBE_BASE_SIZE + 1];
    li_site sites[MAX_UNITS / LI_PROBE_BASE_SIZE + 1];
    int n_probes, n_sites;
    li_pad pads[MAX_UNITS];
    int pad_instr[MAX_UNITS];
    int n_pads;
    struct li_for_iter for_iters[MAX_UNITS];
    int n_for_iters;
    int32_t shadow_of[MAX_UNITS];
    bool every_site;         /* a probe at every line start, as for checks */
    bool want_line, want_start;
    bool placeholders;       /* li_build_shadow()'s: probes where frames start and resume */
    bool partial;
    int entry_probe;
    bool entry_only_at_start;   /* li_probes' */
    int resume;              /* the first RESUME 0, or -1 */
} walk;

static const bool ends_flow[256] = {
    [RETURN_VALUE] = true, [RAISE_VARARGS] = true, [RERAISE] = true,
    [JUMP_FORWARD] = true, [JUMP_BACKWARD] = true, [JUMP_BACKWARD_NO_INTERRUPT] = true,
};

/* The instructions and where jumps go; false where the walk does not
 * apply (the analysis may reject the code: it then says why). */
static bool
decode(walk *w)
{
    const _Py_CODEUNIT *units = w->units;
    int n = 0;
    memset(w->instr_starting, 0xFF, sizeof(int16_t) * (size_t)w->n_orig);
    for (int unit = 0; unit < w->n_orig;) {
        instr *in = &w->ins[n];
        in->start = (int16_t)unit;
        int oparg = 0;
        while (_Py_OPCODE(units[unit]) == EXTENDED_ARG && unit + 1 < w->n_orig) {
            oparg = (oparg << 8) | _Py_OPARG(units[unit]);
            unit++;
        }
        int opcode = _Py_OPCODE(units[unit]);
        int end = unit + 1 + _PyOpcode_Caches[opcode];
        if (end > w->n_orig || opcode == CACHE || opcode == PREP_RERAISE_STAR) {
            return false;
        }
        in->op = (int16_t)unit;
        in->end = (int16_t)end;
        in->opcode = (uint8_t)opcode;
        in->oparg = (oparg << 8) | _Py_OPARG(units[unit]);
        in->flags = ends_flow[opcode] ? 0 : FALLS_THROUGH;
        in->target = -1;
        in->depth = -1;
        w->instr_starting[in->start] = (int16_t)n;
        unit = end;
        n++;
    }
    w->n_instrs = n;
    for (int i = 0; i < n; i++) {
        instr *in = &w->ins[i];
        if (!li_is_jump(in->opcode)) {
            continue;
        }
        int unit = li_is_jump_backward(in->opcode) ? in->end - in->oparg : in->end + in->oparg;
        int t = unit >= 0 && unit < w->n_orig ? w->instr_starting[unit] : -1;
        if (t < 0 || w->ins[t].opcode == RERAISE) {
            return false;
        }
        in->target = (int16_t)t;
        w->ins[t].flags |= JUMPED_TO;
    }
    return true;
}

static inline int
line_of(const walk *w, const instr *in)
{
    return w->locs[in->op].line;
}

/* Where a jump from `source` to `t`, already written, lands (the general
 * builder's jump_landing()). */
static int
landing(const walk *w, const instr *source, const instr *t)
{
    if ((t->flags & HAS_LINE) && line_of(w, source) != line_of(w, t)) {
        return t->pos - w->probe_size;
    }
    return t->pos;
}

static void
write_jump(walk *w, const instr *in)
{
    int to = landing(w, in, &w->ins[in->target]);
    int end = in->pos + (in->end - in->op);
    bool forward = to >= end;
    w->code[in->pos] = li_make_unit(li_jump_opcode(in->opcode, forward),
                                    forward ? to - end : end - to);
}

/* The depth `depth` reaches instruction `t`: false where the walk cannot
 * follow (depths the analysis rejects, or reaching one walked past
 * unreached). */
static bool
reach(walk *w, int t, int depth, int from)
{
    if (depth < 0 || depth > w->stacksize) {
        return false;
    }
    if (w->ins[t].depth < 0) {
        if (t <= from) {
            return false;
        }
        w->ins[t].depth = (int16_t)depth;
    }
    return true;
}

/* Writes a probe of `kind` for instruction `i` at *pos, over the sites
 * added since `first_site`, owned by the original unit `owner` and with the
 * location of `loc`; past it.  A frame it diverts goes on at `phase`.  The
 * first probe of the instruction after RESUME 0 is the entry probe. */
static void
write_probe(walk *w, int i, int first_site, int kind, int phase, int owner, int loc, int *pos)
{
    instr *in = &w->ins[i];
    int k = w->n_probes++;
    int n_sites = w->n_sites - first_site;
    bool diverts = in->depth <= w->probe_depth_bound;
    w->probes[k] = (li_probe){
        .unit = *pos,
        .first_site = first_site,
        .resume_unit = diverts ? in->start : -1,
        .resume_phase = diverts ? (uint8_t)phase : 0,
        .n_sites = (uint8_t)n_sites,
        .depth = in->depth,
        .kind = (uint8_t)kind,
        .size = (uint8_t)w->probe_size,
        /* (PY_START's and LINE's are delivered the simple way.) */
        .simple = n_sites == 1,
        .lead_simple = n_sites > 0,
    };
    li_emit_with_prefixes(w->code + *pos, w->probe_size - LI_PROBE_BASE_SIZE, LOAD_CONST,
                          w->probes_const);
    li_fill_units(w->orig_of + *pos, w->probe_size, owner, 0);
    li_fill_units(w->loc_of + *pos, w->probe_size, loc, 0);
    *pos += w->probe_size;
    const instr *prev = i > 0 ? &w->ins[i - 1] : NULL;
    if (prev != NULL && prev->opcode == RESUME && prev->oparg == 0 &&
        !(in->flags & (HAS_AFTER | HAS_LINE)))
    {
        w->entry_probe = k;
        w->entry_only_at_start = !(in->flags & JUMPED_TO);
    }
}

/* Writes the probe of instruction `i`, right after a RESUME, that fires
 * PY_START there if a tool wants it, or a placeholder (the general builder's
 * AFTER probe, which PY_RESUME would share). */
static void
after_probe(walk *w, int i, int *pos)
{
    instr *in = &w->ins[i];
    const instr *resume = &w->ins[i - 1];
    int first_site = w->n_sites;
    if (resume->oparg == 0 && w->want_start) {
        if (w->every_site || li_tools_at(w->cs, LI_PY_START, resume->op)) {
            w->sites[w->n_sites++] = (li_site){NULL, resume->op, 0, (uint8_t)LI_PY_START, 0, NULL};
        }
        else {
            w->partial = true;
        }
    }
    bool placeholder = w->n_sites == first_site;
    if (placeholder && !w->placeholders) {
        return;
    }
    /* A placeholder's frame has yet to see what the probes there fire. */
    write_probe(w, i, first_site, LI_PROBE_AFTER,
                placeholder ? LI_LAND_BEFORE_AFTER : LI_LAND_FALLTHROUGH, resume->op, -1, pos);
    in->flags |= HAS_AFTER;
}

/* Writes the LINE probe of instruction `i` at line `line` (and the jump
 * over it when it falls through from its own line) if a tool wants it. */
static void
line_probe(walk *w, int i, int line, int *pos)
{
    instr *in = &w->ins[i];
    if (!w->every_site && !li_tools_at(w->cs, LI_LINE, in->op)) {
        w->partial = true;
        return;
    }
    const instr *prev = i > 0 ? &w->ins[i - 1] : NULL;
    /* RESUME never hides the next line: CPython 3.12's rule. */
    if (prev != NULL && prev->depth >= 0 && (prev->flags & FALLS_THROUGH) &&
        line_of(w, prev) == line && prev->opcode != RESUME)
    {
        w->code[*pos] = li_make_unit(JUMP_FORWARD, w->probe_size);
        w->orig_of[*pos] = prev->op;
        w->loc_of[*pos] = -1;
        in->flags |= HAS_SKIP;
        ++*pos;
    }
    int first_site = w->n_sites;
    w->sites[w->n_sites++] = (li_site){NULL, in->op, line, (uint8_t)LI_LINE, 0, NULL};
    write_probe(w, i, first_site, LI_PROBE_LINE, LI_LAND_AFTER_LINE, in->op, in->op, pos);
    in->flags |= HAS_LINE;
}

/* Writes instruction `i` at `pos`, its jump if it goes back; past it. */
static int
copy_instruction(walk *w, int i, int pos)
{
    instr *in = &w->ins[i];
    in->pos = (int16_t)pos;
    int n = in->end - in->op;
    if (in->target < 0) {
        /* Prefixes are kept but for jumps, which get theirs anew. */
        for (int u = in->start; u < in->op; u++, pos++) {
            w->code[pos] = w->units[u];
            w->orig_of[pos] = w->loc_of[pos] = u;
            w->shadow_of[u] = pos;
        }
        w->code[pos] = w->units[in->op];
    }
    else {
        for (int u = in->start; u < in->op; u++) {
            w->shadow_of[u] = pos;
        }
        if (in->target <= i) {
            write_jump(w, in);
        }
    }
    /* Inline caches start zeroed, as in freshly compiled code: one by one
       up to four (a call to memset cost more than these few stores). */
    _Py_CODEUNIT *caches = w->code + pos + 1;
    for (int k = 4; k < n - 1; k++) {
        caches[k] = 0;
    }
    switch (n - 1 < 4 ? n - 1 : 4) {
    case 4: caches[3] = 0; /* fall through */
    case 3: caches[2] = 0; /* fall through */
    case 2: caches[1] = 0; /* fall through */
    case 1: caches[0] = 0; /* fall through */
    default: break;
    }
    li_fill_units(w->orig_of + pos, n, in->op, 1);
    li_fill_units(w->loc_of + pos, n, in->op, 1);
    li_fill_units(w->shadow_of + in->op, n, pos, 1);
    if (in->opcode == FOR_ITER) {
        w->for_iters[w->n_for_iters++] = (struct li_for_iter){pos, in->depth};
    }
    return pos + n;
}

/* The walk: probes and instructions.  False where it does not apply. */
static bool
write_code(walk *w)
{
    int first = 0;     /* instructions from the first RESUME on can fire */
    while (first < w->n_instrs && w->ins[first].opcode != RESUME) {
        first++;
    }
    if (w->n_instrs > 0) {
        w->ins[0].depth = 0;
    }
    int current_line = -1, pos = 0;
    for (int i = 0; i < w->n_instrs; i++) {
        instr *in = &w->ins[i];
        if (pos > MAX_UNITS) {
            return false;
        }
        if (in->opcode == RESUME && in->oparg == 0 && w->resume < 0) {
            w->resume = i;
        }
        int line = line_of(w, in);
        if (i >= first && in->opcode != RESUME && in->opcode != END_ASYNC_FOR) {
            bool starts = line != current_line || (in->flags & JUMPED_TO);
            current_line = line;
            /* Nothing goes inside a call group (KW_NAMES, PRECALL, CALL). */
            bool in_group = i > 0 && ((in->opcode == PRECALL && in[-1].opcode == KW_NAMES) ||
                                      (in->opcode == CALL && in[-1].opcode == PRECALL));
            if (i > first && in[-1].opcode == RESUME && in[-1].depth >= 0 && in->depth >= 0 &&
                (w->want_start || w->placeholders))
            {
                after_probe(w, i, &pos);
            }
            if (w->want_line && starts && line >= 0 && in->depth >= 0 && !in_group) {
                line_probe(w, i, line, &pos);
            }
        }
        pos = copy_instruction(w, i, pos);
        if (in->depth < 0) {
            continue;
        }
        if (in->target >= 0 &&
            !reach(w, in->target, in->depth + PyCompile_OpcodeStackEffectWithJump(
                                      in->opcode, in->oparg, 1), i))
        {
            return false;
        }
        if ((in->flags & FALLS_THROUGH) && i + 1 < w->n_instrs) {
            /* The value a generator is first resumed with is pushed after
               RETURN_GENERATOR; the compiler counts it on the POP_TOP. */
            int effect = in->opcode == RETURN_GENERATOR
                         ? 1 : li_fall_through_effect(in->opcode, in->oparg);
            if (!reach(w, i + 1, in->depth + effect, i)) {
                return false;
            }
        }
    }
    w->n_units = pos;
    return true;
}

/* Registers a landing pad for instruction `i` at `phase` unless it has one.
 * False when there are too many for a shadow made here. */
static bool
add_pad(walk *w, int i, int phase)
{
    for (int k = 0; k < w->n_pads; k++) {
        if (w->pad_instr[k] == i && w->pads[k].to.phase == phase) {
            return true;
        }
    }
    if (w->n_pads == MAX_UNITS) {
        return false;
    }
    w->pad_instr[w->n_pads] = i;
    w->pads[w->n_pads++] = (li_pad){{w->ins[i].start, phase}, -1};
    return true;
}

/* Where a frame that lands at instruction `in` in `phase` goes on (the
 * general builder's pad_target()). */
static int
pad_target(const walk *w, const instr *in, int phase)
{
    int line = in->pos - ((in->flags & HAS_LINE) ? w->probe_size : 0);
    switch (phase) {
    case LI_LAND_BEFORE_AFTER:
        if (in->flags & HAS_AFTER) {
            return line - w->probe_size;
        }
        /* fall through */
    case LI_LAND_FALLTHROUGH:
        return (in->flags & HAS_SKIP) ? line - 1 : line;
    case LI_LAND_LINE:
        return line;
    default:
        return in->pos;
    }
}

/* Pads for RESUME 0 (entry trampolines), loop headers and the code's resume
 * points, in the general builder's order, after the code.  False where
 * the shadow gets too long. */
static bool
write_pads(walk *w, int pos)
{
    if (w->resume >= 0 && !add_pad(w, w->resume, LI_LAND_START)) {
        return false;
    }
    for (int i = 0; i < w->n_instrs; i++) {
        const instr *in = &w->ins[i];
        if (in->opcode == JUMP_BACKWARD && in->depth >= 0 && w->ins[in->target].depth >= 0) {
            const instr *t = &w->ins[in->target];
            int phase = line_of(w, in) != line_of(w, t) ? LI_LAND_LINE : LI_LAND_AFTER_LINE;
            if (!add_pad(w, in->target, phase)) {
                return false;
            }
        }
    }
    li_code_backend *cb = w->cs != NULL ? (li_code_backend *)w->cs->backend : NULL;
    for (int k = 0; cb != NULL && k < cb->n_resume_points; k++) {
        li_landing to = cb->resume_points[k];
        int i = to.unit >= 0 && to.unit < w->n_orig ? w->instr_starting[to.unit] : -1;
        if (i >= 0 && w->ins[i].depth >= 0 && !add_pad(w, i, to.phase)) {
            return false;
        }
    }
    for (int k = 0; k < w->n_pads; k++) {
        if (pos + 2 > MAX_UNITS) {
            return false;
        }
        const instr *in = &w->ins[w->pad_instr[k]];
        int phase = w->pads[k].to.phase;
        w->pads[k].unit = pos;
        w->code[pos] = li_make_unit(POP_TOP, 0);
        /* An exception in flight is re-raised where the instruction's would
           go, with its location for tracebacks. */
        w->code[pos + 1] = phase == LI_LAND_RAISED
                           ? li_make_unit(RERAISE, 0)
                           : li_make_unit(JUMP_BACKWARD, pos + 2 - pad_target(w, in, phase));
        w->orig_of[pos] = w->orig_of[pos + 1] = in->op;
        w->loc_of[pos] = w->loc_of[pos + 1] = phase == LI_LAND_RAISED ? in->op : -1;
        pos += 2;
    }
    w->n_units = pos;
    return true;
}

/* The walk's state.  One for all builds: the GIL is held throughout, and
 * nothing from the walk to the shadow's making runs Python code (no object
 * the collector tracks is allocated before shadow_consts(), which keeps
 * collections off), so no build can start inside another. */
static walk the_walk;

PyCodeObject *
li_build_line_shadow(PyCodeObject *original, li_code_state *cs, li_event_set kinds,
                     PyObject *consts, bool every_site, bool placeholders)
{
    if (PyBytes_GET_SIZE(li_own_exceptiontable(original)) != 0) {
        return NULL;
    }
    PyObject *bytes = PyCode_GetCode(original);
    if (bytes == NULL) {
        return NULL;
    }
    walk *w = &the_walk;
    w->n_orig = (int)(PyBytes_GET_SIZE(bytes) / sizeof(_Py_CODEUNIT));
    PyCodeObject *shadow = NULL;
    if (w->n_orig == 0 || w->n_orig > MAX_UNITS - LI_DIVERT_BASE_SIZE) {
        goto done;
    }
    w->original = original;
    w->cs = cs;
    w->units = (const _Py_CODEUNIT *)PyBytes_AS_STRING(bytes);
    w->every_site = every_site;
    w->want_line = (kinds & LI_EVENT_BIT(LI_LINE)) != 0;
    w->want_start = (kinds & LI_EVENT_BIT(LI_PY_START)) != 0;
    w->placeholders = placeholders;
    w->partial = false;
    w->entry_probe = w->resume = -1;
    w->entry_only_at_start = false;
    w->n_probes = w->n_sites = w->n_pads = w->n_for_iters = 0;
    w->probes_const = (int)PyTuple_GET_SIZE(consts);
    w->probe_size = LI_PROBE_BASE_SIZE + li_ext_needed(w->probes_const);
    w->stacksize = li_true_stacksize(original);
    /* The DIVERT stub's call takes two slots over the probe's depth. */
    w->probe_depth_bound = li_shadow_stack_bound(original, w->stacksize) - 2;
    if (li_decode_locations(original, w->locs, w->n_orig, &w->max_line) < 0) {
        goto done;
    }
    if (!decode(w) || !write_code(w)) {
        goto done;
    }
    int divert = w->n_units;
    int lander_const = w->probes_const + 1;
    int divert_end = divert + LI_DIVERT_BASE_SIZE + li_ext_needed(lander_const);
    if (divert_end > MAX_UNITS) {
        goto done;
    }
    li_emit_divert(w->code + divert, lander_const);
    li_fill_units(w->orig_of + divert, divert_end - divert, w->ins[w->n_instrs - 1].op, 0);
    li_fill_units(w->loc_of + divert, divert_end - divert, -1, 0);
    if (!write_pads(w, divert_end)) {
        goto done;
    }
    for (int i = 0; i < w->n_instrs; i++) {
        if (w->ins[i].target > i) {
            write_jump(w, &w->ins[i]);
        }
    }
    for (int k = 0; k < w->n_probes; k++) {
        li_probe *p = &w->probes[k];
        int end = p->unit + w->probe_size;
        w->code[end - 1] = li_make_unit(POP_JUMP_FORWARD_IF_TRUE,
                                        p->resume_unit >= 0 ? divert - end : 0);
    }
    li_code_backend *cb = cs != NULL ? (li_code_backend *)cs->backend : NULL;
    /* The DIVERT stub has no line, nor the probe after RESUME 0 in the line
       array (the general builder's lineless_ranges() says why). */
    int lineless[2][2] = {{divert, divert_end}};
    int n_lineless = 1;
    if (w->resume >= 0 && w->resume + 1 < w->n_instrs &&
        (w->ins[w->resume + 1].flags & HAS_AFTER))
    {
        const instr *first = &w->ins[w->resume + 1];
        int after = first->pos - ((first->flags & HAS_LINE) ? 2 : 1) * w->probe_size;
        lineless[1][0] = after;
        lineless[1][1] = after + w->probe_size;
        n_lineless = 2;
    }
    li_shadow_parts parts = {
        .original = original,
        .cs = cs,
        .kinds = kinds,
        .partial = w->partial,
        .n_units = w->n_units,
        .n_orig_units = w->n_orig,
        .code = w->code,
        .orig_of = w->orig_of,
        .shadow_of = w->shadow_of,
        .probes = w->probes,
        .n_probes = w->n_probes,
        .sites = w->sites,
        .n_sites = w->n_sites,
        .pads = w->pads,
        .n_pads = w->n_pads,
        .n_resume_points = cb != NULL ? cb->n_resume_points : 0,
        .for_iters = w->for_iters,
        .n_for_iters = w->n_for_iters,
        .probe_size = w->probe_size,
        .probes_const = w->probes_const,
        .entry_probe = w->entry_probe,
        .entry_only_at_start = w->entry_only_at_start,
        .linetable = li_encode_locations(w->locs, w->loc_of, w->n_units,
                                         original->co_firstlineno),
        .exctable = PyBytes_FromStringAndSize(NULL, 0),
        .locs = w->locs,
        .wide_lines = w->max_line > INT16_MAX,
        .lineless = (const int (*)[2])lineless,
        .n_lineless = n_lineless,
    };
    if (parts.linetable != NULL && parts.exctable != NULL) {
        shadow = li_assemble_shadow(&parts, consts);
    }
    Py_XDECREF(parts.linetable);
    Py_XDECREF(parts.exctable);
done:
    Py_DECREF(bytes);
    return shadow;
}

#ifdef LI_CROSSCHECK_LINE_SHADOWS
static bool
differs(PyCodeObject *fast, const char *what)
{
    PyErr_Format(PyExc_SystemError, "lowimpact: the LINE shadow of %R differs in %s",
                 li_shadow_probes(fast)->original, what);
    return true;
}

#define SAME_ARRAY(a, b, n) (memcmp((a), (b), sizeof(*(a)) * (size_t)(n)) == 0)

bool
li_line_shadow_differs(PyCodeObject *fast, PyCodeObject *general)
{
    const li_probes *f = li_shadow_probes(fast), *g = li_shadow_probes(general);
    if (Py_SIZE(fast) != Py_SIZE(general) ||
        !SAME_ARRAY(_PyCode_CODE(fast), _PyCode_CODE(general), Py_SIZE(fast)))
    {
        return differs(fast, "its units");
    }
    if (PyObject_RichCompareBool(fast->co_linetable, general->co_linetable, Py_NE) != 0) {
        return differs(fast, "its location table");
    }
    if (PyObject_RichCompareBool(fast->co_exceptiontable, general->co_exceptiontable,
                                 Py_NE) != 0)
    {
        return differs(fast, "its exception table");
    }
    if (fast->co_stacksize != general->co_stacksize) {
        return differs(fast, "its stack size");
    }
    for (int u = 0; u < Py_SIZE(fast); u++) {
        if (li_line_array_get(fast, u) != li_line_array_get(general, u) ||
            fast->_co_linearray_entry_size != general->_co_linearray_entry_size)
        {
            return differs(fast, "its line array");
        }
    }
    if (f->kinds != g->kinds || f->probes_const != g->probes_const ||
        f->n_units != g->n_units || f->n_orig_units != g->n_orig_units ||
        f->probe_size != g->probe_size || f->armed_unit != g->armed_unit ||
        f->entry_probe != g->entry_probe || f->entry_only_at_start != g->entry_only_at_start ||
        f->partial != g->partial ||
        f->n_resume_points != g->n_resume_points ||
        !SAME_ARRAY(f->built_tools, g->built_tools, LI_LOCAL_EVENT_COUNT))
    {
        return differs(fast, "its probes' fields");
    }
    size_t entry = f->wide_maps ? sizeof(int32_t) : sizeof(uint16_t);
    if (f->wide_maps != g->wide_maps ||
        memcmp(f->orig_of, g->orig_of, entry * (size_t)f->n_units) != 0 ||
        memcmp(f->probe_at, g->probe_at, entry * (size_t)f->n_units) != 0 ||
        memcmp(f->shadow_of, g->shadow_of, entry * (size_t)f->n_orig_units) != 0)
    {
        return differs(fast, "its unit maps");
    }
    if (f->n_probes != g->n_probes || f->n_sites != g->n_sites) {
        return differs(fast, "its number of probes");
    }
    for (int k = 0; k < f->n_probes; k++) {
        const li_probe *p = &f->probes[k], *q = &g->probes[k];
        if (p->unit != q->unit || p->first_site != q->first_site ||
            p->resume_unit != q->resume_unit || p->depth != q->depth ||
            p->resume_phase != q->resume_phase || p->n_sites != q->n_sites ||
            p->kind != q->kind || p->size != q->size || p->simple != q->simple ||
            p->lead_simple != q->lead_simple || p->after_load_fast != q->after_load_fast)
        {
            return differs(fast, "a probe");
        }
    }
    for (int k = 0; k < f->n_sites; k++) {
        const li_site *s = &f->sites[k], *t = &g->sites[k];
        if (s->orig != t->orig || s->aux != t->aux || s->event != t->event) {
            return differs(fast, "a site");
        }
    }
    if (f->n_pads != g->n_pads) {
        return differs(fast, "its number of pads");
    }
    for (int k = 0; k < f->n_pads; k++) {
        if (!li_same_landing(f->pads[k].to, g->pads[k].to) ||
            f->pads[k].unit != g->pads[k].unit)
        {
            return differs(fast, "a pad");
        }
    }
    if (f->n_for_iters != g->n_for_iters) {
        return differs(fast, "its number of loops");
    }
    for (int k = 0; k < f->n_for_iters; k++) {
        if (f->for_iters[k].unit != g->for_iters[k].unit ||
            f->for_iters[k].depth != g->for_iters[k].depth)
        {
            return differs(fast, "a loop");
        }
    }
    return false;
}
#endif
