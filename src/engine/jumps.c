/* Which events' callbacks may set frame.f_lineno: the rules of 3.12, which
 * both back ends follow (backendNNN/jump.c). */

#include "li.h"

const char *
li_jump_refusal(int event)
{
    switch (event) {
    case LI_PY_RESUME:
    case LI_JUMP:
    case LI_BRANCH:
    case LI_LINE:
        return NULL;
    case LI_PY_YIELD:
        /* Natively allowed, with answers that differ between 3.12 and
           3.13 (the value is yielded or not); the engine's probe comes
           before the yield. */
        return "lowimpact: can't jump from a PY_YIELD event on CPython 3."
               Py_STRINGIFY(PY_MINOR_VERSION);
    case LI_PY_START:
        return "can't jump from the 'call' trace event of a new frame";
    case LI_CALL:
    case LI_C_RETURN:
        return "can't jump during a call";
    default:
        return "can only jump from a 'line' trace event";
    }
}
