/* Building a shadow: an instrumented copy of a 3.11 code object.
 *
 * Before each original instruction B the shadow may hold, in this order:
 *   AFTER    probe for events of the instruction before B that happen once it
 *            completed and execution falls through to B: PY_START/PY_RESUME
 *            after RESUME, C_RETURN after a call, BRANCH (not taken) after a
 *            conditional jump or FOR_ITER
 *   ARRIVE   probe for a SEND that jumps to B, its subiterator done:
 *            STOP_ITERATION (CPython's _gen_throw needs SEND's jump to end
 *            right after the `yield from` loop, so no stub there)
 *   SKIP     JUMP_FORWARD over B's LINE probe, when the instruction before B
 *            falls through into B on the same line (no LINE event then)
 *   HANDLER  probe for an exception arriving at B, an exception handler:
 *            PY_THROW, RAISE (unless re-raised), EXCEPTION_HANDLED
 *   LINE     probe firing LINE for B
 *   INSTR    probe firing INSTRUCTION and B's own events before B runs:
 *            PY_RETURN, PY_YIELD, CALL, JUMP, RERAISE (and the mark that
 *            tells the next handler it gets a re-raise, see events.c)
 * A probe ends with a conditional jump to a DIVERT stub, taken when the
 * probe's frame must move onto another shadow (probe.c): the stub calls the
 * landing function (landing.c), which moves the frame to a landing pad of
 * that shadow, where it goes on after the probe.  Divert stubs go after the
 * code and, where the code is too long for one jump to reach, before
 * instructions that are not fallen into (with a jump over them otherwise).
 * After the last instruction come stubs, each a probe and one instruction:
 *   TAKEN    per branch or FOR_ITER that jumps: BRANCH (taken),
 *            STOP_ITERATION; then a jump where the original jump goes
 *   C_RAISE  per call: C_RAISE when the callee raised; then RERAISE
 *   UNWIND   one: PY_THROW, RAISE, PY_UNWIND for exceptions leaving the
 *            frame (generators and coroutines: EXCEPTION_HANDLED and RERAISE
 *            before PY_UNWIND, for 3.12's implicit handler); then RERAISE
 *   a landing pad for entry trampolines (see trampoline.c).
 * Jumps to B land on LINE when they come from another line, past it when
 * they come from B's line.  The exception table sends exceptions raised by a
 * call to its C_RAISE stub, those with no handler in the frame to UNWIND, and
 * the others to the HANDLER probe of their handler; the stubs re-raise into
 * what the original does.  Every probe unit takes the location and the
 * handler of the instruction its events belong to, so tracebacks and
 * f_lineno are those of that instruction.  Call groups (KW_NAMES, PRECALL,
 * CALL) stay together: specialised PRECALLs skip the CALL after them.
 */

#include "b311.h"

#define PROBE_BASE_SIZE LI_PROBE_BASE_SIZE
#define DIVERT_BASE_SIZE LI_DIVERT_BASE_SIZE
#define JUMP_REACH LI_JUMP_REACH

enum { AFTER, ARRIVE, HANDLER, LINE, INSTR, N_SLOTS };

typedef struct {
    bool probed;             /* some slot has a probe: the passes skip the others */
    int probe[N_SLOTS];      /* probe index or -1 */
    int pos[N_SLOTS];        /* their positions */
    bool skip;
    int pos_skip;
    int ext;                 /* EXTENDED_ARG prefixes emitted for the instruction */
    int pos_start, pos_op, pos_end;
    int taken, c_raise;      /* stub indices or -1 */
    bool call_unit;          /* its units raise into the C_RAISE stub of its call */
    int first_stub, n_stubs; /* TAKEN stubs placed before it (pre_stubs) */
    int pos_gap, gap_ext;    /* jump over them from the instruction before, or -1 */
} plan;

enum { STUB_TAKEN, STUB_C_RAISE, STUB_UNWIND, STUB_DIVERT };

typedef struct {
    int kind;
    int probe;               /* may be -1 when no tool wants its events */
    int owner;               /* instruction index */
    int depth;               /* exception stubs: depth the entry leaves */
    int before;              /* TAKEN of a forward jump: its target; else -1 */
    int ext;                 /* prefixes of its final jump */
    int pos, pos_tail, pos_end;
} stub;

/* A landing pad: where a frame moved onto the shadow while it runs resumes
 * (see trampoline.c), with the result of the call that moved it on its
 * stack.  It drops the result and jumps to where the frame goes on. */
typedef struct {
    int instr;               /* the original instruction the frame was about to run */
    int phase;               /* LI_LAND_*: how far it got there */
    int ext;                 /* prefixes of the jump */
    int pos;
} pad;

typedef struct {
    li_analysis an;
    li_code_state *cs;
    li_event_set kinds;
    bool partial;             /* a probe was left out: every tool disabled it */
    bool every_site;          /* probes wherever their kind could fire */
    bool companions;          /* add_site() adds whatever the event */
    bool placeholders;        /* probes where frames start, resume and handle */
    /* The shadow has an exception table: the original has handlers, or
       there are stubs that exceptions go to.  Most shadows built for LINE
       alone have none. */
    bool routed;
    int entry_probe;
    bool entry_only_at_start; /* li_probes' */
    int resume;               /* index of RESUME 0, or -1 */
    pad *pads;
    int n_pads, cap_pads;
    int n_resume_points;      /* of the code's, those with a pad */
    int unwind;               /* stub index or -1 */
    plan *plans;
    li_probe *probes;
    int n_probes, cap_probes;
    li_site *sites;
    int n_sites, cap_sites;
    stub *stubs;
    int n_stubs, cap_stubs;
    int *pre_stubs;           /* stubs with `before`, ordered by it */
    int probe_size;
    int probes_const;         /* index of the li_probes object in co_consts */
    int lander_const;         /* index of the landing function in co_consts */
    PyCodeObject *original;
    int stacksize;            /* the original's */
    int divert_size;          /* units of a DIVERT stub */
    int n_units;
} builder;

static bool
wanted(const builder *b, int event)
{
    int selector = (event == LI_C_RETURN || event == LI_C_RAISE) ? LI_CALL : event;
    return (b->kinds & LI_EVENT_BIT(selector)) != 0;
}

/* Whether any event of `events` is selected (C_RETURN and C_RAISE by CALL):
 * a kind of probe none of whose events is selected gets no sites, so the
 * planning passes skip it (most shadows want LINE and little else). */
static bool
wanted_any(const builder *b, li_event_set events)
{
    if (events & LI_C_RETURN_EVENTS) {
        events |= LI_EVENT_BIT(LI_CALL);
    }
    return (b->kinds & events) != 0;
}

#define AFTER_EVENTS (LI_EVENT_BIT(LI_PY_START) | LI_EVENT_BIT(LI_PY_RESUME) | \
                      LI_EVENT_BIT(LI_C_RETURN) | LI_EVENT_BIT(LI_BRANCH) | \
                      LI_EVENT_BIT(LI_RAISE))
#define HANDLER_EVENTS (LI_EVENT_BIT(LI_PY_THROW) | LI_EVENT_BIT(LI_RAISE) | \
                        LI_EVENT_BIT(LI_EXCEPTION_HANDLED))
#define INSTR_EVENTS (LI_EVENT_BIT(LI_INSTRUCTION) | LI_EVENT_BIT(LI_PY_RETURN) | \
                      LI_EVENT_BIT(LI_PY_YIELD) | LI_EVENT_BIT(LI_JUMP) | \
                      LI_EVENT_BIT(LI_RERAISE) | LI_EVENT_BIT(LI_RAISE) | \
                      LI_EVENT_BIT(LI_PY_THROW) | LI_EVENT_BIT(LI_CALL))
#define STUB_EVENTS (LI_EVENT_BIT(LI_STOP_ITERATION) | LI_EVENT_BIT(LI_BRANCH) | \
                     LI_EVENT_BIT(LI_C_RAISE))
#define UNWIND_EVENTS (LI_EVENT_BIT(LI_PY_THROW) | LI_EVENT_BIT(LI_RAISE) | \
                       LI_EVENT_BIT(LI_EXCEPTION_HANDLED) | LI_EVENT_BIT(LI_RERAISE) | \
                       LI_EVENT_BIT(LI_PY_UNWIND))

/* ---- sites and probes ------------------------------------------------- */

/* Whether a shadow of `cs` with probes for `kinds` may lack some because
 * every tool that wants them there disabled them. */
static bool
may_leave_out(const li_code_state *cs, li_event_set kinds)
{
    if (cs == NULL || cs->disable_epoch != li_reg.disable_epoch) {
        return false;
    }
    for (int e = 0; e < LI_MARK_COUNT; e++) {
        if ((kinds & LI_EVENT_BIT(li_mark_event(e))) && cs->disabled[e] != NULL) {
            return true;
        }
    }
    return false;
}

/* Appends a site when `event` is selected and some tool still wants it at
 * `orig` (tools that returned DISABLE there are left out, and for the way
 * `mark` of a branch, LI_MARK_BRANCH_*, those that no longer want that way;
 * 0 for other sites). */
static int
add_way_site(builder *b, int event, int orig, int aux, int mark)
{
    if (!b->companions && !wanted(b, event)) {
        return 0;
    }
    if (!b->every_site && !b->companions && !li_tools_at_site(b->cs, event, orig, mark)) {
        b->partial = true;
        return 0;
    }
    if (li_reserve((void **)&b->sites, &b->cap_sites, b->n_sites, sizeof(li_site), 64) < 0) {
        return -1;
    }
    b->sites[b->n_sites++] = (li_site){NULL, orig, aux, (uint8_t)event, (uint8_t)mark, NULL};
    return 0;
}

