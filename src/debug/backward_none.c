/* 3.9 and 3.10: every jump backward is unconditional (a JUMP event), so a
 * forward BRANCH is never a loop's exit.  3.12+: the debugger does not
 * listen to BRANCH (a loop's pass is a JUMP there). */
#include "backward.h"

int
li_debug_branches_backward(PyCodeObject *code, int offset)
{
    (void)code;
    (void)offset;
    return 0;
}
