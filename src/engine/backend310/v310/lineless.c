/* Where 3.10's line table starts a line that 3.12 reports no LINE at.
 *
 * 3.10 gives the RERAISE that ends a finally body's exceptional copy the
 * line of the body's last statement, and makes a line event wherever a
 * jump lands on another line; 3.12 gives a RERAISE that only jumps reach
 * the line of those jumps (a block without a location takes its single
 * predecessor's), so arriving there changes no line.  (The 3.11 back end's
 * analysis.c, line_as_in_312(), makes the same correction.)
 */

#include "b310.h"

enum { NO_JUMP = -2, JUMPS_DISAGREE = -3 };

int
li_lineless_units(PyCodeObject *code, const int *lines, int n, bool **out)
{
    const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(code->co_code);
    /* The line of the jumps to each unit, or NO_JUMP, or JUMPS_DISAGREE. */
    int *jump_line = PyMem_Malloc(((size_t)n + 1) * sizeof(int));
    bool *lineless = PyMem_Calloc((size_t)n + 1, sizeof(bool));
    *out = NULL;
    if (jump_line == NULL || lineless == NULL) {
        PyMem_Free(jump_line);
        PyMem_Free(lineless);
        PyErr_NoMemory();
        return -1;
    }
    for (int u = 0; u < n; u++) {
        jump_line[u] = NO_JUMP;
    }
    int opcode;
    unsigned int arg;
    for (int u = 0, next; u < n; u = next) {
        next = li_decode(bytes, n, u, &opcode, &arg);
        if (opcode == SETUP_FINALLY || opcode == SETUP_WITH || opcode == SETUP_ASYNC_WITH) {
            continue;   /* a handler, which exceptions enter: no jump */
        }
        int target = li_jump_target(opcode, arg, next), line = lines[next - 1];
        if (target >= 0 && target < n) {
            jump_line[target] = jump_line[target] == NO_JUMP || jump_line[target] == line ? line
                                                                                           : JUMPS_DISAGREE;
        }
    }
    bool entered_from_previous = false;
    for (int u = 0, next; u < n; u = next) {
        next = li_decode(bytes, n, u, &opcode, &arg);
        if (opcode == RERAISE && !entered_from_previous && jump_line[u] >= 0) {
            lineless[next - 1] = true;
        }
        entered_from_previous = li_falls_through(opcode);
    }
    PyMem_Free(jump_line);
    *out = lineless;
    return 0;
}
