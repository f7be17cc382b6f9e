/* The source locations of code units, read from a CPython 3.11+ location
 * table (co_linetable; CPython's Objects/locations.md) for the few units
 * `lowimpact cover` asks about, where code.co_positions() makes a tuple for
 * every unit (lowimpact/tools/cover/bytecode311.py), and the lines of a
 * code object (the collector's retire_lines): the tables of 3.9 and 3.10
 * are other formats, without columns. */
#ifndef LI_COVER_LOCATIONS_H
#define LI_COVER_LOCATIONS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *cover_code_locations(PyObject *module, PyObject *args);

/* The set of the lines of the units from `first_unit` on in the 3.11+
 * location table `linetable` (bytes) of a code object whose first line is
 * `firstlineno`; NULL with an exception set (ValueError: a table cut short). */
PyObject *cover_lines_from(PyObject *linetable, int firstlineno, int first_unit);

extern const char cover_code_locations_doc[];

#endif /* LI_COVER_LOCATIONS_H */