static int
add_site(builder *b, int event, int orig, int aux)
{
    return add_way_site(b, event, orig, aux, 0);
}

/* The site of an instruction that re-raises: RERAISE, a bare `raise`
 * (aux 1), END_ASYNC_FOR (aux 2, re-raises what is not StopAsyncIteration).
 * Besides the RERAISE event it tells the next handler that the exception is
 * not raised anew (no RAISE, no PY_THROW), so it is there for those too. */
static int
add_reraise_site(builder *b, int orig, int aux)
{
    if (!b->companions && !wanted(b, LI_RERAISE) && !wanted(b, LI_RAISE) &&
        !wanted(b, LI_PY_THROW))
    {
        return 0;
    }
    if (li_reserve((void **)&b->sites, &b->cap_sites, b->n_sites, sizeof(li_site), 64) < 0) {
        return -1;
    }
    b->sites[b->n_sites++] = (li_site){NULL, orig, aux, (uint8_t)LI_RERAISE, 0, NULL};
    return 0;
}

/* Opens a probe; its sites are those added until close_probe(). */
static int
open_probe(builder *b)
{
    return b->n_sites;
}

/* Whether li_fire_simple() can fire a probe of `kind` with one site for
 * `event`: the event's arguments are the site's and, for PY_RETURN and
 * PY_YIELD, the top of the stack. */
static bool
is_simple(int kind, int event)
{
    if (kind != LI_PROBE_AFTER && kind != LI_PROBE_INSTR && kind != LI_PROBE_LINE) {
        return false;
    }
    switch (event) {
    case LI_PY_START:
    case LI_PY_RESUME:
    case LI_PY_RETURN:
    case LI_PY_YIELD:
    case LI_LINE:
    case LI_INSTRUCTION:
        return true;
    default:
        return false;
    }
}

/* The index of a probe over the sites added since `first`, or -1 if none
 * (unless `placeholder`: a probe without sites, which only diverts). */
static int
close_probe_or_placeholder(builder *b, int first, int kind, int depth, bool placeholder)
{
    if (b->n_sites == first && !placeholder) {
        return -1;
    }
    if (li_reserve((void **)&b->probes, &b->cap_probes, b->n_probes, sizeof(li_probe), 32) < 0) {
        return -2;
    }
    b->probes[b->n_probes] = (li_probe){
        .first_site = first,
        .resume_unit = -1,
        .n_sites = (uint8_t)(b->n_sites - first),
        .depth = (int16_t)depth,
        .kind = (uint8_t)kind,
        .size = (uint8_t)b->probe_size,
        .simple = b->n_sites - first == 1 && is_simple(kind, b->sites[first].event),
        .lead_simple = b->n_sites > first && is_simple(kind, b->sites[first].event),
    };
    return b->n_probes++;
}

static int
close_probe(builder *b, int first, int kind, int depth)
{
    return close_probe_or_placeholder(b, first, kind, depth, false);
}

/* Probe `index` (if there is one) lets its frame move: the frame then goes
 * on at instruction `i` in the phase `phase`. */
static void
set_resume(builder *b, int index, int i, int phase)
{
    /* The DIVERT stub's call takes two slots over the probe's depth: no
       more than shadows have (li_shadow_stack_bound). */
    if (index >= 0 && b->probes[index].depth + 2 <= li_shadow_stack_bound(b->original, b->stacksize)) {
        b->probes[index].resume_unit = b->an.instrs[i].start;
        b->probes[index].resume_phase = (uint8_t)phase;
    }
}

/* The phase at which a jump from `source` lands on instruction `t`. */
static int
jump_phase(const li_analysis *an, const li_instr *source, int t)
{
    return source->event_line != an->instrs[t].event_line ? LI_LAND_LINE : LI_LAND_AFTER_LINE;
}

/* ---- what happens where ----------------------------------------------- */

/* Whether instruction `i` is where a `yield from` or `await` loop goes on
 * (a SEND's target).  Nothing may come between the loop and it: when throw()
 * ends the loop, CPython (_gen_throw) resumes the frame with the exception
 * at the unit before the SEND's target, whose handler must be the loop's. */
static bool
ends_yield_from(const li_analysis *an, int i)
{
    if (i == 0 || !(an->instrs[i].flags & LI_I_JUMP_TARGET)) {
        return false;
    }
    for (int k = 0; k < an->n_instrs; k++) {
        if (an->instrs[k].opcode == SEND && an->instrs[k].target == i) {
            return true;
        }
    }
    return false;
}

static bool
is_branch(int opcode)
{
    switch (opcode) {
    case POP_JUMP_FORWARD_IF_FALSE:
    case POP_JUMP_FORWARD_IF_TRUE:
    case POP_JUMP_FORWARD_IF_NONE:
    case POP_JUMP_FORWARD_IF_NOT_NONE:
    case POP_JUMP_BACKWARD_IF_FALSE:
    case POP_JUMP_BACKWARD_IF_TRUE:
    case POP_JUMP_BACKWARD_IF_NONE:
    case POP_JUMP_BACKWARD_IF_NOT_NONE:
    case JUMP_IF_FALSE_OR_POP:
    case JUMP_IF_TRUE_OR_POP:
    case FOR_ITER:
        return true;
    default:
        return false;
    }
}

static bool
ends_call(int opcode)
{
    return opcode == CALL || opcode == CALL_FUNCTION_EX;
}

/* Index of the last instruction of the call group starting at i (KW_NAMES,
 * PRECALL, CALL), or i itself. */
static int
group_end(const li_analysis *an, int i)
{
    int j = i;
    if (an->instrs[j].opcode == KW_NAMES && j + 1 < an->n_instrs) {
        j++;
    }
    if (an->instrs[j].opcode == PRECALL && j + 1 < an->n_instrs &&
        an->instrs[j + 1].opcode == CALL)
    {
        return j + 1;
    }
    return i;
}

/* The instruction is inside a call group, after its first instruction: no
 * probe may come between it and the one before. */
static bool
inside_group(const li_analysis *an, int i)
{
    return (an->instrs[i].flags & LI_I_IN_CALL_GROUP) != 0;
}

/* Appends a stub for probe `probe`; its index, or -1 on error. */
static int
add_stub(builder *b, int kind, int owner, int depth, int probe)
{
    if (li_reserve((void **)&b->stubs, &b->cap_stubs, b->n_stubs, sizeof(stub), 16) < 0) {
        return -1;
    }
    b->stubs[b->n_stubs] = (stub){.kind = kind, .probe = probe, .owner = owner,
                                  .depth = depth, .before = -1};
    return b->n_stubs++;
}

/* Depth an exception entry for the units of instruction `in` leaves: the
 * depth of the original handler covering it, or nothing. */
static int
handler_depth_of(const li_analysis *an, const li_instr *in)
{
    for (int h = 0; h < an->n_handlers; h++) {
        if (an->handlers[h].start <= in->op && in->op < an->handlers[h].end) {
            return an->handlers[h].depth;
        }
    }
    return 0;
}

/* Events of the instruction before `in` that fire when it falls through. */
static int
plan_after(builder *b, int i, int *probe)
{
    const li_analysis *an = &b->an;
    const li_instr *prev = &an->instrs[i - 1], *in = &an->instrs[i];
    int first = open_probe(b);
    int err = 0;
    if (prev->opcode == RESUME) {
        err = add_site(b, prev->oparg == 0 ? LI_PY_START : LI_PY_RESUME, prev->op, 0);
    }
    else if (ends_call(prev->opcode)) {
        err = add_site(b, LI_C_RETURN, prev->op, 0);
    }
    else if (is_branch(prev->opcode)) {
        err = add_way_site(b, LI_BRANCH, prev->op, in->start, LI_MARK_BRANCH_ON);
    }
    /* A loop starts: its iterator is watched for the StopIteration that
       ends it, which CPython reports as raised there (events.c). */
    if (err == 0 && in->opcode == FOR_ITER) {
        err = add_site(b, LI_RAISE, in->op, LI_AUX_WATCH_LOOP);
    }
    /* In a shadow that may leave disabled probes out, where a frame starts
       or a generator resumes there is a probe even if nothing fires there:
       when restart_events() makes the shadow obsolete and outdated,
       functions that point at it move on as they next start, generators
       suspended on it as they resume. */
    bool resumes = b->placeholders && prev->opcode == RESUME;
    bool placeholder = b->n_sites == first;
    *probe = err < 0 ? -2 : close_probe_or_placeholder(b, first, LI_PROBE_AFTER, in->depth,
                                                       resumes);
    /* A placeholder's frame has yet to see what the probes there fire. */
    set_resume(b, *probe, i, placeholder ? LI_LAND_BEFORE_AFTER : LI_LAND_FALLTHROUGH);
    return *probe == -2 ? -1 : 0;
}

