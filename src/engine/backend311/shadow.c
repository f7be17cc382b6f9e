/* Building a shadow: an instrumented copy of a 3.11 code object.
 *
 * Before each original instruction B the shadow may hold, in this order:
 *   AFTER   probe for events of the instruction before B (PY_START after
 *           RESUME 0, PY_RESUME after other RESUMEs); only on fall-through
 *   SKIP    JUMP_FORWARD over B's LINE probe, when the instruction before B
 *           falls through into B on the same line (no LINE event then)
 *   LINE    probe firing LINE for B
 *   INSTR   probe firing B's own events (PY_RETURN, PY_YIELD)
 * Jumps to B land on LINE when they come from another line, past it when
 * they come from B's line; exception handlers land on LINE, whose probe then
 * decides at run time.  Every probe unit takes the location and the
 * exception handler of the instruction its events belong to, so tracebacks
 * and f_lineno are those of that instruction.
 */

#include "b311.h"

#define PROBE_BASE_SIZE 4    /* NOP, LOAD_CONST, UNARY_NOT, POP_TOP */

typedef struct {
    int after, line, instr;  /* probe index or -1 */
    bool skip;
    int ext;                 /* EXTENDED_ARG prefixes emitted for the instruction */
    int pos_after, pos_skip, pos_line, pos_instr, pos_start, pos_op, pos_end;
} plan;

typedef struct {
    li_analysis an;
    li_code_state *cs;
    bool partial;             /* a probe was left out: every tool disabled it */
    int entry_probe;
    int resume;               /* index of RESUME 0, or -1 */
    int pad_pos, pad_ext;     /* landing pad, see below; -1 if none */
    plan *plans;
    li_probe *probes;
    int n_probes;
    int probe_size;
    int probes_const;         /* index of the li_probes object in co_consts */
    int n_units;
} builder;

static int
ext_needed(int oparg)
{
    return oparg > 0xFFFFFF ? 3 : oparg > 0xFFFF ? 2 : oparg > 0xFF ? 1 : 0;
}

/* Adds a probe for those of `events` that some tool still wants at
 * `owner`; -1 if none does. */
static int
add_probe(builder *b, int kind, const li_instr *owner, int depth, uint32_t events)
{
    uint32_t wanted = 0;
    for (int e = 0; e < LI_EVENT_COUNT; e++) {
        if ((events & LI_EVENT_BIT(e)) && li_tools_at(b->cs, e, owner->op)) {
            wanted |= LI_EVENT_BIT(e);
        }
    }
    if (wanted != events) {
        b->partial = true;
    }
    if (wanted == 0) {
        return -1;
    }
    events = wanted;
    li_probe *p = &b->probes[b->n_probes];
    p->kind = (uint8_t)kind;
    p->orig = owner->op;
    p->line = owner->line;
    p->depth = (int16_t)depth;
    p->events = events;
    p->size = (uint8_t)b->probe_size;
    return b->n_probes++;
}

/* The events B itself fires (before it runs), restricted to `kinds`. */
static uint32_t
own_events(const li_instr *in, li_event_set kinds)
{
    uint32_t events = 0;
    if (in->opcode == RETURN_VALUE) {
        events |= LI_EVENT_BIT(LI_PY_RETURN);
    }
    else if (in->opcode == YIELD_VALUE) {
        events |= LI_EVENT_BIT(LI_PY_YIELD);
    }
    return events & kinds;
}

/* Events fired after `prev` completes and falls through. */
static uint32_t
after_events(const li_instr *prev, li_event_set kinds)
{
    if (prev->opcode != RESUME) {
        return 0;
    }
    int event = prev->oparg == 0 ? LI_PY_START : LI_PY_RESUME;
    return LI_EVENT_BIT(event) & kinds;
}

