/* Native LINE's checks inside a line (CPython 3.12, 3.13).
 *
 * The interpreter instruments for LINE every unit where a line starts and
 * every jump target, but fires the event only where the line changes.  A
 * jump target inside a line (a comprehension's loop, `yield from`, the
 * second half of `a if c else b` or `x and y`) reached from that same line
 * checks on every pass without calling the tool, so the tool's DISABLE,
 * which acts on the unit that fired, never reaches it.  Once a line is
 * recorded every LINE check of it is useless to the collector: quieting
 * removes the collector's LINE from each unit of the line the way a
 * DISABLE returned there would, in the interpreter's own instrumentation
 * data (so restart_events() and a change of the code's events arm them
 * again, as they do DISABLEd units).  quiet_312.c and quiet_313.c (over
 * quiet_native.h) for the interpreters whose data is known, quiet_none.c
 * for the others (setup.py's QUIET_LINES). */
#ifndef LI_COVER_QUIET_H
#define LI_COVER_QUIET_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* The units of `code` that hold LINE instrumentation now, in increasing
 * order, in a PyMem array (NULL when there are none; then *count is 0, or
 * -1 with MemoryError set). */
int32_t *cover_line_units(PyCodeObject *code, Py_ssize_t *count);

/* Remove tool `tool`'s LINE from each of `units` of `code` (from
 * cover_line_units), as a DISABLE returned at each would.  Units whose
 * instrumentation changed shape since (INSTRUCTION events on the code)
 * are left alone: their checks stay, as without quieting. */
void cover_quiet_units(PyCodeObject *code, int tool, const int32_t *units, Py_ssize_t n);

#endif /* LI_COVER_QUIET_H */
