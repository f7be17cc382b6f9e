/* Shadows: copies of a code object with probes inserted (see b310.h).
 *
 * Offsets move: jumps (in code units on 3.10, absolute or relative, block
 * handlers included) are re-encoded with as many EXTENDED_ARG units as they
 * need, the line table is rebuilt with each probe on the line of the
 * instruction it precedes, and the map (li_shadow) translates units both
 * ways for the frames that move between the two (hook.c).
 */

#include "b310.h"

typedef struct {
    int start, op, end;     /* units: first (prefixes included), opcode, one past */
    int opcode, oparg;
    int target;             /* index of the instruction jumped to, or -1 */
    int line;               /* -1: none */
    bool jump_target;
    /* A jump from another line (or a block's unwinding) lands on it: it
       starts a line even where what falls into it has its line. */
    bool line_entry;
    bool handler;           /* a block's handler: the caught marker precedes it */
} instr;

static bool
is_relative_jump(int opcode)
{
    return opcode == JUMP_FORWARD || opcode == FOR_ITER || opcode == SETUP_FINALLY ||
           opcode == SETUP_WITH || opcode == SETUP_ASYNC_WITH;
}

static bool
is_absolute_jump(int opcode)
{
    return opcode == JUMP_ABSOLUTE || opcode == POP_JUMP_IF_FALSE ||
           opcode == POP_JUMP_IF_TRUE || opcode == JUMP_IF_FALSE_OR_POP ||
           opcode == JUMP_IF_TRUE_OR_POP || opcode == JUMP_IF_NOT_EXC_MATCH;
}

/* Units an instruction with argument `arg` takes. */
static int
units_for(unsigned int arg)
{
    return arg > 0xFFFFFF ? 4 : arg > 0xFFFF ? 3 : arg > 0xFF ? 2 : 1;
}

