/* Static analysis of 3.11 bytecode: instructions, jump targets, handlers,
 * locations, stack depths and where LINE events can happen. */

#define NEED_OPCODE_TABLES   /* this file defines the opcode tables for the back end */
#include "b311.h"

void
li_analysis_clear(li_analysis *an)
{
    PyMem_Free(an->instrs);     /* with units, instr_at and locs */
    PyMem_Free(an->handlers);
    memset(an, 0, sizeof(*an));
}

/* The opcodes after which execution never goes on with the next
 * instruction. */
static const bool ends_flow[256] = {
    [RETURN_VALUE] = true, [RAISE_VARARGS] = true, [RERAISE] = true,
    [JUMP_FORWARD] = true, [JUMP_BACKWARD] = true, [JUMP_BACKWARD_NO_INTERRUPT] = true,
};

static int
decode_instructions(li_analysis *an)
{
    int n = 0;
    for (int unit = 0; unit < an->n_units;) {
        li_instr *in = &an->instrs[n];
        in->start = unit;
        int oparg = 0;
        while (_Py_OPCODE(an->units[unit]) == EXTENDED_ARG && unit + 1 < an->n_units) {
            oparg = (oparg << 8) | _Py_OPARG(an->units[unit]);
            unit++;
        }
        in->op = unit;
        in->opcode = (uint8_t)_Py_OPCODE(an->units[unit]);
        in->oparg = (oparg << 8) | _Py_OPARG(an->units[unit]);
        in->end = unit + 1 + _PyOpcode_Caches[in->opcode];
        if (in->end > an->n_units || in->opcode == CACHE) {
            PyErr_Format(PyExc_ValueError, "lowimpact: malformed bytecode in %R", an->code);
            return -1;
        }
        in->line = an->locs[in->op].line;
        in->event_line = in->line;     /* mark_line_starts() revises it after the prologue */
        in->depth = -1;
        in->target = -1;
        in->flags = ends_flow[in->opcode] ? 0 : LI_I_FALLS_THROUGH;
        if (n > 0 && ((in->opcode == PRECALL && in[-1].opcode == KW_NAMES) ||
                      (in->opcode == CALL && in[-1].opcode == PRECALL)))
        {
            in->flags |= LI_I_IN_CALL_GROUP;
        }
        an->n_for_iters += in->opcode == FOR_ITER;
        li_fill_units(an->instr_at + in->start, in->end - in->start, n, 0);
        unit = in->end;
        n++;
    }
    an->n_instrs = n;
    return 0;
}

/* Index of the instruction starting at `unit`, or -1. */
static int
instr_starting_at(const li_analysis *an, int unit)
{
    if (unit < 0 || unit >= an->n_units) {
        return -1;
    }
    int i = an->instr_at[unit];
    return an->instrs[i].start == unit ? i : -1;
}

static int
resolve_targets(li_analysis *an)
{
    for (int i = 0; i < an->n_instrs; i++) {
        li_instr *in = &an->instrs[i];
        if (!li_is_jump(in->opcode)) {
            continue;
        }
        int unit = li_is_jump_backward(in->opcode) ? in->end - in->oparg
                                                   : in->end + in->oparg;
        in->target = instr_starting_at(an, unit);
        if (in->target < 0) {
            goto corrupt;
        }
        an->instrs[in->target].flags |= LI_I_JUMP_TARGET;
        an->reraise_jumped_to |= an->instrs[in->target].opcode == RERAISE;
    }
    for (int h = 0; h < an->n_handlers; h++) {
        int target = instr_starting_at(an, an->handlers[h].target);
        if (target < 0 || an->handlers[h].start < 0 ||
            an->handlers[h].end > an->n_units)
        {
            goto corrupt;
        }
        an->instrs[target].flags |= LI_I_HANDLER_TARGET;
    }
    return 0;
corrupt:
    PyErr_Format(PyExc_ValueError, "lowimpact: jump or handler into the middle of "
                 "an instruction in %R", an->code);
    return -1;
}

