/* The block stack 3.9 and 3.10 run each instruction of a code object in.
 *
 * The evaluation loop pushes a block at each SETUP_* (for the body it
 * guards) and, unwinding into the handler, an EXCEPT_HANDLER block; a
 * POP_BLOCK or POP_EXCEPT pops one.  A loop keeps its iterator on the value
 * stack, not as a block, so a `break` out of a for loop in a try leaves the
 * try's block on top (frame_setlineno's model, blocks_of() in jump.c,
 * counts loops as blocks and differs there).  The compiler gives an
 * instruction the same block stack on every path to it, so the first path
 * found is the one.
 */

#include "b310.h"

int
li_jump_target(int opcode, unsigned int arg, int next)
{
    switch (opcode) {
    case JUMP_FORWARD:
    case FOR_ITER:
    case SETUP_FINALLY:
    case SETUP_WITH:
    case SETUP_ASYNC_WITH:
        return next + li_jump_units(arg);
    case JUMP_ABSOLUTE:
    case POP_JUMP_IF_FALSE:
    case POP_JUMP_IF_TRUE:
    case JUMP_IF_FALSE_OR_POP:
    case JUMP_IF_TRUE_OR_POP:
    case JUMP_IF_NOT_EXC_MATCH:
        return li_jump_units(arg);
    default:
        return -1;
    }
}

static int
push_block(li_block_stacks *s, int start, int opcode, int handler_unit, int parent, bool handler)
{
    s->blocks[s->n_blocks] = (li_block){start, opcode, handler_unit, parent, handler};
    return s->n_blocks++;
}

/* Gives the instruction starting at unit `u` the stack `b` if it has none
 * yet, and queues it. */
static void
reach(li_block_stacks *s, int n, int *queue, int *queued, int u, int b)
{
    if (u >= 0 && u < n && s->at[u] < 0) {
        s->at[u] = b;
        queue[(*queued)++] = u;
    }
}

int
li_block_stacks_of(PyCodeObject *code, int n, li_block_stacks *s)
{
    const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(code->co_code);
    /* Each SETUP_* pushes at most two blocks, its body's and its
       handler's, and block 0 is the empty stack. */
    s->blocks = PyMem_Malloc(((size_t)n + 1) * 2 * sizeof(li_block));
    s->at = PyMem_Malloc(((size_t)n + 1) * sizeof(int));
    int *queue = PyMem_Malloc(((size_t)n + 1) * sizeof(int));
    if (s->blocks == NULL || s->at == NULL || queue == NULL) {
        PyMem_Free(queue);
        li_block_stacks_clear(s);
        PyErr_NoMemory();
        return -1;
    }
    for (int u = 0; u <= n; u++) {
        s->at[u] = -1;
    }
    s->n_blocks = 0;
    push_block(s, -1, -1, -1, 0, false);
    int queued = 0;
    reach(s, n, queue, &queued, 0, 0);
    while (queued > 0) {
        int u = queue[--queued], here = s->at[u], after = here;
        int opcode;
        unsigned int arg;
        int next = li_decode(bytes, n, u, &opcode, &arg);
        for (int prefix = u + 1; prefix < next; prefix++) {
            s->at[prefix] = here;
        }
        int target = li_jump_target(opcode, arg, next);
        switch (opcode) {
        case SETUP_FINALLY:
        case SETUP_WITH:
        case SETUP_ASYNC_WITH:
            if (target >= 0 && target < n && s->at[target] < 0) {
                reach(s, n, queue, &queued, target, push_block(s, u, opcode, target, here, true));
            }
            target = -1;
            if (next < n && s->at[next] < 0) {
                after = push_block(s, u, opcode, -1, here, false);
            }
            break;
        case POP_BLOCK:
        case POP_EXCEPT:
        case END_ASYNC_FOR:     /* pops its loop's EXCEPT_HANDLER */
            after = s->blocks[here].parent;
            break;
        default:
            break;
        }
        reach(s, n, queue, &queued, target, here);
        if (li_falls_through(opcode)) {
            reach(s, n, queue, &queued, next, after);
        }
    }
    PyMem_Free(queue);
    return 0;
}

void
li_block_stacks_clear(li_block_stacks *s)
{
    PyMem_Free(s->blocks);
    PyMem_Free(s->at);
    s->blocks = NULL;
    s->at = NULL;
    s->n_blocks = 0;
}