int
li_append_pair(unsigned char **buf, Py_ssize_t *len, Py_ssize_t *cap, int bytes, int delta)
{
    if (*len + 2 > *cap) {
        Py_ssize_t grown = *cap * 2 + 16;
        unsigned char *bigger = PyMem_Realloc(*buf, (size_t)grown);
        if (bigger == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *buf = bigger;
        *cap = grown;
    }
    (*buf)[(*len)++] = (unsigned char)bytes;
    (*buf)[(*len)++] = (unsigned char)(signed char)delta;
    return 0;
}

/* The BRANCH probes of a branch (branch.c): one after it, for the way it
 * falls through, and one in its stub, which ends with a jump to where the
 * branch jumps. */
typedef struct {
    int unit;               /* where its stub starts; -1: none */
    int after_size;         /* units of the probe after the branch */
    int probe_size;         /* units of the stub's probe */
    int jump_size;          /* units of the stub's jump */
} branch_plan;

/* The probes an instruction gets, in delivery order. */
typedef struct {
    uint8_t events[LI_MAX_PROBES];
    int32_t origs[LI_MAX_PROBES];   /* the unit each delivers for */
    uint8_t n;
    /* LINE is not due when the previous instruction, falling through, is
       on the same line (3.12 compares with the instruction executed
       before): a JUMP_FORWARD over the LINE probe comes first. */
    bool skip_line;
    int start_size, line_size;      /* units of the PY_START and LINE probes */
    /* The probe between them (exc.c): run by falling through and by
       entering a handler, jumped over by other jumps. */
    int8_t pre;                     /* its index in events, or -1 */
    int pre_size;
    int call;                       /* the instruction its CALL probe reports */
    branch_plan branch;
} probe_list;

static bool
is_call(int opcode)
{
    return opcode == CALL_FUNCTION || opcode == CALL_FUNCTION_KW ||
           opcode == CALL_FUNCTION_EX || opcode == CALL_METHOD;
}

/* The depth of the value stack before each instruction (-1: unreachable),
 * from the stack effects of the original bytecode along every path, as the
 * compiler computes co_stacksize: the CALL probe reads the callable and its
 * arguments at that depth.  0, or -1 with an exception set. */
static int
stack_depths(const instr *ins, int n_instrs, int *depth)
{
    int *work = PyMem_Malloc(sizeof(int) * ((size_t)n_instrs + 1));
    if (work == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < n_instrs; i++) {
        depth[i] = -1;
    }
    int n_work = 0;
    if (n_instrs > 0) {
        /* A generator starts with the value sent, which GEN_START pops. */
        depth[0] = li_is_gen_start(ins[0].opcode) ? 1 : 0;
        work[n_work++] = 0;
    }
    while (n_work > 0) {
        int i = work[--n_work];
        const instr *in = &ins[i];
        int arg = in->opcode >= HAVE_ARGUMENT ? in->oparg : 0;
        int next[2] = {-1, -1}, effect[2] = {0, 0};
        if (li_falls_through(in->opcode) && i + 1 < n_instrs) {
            next[0] = i + 1;
            effect[0] = PyCompile_OpcodeStackEffectWithJump(in->opcode, arg, 0);
        }
        if (in->target >= 0) {
            next[1] = in->target;
            effect[1] = PyCompile_OpcodeStackEffectWithJump(in->opcode, arg, 1);
        }
        for (int k = 0; k < 2; k++) {
            if (next[k] < 0 || depth[next[k]] >= 0) {
                continue;
            }
            int d = effect[k] == PY_INVALID_STACK_EFFECT ? -1 : depth[i] + effect[k];
            if (d < 0) {
                /* Not bytecode the compiler made: no CALL probes. */
                for (int j = 0; j < n_instrs; j++) {
                    depth[j] = -1;
                }
                n_work = 0;
                break;
            }
            depth[next[k]] = d;
            work[n_work++] = next[k];
        }
    }
    PyMem_Free(work);
    return 0;
}

/* The instruction where the CALL probe of call instruction `i` goes: its
 * own, but for the call of __aexit__ that ends an `async with`, whose
 * GET_AWAITABLE words its error after the DUP_TOP and the call it sees two
 * and one units before it; there the probe goes before the DUP_TOPs, where
 * the callable and its first argument are already on the stack. */
static int
call_probe_place(const instr *ins, int n_instrs, int i)
{
    if (i >= 2 && i + 1 < n_instrs && ins[i].opcode == CALL_FUNCTION &&
        ins[i + 1].opcode == GET_AWAITABLE && ins[i - 1].opcode == DUP_TOP &&
        ins[i - 2].opcode == DUP_TOP && !ins[i - 1].jump_target && !ins[i].jump_target)
    {
        return i - 2;
    }
    return i;
}

/* Where a jump of instruction `src` to instruction `t` lands in the shadow:
 * never on PY_START, and past LINE when it stays on the same line (a block
 * handler, whose source is not an instruction, gets LINE). */
static int
entry_of(const instr *ins, const probe_list *probes, const int *group, int src, int t)
{
    const probe_list *pl = &probes[t];
    int pos = group[t] + pl->start_size;
    bool from_setup = li_sets_up_handler(ins[src].opcode);
    if (!from_setup) {
        pos += pl->pre_size;
    }
    if (pl->line_size > 0 && ins[src].line == ins[t].line && !from_setup) {
        pos += (pl->skip_line ? 1 : 0) + pl->line_size;
    }
    else if (pl->skip_line) {
        pos += 1;
    }
    return pos;
}

/* The argument of jump `i` of the shadow to shadow unit `dest`. */
static int
jump_arg(const instr *ins, int i, int dest, const int *starts, const int *sizes)
{
    return (int)li_jump_arg(is_relative_jump(ins[i].opcode) ? dest - (starts[i] + sizes[i]) : dest);
}

/* Probe shapes: `LOAD_CONST site; UNARY_INVERT; POP_TOP`, the same with
 * the value on top first (DUP_TOP ... CONTAINS_OP), or, at FOR_ITER,
 * `LOAD_CONST site; ROT_TWO; BINARY_SUBSCR`, which replaces the iterator by
 * site[iterator] (exc.c). */
static bool
has_value(int event, int opcode)
{
    return event == LI_PY_RETURN || event == LI_PY_YIELD ||
           (event == LI_STOP_ITERATION && opcode != FOR_ITER);
}

/* Whether the probe of an event with a value, before an instruction where
 * the value stack is `depth` deep (-1: not known), passes a copy of the
 * value on top (DUP_TOP ... CONTAINS_OP).  Where the depth is known the
 * plain shape does, its site reading the value from the frame's stack
 * (probe.c): one slot of stack fewer, which frames made for the original
 * would otherwise borrow (a `return self.x` needs it), and two
 * instructions fewer per event. */
static bool
copies_value(int event, int opcode, int depth)
{
    return has_value(event, opcode) && depth < 1;
}

/* How deep a probe of `event` before `opcode`, at `depth`, takes the value
 * stack above where it sits. */
static int
probe_push(int event, int opcode, int depth)
{
    return copies_value(event, opcode, depth) ? 2 : 1;
}

static int
probe_size(int event, int opcode, int depth, int const_index)
{
    return (copies_value(event, opcode, depth) ? 1 : 0) + units_for((unsigned int)const_index) + 2;
}

static void
emit(uint8_t *out, int *pos, int opcode, unsigned int arg, int size)
{
    for (int k = size - 1; k >= 1; k--) {
        out[2 * *pos] = EXTENDED_ARG;
        out[2 * *pos + 1] = (uint8_t)(arg >> (8 * k));
        (*pos)++;
    }
    out[2 * *pos] = (uint8_t)opcode;
    out[2 * *pos + 1] = (uint8_t)arg;
    (*pos)++;
}

/* Shadow units [begin, end) belong to instruction `in`. */
static void
map_units(li_shadow *map, int *shadow_lines, const instr *in, int begin, int end)
{
    for (int u = begin; u < end; u++) {
        map->orig_start[u] = in->start;
        map->orig_op[u] = in->op;
        shadow_lines[u] = in->line;
    }
}

/* Makes the site of `event` for original unit `orig` of instruction `in`,
 * constant `index` of `consts`, with destination `dest` (a byte offset, or
 * -1), and emits its probe at *pos, before instruction `at` (whose units
 * its units count as; `in` itself, except for a CALL probe moved ahead).  A borrowed reference (the constants
 * hold it), or NULL with an exception set. */
static li_site *
add_site(li_shadow *map, PyObject *consts, int index, const instr *in, const instr *at,
         int event, int orig, int depth, int dest, uint8_t *out, int *pos, int *shadow_lines)
{
    li_site *s = PyObject_New(li_site, &li_site_type);
    if (s == NULL) {
        return NULL;
    }
    s->shadow = map;
    s->orig = orig;
    s->size = (uint8_t)probe_size(event, at->opcode, depth, index);
    s->event = (uint8_t)event;
    s->armed = true;
    s->holds_handler_line = false;
    s->fast_epoch = s->checked_epoch = 0;
    s->call_op = (uint8_t)in->opcode;
    s->call_arg = in->oparg;
    s->depth = depth;
    s->twin = NULL;
    s->jump.unit = -1;
    s->dest = NULL;
    long arg = 2L * orig;
    if (event == LI_LINE) {
        arg = in->line;
    }
    else if (event == LI_STOP_ITERATION && at->opcode != FOR_ITER) {
        arg = 2L * at[-1].op;       /* at the YIELD_FROM */
    }
    else if (event == LI_CALL || event == LI_RERAISE || event == LI_STOP_ITERATION) {
        arg = 2L * in->op;
    }
    s->arg = PyLong_FromLong(arg);
    PyTuple_SET_ITEM(consts, index, (PyObject *)s);
    map->sites[map->n_sites++] = s;
    if (s->arg == NULL || (dest >= 0 && (s->dest = PyLong_FromLong(dest)) == NULL)) {
        return NULL;
    }
    int begin = *pos;
    s->unit = begin;
    bool value = copies_value(event, at->opcode, depth);
    s->value_on_stack = has_value(event, at->opcode) && !value;
    bool wrap = event == LI_STOP_ITERATION && at->opcode == FOR_ITER;
    if (value) {
        emit(out, pos, DUP_TOP, 0, 1);
    }
    emit(out, pos, LOAD_CONST, (unsigned int)index, units_for((unsigned int)index));
    if (wrap) {
        emit(out, pos, ROT_TWO, 0, 1);
        emit(out, pos, BINARY_SUBSCR, 0, 1);
    }
    else {
        emit(out, pos, value ? CONTAINS_OP : UNARY_INVERT, 0, 1);
        emit(out, pos, POP_TOP, 0, 1);
    }
    s->first = (uint16_t)(out[2 * begin] | (out[2 * begin + 1] << 8));
    map_units(map, shadow_lines, at, begin, *pos);
    return s;
}

/* Emits at *pos, after branch `i`, its BRANCH probes (branch.c):
 *
 *     probe                 BRANCH to the next instruction
 *     JUMP_FORWARD          over the stub
 *     probe                 the stub: BRANCH to the target, where the
 *     JUMP_ABSOLUTE         branch jumps while its probes are armed
 *
 * Disarmed, the first probe's JUMP_FORWARD skips the stub too.  A stub
 * jumps in the direction its branch does, since sys.settrace reports a
 * line at every backward jump.  0, or -1 with an exception set. */
static int
emit_branch(li_shadow *map, PyObject *consts, int index, const instr *ins, int i,
            const probe_list *probes, const int *group, const int *starts, const int *sizes,
            int depth, uint8_t *out, int *pos, int *shadow_lines)
{
    const branch_plan *bp = &probes[i].branch;
    int target = ins[i].target;
    li_site *after = add_site(map, consts, index, &ins[i], &ins[i], LI_BRANCH, ins[i].op,
                              depth, 2 * ins[i].end, out, pos, shadow_lines);
    if (after == NULL) {
        return -1;
    }
    int begin = *pos;
    emit(out, pos, JUMP_FORWARD, li_jump_arg(bp->probe_size + bp->jump_size), 1);
    map_units(map, shadow_lines, &ins[i], begin, *pos);
    after->size = (uint8_t)(bp->after_size + 1 + bp->probe_size + bp->jump_size);
    assert(*pos == bp->unit);
    li_site *taken = add_site(map, consts, index + 1, &ins[i], &ins[i], LI_BRANCH, ins[i].op,
                              depth, 2 * ins[target].start, out, pos, shadow_lines);
    if (taken == NULL) {
        return -1;
    }
    begin = *pos;
    int dest = entry_of(ins, probes, group, i, target);
    emit(out, pos, JUMP_ABSOLUTE, li_jump_arg(dest), bp->jump_size);
    map_units(map, shadow_lines, &ins[i], begin, *pos);
    taken->jump = (li_branch_jump){
        .unit = starts[i], .size = (uint8_t)sizes[i],
        .via_stub = (uint32_t)jump_arg(ins, i, bp->unit, starts, sizes),
        .direct = (uint32_t)jump_arg(ins, i, dest, starts, sizes),
    };
    taken->twin = after;
    after->twin = taken;
    return 0;
}

/* The events whose probes a shadow may leave out where every tool that
 * wants them disabled them: not the exception events (never disabled), nor
 * STOP_ITERATION, whose FOR_ITER probe also delivers RAISE (exc.c). */
#define LI_OMISSIBLE (LI_EVENT_BIT(LI_PY_START) | LI_EVENT_BIT(LI_PY_RETURN) | \
                      LI_EVENT_BIT(LI_PY_YIELD) | LI_EVENT_BIT(LI_CALL) | \
                      LI_EVENT_BIT(LI_LINE) | LI_EVENT_BIT(LI_INSTRUCTION) | \
                      LI_EVENT_BIT(LI_JUMP) | LI_EVENT_BIT(LI_BRANCH))

