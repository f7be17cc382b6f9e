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

int
li_lineless_units(PyCodeObject *code, const int *lines, int n, bool **out)
{
    const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(code->co_code);
    li_block_stacks stacks;
    *out = NULL;
    if (li_block_stacks_of(code, n, &stacks) < 0) {
        return -1;
    }
    /* The lowest and highest line of the code under the handler block of
       the SETUP_FINALLY starting at each unit (a finally body's or the
       except clauses'). */
    int *low = PyMem_Malloc(((size_t)n + 1) * sizeof(int));
    int *high = PyMem_Malloc(((size_t)n + 1) * sizeof(int));
    bool *lineless = PyMem_Calloc((size_t)n + 1, sizeof(bool));
    if (low == NULL || high == NULL || lineless == NULL) {
        PyErr_NoMemory();
        PyMem_Free(lineless);
        lineless = NULL;
        goto done;
    }
    for (int u = 0; u < n; u++) {
        low[u] = INT_MAX;
        high[u] = INT_MIN;
    }
    /* An instruction under a finally handler's block is code of that
       finally body, or of a finally body nested in it. */
    for (int u = 0; u < n; u++) {
        for (int b = stacks.at[u]; b > 0; b = stacks.blocks[b].parent) {
            const li_block *block = &stacks.blocks[b];
            if (block->handler && block->opcode == SETUP_FINALLY) {
                low[block->start] = Py_MIN(low[block->start], lines[u]);
                high[block->start] = Py_MAX(high[block->start], lines[u]);
            }
        }
    }

    for (int u = 0, next; u < n; u = next) {
        int opcode;
        unsigned int arg;
        next = li_decode(bytes, n, u, &opcode, &arg);
        int op = next - 1;
        if (opcode == WITH_EXCEPT_START || (op == u && is_name_cleanup(code, bytes, n, u))) {
            /* A with's exit on an exception, the cleanup of `except E as
               name` (its None without a prefix): 3.9 gives them the body's
               last line, 3.12 the with's or none. */
            lineless[op] = true;
            continue;
        }
        int b = stacks.at[u];
        if (opcode != POP_BLOCK || b <= 0 || stacks.blocks[b].handler ||
            stacks.blocks[b].opcode != SETUP_FINALLY) {
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
        int s = stacks.blocks[b].start, under = stacks.blocks[b].parent, line = lines[op];
        if (line >= low[s]) {
            continue;
        }
        int after = next, after_op = next;
        while (after < n) {
            after_op = li_decode(bytes, n, after, &opcode, &arg) - 1;
            if (stacks.at[after] == under && (lines[after_op] < low[s] || lines[after_op] > high[s])) {
                break;
            }
            after = after_op + 1;
        }
        if (after > next && after < n && lines[after_op] == line) {
            lineless[after_op] = true;
        }
    }
    *out = lineless;

done:
    PyMem_Free(low);
    PyMem_Free(high);
    li_block_stacks_clear(&stacks);
    return *out != NULL ? 0 : -1;
}
