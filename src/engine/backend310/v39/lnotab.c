/* 3.9's line table, co_lnotab: (byte delta 0-255, line delta -128..127)
 * pairs, a line delta applying from the address its pair ends at
 * (PyCode_Addr2Line); a line starts, for the line trace event and
 * frame.f_lineno's setter, where a pair with a line delta ends
 * (_PyCode_CheckLineNumber), and at the first instruction. */

#include "b310.h"

/* Fills the line of each unit (lines) and the line starting at each unit
 * where one does (starts), either may be NULL, from `code`'s table. */
static void
walk(PyCodeObject *code, int n_units, int *lines, int *starts)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(code->co_lnotab);
    Py_ssize_t len = PyBytes_GET_SIZE(code->co_lnotab);
    int line = code->co_firstlineno, addr = 0, filled = 0;
    if (starts != NULL && n_units > 0) {
        starts[0] = line;
    }
    for (Py_ssize_t i = 0; i + 1 < len; i += 2) {
        int next = addr + p[i];
        for (; lines != NULL && filled < n_units && 2 * filled < next; filled++) {
            lines[filled] = line;
        }
        addr = next;
        int delta = (signed char)p[i + 1];
        line += delta;
        if (starts != NULL && delta != 0 && addr / 2 < n_units) {
            starts[addr / 2] = line;
        }
    }
    for (; lines != NULL && filled < n_units; filled++) {
        lines[filled] = line;
    }
}

void
li_unit_lines(PyCodeObject *code, int *lines, int n_units)
{
    walk(code, n_units, lines, NULL);
}

void
li_unit_line_starts(PyCodeObject *code, int *starts, int n_units)
{
    for (int u = 0; u < n_units; u++) {
        starts[u] = -1;
    }
    walk(code, n_units, NULL, starts);
}

/* Units with no line (-1) stay on the line before them: 3.9's table has no
 * way to say none, and its compiler gives every instruction one. */
PyObject *
li_encode_lines(const int *lines, int n_units, int firstlineno)
{
    unsigned char *buf = NULL;
    Py_ssize_t len = 0, cap = 0;
    int line = firstlineno, addr = 0;
    PyObject *result = NULL;
    for (int u = 0; u < n_units; u++) {
        if (lines[u] < 0 || lines[u] == line) {
            continue;
        }
        int bytes = 2 * u - addr, delta = lines[u] - line;
        for (; bytes > 255; bytes -= 255) {
            if (li_append_pair(&buf, &len, &cap, 255, 0) < 0) {
                goto done;
            }
        }
        for (; delta > 127 || delta < -128; bytes = 0) {
            int step = delta > 0 ? 127 : -128;
            if (li_append_pair(&buf, &len, &cap, bytes, step) < 0) {
                goto done;
            }
            delta -= step;
        }
        if (li_append_pair(&buf, &len, &cap, bytes, delta) < 0) {
            goto done;
        }
        addr = 2 * u;
        line = lines[u];
    }
    result = PyBytes_FromStringAndSize((const char *)buf, len);
done:
    PyMem_Free(buf);
    return result;
}
