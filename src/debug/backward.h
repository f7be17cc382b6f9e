/* Which conditional jumps may branch backward: the one bytecode fact the
 * debugger core's C callbacks need, per bytecode format (setup.py compiles
 * one of backward_*.c). */
#ifndef LI_DEBUG_BACKWARD_H
#define LI_DEBUG_BACKWARD_H

#include <Python.h>

/* Whether the instruction at byte `offset` of `code`'s original bytecode
 * jumps backward when its branch is taken (dis names it *BACKWARD*), so
 * that the other side of its BRANCH event, forward, is a loop's exit:
 * 1, 0, or -1 with an exception set. */
int li_debug_branches_backward(PyCodeObject *code, int offset);

#endif /* LI_DEBUG_BACKWARD_H */