static int
plan_probes(builder *b, li_event_set kinds)
{
    li_analysis *an = &b->an;
    b->plans = PyMem_Calloc((size_t)an->n_instrs, sizeof(plan));
    /* At most three probes per instruction. */
    b->probes = PyMem_Calloc((size_t)an->n_instrs * 3 + 1, sizeof(li_probe));
    if (b->plans == NULL || b->probes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < an->n_instrs; i++) {
        const li_instr *in = &an->instrs[i];
        plan *pl = &b->plans[i];
        pl->after = pl->line = pl->instr = -1;
        pl->ext = in->op - in->start;
        if (li_is_jump(in->opcode)) {
            pl->ext = 0;        /* recomputed by layout() */
        }
        /* Nothing goes before RESUME: generators find out whether they are
           suspended in a `yield from` by looking at the unit after the
           YIELD_VALUE they stopped at. */
        if (!(in->flags & LI_I_TRACEABLE) || in->depth < 0 || in->opcode == RESUME) {
            continue;
        }
        const li_instr *prev = i > 0 ? &an->instrs[i - 1] : NULL;
        bool entered_from_prev = prev != NULL && prev->depth >= 0 &&
                                 (prev->flags & LI_I_FALLS_THROUGH);
        int first_probe = b->n_probes;
        if (entered_from_prev && (prev->flags & LI_I_TRACEABLE)) {
            uint32_t events = after_events(prev, kinds);
            if (events) {
                pl->after = add_probe(b, LI_PROBE_AFTER, prev, in->depth, events);
            }
        }
        if ((in->flags & LI_I_LINE_START) && (kinds & LI_EVENT_BIT(LI_LINE))) {
            int kind = (in->flags & LI_I_HANDLER_TARGET) ? LI_PROBE_LINE_HANDLER
                                                         : LI_PROBE_LINE;
            pl->line = add_probe(b, kind, in, in->depth, LI_EVENT_BIT(LI_LINE));
            /* RESUME never hides the next line: CPython 3.12's rule. */
            pl->skip = pl->line >= 0 && entered_from_prev && prev->line == in->line &&
                       prev->opcode != RESUME;
        }
        uint32_t events = own_events(in, kinds);
        if (events) {
            pl->instr = add_probe(b, LI_PROBE_INSTR, in, in->depth, events);
        }
        if (prev != NULL && prev->opcode == RESUME && prev->oparg == 0) {
            b->resume = i - 1;
            if (b->n_probes > first_probe) {
                b->entry_probe = first_probe;
            }
        }
    }
    return 0;
}

/* Where a jump from `source` to instruction `t` lands in the shadow. */
static int
jump_landing(const builder *b, const li_instr *source, int t)
{
    const plan *pl = &b->plans[t];
    if (pl->line >= 0 && source->line != b->an.instrs[t].line) {
        return pl->pos_line;
    }
    return pl->pos_instr >= 0 ? pl->pos_instr : pl->pos_start;
}

static int
handler_landing(const builder *b, int t)
{
    const plan *pl = &b->plans[t];
    if (pl->line >= 0) {
        return pl->pos_line;
    }
    return pl->pos_instr >= 0 ? pl->pos_instr : pl->pos_start;
}

static int
jump_oparg(const builder *b, const li_instr *in, const plan *pl)
{
    int landing = jump_landing(b, in, in->target);
    return li_is_jump_backward(in->opcode) ? pl->pos_end - landing
                                           : landing - pl->pos_end;
}