static int
plan_instr(builder *b, int i, int *probe)
{
    const li_analysis *an = &b->an;
    const li_instr *in = &an->instrs[i];
    int last = group_end(an, i);
    int first = open_probe(b);
    for (int k = i; k <= last; k++) {
        if (add_site(b, LI_INSTRUCTION, an->instrs[k].op, 0) < 0) {
            return -1;
        }
    }
    const li_instr *end = &an->instrs[last];
    /* A callback of INSTRUCTION may turn on the instruction's own event
       (CALL, say), which natively comes next: it must be there to fire, as
       a frame diverting from here goes on past it. */
    b->companions = b->n_sites > first;
    int err = 0;
    switch (end->opcode) {
    case RETURN_VALUE:
        err = add_site(b, LI_PY_RETURN, in->op, 0);
        break;
    case YIELD_VALUE:
        err = add_site(b, LI_PY_YIELD, in->op, 0);
        break;
    case JUMP_FORWARD:
    case JUMP_BACKWARD:
        err = add_site(b, LI_JUMP, in->op, an->instrs[in->target].start);
        break;
    case RERAISE:
        err = add_reraise_site(b, in->op, 0);
        break;
    case RAISE_VARARGS:
        if (end->oparg == 0) {
            err = add_reraise_site(b, in->op, 1);
        }
        break;
    case END_ASYNC_FOR:
        err = add_reraise_site(b, in->op, 2);
        break;
    case CALL:
        err = add_site(b, LI_CALL, end->op, end->oparg);
        break;
    case CALL_FUNCTION_EX:
        /* -1, or -2 with a keyword mapping on the stack. */
        err = add_site(b, LI_CALL, end->op, -1 - (end->oparg & 1));
        break;
    }
    b->companions = false;
    if (err < 0) {
        return -1;
    }
    *probe = close_probe(b, first, LI_PROBE_INSTR, in->depth);
    /* The probe before a YIELD_VALUE that follows a SEND ends with a unit
       CPython reads (see emit()): it cannot jump. */
    bool yield_from = end->opcode == YIELD_VALUE && i > 0 && an->instrs[i - 1].opcode == SEND;
    if (!yield_from) {
        set_resume(b, *probe, i, LI_LAND_AT);
    }
    return *probe == -2 ? -1 : 0;
}

