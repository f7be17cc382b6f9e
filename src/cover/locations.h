/* The source locations of code units, read from a CPython 3.11+ location
 * table (co_linetable; CPython's Objects/locations.md) for the few units
 * `lowimpact cover` asks about, where code.co_positions() makes a tuple for
 * every unit (lowimpact/tools/cover/bytecode311.py), and the lines of the
 * units where native LINE checks (the collector's quieting, quiet.h): the
 * tables of 3.9 and 3.10 are other formats, without columns. */
#ifndef LI_COVER_LOCATIONS_H
#define LI_COVER_LOCATIONS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

PyObject *cover_code_locations(PyObject *module, PyObject *args);

/* {line: bytes of the int32 units} of the lines that more than one of
 * `units` (increasing) has, in the 3.11+ location table `linetable` of a
 * code object whose first line is `firstlineno`; NULL with an exception
 * set (ValueError: a table cut short). */
PyObject *cover_units_by_line(PyObject *linetable, int firstlineno, const int32_t *units,
                              Py_ssize_t n);

extern const char cover_code_locations_doc[];

#endif /* LI_COVER_LOCATIONS_H */