/* Assigns shadow positions; repeats while jumps need more EXTENDED_ARGs. */
static int
layout(builder *b)
{
    li_analysis *an = &b->an;
    for (int rounds = 0; rounds < 8; rounds++) {
        int pos = 0;
        for (int i = 0; i < an->n_instrs; i++) {
            const li_instr *in = &an->instrs[i];
            plan *pl = &b->plans[i];
            pl->pos_after = pl->pos_skip = pl->pos_line = pl->pos_instr = -1;
            if (pl->after >= 0) {
                pl->pos_after = pos;
                pos += b->probe_size;
            }
            if (pl->skip) {
                pl->pos_skip = pos;
                pos += 1;
            }
            if (pl->line >= 0) {
                pl->pos_line = pos;
                pos += b->probe_size;
            }
            if (pl->instr >= 0) {
                pl->pos_instr = pos;
                pos += b->probe_size;
            }
            pl->pos_start = pos;
            pl->pos_op = pos + pl->ext;
            pl->pos_end = pl->pos_op + (in->end - in->op);
            pos = pl->pos_end;
        }
        b->pad_pos = -1;
        if (b->resume >= 0 && b->resume + 1 < an->n_instrs) {
            b->pad_pos = pos;
            b->pad_ext = 0;
            while (ext_needed(pos + 2 + b->pad_ext - b->plans[b->resume].pos_start) >
                   b->pad_ext)
            {
                b->pad_ext++;
            }
            pos += 2 + b->pad_ext;
        }
        b->n_units = pos;
        bool grew = false;
        for (int i = 0; i < an->n_instrs; i++) {
            const li_instr *in = &an->instrs[i];
            plan *pl = &b->plans[i];
            if (in->target < 0) {
                continue;
            }
            int oparg = jump_oparg(b, in, pl);
            if (oparg < 0) {
                PyErr_Format(PyExc_SystemError,
                             "lowimpact: jump changed direction in %R", an->code);
                return -1;
            }
            if (ext_needed(oparg) > pl->ext) {
                pl->ext = ext_needed(oparg);
                grew = true;
            }
        }
        if (!grew) {
            return 0;
        }
    }
    PyErr_Format(PyExc_SystemError, "lowimpact: jump layout of %R did not settle",
                 an->code);
    return -1;
}

static inline _Py_CODEUNIT
make_unit(int opcode, int oparg)
{
    _Py_CODEUNIT unit;
    uint8_t *bytes = (uint8_t *)&unit;
    bytes[0] = (uint8_t)opcode;
    bytes[1] = (uint8_t)oparg;
    return unit;
}

/* Writes EXTENDED_ARG prefixes for the high bytes of oparg, then the opcode. */
static _Py_CODEUNIT *
emit_with_prefixes(_Py_CODEUNIT *out, int ext, int opcode, int oparg)
{
    for (int k = ext; k > 0; k--) {
        *out++ = make_unit(EXTENDED_ARG, (oparg >> (8 * k)) & 0xFF);
    }
    *out++ = make_unit(opcode, oparg & 0xFF);
    return out;
}

static void
emit_probe(const builder *b, _Py_CODEUNIT *out, int index)
{
    _Py_CODEUNIT *p = out;
    /* Enabled state; li_probes_sync() sets the real one before first use. */
    *p++ = make_unit(NOP, (index >> 16) & 0xFF);
    p = emit_with_prefixes(p, b->probe_size - PROBE_BASE_SIZE, LOAD_CONST, b->probes_const);
    *p++ = make_unit(UNARY_NOT, index & 0xFF);
    *p++ = make_unit(POP_TOP, (index >> 8) & 0xFF);
}

typedef struct {
    _Py_CODEUNIT *code;
    int32_t *orig_of;
    li_loc *locs;
} shadow_image;

static void
fill_owned(const builder *b, shadow_image *img, int pos, int size, int owner_unit)
{
    for (int k = 0; k < size; k++) {
        img->orig_of[pos + k] = owner_unit;
        img->locs[pos + k] = b->an.locs[owner_unit];
    }
}

