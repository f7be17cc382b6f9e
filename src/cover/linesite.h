/* Which LINE events of the measured code coverage.py's C tracer also sees.
 *
 * The C tracer records a line at each 'line' event of sys.settrace; the
 * core records one at each LINE event.  Where the interpreter's line
 * tracing reports a line at every instruction sys.monitoring reports LINE
 * at (3.10+), they agree; 3.9's reports fewer (a line entered by a forward
 * jump past its first instruction gets no 'line' event there).  One file
 * per rule, chosen by setup.py: linesite39.c (3.9), linesite.c (3.10+). */
#ifndef COVER_LINESITE_H
#define COVER_LINESITE_H

#include <Python.h>

/* Whether the LINE event of `code` (a code object) that the current
 * frame of this thread is at now is one the interpreter's line tracing
 * reports too: 1 yes, 0 no, -1 with an exception set. */
int cover_traced_line(PyObject *code);

#endif
