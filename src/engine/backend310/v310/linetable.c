/* 3.10's line table, co_linetable: (bytes, line delta) pairs, a delta of
 * -128 for bytes with no line (Objects/lnotab_notes.txt of 3.10). */

#include "b310.h"

void
li_unit_lines(PyCodeObject *code, int *lines, int n_units)
{
    for (int u = 0; u < n_units; u++) {
        lines[u] = -1;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(code->co_linetable);
    Py_ssize_t len = PyBytes_GET_SIZE(code->co_linetable);
    int line = code->co_firstlineno;
    int addr = 0;
    for (Py_ssize_t i = 0; i + 1 < len; i += 2) {
        int end = addr + p[i];
        int delta = (signed char)p[i + 1];
        int this_line = -1;
        if (delta != -128) {
            line += delta;
            this_line = line;
        }
        for (int b = addr; b < end && b / 2 < n_units; b += 2) {
            lines[b / 2] = this_line;
        }
        addr = end;
    }
}

void
li_unit_line_starts(PyCodeObject *code, int *starts, int n_units)
{
    for (int u = 0; u < n_units; u++) {
        starts[u] = -1;
    }
    const uint8_t *t = (const uint8_t *)PyBytes_AS_STRING(code->co_linetable);
    Py_ssize_t len = PyBytes_GET_SIZE(code->co_linetable);
    int line = code->co_firstlineno, addr = 0;
    for (Py_ssize_t k = 0; k + 1 < len; k += 2) {
        int delta = (int8_t)t[k + 1];
        if (delta != -128) {
            line += delta;
        }
        if (t[k] > 0 && addr / 2 < n_units) {
            starts[addr / 2] = delta == -128 ? -1 : line;
        }
        addr += t[k];
    }
}

PyObject *
li_encode_lines(const int *lines, int n_units, int firstlineno)
{
    unsigned char *buf = NULL;
    Py_ssize_t len = 0, cap = 0;
    int computed = firstlineno;
    PyObject *result = NULL;
    for (int u = 0; u < n_units;) {
        int line = lines[u];
        int run = u;
        while (run < n_units && lines[run] == line) {
            run++;
        }
        int bytes = (run - u) * 2;
        int delta = line < 0 ? -128 : line - computed;
        /* A line too far for one delta: entries of no bytes first. */
        while (line >= 0 && (delta > 127 || delta < -127)) {
            int step = delta > 0 ? 127 : -127;
            if (li_append_pair(&buf, &len, &cap, 0, step) < 0) {
                goto done;
            }
            delta -= step;
        }
        if (line >= 0) {
            computed = line;
        }
        do {
            int chunk = bytes > 254 ? 254 : bytes;
            if (li_append_pair(&buf, &len, &cap, chunk, delta) < 0) {
                goto done;
            }
            bytes -= chunk;
            if (line >= 0) {
                delta = 0;
            }
        } while (bytes > 0);
        u = run;
    }
    result = PyBytes_FromStringAndSize((const char *)buf, len);
done:
    PyMem_Free(buf);
    return result;
}