/* Opcodes whose stack effect when they do not jump does not depend on their
 * oparg (checked against CPython's stack_effect() for opargs 0-4095 and
 * larger ones): most instructions of most code, whose effect is looked up
 * once rather than asked of CPython at every instruction of every shadow. */
static const bool oparg_free[256] = {
    [NOP] = true, [POP_TOP] = true, [PUSH_NULL] = true, [UNARY_POSITIVE] = true,
    [UNARY_NEGATIVE] = true, [UNARY_NOT] = true, [UNARY_INVERT] = true,
    [BINARY_SUBSCR] = true, [STORE_SUBSCR] = true, [DELETE_SUBSCR] = true,
    [GET_ITER] = true, [RETURN_VALUE] = true, [LOAD_FAST] = true, [LOAD_CONST] = true,
    [STORE_FAST] = true, [DELETE_FAST] = true, [LOAD_NAME] = true, [STORE_NAME] = true,
    [STORE_GLOBAL] = true, [LOAD_ATTR] = true, [STORE_ATTR] = true, [LOAD_METHOD] = true,
    [LOAD_DEREF] = true, [STORE_DEREF] = true, [LOAD_CLOSURE] = true, [BINARY_OP] = true,
    [COMPARE_OP] = true, [IS_OP] = true, [CONTAINS_OP] = true, [COPY] = true, [SWAP] = true,
    [RESUME] = true, [KW_NAMES] = true, [JUMP_FORWARD] = true, [JUMP_BACKWARD] = true,
    [POP_JUMP_FORWARD_IF_FALSE] = true, [POP_JUMP_FORWARD_IF_TRUE] = true,
    [POP_JUMP_FORWARD_IF_NONE] = true, [POP_JUMP_FORWARD_IF_NOT_NONE] = true,
    [POP_JUMP_BACKWARD_IF_FALSE] = true, [POP_JUMP_BACKWARD_IF_TRUE] = true,
    [POP_JUMP_BACKWARD_IF_NONE] = true, [POP_JUMP_BACKWARD_IF_NOT_NONE] = true,
};

int
li_fall_through_effect(int opcode, int oparg)
{
    static int effects[256];    /* of the oparg_free opcodes, once looked up */
    static bool ready;
    if (!ready) {
        for (int op = 0; op < 256; op++) {
            effects[op] = oparg_free[op] ? PyCompile_OpcodeStackEffectWithJump(op, 0, 0) : 0;
        }
        ready = true;
    }
    if (!oparg_free[opcode]) {
        return PyCompile_OpcodeStackEffectWithJump(opcode, oparg, 0);
    }
    assert(effects[opcode] == PyCompile_OpcodeStackEffectWithJump(opcode, oparg, 0));
    return effects[opcode];
}

/* Propagates stack depths along every edge: fall-through, jumps and the
 * exception table.  Instructions never reached keep depth -1. */