static void
emit(builder *b, shadow_image *img)
{
    li_analysis *an = &b->an;
    for (int i = 0; i < an->n_instrs; i++) {
        const li_instr *in = &an->instrs[i];
        const plan *pl = &b->plans[i];
        if (pl->after >= 0) {
            emit_probe(b, img->code + pl->pos_after, pl->after);
            fill_owned(b, img, pl->pos_after, b->probe_size, an->instrs[i - 1].op);
        }
        if (pl->skip) {
            img->code[pl->pos_skip] = make_unit(JUMP_FORWARD, b->probe_size);
            fill_owned(b, img, pl->pos_skip, 1, an->instrs[i - 1].op);
        }
        if (pl->line >= 0) {
            emit_probe(b, img->code + pl->pos_line, pl->line);
            fill_owned(b, img, pl->pos_line, b->probe_size, in->op);
        }
        if (pl->instr >= 0) {
            emit_probe(b, img->code + pl->pos_instr, pl->instr);
            fill_owned(b, img, pl->pos_instr, b->probe_size, in->op);
        }
        if (in->target >= 0) {
            /* Jumps get their opargs and EXTENDED_ARG prefixes recomputed; the
               prefixes stand for the opcode unit. */
            emit_with_prefixes(img->code + pl->pos_start, pl->ext, in->opcode,
                               jump_oparg(b, in, pl));
            fill_owned(b, img, pl->pos_start, pl->ext, in->op);
        }
        else {
            memcpy(img->code + pl->pos_start, an->units + in->start,
                   sizeof(_Py_CODEUNIT) * (size_t)(in->op + 1 - in->start));
            for (int k = 0; k < in->op - in->start; k++) {
                img->orig_of[pl->pos_start + k] = in->start + k;
                img->locs[pl->pos_start + k] = an->locs[in->start + k];
            }
        }
        /* Inline caches start zeroed, as in freshly compiled code. */
        for (int k = 0; k < in->end - in->op; k++) {
            img->orig_of[pl->pos_op + k] = in->op + k;
            img->locs[pl->pos_op + k] = an->locs[in->op + k];
        }
        for (int p = 0; p < 3; p++) {
            int index = p == 0 ? pl->after : p == 1 ? pl->line : pl->instr;
            int pos = p == 0 ? pl->pos_after : p == 1 ? pl->pos_line : pl->pos_instr;
            if (index >= 0) {
                b->probes[index].unit = pos;
            }
        }
    }
}

/* The landing pad: a frame moved onto the shadow by an entry trampoline (see
 * trampoline.c) resumes here with the trampoline's call result on its stack,
 * drops it, and goes to RESUME 0, which the trampoline replaced. */
static void
emit_landing_pad(const builder *b, shadow_image *img)
{
    if (b->pad_pos < 0) {
        return;
    }
    _Py_CODEUNIT *out = img->code + b->pad_pos;
    *out++ = make_unit(POP_TOP, 0);
    int oparg = b->pad_pos + 2 + b->pad_ext - b->plans[b->resume].pos_start;
    emit_with_prefixes(out, b->pad_ext, JUMP_BACKWARD, oparg);
    fill_owned(b, img, b->pad_pos, 2 + b->pad_ext, b->an.instrs[b->resume].op);
}

/* The per-unit line array that tracing and PyCode_Addr2Line read (CPython
 * fills it lazily from the location table).  It differs from the location
 * table in one place: the probe right after RESUME 0 (PY_START) belongs to
 * RESUME, but a sys.settrace function must see the same 'line' events as in
 * the original, where the first is the one of the instruction after RESUME;
 * so in this array the probe has that instruction's line.  Python code sees
 * RESUME's line (transparency.c maps lines through the original). */
