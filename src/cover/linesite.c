/* 3.10+: the interpreter's line tracing reports a line at every
 * instruction LINE is reported at (linesite.h). */
#include "linesite.h"

int
cover_traced_line(PyObject *code)
{
    (void)code;
    return 1;
}
