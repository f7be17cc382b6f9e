/* Where 3.9's line table starts a line that 3.12 reports no LINE at.
 *
 * 3.9's compiler (before PEP 626) gives the code it adds the line of the
 * last statement it compiled, and after a copy of a finally body that a
 * return, break or continue runs it goes back to that statement's line
 * for the code that goes on leaving (compiler_unwind_fblock(): a
 * POP_BLOCK on the statement's line, the finally body, then the
 * statement's line again).  3.9 itself makes a line event there, at the
 * table's line start; 3.12 gives that code no line of its own and makes
 * none.  That place is found from the block structure: where a POP_BLOCK
 * that pops a SETUP_FINALLY's block leaves a try body for a finally body,
 * a copy of that body follows, on the lines of the handler's copy, and
 * the first instruction after the copy is back on the POP_BLOCK's line.
 * (A try/except's POP_BLOCK is followed by code on its own line.)
 */

#include "b310.h"

/* A block on a frame's block stack, as 3.9's evaluation loop pushes them:
 * by a SETUP_* (its body's block), or by unwinding into the handler of
 * that SETUP_* (an EXCEPT_HANDLER block). */
typedef struct {
    int setup;          /* instruction index of the SETUP_* */
    int parent;         /* the block under it (block 0: none) */
    bool handler;
} block;

typedef struct {
    int op;             /* unit of the opcode (after its EXTENDED_ARG prefixes) */
    int opcode;
    unsigned int arg;   /* its argument, with its EXTENDED_ARG prefixes' */
    int target;         /* instruction index jumped to, or -1 */
    int blocks;         /* index of its innermost block, 0 for none; -1: not reached */
} instruction;

/* Whether the handler that deletes the name of `except E as name:`, with
 * None as its constant, starts at unit `u` of `n`: 3.12 gives it no line. */
static bool
is_name_cleanup(PyCodeObject *code, const uint8_t *bytes, int n, int u)
{
    li_name_cleanup cleanup;
    return li_name_cleanup_at(bytes, n, u, &cleanup) &&
           cleanup.constant < (unsigned int)PyTuple_GET_SIZE(code->co_consts) &&
           PyTuple_GET_ITEM(code->co_consts, cleanup.constant) == Py_None;
}

static int
push_block(block *blocks, int *n_blocks, int setup, int parent, bool handler)
{
    blocks[*n_blocks] = (block){setup, parent, handler};
    return (*n_blocks)++;
}

/* Gives instruction `i` the blocks `b` if it has none yet, and queues it. */
static void
reach(instruction *ins, int n_ins, int *queue, int *queued, int i, int b)
{
    if (i >= 0 && i < n_ins && ins[i].blocks < 0) {
        ins[i].blocks = b;
        queue[(*queued)++] = i;
    }
}

/* The block stack at each instruction, by following every path from the
 * first one (3.9's compiler gives an instruction the same stack on every
 * path).  Loops keep their iterator on the value stack, not as a block. */
static void
follow_blocks(instruction *ins, int n_ins, block *blocks, int *n_blocks, int *queue)
{
    int queued = 0;
    /* Block 0 stands for the empty stack. */
    push_block(blocks, n_blocks, -1, -1, false);
    reach(ins, n_ins, queue, &queued, 0, 0);
    while (queued > 0) {
        int i = queue[--queued];
        int here = ins[i].blocks, next = here;
        switch (ins[i].opcode) {
        case SETUP_FINALLY:
        case SETUP_WITH:
        case SETUP_ASYNC_WITH:
            if (ins[i].target >= 0 && ins[ins[i].target].blocks < 0) {
                reach(ins, n_ins, queue, &queued, ins[i].target, push_block(blocks, n_blocks, i, here, true));
            }
            if (i + 1 < n_ins && ins[i + 1].blocks < 0) {
                next = push_block(blocks, n_blocks, i, here, false);
            }
            break;
        case POP_BLOCK:
        case POP_EXCEPT:
        case END_ASYNC_FOR:     /* pops its loop's EXCEPT_HANDLER */
            next = here > 0 ? blocks[here].parent : 0;
            break;
        default:
            break;
        }
        if (ins[i].opcode != SETUP_FINALLY && ins[i].opcode != SETUP_WITH &&
            ins[i].opcode != SETUP_ASYNC_WITH) {
            reach(ins, n_ins, queue, &queued, ins[i].target, here);
        }
        if (li_falls_through(ins[i].opcode)) {
            reach(ins, n_ins, queue, &queued, i + 1, next);
        }
    }
}