static int
set_line_array(const builder *b, const shadow_image *img, PyCodeObject *shadow)
{
    bool wide = false;
    for (int u = 0; u < b->n_units; u++) {
        wide |= img->locs[u].line > INT16_MAX;
    }
    size_t size = wide ? sizeof(int32_t) : sizeof(int16_t);
    void *lines = PyMem_Malloc(size * (size_t)b->n_units);
    if (lines == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int moved_from = -1, moved_to = -1, moved_line = -1;
    if (b->resume >= 0 && b->resume + 1 < b->an.n_instrs &&
        b->plans[b->resume + 1].after >= 0)
    {
        moved_from = b->plans[b->resume + 1].pos_after;
        moved_to = moved_from + b->probe_size;
        moved_line = b->an.instrs[b->resume + 1].line;
    }
    for (int u = 0; u < b->n_units; u++) {
        int line = (u >= moved_from && u < moved_to) ? moved_line : img->locs[u].line;
        if (wide) {
            ((int32_t *)lines)[u] = line;
        }
        else {
            ((int16_t *)lines)[u] = (int16_t)line;
        }
    }
    assert(shadow->_co_linearray == NULL);
    shadow->_co_linearray = lines;
    shadow->_co_linearray_entry_size = (short)size;
    return 0;
}

/* The exception table of the shadow: every unit is covered by the handler
 * that covers the original unit it stands for. */
static PyObject *
shadow_handlers(const builder *b, const int32_t *orig_of)
{
    const li_analysis *an = &b->an;
    int *handler_of = PyMem_Malloc(sizeof(int) * (size_t)(an->n_units + 1));
    li_handler *out = PyMem_Calloc((size_t)b->n_units + 1, sizeof(li_handler));
    PyObject *table = NULL;
    if (handler_of == NULL || out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int u = 0; u < an->n_units; u++) {
        handler_of[u] = -1;
    }
    for (int h = 0; h < an->n_handlers; h++) {
        for (int u = an->handlers[h].start; u < an->handlers[h].end; u++) {
            handler_of[u] = h;
        }
    }
    int n = 0;
    for (int su = 0; su < b->n_units;) {
        int h = handler_of[orig_of[su]];
        int run = su + 1;
        while (run < b->n_units && handler_of[orig_of[run]] == h) {
            run++;
        }
        if (h >= 0) {
            const li_handler *orig = &an->handlers[h];
            out[n++] = (li_handler){su, run,
                                    handler_landing(b, an->instr_at[orig->target]),
                                    orig->depth, orig->lasti};
        }
        su = run;
    }
    table = li_encode_handlers(out, n);
done:
    PyMem_Free(handler_of);
    PyMem_Free(out);
    return table;
}

static PyObject *
shadow_consts(PyObject *consts, li_probes *lp)
{
    Py_ssize_t n = PyTuple_GET_SIZE(consts);
    PyObject *result = PyTuple_New(n + 1);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(result, i, Py_NewRef(PyTuple_GET_ITEM(consts, i)));
    }
    PyTuple_SET_ITEM(result, n, Py_NewRef((PyObject *)lp));
    return result;
}

