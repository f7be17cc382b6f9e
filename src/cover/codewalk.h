/* The walk of a code object's bytecode that `lowimpact cover` makes when it
 * saves --branch data (lowimpact/tools/cover/arcs.py's walk_in_python, in C).
 * It knows no bytecode version: what each opcode byte does comes in tables
 * that arcs.py reads from `dis`. */
#ifndef LI_COVER_CODEWALK_H
#define LI_COVER_CODEWALK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *cover_walk_code(PyObject *module, PyObject *args);

extern const char cover_walk_code_doc[];

#endif /* LI_COVER_CODEWALK_H */