static bool
omissible(const li_code_state *cs, int event, int orig)
{
    return (LI_OMISSIBLE & LI_EVENT_BIT(event)) && li_tools_at(cs, event, orig) == 0;
}

/* The probes left out of a shadow (leave_out_disabled()). */
typedef struct {
    struct li_omitted *items;       /* owned (PyMem) */
    int n, cap;
} omission_list;

static int
omit(omission_list *list, int orig, int event)
{
    if (li_reserve((void **)&list->items, &list->cap, list->n, sizeof(struct li_omitted), 16) < 0) {
        return -1;
    }
    list->items[list->n++] = (struct li_omitted){orig, (uint8_t)event};
    return 0;
}

/* Takes out of `probes` those every tool that wants them disabled, into
 * `omitted`; *yields_from: whether the PY_YIELD of a YIELD_FROM (which
 * has no probe) is still wanted somewhere.  0, or -1 with an exception
 * set. */
static int
leave_out_disabled(const li_code_state *cs, const instr *ins, int n_instrs, probe_list *probes,
                   int *n_stubs, omission_list *omitted, bool *yields_from)
{
    bool yielding = *yields_from;
    *yields_from = false;
    for (int i = 0; i < n_instrs; i++) {
        probe_list *pl = &probes[i];
        if (yielding && ins[i].opcode == YIELD_FROM) {
            if (!omissible(cs, LI_PY_YIELD, ins[i].op)) {
                *yields_from = true;
            }
            else if (omit(omitted, ins[i].op, LI_PY_YIELD) < 0) {
                return -1;
            }
        }
        int kept = 0;
        for (int k = 0; k < pl->n; k++) {
            int event = pl->events[k];
            if (!omissible(cs, event, pl->origs[k])) {
                if (k == pl->pre) {
                    pl->pre = (int8_t)kept;
                }
                pl->events[kept] = pl->events[k];
                pl->origs[kept++] = pl->origs[k];
                continue;
            }
            if (event == LI_LINE) {
                pl->skip_line = false;
            }
            if (omit(omitted, pl->origs[k], event) < 0) {
                return -1;
            }
        }
        pl->n = (uint8_t)kept;
        if (pl->branch.unit >= 0 && omissible(cs, LI_BRANCH, ins[i].op)) {
            pl->branch.unit = -1;
            (*n_stubs)--;
            if (omit(omitted, ins[i].op, LI_BRANCH) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

bool
li_shadow_misses(const li_shadow *map)
{
    for (int i = 0; i < map->n_omitted; i++) {
        if (li_tools_at(map->cs, map->omitted[i].event, map->omitted[i].orig) != 0) {
            return true;
        }
    }
    return false;
}

static li_shadow *live_shadows;
static Py_ssize_t shadows_built;

li_shadow *
li_live_shadows(void)
{
    return live_shadows;
}

Py_ssize_t
li_shadows_built(void)
{
    return shadows_built;
}

PyCodeObject *
li_build_shadow(PyCodeObject *code, li_code_state *cs, li_event_set events, bool compact)
{
    int n = (int)(PyBytes_GET_SIZE(code->co_code) / 2);
    const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(code->co_code);
    instr *ins = NULL;
    int *instr_at = NULL, *lines = NULL, *sizes = NULL, *group = NULL, *starts = NULL;
    int *shadow_lines = NULL, *depth = NULL, *table_starts = NULL;
    bool *lineless = NULL;              /* NULL: every unit may start a line */
    probe_list *probes = NULL;
    omission_list omitted = {NULL, 0, 0};
    uint8_t *out = NULL;
    li_shadow *map = NULL;              /* owned until the constants hold it */
    PyObject *consts = NULL, *co_code = NULL, *linetable = NULL;
    PyCodeObject *shadow = NULL;
    int n_instrs = 0;

    ins = PyMem_Calloc((size_t)n + 1, sizeof(instr));
    instr_at = PyMem_Calloc((size_t)n + 1, sizeof(int));
    lines = PyMem_Calloc((size_t)n + 1, sizeof(int));
    /* Where line events come only at line starts (and after backward
       jumps), a jump starts a line only there. */
    bool jumps_start_lines = li_line_event_where_jumps_land();
    bool raise_window_matters = li_raise_window_decides_handler_line();
    bool need_starts = !jumps_start_lines || raise_window_matters;
    if (need_starts) {
        table_starts = PyMem_Calloc((size_t)n + 1, sizeof(int));
    }
    if (ins == NULL || instr_at == NULL || lines == NULL || (need_starts && table_starts == NULL)) {
        PyErr_NoMemory();
        goto error;
    }
    li_unit_lines(code, lines, n);
    if (need_starts) {
        li_unit_line_starts(code, table_starts, n);
    }
    if ((events & LI_EVENT_BIT(LI_LINE)) && li_lineless_units(code, lines, n, &lineless) < 0) {
        goto error;
    }
    for (int u = 0; u < n;) {
        instr *in = &ins[n_instrs];
        in->start = u;
        unsigned int arg = 0;
        while (u < n - 1 && bytes[2 * u] == EXTENDED_ARG) {
            arg = (arg | bytes[2 * u + 1]) << 8;
            instr_at[u] = n_instrs;
            u++;
        }
        in->op = u;
        in->opcode = bytes[2 * u];
        in->oparg = (int)(arg | bytes[2 * u + 1]);
        in->end = u + 1;
        in->line = lines[u];
        in->target = -1;
        instr_at[u] = n_instrs;
        n_instrs++;
        u++;
    }
    instr_at[n] = n_instrs;
    for (int i = 0; i < n_instrs; i++) {
        int t = -1;
        if (is_relative_jump(ins[i].opcode)) {
            t = ins[i].end + li_jump_units((unsigned int)ins[i].oparg);
        }
        else if (is_absolute_jump(ins[i].opcode)) {
            t = li_jump_units((unsigned int)ins[i].oparg);
        }
        if (t >= 0 && t < n) {
            ins[i].target = instr_at[t];
            ins[instr_at[t]].jump_target = true;
            if (li_sets_up_handler(ins[i].opcode)) {
                ins[instr_at[t]].handler = true;
            }
            bool handler = li_sets_up_handler(ins[i].opcode);
            if ((ins[i].line != ins[instr_at[t]].line || handler) &&
                (handler || jumps_start_lines || t <= ins[i].start || table_starts[t] >= 0)) {
                ins[instr_at[t]].line_entry = true;
            }
        }
    }

    /* Which probes go where. */
    probes = PyMem_Calloc((size_t)n_instrs + 1, sizeof(probe_list));
    depth = PyMem_Calloc((size_t)n_instrs + 1, sizeof(int));
    if (probes == NULL || depth == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    if (stack_depths(ins, n_instrs, depth) < 0) {
        goto error;
    }
    /* Bytecode the analysis could not follow gets no CALL probes, and
       room for the deepest probe anywhere. */
    bool depths_known = n_instrs > 0 && depth[0] >= 0;
    int stacksize = code->co_stacksize;
    int n_sites = 0, n_stubs = 0;
    int first = (n_instrs > 0 && li_is_gen_start(ins[0].opcode)) ? 1 : 0;
    int previous_line = -1;
    for (int i = 0; i < n_instrs; i++) {
        probe_list *pl = &probes[i];
        for (int k = 0; k < LI_MAX_PROBES; k++) {
            pl->origs[k] = ins[i].start;
        }
        pl->branch.unit = -1;
        pl->pre = -1;
        if (i == first && (events & LI_EVENT_BIT(LI_PY_START))) {
            pl->events[pl->n++] = LI_PY_START;
        }
        int exc = li_exc_probe_before_line(events, ins[i].opcode,
                                           i > 0 ? ins[i - 1].opcode : -1, ins[i].handler);
        if (i >= first && exc >= 0) {
            pl->pre = (int8_t)pl->n;
            pl->events[pl->n++] = (uint8_t)exc;
        }
        if (i >= first && (events & LI_EVENT_BIT(LI_LINE)) && ins[i].line >= 0 &&
            (ins[i].line != previous_line || ins[i].line_entry) &&
            (lineless == NULL || !lineless[ins[i].op])) {
            pl->events[pl->n++] = LI_LINE;
        }
        if (pl->n > 0 && pl->events[pl->n - 1] == LI_LINE && i > first &&
            li_falls_through(ins[i - 1].opcode) && ins[i - 1].line == ins[i].line)
        {
            pl->skip_line = true;
        }
        if (i >= first) {
            previous_line = ins[i].line;
        }
        for (int u = ins[i].start; i >= first && u <= ins[i].op &&
             (events & LI_EVENT_BIT(LI_INSTRUCTION)); u++) {
            pl->origs[pl->n] = u;
            pl->events[pl->n++] = LI_INSTRUCTION;
        }
        if (li_is_jump(ins[i].opcode) && ins[i].target >= 0 && (events & LI_EVENT_BIT(LI_JUMP))) {
            pl->origs[pl->n] = ins[i].op;
            pl->events[pl->n++] = LI_JUMP;
        }
        if (li_is_branch(ins[i].opcode) && ins[i].target >= 0 &&
            (events & LI_EVENT_BIT(LI_BRANCH))) {
            pl->branch.unit = 0;    /* placed below */
            n_stubs++;
        }
        if (ins[i].opcode == RETURN_VALUE && (events & LI_EVENT_BIT(LI_PY_RETURN))) {
            pl->events[pl->n++] = LI_PY_RETURN;
        }
        if (ins[i].opcode == YIELD_VALUE && (events & LI_EVENT_BIT(LI_PY_YIELD))) {
            pl->events[pl->n++] = LI_PY_YIELD;
        }
        exc = li_exc_probe_after_line(events, ins[i].opcode, ins[i].oparg);
        if (exc >= 0) {
            pl->events[pl->n++] = (uint8_t)exc;
        }
        if (is_call(ins[i].opcode) && (events & LI_EVENT_BIT(LI_CALL)) && depth[i] >= 0) {
            probe_list *at = &probes[call_probe_place(ins, n_instrs, i)];
            at->origs[at->n] = ins[i].start;
            at->events[at->n++] = LI_CALL;
            at->call = i;
        }
    }
    bool yields_from = false;
    for (int i = 0; i < n_instrs && (events & LI_EVENT_BIT(LI_PY_YIELD)); i++) {
        yields_from |= ins[i].opcode == YIELD_FROM;
    }
    if (compact &&
        leave_out_disabled(cs, ins, n_instrs, probes, &n_stubs, &omitted, &yields_from) < 0) {
        goto error;
    }
    for (int i = 0; i < n_instrs; i++) {
        n_sites += probes[i].n;
        int base = depths_known ? depth[i] : code->co_stacksize;
        for (int k = 0; k < probes[i].n; k++) {
            int need = base + probe_push(probes[i].events[k], ins[i].opcode, depth[i]);
            if (need > stacksize) {
                stacksize = need;
            }
        }
        /* A branch's probes sit after it, on what either way leaves (FOR_ITER
           pushes the next value, the others pop); the caught marker (one
           constant) before a handler. */
        int after = 0;
        if (probes[i].branch.unit >= 0) {
            int arg = ins[i].opcode >= HAVE_ARGUMENT ? ins[i].oparg : 0;
            int falls = PyCompile_OpcodeStackEffectWithJump(ins[i].opcode, arg, 0);
            int jumps = PyCompile_OpcodeStackEffectWithJump(ins[i].opcode, arg, 1);
            after = base + (falls > jumps ? falls : jumps) + 1;
        }
        else if (ins[i].handler) {
            after = base + 1;
        }
        if (after > stacksize) {
            stacksize = after;
        }
    }
    /* A BRANCH probe after each branch, and one in its stub. */
    n_sites += 2 * n_stubs;
    int n_consts = (int)PyTuple_GET_SIZE(code->co_consts);
    /* The caught marker (caught.c), a constant after the sites, before
       every handler. */
    bool handlers = false;
    for (int i = 0; i < n_instrs; i++) {
        handlers |= ins[i].handler;
        /* It pushes itself, over what the handler starts with. */
        if (ins[i].handler && (depths_known ? depth[i] : code->co_stacksize) + 1 > stacksize) {
            stacksize = (depths_known ? depth[i] : code->co_stacksize) + 1;
        }
    }
    int caught_index = n_consts + n_sites;
    int caught_size = units_for((unsigned int)caught_index) + 2;

    /* Sizes: jumps grow until every argument fits. */
    sizes = PyMem_Calloc((size_t)n_instrs + 1, sizeof(int));
    group = PyMem_Calloc((size_t)n_instrs + 1, sizeof(int));
    starts = PyMem_Calloc((size_t)n_instrs + 1, sizeof(int));
    if (sizes == NULL || group == NULL || starts == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (int i = 0; i < n_instrs; i++) {
        sizes[i] = ins[i].end - ins[i].start;
    }
    int n_shadow = 0;
    for (bool changed = true; changed;) {
        changed = false;
        int pos = 0, site = 0;
        for (int i = 0; i < n_instrs; i++) {
            group[i] = pos;
            for (int k = 0; k < probes[i].n; k++, site++) {
                int event = probes[i].events[k];
                int size = probe_size(event, ins[i].opcode, depth[i], n_consts + site);
                if (k == probes[i].pre) {
                    probes[i].pre_size = size;
                }
                else if (event == LI_PY_START) {
                    probes[i].start_size = size;
                }
                else if (event == LI_LINE) {
                    probes[i].line_size = size;
                    pos += probes[i].skip_line;
                }
                pos += size;
            }
            if (ins[i].handler) {
                pos += caught_size;
            }
            starts[i] = pos;
            pos += sizes[i];
            branch_plan *bp = &probes[i].branch;
            if (bp->unit >= 0) {
                bp->after_size = probe_size(LI_BRANCH, ins[i].opcode, depth[i], n_consts + site++);
                bp->unit = pos + bp->after_size + 1;
                bp->probe_size = probe_size(LI_BRANCH, ins[i].opcode, depth[i], n_consts + site++);
                bp->jump_size = bp->jump_size > 0 ? bp->jump_size : 1;
                pos = bp->unit + bp->probe_size + bp->jump_size;
            }
        }
        group[n_instrs] = starts[n_instrs] = n_shadow = pos;
        for (int i = 0; i < n_instrs; i++) {
            if (ins[i].target < 0) {
                continue;
            }
            branch_plan *bp = &probes[i].branch;
            int dest = entry_of(ins, probes, group, i, ins[i].target);
            int need = units_for((unsigned int)jump_arg(ins, i, dest, starts, sizes));
            if (bp->unit >= 0) {
                int via_stub = units_for((unsigned int)jump_arg(ins, i, bp->unit, starts, sizes));
                need = via_stub > need ? via_stub : need;
                if (units_for(li_jump_arg(dest)) > bp->jump_size) {
                    bp->jump_size = units_for(li_jump_arg(dest));
                    changed = true;
                }
            }
            if (need > sizes[i]) {
                sizes[i] = need;
                changed = true;
            }
        }
    }

    /* The map and the sites. */
    map = PyObject_New(li_shadow, &li_shadow_type);
    if (map == NULL) {
        goto error;
    }
    map->original = code;
    map->cs = cs;
    map->code = NULL;
    map->n_units = n_shadow;
    map->n_orig_units = n;
    map->n_sites = 0;
    map->events = events;
    map->after_start = -1;
    map->next = map->prev = NULL;
    map->yields_from = yields_from;
    map->cleanups = NULL;
    map->n_omitted = omitted.n;
    map->omitted_events = 0;
    for (int i = 0; i < omitted.n; i++) {
        map->omitted_events |= LI_EVENT_BIT(omitted.items[i].event);
    }
    map->omitted = omitted.items;
    omitted.items = NULL;
    map->n_disarmed = 0;
    map->orig_start = PyMem_Calloc((size_t)n_shadow + 1, sizeof(int32_t));
    map->orig_op = PyMem_Calloc((size_t)n_shadow + 1, sizeof(int32_t));
    map->shadow_start = PyMem_Calloc((size_t)n + 1, sizeof(int32_t));
    map->sites = PyMem_Calloc((size_t)n_sites + 1, sizeof(li_site *));
    if (map->orig_start == NULL || map->orig_op == NULL || map->shadow_start == NULL ||
        map->sites == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    /* Only code objects, which the collector does not see into, hold it:
       tracked, it would be one object more in gc.get_objects() per code
       run monitored, which native instrumentation does not add. */
    consts = li_uncounted_tuple(n_consts + n_sites + (handlers ? 1 : 0) + 1);
    if (consts == NULL) {
        goto error;
    }
    for (int c = 0; c < n_consts; c++) {
        PyTuple_SET_ITEM(consts, c, Py_NewRef(PyTuple_GET_ITEM(code->co_consts, c)));
    }

    out = PyMem_Malloc((size_t)n_shadow * 2 + 2);
    shadow_lines = PyMem_Malloc(((size_t)n_shadow + 1) * sizeof(int));
    if (out == NULL || shadow_lines == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (int u = 0; u <= n; u++) {
        map->shadow_start[u] = -1;
    }
    int pos = 0, site = 0;
    for (int i = 0; i < n_instrs; i++) {
        map->shadow_start[ins[i].start] = pos;
        for (int k = 0; k < probes[i].n; k++, site++) {
            int event = probes[i].events[k];
            if (event == LI_LINE && probes[i].skip_line) {
                map_units(map, shadow_lines, &ins[i], pos, pos + 1);
                emit(out, &pos, JUMP_FORWARD, li_jump_arg(probes[i].line_size), 1);
            }
            int dest = event == LI_JUMP ? 2 * ins[ins[i].target].start : -1;
            /* The instruction it reports (a call's may come later). */
            const instr *of = event == LI_CALL ? &ins[probes[i].call] : &ins[i];
            if (add_site(map, consts, n_consts + site, of, &ins[i], event, probes[i].origs[k],
                         depth[of - ins], dest, out, &pos, shadow_lines) == NULL) {
                goto error;
            }
            if (event == LI_PY_START) {
                map->after_start = pos;
            }
        }
        if (probes[i].n > 0 && raise_window_matters && !ins[i].handler &&
            ins[i].opcode == RAISE_VARARGS && ins[i].oparg == 0 &&
            table_starts[ins[i].start] >= 0) {
            map->sites[map->n_sites - 1]->holds_handler_line = true;
        }
        int begin = pos;
        if (ins[i].handler) {
            emit(out, &pos, LOAD_CONST, (unsigned int)caught_index, caught_size - 2);
            emit(out, &pos, UNARY_INVERT, 0, 1);
            emit(out, &pos, POP_TOP, 0, 1);
        }
        branch_plan *bp = &probes[i].branch;
        if (ins[i].target >= 0) {
            int dest = entry_of(ins, probes, group, i, ins[i].target);
            int arg = jump_arg(ins, i, bp->unit >= 0 ? bp->unit : dest, starts, sizes);
            emit(out, &pos, ins[i].opcode, (unsigned int)arg, sizes[i]);
        }
        else {
            memcpy(out + 2 * pos, bytes + 2 * ins[i].start, 2 * (size_t)sizes[i]);
            pos += sizes[i];
        }
        map_units(map, shadow_lines, &ins[i], begin, pos);
        if (bp->unit >= 0 && emit_branch(map, consts, n_consts + site, ins, i, probes, group,
                                         starts, sizes, depth[i], out, &pos, shadow_lines) < 0) {
            goto error;
        }
        site += bp->unit >= 0 ? 2 : 0;
    }
    assert(pos == n_shadow);
    if (map->after_start < 0) {
        map->after_start = first < n_instrs ? map->shadow_start[ins[first].start] : 0;
    }
    map->orig_start[n_shadow] = n;
    map->orig_op[n_shadow] = n;
    map->shadow_start[n] = n_shadow;
    if (handlers) {
        PyTuple_SET_ITEM(consts, caught_index, Py_NewRef(li_caught_marker()));
    }
    PyTuple_SET_ITEM(consts, PyTuple_GET_SIZE(consts) - 1, (PyObject *)map);
    map = NULL;     /* the constants hold it */

    co_code = PyBytes_FromStringAndSize((const char *)out, 2 * (Py_ssize_t)n_shadow);
    linetable = li_encode_lines(shadow_lines, n_shadow, code->co_firstlineno);
    if (co_code == NULL || linetable == NULL) {
        goto error;
    }
    shadow = PyCode_NewWithPosOnlyArgs(
        code->co_argcount, code->co_posonlyargcount, code->co_kwonlyargcount,
        code->co_nlocals, stacksize, code->co_flags, co_code,
        consts, code->co_names, code->co_varnames, code->co_freevars, code->co_cellvars,
        code->co_filename, code->co_name, code->co_firstlineno, linetable);
    if (shadow == NULL) {
        goto error;
    }
    li_shadow *made = li_shadow_of(shadow);
    made->code = shadow;
    made->next = live_shadows;
    if (live_shadows != NULL) {
        live_shadows->prev = made;
    }
    live_shadows = made;
    shadows_built++;
    goto done;
error:
    Py_XDECREF(map);
done:
    Py_XDECREF(consts);
    Py_XDECREF(co_code);
    Py_XDECREF(linetable);
    PyMem_Free(ins);
    PyMem_Free(instr_at);
    PyMem_Free(lines);
    PyMem_Free(table_starts);
    PyMem_Free(lineless);
    PyMem_Free(sizes);
    PyMem_Free(group);
    PyMem_Free(starts);
    PyMem_Free(shadow_lines);
    PyMem_Free(depth);
    PyMem_Free(probes);
    PyMem_Free(omitted.items);
    PyMem_Free(out);
    return shadow;
}

static void
shadow_dealloc(PyObject *self)
{
    li_shadow *map = (li_shadow *)self;
    if (map->code != NULL) {
        if (map->prev != NULL) {
            map->prev->next = map->next;
        }
        else if (live_shadows == map) {
            live_shadows = map->next;
        }
        if (map->next != NULL) {
            map->next->prev = map->prev;
        }
    }
    PyMem_Free(map->orig_start);
    PyMem_Free(map->orig_op);
    PyMem_Free(map->shadow_start);
    PyMem_Free(map->sites);
    PyMem_Free(map->omitted);
    PyMem_Free(map->cleanups);
    PyObject_Free(self);
}

PyTypeObject li_shadow_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lowimpact._engine.shadow_map",
    .tp_basicsize = sizeof(li_shadow),
    .tp_dealloc = shadow_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The map of an instrumented copy of a code object.",
};