int
li_lineless_units(PyCodeObject *code, const int *lines, int n, bool **out)
{
    const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(code->co_code);
    instruction *ins = PyMem_Calloc((size_t)n + 1, sizeof(instruction));
    int *index = PyMem_Calloc((size_t)n + 1, sizeof(int));
    int *queue = PyMem_Calloc((size_t)n + 1, sizeof(int));
    /* Each SETUP_* pushes at most two blocks, its body's and its handler's,
       and block 0 is the empty stack. */
    block *blocks = PyMem_Calloc((size_t)n + 1, 2 * sizeof(block));
    /* The lowest and highest line of the code under each SETUP_FINALLY's
       handler block (a finally body's or the except clauses'). */
    int *low = PyMem_Calloc((size_t)n + 1, sizeof(int));
    int *high = PyMem_Calloc((size_t)n + 1, sizeof(int));
    bool *lineless = PyMem_Calloc((size_t)n + 1, sizeof(bool));
    bool *prefixed = PyMem_Calloc((size_t)n + 1, sizeof(bool));
    *out = NULL;
    if (ins == NULL || index == NULL || queue == NULL || blocks == NULL || low == NULL ||
        high == NULL || lineless == NULL || prefixed == NULL) {
        PyErr_NoMemory();
        PyMem_Free(lineless);
        lineless = NULL;
        goto done;
    }

    int n_ins = 0;
    for (int u = 0; u < n; n_ins++) {
        int opcode;
        unsigned int arg;
        int next = li_decode(bytes, n, u, &opcode, &arg);
        prefixed[n_ins] = next - 1 > u;
        while (u < next - 1) {
            index[u++] = n_ins;
        }
        instruction *in = &ins[n_ins];
        in->op = u;
        in->opcode = opcode;
        in->arg = arg;
        in->blocks = -1;
        in->target = -1;
        switch (in->opcode) {
        case JUMP_FORWARD:
        case FOR_ITER:
        case SETUP_FINALLY:
        case SETUP_WITH:
        case SETUP_ASYNC_WITH:
            in->target = u + 1 + li_jump_units(arg);
            break;
        case JUMP_ABSOLUTE:
        case POP_JUMP_IF_FALSE:
        case POP_JUMP_IF_TRUE:
        case JUMP_IF_FALSE_OR_POP:
        case JUMP_IF_TRUE_OR_POP:
        case JUMP_IF_NOT_EXC_MATCH:
            in->target = li_jump_units(arg);
            break;
        default:
            break;
        }
        index[u++] = n_ins;
    }
    /* Targets as instruction indexes (a jump lands on a prefix, if any). */
    for (int i = 0; i < n_ins; i++) {
        ins[i].target = ins[i].target >= 0 && ins[i].target < n ? index[ins[i].target] : -1;
    }

    int n_blocks = 0;
    follow_blocks(ins, n_ins, blocks, &n_blocks, queue);

    for (int i = 0; i < n_ins; i++) {
        low[i] = INT_MAX;
        high[i] = INT_MIN;
    }
    /* An instruction under a finally handler's block is code of that
       finally body, or of a finally body nested in it. */
    for (int i = 0; i < n_ins; i++) {
        int line = lines[ins[i].op];
        for (int b = ins[i].blocks; b > 0; b = blocks[b].parent) {
            int s = blocks[b].setup;
            if (blocks[b].handler && ins[s].opcode == SETUP_FINALLY) {
                low[s] = Py_MIN(low[s], line);
                high[s] = Py_MAX(high[s], line);
            }
        }
    }

    for (int i = 0; i < n_ins; i++) {
        if (ins[i].opcode == WITH_EXCEPT_START ||
            (!prefixed[i] && is_name_cleanup(code, bytes, n, ins[i].op))) {
            /* A with's exit on an exception, the cleanup of `except E as
               name`: 3.9 gives them the body's last line, 3.12 the with's
               or none. */
            lineless[ins[i].op] = true;
            continue;
        }
        int b = ins[i].blocks;
        if (ins[i].opcode != POP_BLOCK || b <= 0 || blocks[b].handler ||
            ins[blocks[b].setup].opcode != SETUP_FINALLY) {
            continue;
        }
        /* The POP_BLOCK leaving a try body for its finally body (which
           comes later in the source), with the blocks under the try's
           (`under`): the copy of the body that follows runs in those
           blocks on the lines of the handler's copy, but for the blocks
           its own statements set up, the ways out of the blocks under (a
           return in the body runs outer finally bodies, on their lines),
           and code no path reaches (a jump the compiler sent straight on
           to where the jump it went to goes).  What follows the copy is
           back in those blocks, on the POP_BLOCK's line if it goes on
           leaving (where no path reaches it, it needs no line). */
        int s = blocks[b].setup, under = blocks[b].parent, line = lines[ins[i].op], j = i + 1;
        if (line >= low[s]) {
            continue;
        }
        while (j < n_ins && (ins[j].blocks != under ||
                             (lines[ins[j].op] >= low[s] && lines[ins[j].op] <= high[s]))) {
            j++;
        }
        if (j > i + 1 && j < n_ins && lines[ins[j].op] == line) {
            lineless[ins[j].op] = true;
        }
    }
    *out = lineless;

done:
    PyMem_Free(ins);
    PyMem_Free(index);
    PyMem_Free(queue);
    PyMem_Free(blocks);
    PyMem_Free(low);
    PyMem_Free(high);
    PyMem_Free(prefixed);
    return *out != NULL ? 0 : -1;
}