static int
plan_probes(builder *b)
{
    li_analysis *an = &b->an;
    _Static_assert(N_SLOTS == 5, "the initialiser below names every slot");
    /* Filled here rather than zeroed by calloc: in shadows of big
       functions the zeroing alone cost as much as the loop. */
    b->plans = li_alloc_filled_later((size_t)an->n_instrs, sizeof(plan));
    if (b->plans == NULL) {
        return -1;
    }
    for (int i = 0; i < an->n_instrs; i++) {
        const li_instr *in = &an->instrs[i];
        b->plans[i] = (plan){
            .probe = {-1, -1, -1, -1, -1},
            .pos = {-1, -1, -1, -1, -1},
            .pos_skip = -1,
            /* (The analysis gave every jump, and only jumps, a target.) */
            .ext = in->target >= 0 ? 0 : in->op - in->start,
            .taken = -1,
            .c_raise = -1,
            .pos_gap = -1,
        };
    }
    /* (Placeholders are AFTER probes.) */
    bool want_after = b->placeholders || wanted_any(b, AFTER_EVENTS);
    bool want_handler = wanted_any(b, HANDLER_EVENTS);
    bool want_instr = wanted_any(b, INSTR_EVENTS);
    for (int i = 0; i < an->n_instrs; i++) {
        const li_instr *in = &an->instrs[i];
        plan *pl = &b->plans[i];
        if (in->opcode == RESUME && in->oparg == 0 && b->resume < 0) {
            b->resume = i;
        }
        /* Nothing goes before RESUME (generators find out whether they are
           suspended in a `yield from` by looking at the unit after the
           YIELD_VALUE they stopped at), nor inside a call group. */
        if (!(in->flags & LI_I_TRACEABLE) || in->depth < 0 || in->opcode == RESUME ||
            inside_group(an, i))
        {
            continue;
        }
        int first_probe = b->n_probes;
        const li_instr *prev = i > 0 ? &an->instrs[i - 1] : NULL;
        bool entered_from_prev = prev != NULL && prev->depth >= 0 &&
                                 (prev->flags & LI_I_FALLS_THROUGH);
        if (entered_from_prev && (prev->flags & LI_I_TRACEABLE) && want_after &&
            plan_after(b, i, &pl->probe[AFTER]) < 0)
        {
            return -1;
        }
        /* A frame may also come in at a handler without passing a start:
           throw() into a generator suspended on the shadow, or an exception
           from a callee that called restart_events().  Such a shadow has a
           placeholder there too, which moves the frame on to the probes
           left out (the handler's LINE, say) once restart_events() armed
           it. */
        if ((in->flags & LI_I_HANDLER_TARGET) && (want_handler || b->placeholders)) {
            int first = open_probe(b);
            /* The callback of one of these may turn on the others, which
               natively come next (a frame diverting from here goes on past
               them): if one is there, all are. */
            b->companions = wanted(b, LI_PY_THROW) || wanted(b, LI_RAISE) ||
                            wanted(b, LI_EXCEPTION_HANDLED);
            int err = add_site(b, LI_PY_THROW, in->op, 0) < 0 ||
                      add_site(b, LI_RAISE, in->op, 0) < 0 ||
                      add_site(b, LI_EXCEPTION_HANDLED, in->op, 0) < 0;
            b->companions = false;
            if (err) {
                return -1;
            }
            pl->probe[HANDLER] = close_probe_or_placeholder(b, first, LI_PROBE_HANDLER, in->depth,
                                                            b->placeholders);
            if (pl->probe[HANDLER] == -2) {
                return -1;
            }
            set_resume(b, pl->probe[HANDLER], i, LI_LAND_LINE);
        }
        if (in->flags & LI_I_LINE_START) {
            int first = open_probe(b);
            if (add_site(b, LI_LINE, in->op, in->event_line) < 0) {
                return -1;
            }
            int kind = (in->flags & LI_I_HANDLER_TARGET) ? LI_PROBE_LINE_HANDLER
                                                         : LI_PROBE_LINE;
            pl->probe[LINE] = close_probe(b, first, kind, in->depth);
            if (pl->probe[LINE] == -2) {
                return -1;
            }
            set_resume(b, pl->probe[LINE], i, LI_LAND_AFTER_LINE);
            /* RESUME never hides the next line: CPython 3.12's rule. */
            pl->skip = pl->probe[LINE] >= 0 && entered_from_prev &&
                       prev->event_line == in->event_line && prev->opcode != RESUME;
        }
        if (want_instr && plan_instr(b, i, &pl->probe[INSTR]) < 0) {
            return -1;
        }
        /* (Each probe made here went into a slot of this plan.) */
        pl->probed = b->n_probes > first_probe;
        if (prev != NULL && prev->opcode == RESUME && prev->oparg == 0 &&
            b->n_probes > first_probe)
        {
            b->entry_probe = first_probe;
            b->entry_only_at_start = !(in->flags & LI_I_JUMP_TARGET);
        }
    }
    /* Stubs. */
    bool want_stubs = wanted_any(b, STUB_EVENTS);
    for (int i = 0; i < an->n_instrs && want_stubs; i++) {
        const li_instr *in = &an->instrs[i];
        plan *pl = &b->plans[i];
        if (!(in->flags & LI_I_TRACEABLE) || in->depth < 0) {
            continue;
        }
        if (in->opcode == SEND && in->target >= 0 &&
            !(an->instrs[in->target - 1].flags & LI_I_FALLS_THROUGH))
        {
            int first = open_probe(b);
            if (add_site(b, LI_STOP_ITERATION, in->op, 0) < 0) {
                return -1;
            }
            int probe = close_probe(b, first, LI_PROBE_TAKEN, an->instrs[in->target].depth);
            if (probe == -2) {
                return -1;
            }
            set_resume(b, probe, in->target, jump_phase(an, in, in->target));
            plan *target = &b->plans[in->target];
            target->probe[ARRIVE] = probe;
            target->probed |= probe >= 0;
            /* After STOP_ITERATION the frame goes on as SEND's jump would:
               no LINE on the line of the `yield from` or `await`. */
            if (probe >= 0 && target->probe[LINE] >= 0 &&
                in->event_line == an->instrs[in->target].event_line)
            {
                target->skip = true;
            }
        }
        if (in->target >= 0 && is_branch(in->opcode)) {
            int first = open_probe(b);
            if (in->opcode == FOR_ITER && add_site(b, LI_STOP_ITERATION, in->op, 0) < 0) {
                return -1;
            }
            if (add_way_site(b, LI_BRANCH, in->op, an->instrs[in->target].start,
                             LI_MARK_BRANCH_JUMPED) < 0)
            {
                return -1;
            }
            int probe = close_probe(b, first, LI_PROBE_TAKEN, an->instrs[in->target].depth);
            if (probe == -2) {
                return -1;
            }
            set_resume(b, probe, in->target, jump_phase(an, in, in->target));
            if (probe >= 0) {
                pl->taken = add_stub(b, STUB_TAKEN, i, 0, probe);
                if (pl->taken < 0) {
                    return -1;
                }
                /* Tracing reports a line at every backward jump: the stub of
                   a forward jump goes before its target, so that it jumps
                   forward on to it, as the original does. */
                if (an->instrs[in->target].start > in->start &&
                    !ends_yield_from(an, in->target))
                {
                    b->stubs[pl->taken].before = in->target;
                }
            }
        }
        if (ends_call(in->opcode)) {
            int first = open_probe(b);
            if (add_site(b, LI_C_RAISE, in->op, 0) < 0) {
                return -1;
            }
            int depth = handler_depth_of(an, in);
            /* The stub gets the exception on top of that depth. */
            int probe = close_probe(b, first, LI_PROBE_C_RAISE, depth + 1);
            if (probe == -2) {
                return -1;
            }
            if (probe >= 0) {
                int s = add_stub(b, STUB_C_RAISE, i, depth, probe);
                if (s < 0) {
                    return -1;
                }
                /* The whole call group raises into the stub. */
                for (int k = i; k >= 0 && (k == i || inside_group(an, k + 1)); k--) {
                    b->plans[k].call_unit = true;
                    b->plans[k].c_raise = s;
                }
            }
        }
    }
    b->unwind = -1;
    if (!wanted_any(b, UNWIND_EVENTS)) {
        return 0;
    }
    int first = open_probe(b);
    if (add_site(b, LI_PY_THROW, 0, 0) < 0 || add_site(b, LI_RAISE, 0, 0) < 0) {
        return -1;
    }
    /* CPython 3.12 wraps the body of generators and coroutines in a handler
       that re-raises what leaves them (3.11 converts StopIteration in C
       instead): the stub reports that handler's two events. */
    if ((b->an.code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) &&
        (add_site(b, LI_EXCEPTION_HANDLED, 0, 0) < 0 || add_site(b, LI_RERAISE, 0, 0) < 0))
    {
        return -1;
    }
    if (add_site(b, LI_PY_UNWIND, 0, 0) < 0) {
        return -1;
    }
    /* The entry gives it the raising offset too: its RERAISE puts the frame
       back there, for the frame's last line once it is gone (tracebacks
       keep the frame). */
    int probe = close_probe(b, first, LI_PROBE_UNWIND, 2);
    if (probe == -2) {
        return -1;
    }
    if (probe >= 0) {
        b->unwind = add_stub(b, STUB_UNWIND, b->resume >= 0 ? b->resume : 0, 0, probe);
        if (b->unwind < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- landing pads ------------------------------------------------------ */

static int
add_pad(builder *b, int instr, int phase)
{
    for (int k = 0; k < b->n_pads; k++) {
        if (b->pads[k].instr == instr && b->pads[k].phase == phase) {
            return 0;
        }
    }
    if (b->n_pads == b->cap_pads) {
        int grown = b->cap_pads ? b->cap_pads * 2 : 8;
        pad *bigger = PyMem_Realloc(b->pads, sizeof(pad) * (size_t)grown);
        if (bigger == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->pads = bigger;
        b->cap_pads = grown;
    }
    b->pads[b->n_pads++] = (pad){.instr = instr, .phase = phase};
    return 0;
}

/* Pads for RESUME 0 (entry trampolines), loop headers (as their back edge
 * lands there) and the code's resume points (trampolines and probes that
 * move running frames).  0 or -1. */
static int
plan_pads(builder *b)
{
    const li_analysis *an = &b->an;
    li_code_backend *cb = b->cs != NULL ? (li_code_backend *)b->cs->backend : NULL;
    b->n_resume_points = cb != NULL ? cb->n_resume_points : 0;
    if (b->resume >= 0 && add_pad(b, b->resume, LI_LAND_START) < 0) {
        return -1;
    }
    for (int j = 0; j < an->n_instrs; j++) {
        const li_instr *in = &an->instrs[j];
        if (in->opcode == JUMP_BACKWARD && in->depth >= 0 &&
            an->instrs[in->target].depth >= 0 &&
            add_pad(b, in->target, jump_phase(an, in, in->target)) < 0)
        {
            return -1;
        }
    }
    for (int k = 0; k < b->n_resume_points; k++) {
        li_landing to = cb->resume_points[k];
        if (to.unit < 0 || to.unit >= an->n_units) {
            continue;
        }
        int i = an->instr_at[to.unit];
        if (an->instrs[i].start == to.unit && an->instrs[i].depth >= 0 &&
            add_pad(b, i, to.phase) < 0)
        {
            return -1;
        }
    }
    return 0;
}

/* ---- layout ------------------------------------------------------------ */

/* Where a jump from `source` to instruction `t` lands in the shadow. */
static int
jump_landing(const builder *b, const li_instr *source, int t)
{
    const plan *pl = &b->plans[t];
    if (pl->probe[LINE] >= 0 && source->event_line != b->an.instrs[t].event_line) {
        return pl->pos[LINE];
    }
    return pl->pos[INSTR] >= 0 ? pl->pos[INSTR] : pl->pos_start;
}

/* Where an exception handled at instruction `t` lands. */
static int
handler_landing(const builder *b, int t)
{
    const plan *pl = &b->plans[t];
    for (int s = HANDLER; s < N_SLOTS; s++) {
        if (pl->pos[s] >= 0) {
            return pl->pos[s];
        }
    }
    return pl->pos_start;
}

static int
instr_landing(const builder *b, int i)
{
    const li_instr *in = &b->an.instrs[i];
    const plan *pl = &b->plans[i];
    if (pl->taken >= 0) {
        return b->stubs[pl->taken].pos;
    }
    if (in->opcode == SEND && b->plans[in->target].pos[ARRIVE] >= 0) {
        return b->plans[in->target].pos[ARRIVE];
    }
    return jump_landing(b, in, in->target);
}

static int
instr_jump_oparg(const builder *b, int i)
{
    const plan *pl = &b->plans[i];
    int landing = instr_landing(b, i);
    return landing >= pl->pos_end ? landing - pl->pos_end : pl->pos_end - landing;
}

/* The stub stands for the owner's jump: it lands as that would. */
static int
stub_landing(const builder *b, const stub *s)
{
    const li_instr *owner = &b->an.instrs[s->owner];
    return jump_landing(b, owner, owner->target);
}

static int
stub_jump_oparg(const builder *b, const stub *s)
{
    int landing = stub_landing(b, s);
    return landing >= s->pos_end ? landing - s->pos_end : s->pos_end - landing;
}

/* Positions stub `s` at `pos`; the position after it. */
static int
place_stub(const builder *b, stub *s, int pos)
{
    s->pos = pos;
    if (s->kind == STUB_DIVERT) {
        s->pos_tail = s->pos_end = pos + b->divert_size;
        return s->pos_end;
    }
    s->pos_tail = pos + b->probe_size;
    s->pos_end = s->pos_tail + (s->kind == STUB_TAKEN ? s->ext : 0) + 1;
    return s->pos_end;
}

/* The jump over the stubs before instruction `i` lands where the
 * instruction before falls through. */
static int
gap_jump_oparg(const builder *b, int i)
{
    const plan *pl = &b->plans[i];
    const stub *last = &b->stubs[b->pre_stubs[pl->first_stub + pl->n_stubs - 1]];
    return last->pos_end - (pl->pos_gap + 1 + pl->gap_ext);
}

/* Orders the stubs that go before an instruction, and counts them per
 * instruction.  0 or -1. */
static int
order_pre_stubs(builder *b)
{
    /* Without any (as in shadows built for LINE alone), every count stays
       the 0 plan_probes() gave it. */
    bool some = false;
    for (int k = 0; k < b->n_stubs && !some; k++) {
        some = b->stubs[k].before >= 0;
    }
    if (!some) {
        return 0;
    }
    PyMem_Free(b->pre_stubs);
    b->pre_stubs = PyMem_Malloc(sizeof(int) * ((size_t)b->n_stubs + 1));
    if (b->pre_stubs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < b->an.n_instrs; i++) {
        b->plans[i].n_stubs = 0;
    }
    int n = 0;
    for (int k = 0; k < b->n_stubs; k++) {
        int before = b->stubs[k].before;
        if (before >= 0) {
            b->plans[before].n_stubs++;
        }
    }
    for (int i = 0; i < b->an.n_instrs; i++) {
        b->plans[i].first_stub = n;
        n += b->plans[i].n_stubs;
        b->plans[i].n_stubs = 0;
    }
    for (int k = 0; k < b->n_stubs; k++) {
        int before = b->stubs[k].before;
        if (before >= 0) {
            plan *pl = &b->plans[before];
            b->pre_stubs[pl->first_stub + pl->n_stubs++] = k;
        }
    }
    return 0;
}

/* Where a frame that lands at `p` goes on (see LI_LAND_*). */
static int
pad_target(const builder *b, const pad *p)
{
    const plan *pl = &b->plans[p->instr];
    switch (p->phase) {
    case LI_LAND_START:
    case LI_LAND_AT:
        return pl->pos_start;
    case LI_LAND_BEFORE_AFTER:
        if (pl->pos[AFTER] >= 0) {
            return pl->pos[AFTER];
        }
        /* fall through */
    case LI_LAND_FALLTHROUGH:
        if (pl->skip) {
            return pl->pos_skip;
        }
        /* fall through */
    case LI_LAND_LINE:
        if (pl->pos[LINE] >= 0) {
            return pl->pos[LINE];
        }
        /* fall through */
    default:
        return pl->pos[INSTR] >= 0 ? pl->pos[INSTR] : pl->pos_start;
    }
}

static int
pad_jump_oparg(const builder *b, const pad *p)
{
    return p->pos + 2 + p->ext - pad_target(b, p);
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
            pl->pos_gap = -1;
            if (pl->n_stubs > 0 && i > 0 && an->instrs[i - 1].depth >= 0 &&
                (an->instrs[i - 1].flags & LI_I_FALLS_THROUGH))
            {
                pl->pos_gap = pos;
                pos += 1 + pl->gap_ext;
            }
            for (int k = pl->first_stub; k < pl->first_stub + pl->n_stubs; k++) {
                pos = place_stub(b, &b->stubs[b->pre_stubs[k]], pos);
            }
            for (int s = 0; s < N_SLOTS && pl->probed; s++) {
                pl->pos[s] = -1;
                if (s == LINE && pl->skip) {
                    pl->pos_skip = pos;
                    pos += 1;
                }
                if (pl->probe[s] >= 0) {
                    pl->pos[s] = pos;
                    pos += b->probe_size;
                }
            }
            pl->pos_start = pos;
            pl->pos_op = pos + pl->ext;
            pl->pos_end = pl->pos_op + (in->end - in->op);
            pos = pl->pos_end;
        }
        for (int k = 0; k < b->n_stubs; k++) {
            if (b->stubs[k].before < 0) {
                pos = place_stub(b, &b->stubs[k], pos);
            }
        }
        for (int k = 0; k < b->n_pads; k++) {
            b->pads[k].pos = pos;
            pos += 2 + b->pads[k].ext;
        }
        b->n_units = pos;
        bool grew = false;
        for (int i = 0; i < an->n_instrs; i++) {
            plan *pl = &b->plans[i];
            if (an->instrs[i].target >= 0 && li_ext_needed(instr_jump_oparg(b, i)) > pl->ext) {
                pl->ext = li_ext_needed(instr_jump_oparg(b, i));
                grew = true;
            }
        }
        for (int k = 0; k < b->n_stubs; k++) {
            stub *s = &b->stubs[k];
            if (s->kind == STUB_TAKEN && li_ext_needed(stub_jump_oparg(b, s)) > s->ext) {
                s->ext = li_ext_needed(stub_jump_oparg(b, s));
                grew = true;
            }
        }
        for (int i = 0; i < an->n_instrs; i++) {
            plan *pl = &b->plans[i];
            if (pl->pos_gap >= 0 && li_ext_needed(gap_jump_oparg(b, i)) > pl->gap_ext) {
                pl->gap_ext = li_ext_needed(gap_jump_oparg(b, i));
                grew = true;
            }
        }
        for (int k = 0; k < b->n_pads; k++) {
            pad *p = &b->pads[k];
            if (p->phase != LI_LAND_RAISED && li_ext_needed(pad_jump_oparg(b, p)) > p->ext) {
                p->ext = li_ext_needed(pad_jump_oparg(b, p));
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

/* The position where probe `index` ends (where its jump counts from). */
static int
probe_end(const builder *b, int index)
{
    return b->probes[index].unit + b->probe_size;
}

/* The DIVERT stub nearest to a jump ending at `from`, and its distance;
 * -1 if there is none. */
static int
nearest_divert(const builder *b, int from, int *distance)
{
    int best = -1;
    for (int k = 0; k < b->n_stubs; k++) {
        const stub *s = &b->stubs[k];
        if (s->kind != STUB_DIVERT) {
            continue;
        }
        int d = s->pos >= from ? s->pos - from : from - s->pos;
        if (best < 0 || d < *distance) {
            best = k;
            *distance = d;
        }
    }
    return best;
}

static int
add_divert_stub(builder *b, int before)
{
    int owner = before >= 0 ? before : b->an.n_instrs - 1;
    int k = add_stub(b, STUB_DIVERT, owner, 0, -1);
    if (k < 0) {
        return -1;
    }
    b->stubs[k].before = before;
    return 0;
}

/* Where the probes (known after a layout) are: records each probe's unit. */
static void
locate_probes(builder *b)
{
    for (int i = 0; i < b->an.n_instrs; i++) {
        const plan *pl = &b->plans[i];
        for (int slot = 0; slot < N_SLOTS && pl->probed; slot++) {
            if (pl->probe[slot] >= 0) {
                b->probes[pl->probe[slot]].unit = pl->pos[slot];
            }
        }
    }
    for (int k = 0; k < b->n_stubs; k++) {
        if (b->stubs[k].probe >= 0) {
            b->probes[b->stubs[k].probe].unit = b->stubs[k].pos;
        }
    }
}

/* Where to put a DIVERT stub for a probe of instruction `i` at `pos`: before
 * an instruction near it that nothing falls into, else (at the price of a
 * jump over it) before `i` itself, or the one after when `i` comes right
 * after RESUME, where a jump would make tracing report a line. */
static int
divert_stub_place(const builder *b, int i, int pos)
{
    const li_analysis *an = &b->an;
    for (int j = i; j > 0 && pos - b->plans[j].pos_start < JUMP_REACH / 2; j--) {
        if (!(an->instrs[j - 1].flags & LI_I_FALLS_THROUGH) && !ends_yield_from(an, j)) {
            return j;
        }
    }
    for (int j = i + 1; j < an->n_instrs && b->plans[j].pos_start - pos < JUMP_REACH / 2; j++) {
        if (!(an->instrs[j - 1].flags & LI_I_FALLS_THROUGH) && !ends_yield_from(an, j)) {
            return j;
        }
    }
    if ((i == b->resume + 1 || ends_yield_from(an, i)) && i + 1 < an->n_instrs) {
        return i + 1;
    }
    return i;
}

/* Lays the code out with DIVERT stubs within a jump's reach of every probe
 * that can divert its frame: one after the code, and more before
 * instructions (preferably ones not fallen into) while some probe is out of
 * reach.  A probe still out of reach after a few rounds does not divert.
 * 0 or -1. */
static int
layout_with_diverts(builder *b)
{
    if (add_divert_stub(b, -1) < 0) {
        return -1;
    }
    for (int round = 0; round < 6; round++) {
        if (order_pre_stubs(b) < 0 || layout(b) < 0) {
            return -1;
        }
        /* In code this short every probe reaches every stub (emit() finds
           the probes' units). */
        if (b->n_units <= JUMP_REACH) {
            return 0;
        }
        locate_probes(b);
        bool added = false;
        int covered_until = -1;     /* positions a stub added this round serves */
        for (int i = 0; i < b->an.n_instrs; i++) {
            const plan *pl = &b->plans[i];
            for (int slot = 0; slot < N_SLOTS; slot++) {
                int index = pl->probe[slot], distance = 0;
                if (index < 0 || b->probes[index].resume_unit < 0 ||
                    pl->pos[slot] < covered_until)
                {
                    continue;
                }
                if (nearest_divert(b, probe_end(b, index), &distance) >= 0 &&
                    distance <= JUMP_REACH)
                {
                    continue;
                }
                int at = divert_stub_place(b, i, pl->pos[slot]);
                if (add_divert_stub(b, at) < 0) {
                    return -1;
                }
                added = true;
                covered_until = pl->pos[slot] + JUMP_REACH / 2;
                break;
            }
        }
        if (!added) {
            return 0;
        }
    }
    /* The last layout stands; probes out of reach do not divert. */
    if (order_pre_stubs(b) < 0 || layout(b) < 0) {
        return -1;
    }
    locate_probes(b);
    return 0;
}

/* ---- emission ---------------------------------------------------------- */

typedef struct {
    _Py_CODEUNIT *code;
    int32_t *orig_of;
    int32_t *loc_of;     /* per unit, for the location table: the original unit
                            whose location it has, or -1 for none */
    /* Only where the builder is `routed`: */
    int *handler;        /* per unit: exception route, see exception_table() */
    int32_t *route_of;   /* per unit: the original unit whose handler applies */
} shadow_image;

enum { ROUTE_ORIGINAL = -1, ROUTE_NONE = -2 };

/* `route_unit`: the original unit whose handler an exception raised by the
 * probe's callbacks goes to, normally the owner's.  Probes that stand for
 * the instruction after them (LINE, INSTR) take its location; the others
 * have none in the location table, so that a jump to a line set through
 * frame.f_lineno never lands on them (it goes to the start of the line). */
static void
emit_probe_at(const builder *b, shadow_image *img, int pos, int index, int owner_unit,
              int route_unit, bool located)
{
    _Py_CODEUNIT *p = img->code + pos;
    /* Armed; li_probes_sync() sets the real state before first use. */
    p = li_emit_with_prefixes(p, b->probe_size - PROBE_BASE_SIZE, LOAD_CONST, b->probes_const);
    li_probe *probe = &b->probes[index];
    probe->unit = pos;
    int distance = 0;
    int divert = probe->resume_unit >= 0 ? nearest_divert(b, probe_end(b, index), &distance) : -1;
    if (divert >= 0 && distance <= JUMP_REACH) {
        /* The probe returns 1 (true) when its frame must divert. */
        bool forward = b->stubs[divert].pos >= probe_end(b, index);
        *p++ = li_make_unit(forward ? POP_JUMP_FORWARD_IF_TRUE : POP_JUMP_BACKWARD_IF_TRUE,
                            distance);
    }
    else {
        probe->resume_unit = -1;
        *p++ = li_make_unit(POP_JUMP_FORWARD_IF_TRUE, 0);
    }
    int loc = located ? owner_unit : -1;
    for (int k = 0; k < b->probe_size; k++) {
        img->orig_of[pos + k] = owner_unit;
        img->loc_of[pos + k] = loc;
    }
    if (b->routed) {
        for (int k = 0; k < b->probe_size; k++) {
            img->route_of[pos + k] = route_unit;
            img->handler[pos + k] = ROUTE_ORIGINAL;
        }
    }
}

/* (Most slots have no probe: only those that do cost a call.) */
static inline void
emit_probe(const builder *b, shadow_image *img, int pos, int index, int owner_unit,
           int route_unit, bool located)
{
    if (index >= 0) {
        emit_probe_at(b, img, pos, index, owner_unit, route_unit, located);
    }
}

static void
own_units(const builder *b, shadow_image *img, int pos, int size, int owner_unit,
          bool located)
{
    int loc = located ? owner_unit : -1;
    for (int k = 0; k < size; k++) {
        img->orig_of[pos + k] = owner_unit;
        img->loc_of[pos + k] = loc;
    }
    if (b->routed) {
        for (int k = 0; k < size; k++) {
            img->route_of[pos + k] = owner_unit;
            img->handler[pos + k] = ROUTE_ORIGINAL;
        }
    }
}

static void
emit_instruction(const builder *b, shadow_image *img, int i)
{
    const li_instr *in = &b->an.instrs[i];
    const plan *pl = &b->plans[i];
    if (in->target >= 0) {
        /* Jumps get their opargs and EXTENDED_ARG prefixes recomputed; the
           prefixes stand for the opcode unit. */
        bool forward = instr_landing(b, i) >= pl->pos_end;
        li_emit_with_prefixes(img->code + pl->pos_start, pl->ext,
                              li_jump_opcode(in->opcode, forward), instr_jump_oparg(b, i));
        own_units(b, img, pl->pos_start, pl->ext, in->op, true);
    }
    else {
        /* Most instructions have no prefix: no loop to set up for them. */
        img->code[pl->pos_op] = b->an.units[in->op];
        for (int k = 0; k < in->op - in->start; k++) {
            img->code[pl->pos_start + k] = b->an.units[in->start + k];
            img->orig_of[pl->pos_start + k] = in->start + k;
            img->loc_of[pl->pos_start + k] = in->start + k;
        }
    }
    /* The opcode unit and its inline caches, which start zeroed, as in
       freshly compiled code: one by one in a single switch (as in
       li_fill_units()) up to five caches, LOAD_METHOD's ten in a loop. */
    int32_t *orig_of = img->orig_of + pl->pos_op, *loc_of = img->loc_of + pl->pos_op;
    _Py_CODEUNIT *caches = img->code + pl->pos_op + 1;
    int op = in->op, n_units = in->end - in->op;
    for (int k = 6; k < n_units; k++) {
        caches[k - 1] = 0;
        orig_of[k] = loc_of[k] = op + k;
    }
    switch (n_units < 6 ? n_units : 6) {
    case 6: caches[4] = 0; orig_of[5] = loc_of[5] = op + 5; /* fall through */
    case 5: caches[3] = 0; orig_of[4] = loc_of[4] = op + 4; /* fall through */
    case 4: caches[2] = 0; orig_of[3] = loc_of[3] = op + 3; /* fall through */
    case 3: caches[1] = 0; orig_of[2] = loc_of[2] = op + 2; /* fall through */
    case 2: caches[0] = 0; orig_of[1] = loc_of[1] = op + 1; /* fall through */
    default: orig_of[0] = loc_of[0] = op;
    }
    if (b->routed) {
        int handler = pl->call_unit ? pl->c_raise : ROUTE_ORIGINAL;
        for (int u = pl->pos_start; u < pl->pos_end; u++) {
            img->route_of[u] = img->orig_of[u];
            img->handler[u] = handler;
        }
    }
}

/* A DIVERT stub: calls the landing function, whose return the frame never
 * sees here.  It has no location and no handler: it raises nothing a
 * program could handle (probes divert only when the call's frame fits under
 * the recursion limit). */
_Py_CODEUNIT *
li_emit_divert(_Py_CODEUNIT *p, int lander_const)
{
    *p++ = li_make_unit(PUSH_NULL, 0);
    p = li_emit_with_prefixes(p, li_ext_needed(lander_const), LOAD_CONST, lander_const);
    *p++ = li_make_unit(PRECALL, 0);
    *p++ = li_make_unit(CACHE, 0);
    *p++ = li_make_unit(CALL, 0);
    for (int k = 0; k < 4; k++) {
        *p++ = li_make_unit(CACHE, 0);
    }
    /* Never reached (the call moves the frame): it tells analyses of the
       shadow (trampoline.c) that nothing falls through from the stub. */
    *p++ = li_make_unit(RETURN_VALUE, 0);
    return p;
}

static void
emit_divert_stub(const builder *b, shadow_image *img, const stub *s)
{
    const li_instr *owner = &b->an.instrs[s->owner];
    _Py_CODEUNIT *end = li_emit_divert(img->code + s->pos, b->lander_const);
    assert(end == img->code + s->pos_end);
    (void)end;
    own_units(b, img, s->pos, s->pos_end - s->pos, owner->op, false);
    for (int u = s->pos; u < s->pos_end && b->routed; u++) {
        img->handler[u] = ROUTE_NONE;
    }
}

/* Whether the units of stub `s` have no line for tracing: a DIVERT stub;
 * a TAKEN stub after the code, whose backward jump then reports the
 * target's line as the original's backward jump does; UNWIND, where
 * tracing would report one as the frame leaves. */
static bool
stub_without_line(const builder *b, const stub *s)
{
    return s->kind == STUB_DIVERT || s->kind == STUB_UNWIND ||
           (s->kind == STUB_TAKEN && stub_landing(b, s) < s->pos_end);
}

static void
emit_stub(const builder *b, shadow_image *img, const stub *s)
{
    if (s->kind == STUB_DIVERT) {
        emit_divert_stub(b, img, s);
        return;
    }
    const li_instr *owner = &b->an.instrs[s->owner];
    emit_probe(b, img, s->pos, s->probe, owner->op, owner->op, false);
    int tail_size = s->pos_end - s->pos_tail;
    own_units(b, img, s->pos_tail, tail_size, owner->op, false);
    if (s->kind == STUB_TAKEN) {
        bool forward = stub_landing(b, s) >= s->pos_end;
        li_emit_with_prefixes(img->code + s->pos_tail, s->ext,
                              forward ? JUMP_FORWARD : JUMP_BACKWARD, stub_jump_oparg(b, s));
    }
    else {
        /* Re-raise where the original would have gone: its handler or out
           of the frame.  After a C_RAISE stub the frame's last instruction
           is the stub's, which stands for the call. */
        img->code[s->pos_tail] = li_make_unit(RERAISE, s->kind == STUB_UNWIND ? 1 : 0);
    }
    if (s->kind == STUB_UNWIND) {
        for (int u = s->pos; u < s->pos_end; u++) {
            img->handler[u] = ROUTE_NONE;
        }
    }
}

/* Landing pads: POP_TOP, then a jump to where the frame goes on; or for an
 * exception in flight, a re-raise where the original sends one raised by
 * the instruction (not its C_RAISE stub: that call started unseen), with
 * the instruction's location for tracebacks. */
static void
emit_pads(const builder *b, shadow_image *img)
{
    for (int k = 0; k < b->n_pads; k++) {
        const pad *p = &b->pads[k];
        _Py_CODEUNIT *out = img->code + p->pos;
        *out++ = li_make_unit(POP_TOP, 0);
        int op = b->an.instrs[p->instr].op;
        if (p->phase == LI_LAND_RAISED) {
            *out = li_make_unit(RERAISE, 0);
            own_units(b, img, p->pos, 2, op, true);
            continue;
        }
        li_emit_with_prefixes(out, p->ext, JUMP_BACKWARD, pad_jump_oparg(b, p));
        own_units(b, img, p->pos, 2 + p->ext, op, false);
    }
}

static void
emit(const builder *b, shadow_image *img)
{
    const li_analysis *an = &b->an;
    for (int i = 0; i < an->n_instrs; i++) {
        const plan *pl = &b->plans[i];
        const li_instr *in = &an->instrs[i];
        int prev_op = i > 0 ? an->instrs[i - 1].op : in->op;
        if (pl->pos_gap >= 0) {
            li_emit_with_prefixes(img->code + pl->pos_gap, pl->gap_ext, JUMP_FORWARD,
                                  gap_jump_oparg(b, i));
            own_units(b, img, pl->pos_gap, 1 + pl->gap_ext, prev_op, false);
        }
        if (pl->probed) {
            emit_probe(b, img, pl->pos[AFTER], pl->probe[AFTER], prev_op, prev_op, false);
            if (pl->probe[ARRIVE] >= 0) {
                int send = b->sites[b->probes[pl->probe[ARRIVE]].first_site].orig;
                emit_probe(b, img, pl->pos[ARRIVE], pl->probe[ARRIVE], send, send, false);
            }
            if (pl->skip) {
                img->code[pl->pos_skip] = li_make_unit(JUMP_FORWARD, b->probe_size);
                own_units(b, img, pl->pos_skip, 1, prev_op, false);
            }
            /* The probes before a handler run before it takes the exception
               (PUSH_EXC_INFO): what their callbacks raise must not reach the
               handler's own cleanup, which expects it taken.  It goes where an
               exception raised just before the handler would, as natively. */
            int route = (in->flags & LI_I_HANDLER_TARGET) ? in->start - 1 : in->op;
            for (int s = HANDLER; s < N_SLOTS; s++) {
                emit_probe(b, img, pl->pos[s], pl->probe[s], in->op, route, s != HANDLER);
            }
            if (in->opcode == YIELD_VALUE && pl->probe[INSTR] >= 0 && i > 0 &&
                an->instrs[i - 1].opcode == SEND)
            {
                /* When a `yield from` subiterator fails on throw(), CPython
                   (_gen_throw) finds where the loop ends by reading the oparg of
                   the unit before the YIELD_VALUE, which it takes for the SEND;
                   here that unit is the probe's jump, which never jumps (the
                   probe cannot divert), so it carries the distance from the
                   YIELD_VALUE to where the SEND jumps. */
                int distance = instr_landing(b, i - 1) - pl->pos_start;
                assert(distance > 0 && distance < 256);
                assert(b->probes[pl->probe[INSTR]].resume_unit < 0);
                img->code[pl->pos_start - 1] = li_make_unit(POP_JUMP_FORWARD_IF_TRUE, distance);
            }
        }
        emit_instruction(b, img, i);
    }
    for (int k = 0; k < b->n_stubs; k++) {
        emit_stub(b, img, &b->stubs[k]);
    }
    emit_pads(b, img);
}

/* The exception table of the shadow.  A unit's route is ROUTE_ORIGINAL (the
 * handler that covers the original unit it stands for, else the UNWIND
 * stub), ROUTE_NONE (UNWIND itself: out of the frame) or a C_RAISE stub. */
static PyObject *
exception_table(const builder *b, const shadow_image *img)
{
    const li_analysis *an = &b->an;
    if (!b->routed) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    int *handler_of = li_alloc_filled_later((size_t)an->n_units, sizeof(int));
    li_handler *entry = li_alloc_filled_later((size_t)b->n_units, sizeof(li_handler));
    PyObject *table = NULL;
    if (handler_of == NULL || entry == NULL) {
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
    const stub *unwind = b->unwind >= 0 ? &b->stubs[b->unwind] : NULL;
    for (int su = 0; su < b->n_units; su++) {
        int route = img->handler[su];
        li_handler *e = &entry[su];
        *e = (li_handler){0, 0, -1, 0, false};
        if (route >= 0) {
            const stub *s = &b->stubs[route];
            *e = (li_handler){0, 0, s->pos, s->depth, false};
        }
        else if (route == ROUTE_ORIGINAL && img->route_of[su] >= 0 &&
                 handler_of[img->route_of[su]] >= 0)
        {
            const li_handler *h = &an->handlers[handler_of[img->route_of[su]]];
            *e = (li_handler){0, 0, handler_landing(b, an->instr_at[h->target]),
                              h->depth, h->lasti};
        }
        else if (route == ROUTE_ORIGINAL && unwind != NULL) {
            *e = (li_handler){0, 0, unwind->pos, 0, true};
        }
    }
    /* throw() into a frame suspended in a `yield from` loop that the
       subiterator ends resumes it with the exception at the unit before the
       one the loop's SEND jumps to (CPython's _gen_throw): there a probe or
       a jump ends, which raises nothing itself, and the exception must go
       where one raised by the SEND goes. */
    for (int i = 0; i < an->n_instrs; i++) {
        if (an->instrs[i].opcode == SEND && an->instrs[i].target >= 0 &&
            an->instrs[i].depth >= 0)
        {
            int before = instr_landing(b, i) - 1;
            entry[before] = entry[b->plans[i].pos_op];
        }
    }
    table = li_encode_handlers(entry, b->n_units);
done:
    PyMem_Free(handler_of);
    PyMem_Free(entry);
    return table;
}

/* The per-unit line array that tracing and PyCode_Addr2Line read (CPython
 * fills it lazily from the location table) maps each unit to the line of
 * the original unit it stands for.  It differs from the location table in
 * the units of stub_without_line() and in one more place: the probe right
 * after RESUME 0 (PY_START) belongs to RESUME, but a sys.settrace function
 * must see the same 'line' events as in the original, where the first is at
 * the instruction after RESUME; so in this array the probe has no line, and
 * that instruction, coming after a unit without one, makes the event (a
 * line there, RESUME's or its own, would make it at the probe, where
 * f_lasti reads RESUME's offset).  Python code sees RESUME's line
 * (transparency.c maps lines through the original).  The ranges of units
 * without a line; their count. */
static int
lineless_ranges(const builder *b, int (*ranges)[2])
{
    int n = 0;
    for (int k = 0; k < b->n_stubs; k++) {
        const stub *s = &b->stubs[k];
        if (stub_without_line(b, s)) {
            ranges[n][0] = s->pos;
            ranges[n++][1] = s->pos_end;
        }
    }
    if (b->resume >= 0 && b->resume + 1 < b->an.n_instrs &&
        b->plans[b->resume + 1].pos[AFTER] >= 0)
    {
        ranges[n][0] = b->plans[b->resume + 1].pos[AFTER];
        ranges[n][1] = ranges[n][0] + b->probe_size;
        n++;
    }
    return n;
}

/* The constants of a shadow: the original's (or what stands for them), its
 * li_probes object and the landing function.  The tuple is never tracked by
 * the collector: only the shadow, a code object (which 3.11's collector does
 * not track), holds it, and nothing in it refers back to it, so it is never
 * part of a cycle, and what it holds is reachable while the shadow lives,
 * which an untracked holder tells the collector as a tracked one would.  Nor
 * does it count as an allocation towards the next collection: natively
 * (3.12) instrumenting a function allocates no object, and counting one per
 * shadow made the first calls after events were turned on set off
 * collections, full ones in a big heap.  (When the shadow goes, the
 * collector counts one object less, as it does for every free; its count
 * never goes below zero.) */
static PyObject *
shadow_consts(PyObject *consts, li_probes *lp)
{
    Py_ssize_t n = PyTuple_GET_SIZE(consts);
    PyObject *landing = li_landing_function();
    /* The count at 0 is under any threshold that enables collections. */
    struct gc_generation *young = &_PyInterpreterState_GET()->gc.generations[0];
    int count = young->count;
    young->count = 0;
    PyObject *result = PyTuple_New(n + 2);
    young->count = count;
    if (result == NULL) {
        return NULL;
    }
    PyObject_GC_UnTrack(result);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(result, i, Py_NewRef(PyTuple_GET_ITEM(consts, i)));
    }
    PyTuple_SET_ITEM(result, n, Py_NewRef((PyObject *)lp));
    PyTuple_SET_ITEM(result, n + 1, Py_NewRef(landing != NULL ? landing : Py_None));
    return result;
}

/* `count` entries of a unit map, -1 or below LI_NARROW_NONE, into 16-bit
 * ones (li_orig_of()). */
static void
narrow_map(uint16_t *out, const int32_t *map, int count)
{
    for (int u = 0; u < count; u++) {
        out[u] = (uint16_t)map[u];
    }
}

/* The li_probes object of `parts`, whose arrays it copies into one block
 * (freed with lp->probes, its start). */
static li_probes *
new_probes(const li_shadow_parts *parts)
{
    size_t probes_size = sizeof(li_probe) * (size_t)parts->n_probes;
    size_t sites_size = sizeof(li_site) * (size_t)parts->n_sites;
    size_t pads_size = sizeof(li_pad) * (size_t)parts->n_pads;
    size_t loops_size = sizeof(struct li_for_iter) * (size_t)parts->n_for_iters;
    bool wide = parts->n_units >= LI_NARROW_NONE || parts->n_orig_units >= LI_NARROW_NONE ||
                probes_size / 8 >= LI_NARROW_NONE;
    size_t entry = wide ? sizeof(int32_t) : sizeof(uint16_t);
    size_t units_size = entry * (size_t)parts->n_units;
    size_t orig_size = entry * (size_t)parts->n_orig_units;
    /* Probes and sites first, for their alignment (that of pointers). */
    _Static_assert(sizeof(li_probe) % sizeof(void *) == 0 &&
                   sizeof(li_site) % sizeof(void *) == 0, "alignment of the block");
    char *block = PyMem_Malloc(probes_size + sites_size + pads_size + loops_size +
                               2 * units_size + orig_size + 1);
    if (block == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    li_probes *lp = PyObject_New(li_probes, wide ? &li_wide_probes_type : &li_probes_type);
    if (lp == NULL) {
        PyMem_Free(block);
        return NULL;
    }
    memset((char *)lp + sizeof(PyObject), 0, sizeof(li_probes) - sizeof(PyObject));
    lp->probes = memcpy(block, parts->probes, probes_size);
    block += probes_size;
    lp->sites = memcpy(block, parts->sites, sites_size);
    block += sites_size;
    lp->pads = memcpy(block, parts->pads, pads_size);
    block += pads_size;
    lp->for_iters = memcpy(block, parts->for_iters, loops_size);
    block += loops_size;
    lp->wide_maps = wide;
    lp->orig_of = block;
    block += units_size;
    lp->shadow_of = block;
    block += orig_size;
    lp->probe_at = block;
    if (wide) {
        memcpy(lp->orig_of, parts->orig_of, units_size);
        memcpy(lp->shadow_of, parts->shadow_of, orig_size);
    }
    else {
        narrow_map(lp->orig_of, parts->orig_of, parts->n_units);
        narrow_map(lp->shadow_of, parts->shadow_of, parts->n_orig_units);
    }
    /* Every byte 0xFF: none in every entry. */
    memset(lp->probe_at, 0xFF, units_size);
    lp->original = (PyCodeObject *)Py_NewRef(parts->original);
    lp->cs = parts->cs;
    lp->kinds = parts->kinds;
    lp->probes_const = parts->probes_const;
    lp->n_units = parts->n_units;
    lp->n_orig_units = parts->n_orig_units;
    lp->n_probes = parts->n_probes;
    lp->n_sites = parts->n_sites;
    lp->n_pads = parts->n_pads;
    lp->n_for_iters = parts->n_for_iters;
    int probe_size = parts->probe_size;
    lp->probe_size = (uint8_t)probe_size;
    /* The first unit of an armed probe. */
    int ext = probe_size - PROBE_BASE_SIZE;
    lp->armed_unit = li_make_unit(ext > 0 ? EXTENDED_ARG : LOAD_CONST,
                                  (parts->probes_const >> (8 * ext)) & 0xFF);
    lp->n_armed = parts->n_probes;    /* emitted armed */
    for (int k = 0; k < lp->n_probes; k++) {
        li_probe *p = &lp->probes[k];
        int32_t at = k * (int32_t)sizeof(li_probe);
        if (wide) {
            ((int32_t *)lp->probe_at)[p->unit + probe_size - 1] = at;
        }
        else {
            ((uint16_t *)lp->probe_at)[p->unit + probe_size - 1] = (uint16_t)(at / 8);
        }
        /* Inline caches are zero here: a LOAD_FAST opcode is one. */
        p->after_load_fast = ext == 0 && p->unit > 0 &&
                             _Py_OPCODE(parts->code[p->unit - 1]) == LOAD_FAST;
    }
    lp->entry_probe = parts->entry_probe;
    lp->entry_only_at_start = parts->entry_only_at_start;
    lp->n_resume_points = parts->n_resume_points;
    lp->partial = parts->partial;
    lp->built_epoch = li_reg.disable_epoch;
    for (int e = 0; e < LI_LOCAL_EVENT_COUNT; e++) {
        lp->built_tools[e] = li_reg.global_tools[e] | parts->cs->local_tools[e];
    }
    return lp;
}

/* The stack a shadow with `probes` needs. */
static int
stack_size(const li_probe *probes, int n_probes, PyCodeObject *original)
{
    int needed = li_true_stacksize(original), size = needed;
    for (int p = 0; p < n_probes; p++) {
        /* A probe pushes one value; the DIVERT stub it jumps to, two. */
        int top = probes[p].depth + (probes[p].resume_unit >= 0 ? 2 : 1);
        if (top > size) {
            size = top;
        }
    }
    /* Entry trampolines allocate frames by this bound (trampoline.c). */
    assert(size <= li_shadow_stack_bound(original, needed));
    return size;
}

/* The tests' view of what turning events on costs (b311.h). */
static Py_ssize_t shadows_built;

Py_ssize_t
li_shadows_built(void)
{
    return shadows_built;
}

PyCodeObject *
li_assemble_shadow(const li_shadow_parts *parts, PyObject *consts)
{
    PyCodeObject *original = parts->original, *shadow = NULL;
    PyObject *code_bytes = NULL, *new_consts = NULL;
    int stacksize = stack_size(parts->probes, parts->n_probes, original);
    li_probes *lp = new_probes(parts);
    if (lp == NULL) {
        goto done;
    }
    code_bytes = PyBytes_FromStringAndSize((const char *)parts->code,
                                           (Py_ssize_t)parts->n_units * 2);
    if (code_bytes == NULL || (new_consts = shadow_consts(consts, lp)) == NULL) {
        goto done;
    }
    struct _PyCodeConstructor con = {
        .filename = original->co_filename,
        .name = original->co_name,
        .qualname = original->co_qualname,
        .flags = original->co_flags,
        .code = code_bytes,
        .firstlineno = original->co_firstlineno,
        .linetable = parts->linetable,
        .consts = new_consts,
        .names = original->co_names,
        .localsplusnames = original->co_localsplusnames,
        .localspluskinds = original->co_localspluskinds,
        .argcount = original->co_argcount,
        .posonlyargcount = original->co_posonlyargcount,
        .kwonlyargcount = original->co_kwonlyargcount,
        .stacksize = stacksize,
        .exceptiontable = parts->exctable,
    };
    shadow = _PyCode_New(&con);
    if (shadow == NULL) {
        goto done;
    }
    if (li_set_line_array_mapped(shadow, parts->locs, parts->orig_of, parts->wide_lines) < 0) {
        Py_CLEAR(shadow);
        goto done;
    }
    for (int k = 0; k < parts->n_lineless; k++) {
        for (int u = parts->lineless[k][0]; u < parts->lineless[k][1]; u++) {
            li_line_array_set(shadow, u, -1);
        }
    }
    if (li_probes_attach(lp, shadow) < 0) {
        Py_CLEAR(shadow);
        goto done;
    }
    shadows_built++;
done:
    Py_XDECREF(lp);
    Py_XDECREF(code_bytes);
    Py_XDECREF(new_consts);
    return shadow;
}

/* Where original units and FOR_ITERs went, and the landing pads, for
 * new_probes(), in `parts` (freed by the caller).  0 or -1. */
static int
hand_over(const builder *b, li_shadow_parts *parts)
{
    const li_analysis *an = &b->an;
    int32_t *shadow_of = li_alloc_filled_later((size_t)an->n_units, sizeof(int32_t));
    struct li_for_iter *loops = PyMem_Malloc(sizeof(*loops) * ((size_t)an->n_for_iters + 1));
    li_pad *pads = PyMem_Malloc(sizeof(li_pad) * ((size_t)b->n_pads + 1));
    parts->shadow_of = shadow_of;
    parts->for_iters = loops;
    parts->pads = pads;
    if (shadow_of == NULL || loops == NULL || pads == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        return -1;
    }
    for (int k = 0; k < b->n_pads; k++) {
        li_landing to = {an->instrs[b->pads[k].instr].start, b->pads[k].phase};
        pads[k] = (li_pad){to, b->pads[k].pos};
    }
    parts->n_pads = b->n_pads;
    parts->n_for_iters = an->n_for_iters;
    for (int i = 0, k = 0; k < an->n_for_iters; i++) {
        if (an->instrs[i].opcode == FOR_ITER) {
            loops[k++] = (struct li_for_iter){b->plans[i].pos_op, an->instrs[i].depth};
        }
    }
    for (int i = 0; i < an->n_instrs; i++) {
        const li_instr *in = &an->instrs[i];
        const plan *pl = &b->plans[i];
        if (in->start == in->op) {
            li_fill_units(shadow_of + in->op, in->end - in->op, pl->pos_op, 1);
            continue;
        }
        for (int u = in->start; u < in->end; u++) {
            int su = pl->pos_op + (u - in->op);
            shadow_of[u] = su < pl->pos_start ? pl->pos_start : su;
        }
    }
    parts->probes = b->probes;
    parts->n_probes = b->n_probes;
    parts->sites = b->sites;
    parts->n_sites = b->n_sites;
    return 0;
}

static PyCodeObject *
build_general(PyCodeObject *original, li_code_state *cs, li_event_set kinds,
              PyObject *consts, bool every_site, bool placeholders)
{
    builder b = {0};
    shadow_image img = {0};
    void *scratch = NULL;      /* img's arrays */
    li_shadow_parts parts = {0};
    int (*lineless)[2] = NULL;
    PyCodeObject *shadow = NULL;

    if (li_analyse(original, &b.an) < 0) {
        return NULL;
    }
    b.cs = cs;
    b.kinds = kinds;
    b.every_site = every_site;
    b.entry_probe = -1;
    b.entry_only_at_start = false;
    b.resume = -1;
    b.probes_const = (int)PyTuple_GET_SIZE(consts);
    b.lander_const = b.probes_const + 1;
    b.original = original;
    b.placeholders = placeholders;
    b.stacksize = li_true_stacksize(original);
    b.divert_size = DIVERT_BASE_SIZE + li_ext_needed(b.lander_const);
    b.probe_size = PROBE_BASE_SIZE + li_ext_needed(b.probes_const);
    if (plan_probes(&b) < 0 || plan_pads(&b) < 0 || layout_with_diverts(&b) < 0)
    {
        goto done;
    }
    b.routed = b.an.n_handlers > 0 || b.unwind >= 0;
    for (int k = 0; k < b.n_stubs && !b.routed; k++) {
        b.routed = b.stubs[k].kind == STUB_C_RAISE;
    }
    /* emit() writes every unit of each (handler and route_of only if
       routed). */
    /* One block for the arrays that die with the build (the probes object
       copies orig_of). */
    scratch = li_alloc_filled_later((size_t)b.n_units, sizeof(int) + 3 * sizeof(int32_t) +
                                    sizeof(_Py_CODEUNIT));
    lineless = PyMem_Malloc(sizeof(*lineless) * ((size_t)b.n_stubs + 1));
    if (scratch == NULL || lineless == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto done;
    }
    img.handler = scratch;
    img.loc_of = (int32_t *)(img.handler + b.n_units);
    img.route_of = img.loc_of + b.n_units;
    img.orig_of = img.route_of + b.n_units;
    img.code = (_Py_CODEUNIT *)(img.orig_of + b.n_units);
    emit(&b, &img);
    parts = (li_shadow_parts){
        .original = original,
        .cs = cs,
        .kinds = kinds,
        .partial = b.partial,
        .n_units = b.n_units,
        .n_orig_units = b.an.n_units,
        .code = img.code,
        .orig_of = img.orig_of,
        .n_resume_points = b.n_resume_points,
        .probe_size = b.probe_size,
        .probes_const = b.probes_const,
        .entry_probe = b.entry_probe,
        .entry_only_at_start = b.entry_only_at_start,
        .locs = b.an.locs,
        .wide_lines = b.an.max_line > INT16_MAX,
        .lineless = (const int (*)[2])lineless,
        .n_lineless = lineless_ranges(&b, lineless),
    };
    parts.linetable = li_encode_locations(b.an.locs, img.loc_of, b.n_units,
                                          original->co_firstlineno);
    parts.exctable = exception_table(&b, &img);
    if (parts.linetable != NULL && parts.exctable != NULL && hand_over(&b, &parts) == 0) {
        shadow = li_assemble_shadow(&parts, consts);
    }
    PyMem_Free((void *)parts.shadow_of);
    PyMem_Free((void *)parts.for_iters);
    PyMem_Free((void *)parts.pads);
    Py_XDECREF(parts.linetable);
    Py_XDECREF(parts.exctable);
done:
    li_analysis_clear(&b.an);
    PyMem_Free(b.plans);
    PyMem_Free(b.stubs);
    PyMem_Free(b.pre_stubs);
    PyMem_Free(b.pads);
    PyMem_Free(b.probes);
    PyMem_Free(b.sites);
    PyMem_Free(scratch);
    PyMem_Free(lineless);
    return shadow;
}

PyCodeObject *
li_build_shadow(PyCodeObject *original, li_code_state *cs, li_event_set kinds,
                PyObject *consts, bool every_site)
{
    assert(PyTuple_GET_SIZE(consts) == PyTuple_GET_SIZE(original->co_consts));
    /* (A pending refresh needs an entry probe.) */
    bool placeholders = !every_site && kinds != 0 &&
                        ((cs != NULL && cs->refresh_pending) || may_leave_out(cs, kinds));
    if (kinds != 0 && (kinds & ~(LI_EVENT_BIT(LI_LINE) | LI_EVENT_BIT(LI_PY_START))) == 0) {
        PyCodeObject *shadow = li_build_line_shadow(original, cs, kinds, consts, every_site,
                                                    placeholders);
#ifdef LI_CROSSCHECK_LINE_SHADOWS
        if (shadow != NULL) {
            PyCodeObject *general = build_general(original, cs, kinds, consts, every_site,
                                                  placeholders);
            if (general == NULL || li_line_shadow_differs(shadow, general)) {
                Py_CLEAR(shadow);
            }
            Py_XDECREF(general);
            shadows_built--;
        }
#endif
        if (shadow != NULL || PyErr_Occurred()) {
            return shadow;
        }
    }
    return build_general(original, cs, kinds, consts, every_site, placeholders);
}