static int
compute_depths(li_analysis *an)
{
    /* The work list holds each instruction at most once.  Most code fits
       the one on the stack (an allocation cost as much as the pass over
       a small function). */
    int small[512];
    int *work = an->n_instrs <= (int)Py_ARRAY_LENGTH(small)
                ? small : PyMem_Malloc(sizeof(int) * (size_t)an->n_instrs);
    if (work == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int top = 0;
#define REACH(index, d)                                             \
    do {                                                            \
        li_instr *next_ = &an->instrs[(index)];                     \
        if (next_->depth < 0) {                                     \
            next_->depth = (d);                                     \
            work[top++] = (index);                                  \
        }                                                           \
    } while (0)
    if (an->n_instrs > 0) {
        REACH(0, 0);
    }
    while (top > 0) {
        int i = work[--top];
        li_instr *in = &an->instrs[i];
        for (int h = 0; h < an->n_handlers; h++) {
            const li_handler *hd = &an->handlers[h];
            if (hd->start <= in->op && in->op < hd->end) {
                REACH(an->instr_at[hd->target], hd->depth + (hd->lasti ? 1 : 0) + 1);
            }
        }
        if ((in->flags & LI_I_FALLS_THROUGH) && i + 1 < an->n_instrs) {
            /* The value a generator is first resumed with is pushed after
               RETURN_GENERATOR; the compiler counts it on the POP_TOP. */
            int effect = in->opcode == RETURN_GENERATOR
                         ? 1 : li_fall_through_effect(in->opcode, in->oparg);
            REACH(i + 1, in->depth + effect);
        }
        if (in->target >= 0) {
            int effect = PyCompile_OpcodeStackEffectWithJump(in->opcode, in->oparg, 1);
            REACH(in->target, in->depth + effect);
        }
    }
#undef REACH
    if (work != small) {
        PyMem_Free(work);
    }
    int stacksize = li_true_stacksize(an->code);
    for (int i = 0; i < an->n_instrs; i++) {
        if (an->instrs[i].depth > stacksize || an->instrs[i].depth < -1) {
            PyErr_Format(PyExc_ValueError, "lowimpact: inconsistent stack depth %d/%d at unit %d op %d "
                         "in %R", an->instrs[i].depth, stacksize, an->instrs[i].start, an->instrs[i].opcode, an->code);
            return -1;
        }
    }
    return 0;
}

/* The handler the compiler adds to restore the previous exception and
 * re-raise (COPY 3; POP_EXCEPT; RERAISE 1).  3.11 sometimes gives it the
 * line of the statement around it, 3.12 never gives it a line. */
static bool
is_cleanup_handler(const li_analysis *an, int i)
{
    const li_instr *in = an->instrs + i;
    return (in->flags & LI_I_HANDLER_TARGET) && i + 2 < an->n_instrs &&
           in[0].opcode == COPY && in[0].oparg == 3 && in[1].opcode == POP_EXCEPT &&
           in[2].opcode == RERAISE && in[2].oparg == 1;
}

/* How many instructions from `i` on 3.12 gives no line where 3.11 gives
 * that of an `except*`: what runs when nothing is left to re-raise
 * (POP_TOP; POP_EXCEPT after PREP_RERAISE_STAR; COPY 1;
 * POP_JUMP_FORWARD_IF_NOT_NONE), and the function's implicit return after
 * it.  0 if `i` does not start that. */
static int
star_cleanup_length(const li_analysis *an, int i)
{
    const li_instr *in = an->instrs + i;
    /* (Its own opcode first: that rules out nearly every instruction.) */
    if (in[0].opcode != POP_TOP || i < 3 || i + 1 >= an->n_instrs ||
        in[-3].opcode != PREP_RERAISE_STAR ||
        in[-2].opcode != COPY || in[-2].oparg != 1 ||
        in[-1].opcode != POP_JUMP_FORWARD_IF_NOT_NONE || in[1].opcode != POP_EXCEPT)
    {
        return 0;
    }
    if (i + 3 < an->n_instrs && in[2].opcode == LOAD_CONST && in[3].opcode == RETURN_VALUE &&
        in[2].line == in[0].line && in[3].line == in[0].line &&
        !(in[2].flags & LI_I_JUMP_TARGET))
    {
        return 4;
    }
    return 2;
}

/* The line 3.12 gives a RERAISE that only jumps reach: the jumps' line
 * when they share one (a block without a location inherits its single
 * predecessor's); 3.11 gives it the line of whatever precedes it in the
 * bytecode.  `jump_line` maps each instruction to the line of the jumps to
 * it, -2 when none jumps there, -3 when they disagree. */
static int
line_as_in_312(const li_analysis *an, const int *jump_line, int i)
{
    const li_instr *in = an->instrs + i;
    bool entered_from_prev = i > 0 && (in[-1].flags & LI_I_FALLS_THROUGH);
    if (jump_line != NULL && in->opcode == RERAISE && !entered_from_prev &&
        jump_line[i] >= 0)
    {
        return jump_line[i];
    }
    return in->line;
}

static int *
lines_of_jumps(const li_analysis *an)
{
    int *jump_line = PyMem_Malloc(sizeof(int) * (size_t)(an->n_instrs + 1));
    if (jump_line == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (int i = 0; i < an->n_instrs; i++) {
        jump_line[i] = -2;
    }
    for (int i = 0; i < an->n_instrs; i++) {
        int t = an->instrs[i].target;
        if (t >= 0) {
            int line = an->instrs[i].line;
            jump_line[t] = jump_line[t] == -2 || jump_line[t] == line ? line : -3;
        }
    }
    return jump_line;
}

/* Where LINE can fire (CPython 3.12's rule): the first instruction of each
 * run of a line, every jump target and every exception handler, never
 * RESUME or END_ASYNC_FOR, never an instruction without a line (counting
 * cleanup handlers as such), never in the prologue before the first RESUME.
 * Lines as 3.12 would give them (line_as_in_312). */
static int
mark_line_starts(li_analysis *an)
{
    int *jump_line = NULL;
    if (an->reraise_jumped_to) {
        jump_line = lines_of_jumps(an);
        if (jump_line == NULL) {
            return -1;
        }
    }
    int first = 0;
    while (first < an->n_instrs && an->instrs[first].opcode != RESUME) {
        first++;
    }
    int current_line = -1;
    int cleanup_left = 0;     /* instructions of a cleanup handler to go */
    for (int i = first; i < an->n_instrs; i++) {
        li_instr *in = &an->instrs[i];
        in->flags |= LI_I_TRACEABLE;
        if (in->opcode == RESUME || in->opcode == END_ASYNC_FOR) {
            continue;
        }
        if (is_cleanup_handler(an, i)) {
            cleanup_left = 3;
        }
        else if (cleanup_left == 0) {
            cleanup_left = star_cleanup_length(an, i);
        }
        int line = cleanup_left > 0 ? -1 : line_as_in_312(an, jump_line, i);
        cleanup_left -= cleanup_left > 0;
        bool starts = line != current_line ||
                      (in->flags & (LI_I_JUMP_TARGET | LI_I_HANDLER_TARGET));
        if (starts && line >= 0 && in->depth >= 0) {
            in->flags |= LI_I_LINE_START;
        }
        in->event_line = line;
        current_line = line;
    }
    PyMem_Free(jump_line);
    return 0;
}

int
li_analyse(PyCodeObject *code, li_analysis *an)
{
    memset(an, 0, sizeof(*an));
    an->code = code;
    PyObject *bytes = PyCode_GetCode(code);
    if (bytes == NULL) {
        return -1;
    }
    an->n_units = (int)(PyBytes_GET_SIZE(bytes) / sizeof(_Py_CODEUNIT));
    /* One block: at most one instruction per unit, every unit belongs to
       one (instr_at), and li_decode_locations() writes every unit's
       location.  The instructions first, for their alignment. */
    size_t n = (size_t)an->n_units;
    an->instrs = li_alloc_filled_later(n, sizeof(li_instr) + sizeof(li_loc) + sizeof(int) +
                                          sizeof(_Py_CODEUNIT));
    if (an->instrs == NULL) {
        Py_DECREF(bytes);
        goto error;
    }
    an->locs = (li_loc *)(an->instrs + n);
    an->instr_at = (int32_t *)(an->locs + n);
    an->units = (_Py_CODEUNIT *)(an->instr_at + n);
    memcpy(an->units, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
    Py_DECREF(bytes);
    an->n_handlers = li_decode_handlers(code, &an->handlers);
    if (an->n_handlers < 0 ||
        li_decode_locations(code, an->locs, an->n_units, &an->max_line) < 0 ||
        decode_instructions(an) < 0 ||
        resolve_targets(an) < 0 ||
        compute_depths(an) < 0 ||
        mark_line_starts(an) < 0)
    {
        goto error;
    }
    return 0;
error:
    li_analysis_clear(an);
    return -1;
}