PyCodeObject *
li_build_shadow(PyCodeObject *original, li_code_state *cs, li_event_set kinds,
                PyObject *consts)
{
    builder b = {0};
    shadow_image img = {0};
    li_probes *lp = NULL;
    PyObject *code_bytes = NULL, *linetable = NULL, *exctable = NULL;
    PyObject *new_consts = NULL;
    PyCodeObject *shadow = NULL;

    assert(PyTuple_GET_SIZE(consts) == PyTuple_GET_SIZE(original->co_consts));
    if (li_analyse(original, &b.an) < 0) {
        return NULL;
    }
    b.cs = cs;
    b.entry_probe = -1;
    b.resume = -1;
    b.probes_const = (int)PyTuple_GET_SIZE(consts);
    b.probe_size = PROBE_BASE_SIZE + ext_needed(b.probes_const);
    if (plan_probes(&b, kinds) < 0 || layout(&b) < 0) {
        goto done;
    }
    img.code = PyMem_Calloc((size_t)b.n_units, sizeof(_Py_CODEUNIT));
    img.orig_of = PyMem_Calloc((size_t)b.n_units + 1, sizeof(int32_t));
    img.locs = PyMem_Calloc((size_t)b.n_units + 1, sizeof(li_loc));
    if (img.code == NULL || img.orig_of == NULL || img.locs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    emit(&b, &img);
    emit_landing_pad(&b, &img);

    lp = PyObject_New(li_probes, &li_probes_type);
    if (lp == NULL) {
        goto done;
    }
    memset((char *)lp + sizeof(PyObject), 0, sizeof(li_probes) - sizeof(PyObject));
    lp->original = (PyCodeObject *)Py_NewRef(original);
    lp->cs = cs;
    lp->kinds = kinds;
    lp->probes_const = b.probes_const;
    lp->n_units = b.n_units;
    lp->n_orig_units = b.an.n_units;
    lp->orig_of = img.orig_of;
    img.orig_of = NULL;
    lp->n_probes = b.n_probes;
    lp->probes = b.probes;
    b.probes = NULL;
    lp->entry_probe = b.entry_probe;
    lp->landing_unit = b.pad_pos;
    lp->partial = b.partial;
    lp->built_epoch = li_reg.disable_epoch;
    for (int e = 0; e < LI_LOCAL_EVENT_COUNT; e++) {
        lp->built_tools[e] = li_reg.global_tools[e] | cs->local_tools[e];
    }
    lp->shadow_of = PyMem_Calloc((size_t)b.an.n_units + 1, sizeof(int32_t));
    if (lp->shadow_of == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int i = 0; i < b.an.n_instrs; i++) {
        const li_instr *in = &b.an.instrs[i];
        const plan *pl = &b.plans[i];
        for (int u = in->start; u < in->end; u++) {
            int su = pl->pos_op + (u - in->op);
            lp->shadow_of[u] = su < pl->pos_start ? pl->pos_start : su;
        }
    }

    int stacksize = original->co_stacksize;
    for (int p = 0; p < lp->n_probes; p++) {
        if (lp->probes[p].depth + 1 > stacksize) {
            stacksize = lp->probes[p].depth + 1;
        }
    }
    code_bytes = PyBytes_FromStringAndSize((const char *)img.code,
                                           (Py_ssize_t)b.n_units * 2);
    linetable = li_encode_locations(img.locs, b.n_units, original->co_firstlineno);
    exctable = shadow_handlers(&b, lp->orig_of);
    new_consts = shadow_consts(consts, lp);
    if (code_bytes == NULL || linetable == NULL || exctable == NULL ||
        new_consts == NULL)
    {
        goto done;
    }
    struct _PyCodeConstructor con = {
        .filename = original->co_filename,
        .name = original->co_name,
        .qualname = original->co_qualname,
        .flags = original->co_flags,
        .code = code_bytes,
        .firstlineno = original->co_firstlineno,
        .linetable = linetable,
        .consts = new_consts,
        .names = original->co_names,
        .localsplusnames = original->co_localsplusnames,
        .localspluskinds = original->co_localspluskinds,
        .argcount = original->co_argcount,
        .posonlyargcount = original->co_posonlyargcount,
        .kwonlyargcount = original->co_kwonlyargcount,
        .stacksize = stacksize,
        .exceptiontable = exctable,
    };
    shadow = _PyCode_New(&con);
    if (shadow == NULL) {
        goto done;
    }
    if (set_line_array(&b, &img, shadow) < 0) {
        Py_CLEAR(shadow);
        goto done;
    }
    if (li_probes_attach(lp, shadow) < 0) {
        Py_CLEAR(shadow);
        goto done;
    }
done:
    li_analysis_clear(&b.an);
    PyMem_Free(b.plans);
    PyMem_Free(b.probes);
    PyMem_Free(img.code);
    PyMem_Free(img.orig_of);
    PyMem_Free(img.locs);
    Py_XDECREF(lp);
    Py_XDECREF(code_bytes);
    Py_XDECREF(linetable);
    Py_XDECREF(exctable);
    Py_XDECREF(new_consts);
    return shadow;
}
